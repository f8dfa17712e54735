//! Bad input ends with one clear message and a non-zero exit, never a panic.

mod common;
use common::*;

fn expect_error(args: &[&str], needle: &str) {
    assert_clean_error(&run(args), needle);
}

#[test]
fn missing_data_path() {
    expect_error(
        &[
            "train",
            "--method",
            "byol",
            "--data",
            "/no/such/folder",
            "--out",
            path(&scratch("e-missing").join("run")),
        ],
        "/no/such/folder: data path does not exist",
    );
}

#[test]
fn truncated_idx_file() {
    let dir = scratch("e-truncated");
    let bundled = selfsup::data::bundled_path();
    let bytes = std::fs::read(bundled.join("t10k-images-idx3-ubyte.gz")).unwrap();
    let raw = {
        use std::io::Read;
        let mut v = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut v)
            .unwrap();
        v
    };
    std::fs::write(dir.join("train-images-idx3-ubyte"), &raw[..raw.len() / 2]).unwrap();
    let out_dir = dir.join("run");
    let train = [
        "train",
        "--method",
        "simsiam",
        "--data",
        path(&dir),
        "--out",
        path(&out_dir),
    ];
    expect_error(&train, "train-images-idx3-ubyte: IDX file is truncated");
    // A truncated gzip stream is caught too.
    std::fs::remove_file(dir.join("train-images-idx3-ubyte")).unwrap();
    std::fs::write(
        dir.join("train-images-idx3-ubyte.gz"),
        &bytes[..bytes.len() / 2],
    )
    .unwrap();
    expect_error(&train, "gzip stream is corrupt or truncated");
    assert!(!out_dir.exists(), "nothing should be written for bad data");
}

#[test]
fn corrupt_image_in_a_folder() {
    let dir = scratch("e-corrupt");
    for class in ["a", "b"] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        let img = image::GrayImage::from_fn(12, 12, |x, y| image::Luma([(x * 20 + y) as u8]));
        img.save(dir.join(class).join("ok.png")).unwrap();
    }
    std::fs::write(
        dir.join("b").join("broken.png"),
        b"\x89PNG\r\n\x1a\nnot really",
    )
    .unwrap();
    expect_error(
        &[
            "train",
            "--method",
            "byol",
            "--data",
            path(&dir),
            "--set",
            "data.on_corrupt=fail",
            "--out",
            path(&dir.join("run")),
        ],
        "broken.png: cannot decode image",
    );
    // By default it is skipped, counted and named, and the two readable images train.
    let out = run(&[
        "train",
        "--method",
        "byol",
        "--data",
        path(&dir),
        "--batch-size",
        "2",
        "--epochs",
        "1",
        "--no-eval",
        "--json",
        "--out",
        path(&dir.join("skipped")),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let summary = json(&out);
    assert_eq!(summary["train"]["corrupt_images"], 1, "{summary}");
    assert!(stderr(&out).contains("broken.png"), "{}", stderr(&out));
}

#[test]
fn unknown_methods_and_bad_distillation_values() {
    expect_error(&["train", "--method", "nosuch"], "unknown method 'nosuch'");
    expect_error(
        &[
            "train",
            "--method",
            "dino",
            "--set",
            "method.centering=mean",
        ],
        "expected one of `ema`, `sinkhorn`, `none`",
    );
    expect_error(
        &["train", "--method", "ibot", "--set", "model.arch=resnet18"],
        "patch loss and KoLeo need ViT tokens",
    );
    expect_error(
        &[
            "train",
            "--method",
            "dino",
            "--set",
            "method.teacher_temperature=0",
        ],
        "method.teacher_temperature = 0 must be a positive number",
    );
    expect_error(
        &[
            "train",
            "--method",
            "byol",
            "--set",
            "augment.local_crops=2",
            "--set",
            "augment.local_size=12",
        ],
        "multi-crop feeds the self-distillation methods",
    );
}

#[test]
fn zero_or_negative_batch_size() {
    expect_error(
        &["train", "--method", "byol", "--batch-size", "0"],
        "--batch-size 0",
    );
    expect_error(
        &["train", "--method", "byol", "--batch-size", "-3"],
        "--batch-size -3",
    );
}

#[test]
fn unknown_set_key() {
    let out = run(&["train", "--method", "byol", "--set", "optim.lr=0.1"]);
    assert_clean_error(&out, "unknown key 'optim.lr'; valid keys here:");
    expect_error(
        &["train", "--method", "byol", "--set", "optim.base_lr"],
        "expected key=value",
    );
}

#[test]
fn eval_and_diagnose_need_a_run() {
    let dir = scratch("e-norun");
    expect_error(
        &["eval", "--run", path(&dir.join("absent"))],
        "run directory does not exist",
    );
    expect_error(
        &["diagnose", "--run", path(&dir)],
        "not a selfsup run directory",
    );
}

#[test]
fn methods_table_and_json() {
    let out = run(&["methods"]);
    assert!(out.status.success());
    let table = stdout(&out);
    assert!(
        table.contains("SimSiam")
            && table.contains("predictor + stop-gradient")
            && table.contains("Sinkhorn-Knopp")
            && !table.contains("(planned)")
    );
    let rows = json(&run(&["methods", "--json"]));
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 15);
    let implemented: Vec<&str> = rows
        .iter()
        .filter(|r| r["implemented"] == true)
        .map(|r| r["cli_name"].as_str().unwrap())
        .collect();
    assert_eq!(
        implemented,
        vec![
            "simclr",
            "moco-v1",
            "moco-v2",
            "moco-v3",
            "byol",
            "simsiam",
            "barlow-twins",
            "vicreg",
            "beit",
            "mae",
            "simmim",
            "vq-tokenizer",
            "dino",
            "ibot",
            "dinov2"
        ]
    );
    assert!(
        rows.iter()
            .any(|r| r["cli_name"] == "simclr" && r["negatives"] == true)
    );
}

