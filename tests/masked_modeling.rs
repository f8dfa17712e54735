//! Masked image modeling on real Fashion-MNIST images (the bundled subset): MAE and SimMIM learn
//! to fill masked patches, BEiT (with a VQ tokenizer trained first) beats a random-init encoder
//! on held-out kNN; a tokenizer without code restarts collapses and is flagged; `reconstruct`
//! draws a real picture.

mod common;
use common::*;

fn train(name: &str, args: &[&str]) -> (std::path::PathBuf, serde_json::Value) {
    let out_dir = scratch(&format!("mim-{name}")).join("run");
    let mut all = vec!["train", "--seed", "5", "--out", path(&out_dir), "--json"];
    all.extend_from_slice(args);
    let summary = json(&run(&all));
    (out_dir, summary)
}

fn train_tokenizer(
    name: &str,
    epochs: &str,
    sets: &[&str],
) -> (std::path::PathBuf, serde_json::Value) {
    let mut args = vec!["--method", "vq-tokenizer", "--epochs", epochs, "--no-eval"];
    for set in sets {
        args.extend(["--set", set]);
    }
    train(name, &args)
}

/// `reconstruct`'s masked-patch pixel error over 200 held-out images.
fn held_out_masked_mse(run_dir: &std::path::Path) -> f64 {
    let r = json(&run(&[
        "reconstruct",
        "--run",
        path(run_dir),
        "--images",
        "200",
        "--out",
        path(&run_dir.join("grid-200.png")),
        "--json",
    ]));
    r["masked_pixel_mse"].as_f64().unwrap()
}

fn assert_beats_random_init(summary: &serde_json::Value) {
    assert!(knn_margin(summary) > 0.01, "{}", summary["eval"]);
    assert_eq!(summary["diagnose"]["verdict"], "healthy", "{summary}");
    assert!(
        summary["train"]["collapse_warning_step"].is_null(),
        "{summary}"
    );
}

/// MAE's kNN gain over random init at CI's scale depends on the seed (kNN points, 2 epochs,
/// AVX2 EPYC: +1.2 / +6.3 / +0.1 at seeds 5 / 1 / 2; the README's 5-epoch run +8.5), so CI checks
/// what holds at every seed: the features stay healthy and masked patches are filled in far better
/// than a flat guess (≈ 0.1). One epoch over half the subset (39 steps) is enough: over 200
/// held-out images 0.021 / 0.020 / 0.021 at seeds 5 / 1 / 2 with the recipe's learned positions
/// (AVX-512 Xeon, its AVX-512 and AVX2 builds alike; with sin-cos 0.021 / 0.022 / 0.022), all
/// healthy.
#[test]
fn mae_learns_to_reconstruct() {
    let (dir, summary) = train(
        "mae",
        &[
            "--method",
            "mae",
            "--epochs",
            "1",
            "--no-eval",
            "--set",
            "data.max_images=5000",
        ],
    );
    assert_eq!(summary["diagnose"]["verdict"], "healthy", "{summary}");
    assert!(
        summary["train"]["collapse_warning_step"].is_null(),
        "{summary}"
    );

    let picture = dir.join("grid.png");
    let r = json(&run(&[
        "reconstruct",
        "--run",
        path(&dir),
        "--images",
        "3",
        "--out",
        path(&picture),
        "--json",
    ]));
    assert_eq!(r["images"], 3);
    assert!(
        (r["mask_ratio"].as_f64().unwrap() - 0.75).abs() < 1e-9,
        "{r}"
    );
    let png = image::open(&picture).unwrap();
    // Four columns of 32 px scaled ×4, three rows.
    assert_eq!(
        (png.width(), png.height()),
        (4 * (128 + 6) + 6, 22 + 3 * (128 + 6) + 6)
    );
    // Normalised-patch predictions drawn at the original patches' statistics: far better than
    // a flat grey guess (≈ 0.1 on Fashion-MNIST), over 200 images (the grid's 3 alone gave
    // 0.032 / 0.039 / 0.035).
    let mse = held_out_masked_mse(&dir);
    assert!(mse > 0.0 && mse < 0.05, "{mse}");
}

