//! A run killed with SIGKILL mid-epoch and restarted with --resume ends with the same metrics and
//! weights as an uninterrupted run with the same seed (BYOL: EMA target and momentum schedule too;
//! MoCo: its key encoder and its queue of past keys).

mod common;
use common::*;

use selfsup::host::named_values;
use selfsup::method::{Byol, Method, Moco, NoRuns};
use selfsup::nn::backbone::ImageShape;
use selfsup::run::load_module;

use std::time::{Duration, Instant};

const ARGS: &[&str] = &[
    "train",
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

fn args_with_out(out: &std::path::Path, method: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ARGS.iter().map(|s| s.to_string()).collect();
    v.extend(["--method".to_string(), method.to_string()]);
    for set in extra {
        v.extend(["--set".to_string(), set.to_string()]);
    }
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
fn byol_sigkill_then_resume_matches_uninterrupted_run() {
    kill_and_resume::<Byol>("byol", &["method.predictor=[32, 16]"], "target");
}

#[test]
fn moco_sigkill_then_resume_restores_the_queue() {
    // A 64-key queue wraps every two steps, so a lost or stale queue changes every later loss.
    kill_and_resume::<Moco>("moco-v2", &["method.queue_size=64"], "queue");
}

fn kill_and_resume<M: Method>(method: &str, extra: &[&str], state: &str) {
    let base = scratch(&format!("resume-{method}"));
    let straight = base.join("straight");
    json(
        &bin()
            .args(args_with_out(&straight, method, extra))
            .output()
            .unwrap(),
    );

    // 10 steps per epoch, 20 in all; kill once a mid-epoch checkpoint (step 6) exists.
    let killed = base.join("killed");
    let mut child = bin()
        .args(args_with_out(&killed, method, extra))
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
    // Whole method (online, heads, EMA target / key encoder, queue, BatchNorm statistics) and
    // the final encoder, compared value by value (parameter ids differ between processes by
    // design).
    let device = burn::tensor::Device::flex();
    let recipe = selfsup::recipe::Recipe::load(&straight.join("recipe.toml")).unwrap();
    let shape = ImageShape {
        channels: 1,
        side: 28,
    };
    let load = |dir: &std::path::Path| {
        let fresh = recipe.init_method::<M>(shape, &device, &NoRuns).unwrap();
        let method = load_module(fresh, &dir.join("checkpoint").join("model.bpk")).unwrap();
        let encoder =
            load_module(recipe.model.init(shape, &device), &dir.join("encoder.bpk")).unwrap();
        (named_values(&method), named_values(&encoder))
    };
    let (a, b) = (load(&straight), load(&killed));
    assert!(a.0.len() > 50 && a.0.iter().any(|(p, _)| p.starts_with(state)));
    for ((pa, va), (pb, vb)) in a.0.iter().chain(&a.1).zip(b.0.iter().chain(&b.1)) {
        assert_eq!(pa, pb);
        assert!(
            va == vb,
            "{pa} differs between the uninterrupted and the resumed run"
        );
    }
    assert_eq!(a.0.len() + a.1.len(), b.0.len() + b.1.len());
}
