//! Interrupted runs continue exactly: SIGINT / SIGTERM checkpoint the step they stop at and exit
//! 130 / 143, SIGKILL loses only what came after the last (timed) checkpoint, a failed checkpoint
//! write keeps the previous one, and the resumed run ends with the same metrics and weights as an
//! uninterrupted one with the same seed (BYOL: EMA target and momentum schedule too; MoCo: its key
//! encoder and its queue of past keys), TensorBoard's curves included.

mod common;
use common::*;

use selfsup::host::named_values;
use selfsup::method::{Byol, Method, Moco, NoRuns};
use selfsup::nn::backbone::ImageShape;
use selfsup::run::load_module;
use selfsup::run::tensorboard::{Value, event_files, read_events};

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
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
    "train.eval_every=1",
    "--set",
    "eval.max_train=200",
    "--set",
    "eval.max_test=100",
];
const BYOL: &[&str] = &["method.predictor=[32, 16]"];
// A 64-key queue wraps every two steps, so a lost or stale queue changes every later loss.
const MOCO: &[&str] = &["method.queue_size=64"];
/// 10 steps per epoch, 20 in all.
const STEPS: u64 = 20;

fn args_with_out(out: &Path, method: &str, extra: &[&str]) -> Vec<String> {
    let mut v: Vec<String> = ARGS.iter().map(|s| s.to_string()).collect();
    v.extend(["--method".to_string(), method.to_string()]);
    for set in extra {
        v.extend(["--set".to_string(), set.to_string()]);
    }
    v.push("--out".into());
    v.push(path(out).into());
    v
}

/// The uninterrupted run of `method`, trained once for all tests of this file.
fn straight(method: &str) -> &'static Path {
    static BYOL_RUN: OnceLock<PathBuf> = OnceLock::new();
    static MOCO_RUN: OnceLock<PathBuf> = OnceLock::new();
    let (cell, extra) = match method {
        "byol" => (&BYOL_RUN, BYOL),
        _ => (&MOCO_RUN, MOCO),
    };
    cell.get_or_init(|| {
        let out = scratch(&format!("resume-straight-{method}"));
        json(
            &bin()
                .args(args_with_out(&out, method, extra))
                .output()
                .unwrap(),
        );
        out
    })
}

