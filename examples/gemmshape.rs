use std::time::Instant;
fn run(name: &str, m: usize, n: usize, k: usize, dst_cs: isize, dst_rs: isize, lhs_cs: isize, lhs_rs: isize, rhs_cs: isize, rhs_rs: isize) {
    let a = vec![0.5f32; m * k + 64 * k];
    let b = vec![0.25f32; k * n + 64 * k];
    let mut c = vec![0.0f32; m * n + 64 * n];
    let go = |c: &mut Vec<f32>| unsafe {
        gemm::gemm(m, n, k, c.as_mut_ptr(), dst_cs, dst_rs, true, a.as_ptr(), lhs_cs, lhs_rs, b.as_ptr(), rhs_cs, rhs_rs, 1.0, 1.0, false, false, false, gemm::Parallelism::None);
    };
    go(&mut c);
    let t = Instant::now();
    let reps = 20;
    for _ in 0..reps { go(&mut c); }
    let s = t.elapsed().as_secs_f64() / reps as f64;
    println!("{name:<50} {:.0} GF/s", 2.0 * (m * n * k) as f64 / s / 1e9);
}
fn main() {
    for (m, n, k) in [(512usize, 4608usize, 64usize), (512, 4608, 512), (64, 576, 1024), (256, 2304, 256)] {
        let kp = (k.next_multiple_of(16) | 16) as isize;
        println!("m {m} n {n} k {k}");
        run("  a dst row, A dy row pad, B col^T pad", m, n, k, 1, n as isize, 1, kp, kp, 1);
        run("  b dst col, A dy row pad, B col^T pad", m, n, k, m as isize, 1, 1, kp, kp, 1);
        run("  c dst row, B colT row", m, n, k, 1, n as isize, 1, kp, 1, n as isize);
        run("  d dst col, B colT row", m, n, k, m as isize, 1, 1, kp, 1, n as isize);
        run("  e dst col, A dy^T stored [k,m], B colT row", m, n, k, m as isize, 1, m as isize, 1, 1, n as isize);
    }
}