/// SimMIM's features pass random init later than MAE's: after 2 epochs at seed 5 its kNN is below
/// random init (0.593 vs 0.672); the full 5-epoch recipe is above it at seed 0 (0.705 vs 0.649,
/// the README's table) but not at seed 5 (0.662 vs 0.672; its probe is, 0.752 vs 0.728). Within
/// CI's budget this checks that it learns its own task: after one epoch over half the subset,
/// masked blocks are reconstructed far better than by the best constant (the pixel variance of
/// the held-out images, 0.129) and than at the start (0.252 after one step): 0.075 / 0.077 /
/// 0.072 at seeds 5 / 1 / 2 (AVX-512 Xeon; 0.075 / 0.070 / 0.075 on an AVX2 EPYC), and the
/// features stay healthy (effective rank 6.4–7.2 of 128).
#[test]
fn simmim_learns_to_fill_masked_blocks() {
    let mut args = vec!["--method", "simmim", "--epochs", "1", "--no-eval"];
    args.extend(["--set", "data.max_images=5000"]);
    let (dir, summary) = train("simmim", &args);
    assert_eq!(summary["diagnose"]["verdict"], "healthy", "{summary}");
    let mse = held_out_masked_mse(&dir);
    assert!(mse < 0.09, "{mse}");
}

/// One epoch of the tokenizer, then one of BEiT, both over half the subset (39 steps each): kNN
/// over random init +11.2 / +6.5 / +8.1 points at seeds 5 / 1 / 2 (AVX-512 Xeon; 237–247 of 256
/// codes in use), as far clear as a full tokenizer epoch and two of BEiT (+7.9 / +8.9 / +8.1 on an
/// AVX2 EPYC) at a third of the cost.
#[test]
fn beit_learns_the_codes_of_its_tokenizer() {
    let (tokenizer, summary) = train_tokenizer("vq", "1", &["data.max_images=5000"]);
    let codebook = &summary["diagnose"]["codebook"];
    assert_eq!(codebook["collapsed"], false, "{summary}");
    assert!(codebook["used"].as_u64().unwrap() > 128, "{summary}");
    assert!(summary["train"]["codebook_collapse_warning_step"].is_null());

    let setting = format!("method.tokenizer={}", path(&tokenizer));
    let mut args = vec![
        "--method",
        "beit",
        "--epochs",
        "1",
        "--set",
        &setting,
        "--set",
        "data.max_images=5000",
    ];
    args.extend(QUICK_EVAL);
    let (_, summary) = train("beit", &args);
    assert_beats_random_init(&summary);
}

/// 50 steps (6,400 images), the first the codebook check looks at: 1 / 1 / 4 codes of 256 in use
/// and the warning at step 50, at seeds 5 / 1 / 2.
#[test]
fn tokenizer_without_code_restarts_collapses_and_is_flagged() {
    let (_, summary) = train_tokenizer(
        "vq-collapse",
        "1",
        &["method.restart_codes=false", "data.max_images=6400"],
    );
    let codebook = &summary["diagnose"]["codebook"];
    assert_eq!(codebook["collapsed"], true, "{summary}");
    assert!(
        summary["train"]["codebook_collapse_warning_step"]
            .as_u64()
            .is_some(),
        "{summary}"
    );
}

#[test]
fn masked_modeling_needs_a_vit_and_beit_its_tokenizer() {
    let dir = scratch("mim-errors");
    for (method, set, needle) in [
        ("mae", "model.arch=resnet18", "model.arch"),
        (
            "beit",
            "method.tokenizer=/nonexistent/vq",
            "method.tokenizer",
        ),
        ("simmim", "method.mask_block=3", "method.mask_block"),
    ] {
        let out_dir = dir.join(method);
        let out = run(&[
            "train",
            "--method",
            method,
            "--set",
            set,
            "--out",
            path(&out_dir),
        ]);
        assert_clean_error(&out, needle);
        assert!(!out_dir.exists(), "a failed start leaves no run behind");
    }
}
