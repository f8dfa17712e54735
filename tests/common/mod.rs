//! Helpers shared by the integration tests: run the real `selfsup` binary.

#![allow(dead_code)]

pub mod photos;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_selfsup"))
}

pub fn run(args: &[&str]) -> Output {
    bin().args(args).output().expect("selfsup runs")
}

pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

pub fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh scratch directory under the target dir, unique per test.
pub fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Asserts a clean user-facing failure: non-zero exit, one `error:` line, no panic/backtrace.
pub fn assert_clean_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert!(
        !out.status.success(),
        "expected failure, got success: {err}"
    );
    assert_eq!(out.status.code(), Some(1), "exit code for: {err}");
    assert!(
        err.contains(needle),
        "error should mention {needle:?}: {err}"
    );
    assert!(
        !err.contains("panicked")
            && !err.contains("RUST_BACKTRACE")
            && !err.contains("internal error"),
        "{err}"
    );
    assert_eq!(err.trim().lines().count(), 1, "one line expected: {err}");
}

pub fn json(out: &Output) -> serde_json::Value {
    assert!(out.status.success(), "selfsup failed: {}", stderr(out));
    serde_json::from_str(&stdout(out)).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stdout(out)))
}

pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Evaluation settings that keep the learning tests quick: kNN / probe fitted on 5,000 labelled
/// images, 1,000 held out, 10 probe epochs.
pub const QUICK_EVAL: [&str; 6] = [
    "--set",
    "eval.max_train=5000",
    "--set",
    "eval.max_test=1000",
    "--set",
    "eval.linear_epochs=10",
];

/// The lines of a run's `metrics.jsonl`.
pub fn metrics(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// Asserts that the first logged step carries each of `terms` as a finite number.
pub fn assert_logs_terms(run_dir: &Path, terms: &[&str]) {
    let first = &metrics(run_dir)[0];
    for term in terms {
        assert!(
            first["terms"][term].as_f64().unwrap().is_finite(),
            "{first}"
        );
    }
}

/// `selfsup train --json` of `method` into `out_dir` with the [`QUICK_EVAL`] settings, then
/// `extra`: the run's summary.
pub fn train_quick(
    method: &str,
    out_dir: &Path,
    epochs: &str,
    seed: &str,
    extra: &[&str],
) -> serde_json::Value {
    let mut args = vec![
        "train",
        "--method",
        method,
        "--epochs",
        epochs,
        "--seed",
        seed,
        "--out",
        path(out_dir),
        "--json",
    ];
    args.extend(QUICK_EVAL);
    args.extend(extra);
    json(&run(&args))
}

/// kNN top-1 of the trained encoder minus that of the random-init one, from a train summary.
pub fn knn_margin(summary: &serde_json::Value) -> f64 {
    margin_over_random_init(summary, "knn_top1")
}

/// Linear-probe top-1 of the trained encoder minus that of the random-init one.
pub fn linear_margin(summary: &serde_json::Value) -> f64 {
    margin_over_random_init(summary, "linear_top1")
}

fn margin_over_random_init(summary: &serde_json::Value, metric: &str) -> f64 {
    let eval = &summary["eval"];
    eval[metric].as_f64().unwrap() - eval["baselines"]["random_init"][metric].as_f64().unwrap()
}
