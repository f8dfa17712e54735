//! What the benchmarks share (each uses part of it).
#![allow(dead_code)]

/// The process's peak resident set (VmHWM), in MiB; 0 where /proc is not there.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
            line.split_whitespace().nth(1)?.parse::<f64>().ok()
        })
        .map_or(0.0, |kib| kib / 1024.0)
}

/// The first numeric argument: how many steps to time (default 10, at least 1).
pub fn steps_arg(args: &[String]) -> usize {
    args.iter()
        .find_map(|a| a.parse().ok())
        .unwrap_or(10)
        .max(1)
}
