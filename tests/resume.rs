//! A run killed with SIGKILL mid-epoch and restarted with --resume ends with the same metrics and
//! weights as an uninterrupted run with the same seed (BYOL: EMA target and momentum schedule too).

mod common;
use common::*;

use selfsup::host::named_values;
use selfsup::method::{Byol, Method};
use selfsup::run::load_module;

use std::time::{Duration, Instant};

const ARGS: &[&str] = &[
    "train",
    "--method",
    "byol",
    "--epochs",
    "2",
    "--batch-size",
    "32",
    "--seed",
    "11",
    "--no-eval",
    "--json",
    "--set",
    "model.width=4",
    "--set",
    "data.max_images=320",
    "--set",
    "method.projector=[32, 16]",
    "--set",
    "method.predictor=[32, 16]",
    "--set",
    "train.log_every=1",
    "--set",
    "train.checkpoint_every_steps=3",
    "--set",
    "train.eval_every=1",
    "--set",
    "eval.max_train=200",
    "--set",
    "eval.max_test=100",
];

fn args_with_out(out: &std::path::Path) -> Vec<String> {
    let mut v: Vec<String> = ARGS.iter().map(|s| s.to_string()).collect();
    v.push("--out".into());
    v.push(path(out).into());
    v
}

/// metrics.jsonl without the wall-clock throughput field.
fn metrics_without_timing(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("images_per_s");
            v
        })
        .collect()
}

fn checkpoint_step(dir: &std::path::Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("checkpoint").join("position.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["step"].as_u64()
}

#[test]
fn sigkill_then_resume_matches_uninterrupted_run() {
    let base = scratch("resume");
    let straight = base.join("straight");
    json(&bin().args(args_with_out(&straight)).output().unwrap());

    // 10 steps per epoch, 20 in all; kill once a mid-epoch checkpoint (step 6) exists.
    let killed = base.join("killed");
    let mut child = bin()
        .args(args_with_out(&killed))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if checkpoint_step(&killed).is_some_and(|s| s >= 6) {
            break;
        }
        assert!(Instant::now() < deadline, "no checkpoint appeared");
        assert!(
            child.try_wait().unwrap().is_none(),
            "run ended before it could be killed"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap(); // SIGKILL on Unix
    child.wait().unwrap();
    let at = checkpoint_step(&killed).unwrap();
    assert!(at < 20, "killed too late (step {at})");
    assert!(!killed.join("encoder.bpk").exists());

    // What a user types: the run's own recipe is reused.
    let resume = [
        "train",
        "--resume",
        "--out",
        path(&killed),
        "--no-eval",
        "--json",
    ];
    let summary = json(&bin().args(&resume).output().unwrap());
    assert_eq!(summary["train"]["resumed_from_step"].as_u64(), Some(at));

    assert_eq!(
        metrics_without_timing(&straight),
        metrics_without_timing(&killed)
    );
    let history =
        |dir: &std::path::Path| std::fs::read_to_string(dir.join("eval_history.jsonl")).unwrap();
    assert_eq!(history(&straight).lines().count(), 2);
    assert_eq!(history(&straight), history(&killed));
    // Whole method (online, predictor, EMA target, BatchNorm statistics) and the final encoder,
    // compared value by value (parameter ids differ between processes by design).
    let device = burn::tensor::Device::flex();
    let recipe = selfsup::recipe::Recipe::load(&straight.join("recipe.toml")).unwrap();
    let load = |dir: &std::path::Path| {
        let fresh = <Byol as Method>::init(&recipe, 1, &device);
        let method = load_module(fresh, &dir.join("checkpoint").join("model.bpk")).unwrap();
        let encoder = load_module(recipe.model.init(1, &device), &dir.join("encoder.bpk")).unwrap();
        (named_values(&method), named_values(&encoder))
    };
    let (a, b) = (load(&straight), load(&killed));
    assert!(a.0.len() > 50 && a.0.iter().any(|(p, _)| p.starts_with("target")));
    for ((pa, va), (pb, vb)) in a.0.iter().chain(&a.1).zip(b.0.iter().chain(&b.1)) {
        assert_eq!(pa, pb);
        assert!(
            va == vb,
            "{pa} differs between the uninterrupted and the resumed run"
        );
    }
    assert_eq!(a.0.len() + a.1.len(), b.0.len() + b.1.len());
}