/// metrics.jsonl without the wall-clock throughput field.
fn metrics_without_timing(dir: &Path) -> Vec<serde_json::Value> {
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

fn checkpoint_step(dir: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(dir.join("checkpoint").join("position.json")).ok()?;
    serde_json::from_str::<serde_json::Value>(&text).ok()?["step"].as_u64()
}

fn logged_steps(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .map(|t| t.lines().count() as u64)
        .unwrap_or(0)
}

/// Waits until `ready` holds for the running `child`'s run directory.
fn wait_until(child: &mut Child, what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(300);
    while !ready() {
        assert!(Instant::now() < deadline, "{what}: timed out");
        assert!(
            child.try_wait().unwrap().is_none(),
            "{what}: the run ended first"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spawn(args: &[String]) -> Child {
    bin()
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Sends `signal` once step 4 is logged; returns the run's output and the step it stopped at.
fn interrupt(args: &[String], out: &Path, signal: i32) -> (Output, u64) {
    let mut child = spawn(args);
    wait_until(&mut child, "step 4", || logged_steps(out) >= 4);
    // One writer per run directory.
    let second = bin().args(args).output().unwrap();
    assert_clean_error(&second, "another `selfsup train` (process");
    // SAFETY: a plain kill(2) of our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(128 + signal),
        "{}",
        stderr(&output)
    );
    let at = checkpoint_step(out).expect("a checkpoint at the stop");
    // The step running when the signal came was finished, logged and checkpointed.
    assert_eq!(at, logged_steps(out), "{}", stderr(&output));
    assert!((4..STEPS).contains(&at), "stopped at step {at}");
    assert!(!out.join("encoder.bpk").exists());
    (output, at)
}

/// The scalars of a run's one event file as (step, tag, value), throughput left out.
fn tensorboard_scalars(dir: &Path) -> Vec<(i64, String, f32)> {
    let files = event_files(&dir.join("tb")).unwrap();
    assert_eq!(files.len(), 1, "{files:?}");
    let mut scalars = Vec::new();
    for event in read_events(&files[0]).unwrap() {
        for (tag, value) in event.values {
            if let Value::Scalar(v) = value
                && tag != "images_per_s"
            {
                scalars.push((event.step, tag, v));
            }
        }
    }
    scalars
}

/// Same metrics, TensorBoard scalars, eval history, whole method (online, heads, EMA target / key encoder, queue,
/// BatchNorm statistics) and final encoder as the uninterrupted run, value by value (parameter
/// ids differ between processes by design).
fn assert_same_run<M: Method>(straight: &Path, resumed: &Path, state: &str) {
    assert_eq!(
        metrics_without_timing(straight),
        metrics_without_timing(resumed)
    );
    // Every step once, in order: a resumed run's curves continue without repeats.
    let curves = tensorboard_scalars(straight);
    let mut seen = std::collections::HashSet::new();
    assert!(
        curves
            .iter()
            .all(|(s, tag, _)| seen.insert((*s, tag.clone())))
    );
    assert!(
        curves
            .iter()
            .any(|(s, tag, _)| *s == STEPS as i64 && tag == "online_knn_top1")
    );
    assert_eq!(curves, tensorboard_scalars(resumed));
    let history = |dir: &Path| std::fs::read_to_string(dir.join("eval_history.jsonl")).unwrap();
    assert_eq!(history(straight).lines().count(), 2);
    assert_eq!(history(straight), history(resumed));
    let device = burn::tensor::Device::flex();
    let recipe = selfsup::recipe::Recipe::load(&straight.join("recipe.toml")).unwrap();
    let shape = ImageShape {
        channels: 1,
        side: 28,
    };
    let load = |dir: &Path| {
        let fresh = recipe.init_method::<M>(shape, &device, &NoRuns).unwrap();
        let method = load_module(fresh, &dir.join("checkpoint").join("model.bpk")).unwrap();
        let encoder =
            load_module(recipe.model.init(shape, &device), &dir.join("encoder.bpk")).unwrap();
        (named_values(&method), named_values(&encoder))
    };
    let (a, b) = (load(straight), load(resumed));
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

#[test]
fn byol_sigint_checkpoints_and_the_printed_command_resumes_exactly() {
    let out = scratch("resume-sigint").join("run");
    let args = args_with_out(&out, "byol", BYOL);
    let (stopped, at) = interrupt(&args, &out, libc::SIGINT);
    let said = stderr(&stopped);
    assert!(
        said.contains(&format!("stopped by SIGINT after step {at}")),
        "{said}"
    );
    let printed: serde_json::Value = serde_json::from_str(&stdout(&stopped)).unwrap();
    assert_eq!(printed["interrupted"]["step"].as_u64(), Some(at));
    let command = said
        .lines()
        .find_map(|l| l.strip_prefix("continue with: "))
        .unwrap_or_else(|| panic!("no resume command: {said}"));
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(printed["interrupted"]["resume"].as_str(), Some(command));

    // A checkpoint that cannot be written (a file-size limit makes the disk "full") stops the
    // run with an error and keeps the previous checkpoint loadable.
    let mut limited = Command::new(words[0]);
    limited.args(&words[1..]);
    // SAFETY: setrlimit between fork and exec, nothing else.
    unsafe {
        limited.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 64 << 10,
                rlim_max: libc::RLIM_INFINITY,
            };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let failed = limited.output().unwrap();
    let err = stderr(&failed);
    assert_eq!(failed.status.code(), Some(1), "{err}");
    assert!(
        err.contains("could not write the checkpoint")
            && err.contains(&format!("previous checkpoint (step {at}) is intact")),
        "{err}"
    );
    assert_eq!(checkpoint_step(&out), Some(at));
    assert!(!out.join("checkpoint.tmp").exists());

    let resumed = json(&Command::new(words[0]).args(&words[1..]).output().unwrap());
    assert_eq!(resumed["train"]["resumed_from_step"].as_u64(), Some(at));
    assert_same_run::<Byol>(straight("byol"), &out, "target");
}

#[test]
fn moco_sigterm_then_the_same_command_with_resume_continues_exactly() {
    let out = scratch("resume-sigterm").join("run");
    let args = args_with_out(&out, "moco-v2", MOCO);
    let (stopped, at) = interrupt(&args, &out, libc::SIGTERM);
    assert!(
        stderr(&stopped).contains(&format!("stopped by SIGTERM after step {at}")),
        "{}",
        stderr(&stopped)
    );

    // The command that started the run, with --resume, is refused only where it differs.
    let with = |extra: &[&str]| {
        let mut v = args.clone();
        v.extend(extra.iter().map(|s| s.to_string()));
        bin().args(v).output().unwrap()
    };
    let other_seed: Vec<String> = args
        .iter()
        .map(|a| if a == "11" { "12".into() } else { a.clone() })
        .chain(["--resume", "--set", "optim.base_lr=0.5"].map(String::from))
        .collect();
    let refused = bin().args(other_seed).output().unwrap();
    assert_clean_error(&refused, "train.seed = 12 (the run has 11)");
    assert!(stderr(&refused).contains("optim.base_lr = 0.5 (the run has"));
    let refused = with(&["--resume", "--set", "method.queue_size=128"]);
    assert_clean_error(&refused, "method.queue_size = 128 (the run has 64)");
    assert_eq!(checkpoint_step(&out), Some(at));

    let resumed = json(&with(&["--resume"]));
    assert_eq!(resumed["train"]["resumed_from_step"].as_u64(), Some(at));
    assert_same_run::<Moco>(straight("moco-v2"), &out, "queue");
}

#[test]
fn byol_sigkill_after_a_timed_checkpoint_loses_only_the_steps_after_it() {
    let out = scratch("resume-sigkill").join("run");
    // A checkpoint whenever 6 ms passed since the last: several inside the first epoch.
    let mut extra = BYOL.to_vec();
    extra.push("train.checkpoint_every_minutes=0.0001");
    // Requeued job scripts use one command: it starts the run in an empty directory …
    let mut again = args_with_out(&out, "byol", &extra);
    again.push("--resume-if-exists".into());
    let mut child = spawn(&again);
    wait_until(&mut child, "a timed checkpoint", || {
        checkpoint_step(&out).is_some_and(|s| s >= 4)
    });
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at = checkpoint_step(&out).unwrap();
    assert!(at < STEPS && !out.join("encoder.bpk").exists());

    // … and resumes it once it holds one.
    let resumed = json(&bin().args(&again).output().unwrap());
    assert_eq!(resumed["train"]["resumed_from_step"].as_u64(), Some(at));
    assert_same_run::<Byol>(straight("byol"), &out, "target");
}

#[test]
fn a_run_stopped_before_its_first_checkpoint_starts_again() {
    let out = scratch("resume-restart").join("run");
    std::fs::create_dir_all(&out).unwrap();
    // What a run killed during its first steps leaves: the recipe, some metrics, no checkpoint.
    let reference = straight("byol");
    for file in ["recipe.toml", "run.json"] {
        std::fs::copy(reference.join(file), out.join(file)).unwrap();
    }
    std::fs::write(out.join("metrics.jsonl"), "{\"step\": 1}\n").unwrap();
    let mut args = args_with_out(&out, "byol", BYOL);
    args.push("--resume".into());
    let summary = json(&bin().args(&args).output().unwrap());
    assert_eq!(
        summary["train"]["resumed_from_step"],
        serde_json::Value::Null
    );
    assert_eq!(
        metrics_without_timing(reference),
        metrics_without_timing(&out)
    );

    // A finished run is not trained over, and says how to continue it.
    let again = bin()
        .args(args_with_out(&out, "byol", BYOL))
        .output()
        .unwrap();
    assert_clean_error(&again, "already holds a run; pass --resume");
}