#[test]
fn every_command_has_help_with_an_example() {
    for cmd in ["train", "eval", "diagnose", "methods", "attention"] {
        let out = run(&[cmd, "--help"]);
        assert!(out.status.success());
        assert!(
            stdout(&out).contains("Example"),
            "{cmd} --help lacks an example"
        );
    }
}

#[test]
fn resume_of_a_missing_run_says_how_to_start_it() {
    let dir = scratch("e-resume");
    for out in [dir.join("none"), dir.clone()] {
        expect_error(
            &["train", "--resume", "--out", path(&out)],
            "holds no run to continue; start it without --resume",
        );
    }
}

#[test]
fn a_bad_value_in_a_recipe_file_names_the_file_and_the_key() {
    let dir = scratch("e-recipe-value");
    let file = dir.join("fast.toml");
    std::fs::write(&file, "[optim]\nbase_lr = \"fast\"\n").unwrap();
    expect_error(
        &["train", "--method", "byol", "--recipe", path(&file)],
        &format!(
            "{}: optim.base_lr: invalid type: string \"fast\"",
            path(&file)
        ),
    );
    // Inside [method], whose settings depend on the method's name, too.
    std::fs::write(&file, "[method]\nname = \"byol\"\nbase_momentum = \"x\"\n").unwrap();
    expect_error(
        &["train", "--recipe", path(&file)],
        "fast.toml: method.base_momentum: invalid type",
    );
}

#[test]
fn diverging_loss_stops_with_a_clear_error_and_keeps_the_checkpoint() {
    let out_dir = scratch("e-nan").join("run");
    let out = run(&[
        "train",
        "--method",
        "simsiam",
        "--epochs",
        "2",
        "--batch-size",
        "32",
        "--no-eval",
        "--out",
        path(&out_dir),
        "--set",
        "model.width=4",
        "--set",
        "data.max_images=256",
        "--set",
        "method.projector=[16, 16]",
        "--set",
        "method.predictor=[8, 16]",
        "--set",
        "optim.base_lr=1e30",
        "--set",
        "train.checkpoint_every_steps=1",
    ]);
    assert_clean_error(&out, "training diverged: the loss became");
    assert!(stderr(&out).contains("optim.base_lr"), "{}", stderr(&out));
    let position =
        std::fs::read_to_string(out_dir.join("checkpoint").join("position.json")).unwrap();
    let step = serde_json::from_str::<serde_json::Value>(&position).unwrap()["step"]
        .as_u64()
        .unwrap();
    assert!(step >= 1, "a good checkpoint must remain");
    assert!(out_dir.join("metrics.jsonl").is_file());
    assert!(!out_dir.join("encoder.bpk").exists());
}
