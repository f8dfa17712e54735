//! The lab (`selfsup lab <experiment>`): claims about self-supervised learning turned into runs.
//! Each experiment trains a few variants ("arms") of shipped recipes at several seeds, and writes
//! a table, a plot and a one-line verdict — reproduced, or not reproduced at this scale — into
//! its folder.

use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::diagnose::chart::{Chart, PALETTE, Series};
use crate::diagnose::stats::{COMPLETE_COLLAPSE_STD_RATIO, Verdict};
use crate::error::{Result, write_atomic};
use crate::method::MethodName;
use crate::pipeline::pretrain;
use crate::recipe::{Overrides, Recipe};
use crate::train::{Event, Observer, TrainOptions};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Experiment {
    /// Delete the negatives: a positives-only InfoNCE and SimSiam without stop-gradient collapse;
    /// their healthy twins do not.
    Negatives,
    /// Dimensional collapse: the spectra of BYOL and SimSiam against Barlow Twins and VICReg,
    /// which decorrelate the embedding's dimensions by construction.
    Dimensional,
}

impl Experiment {
    pub const ALL: [Experiment; 2] = [Experiment::Negatives, Experiment::Dimensional];

    pub fn name(self) -> &'static str {
        match self {
            Experiment::Negatives => "negatives",
            Experiment::Dimensional => "dimensional",
        }
    }

    pub fn claim(self) -> &'static str {
        match self {
            Experiment::Negatives => {
                "Without negatives (InfoNCE's positive term alone) or without SimSiam's stop-gradient, the embeddings collapse to a point; the shipped SimCLR and SimSiam do not."
            }
            Experiment::Dimensional => {
                "Barlow Twins and VICReg decorrelate the embedding's dimensions, so they keep more of them in use (a higher effective rank) than BYOL and SimSiam."
            }
        }
    }

    fn arms(self) -> Vec<Arm> {
        let arm = |label, method, sets: &[&str], collapses| Arm {
            label,
            method,
            sets: sets.iter().map(|s| s.to_string()).collect(),
            collapses,
        };
        match self {
            Experiment::Negatives => vec![
                arm("simclr", MethodName::Simclr, &[], false),
                arm(
                    "simclr positives only",
                    MethodName::Simclr,
                    &["method.negatives=false"],
                    true,
                ),
                arm("simsiam", MethodName::Simsiam, &[], false),
                arm(
                    "simsiam no stop-gradient",
                    MethodName::Simsiam,
                    &["method.stop_gradient=false"],
                    true,
                ),
            ],
            Experiment::Dimensional => vec![
                arm("byol", MethodName::Byol, &[], false),
                arm("simsiam", MethodName::Simsiam, &[], false),
                arm("barlow-twins", MethodName::BarlowTwins, &[], false),
                arm("vicreg", MethodName::Vicreg, &[], false),
            ],
        }
    }
}

/// One variant of a shipped recipe.
#[derive(Clone, Debug, Serialize)]
pub struct Arm {
    pub label: &'static str,
    pub method: MethodName,
    /// Recipe changes, as `--set` would give them.
    pub sets: Vec<String>,
    /// Whether the claim says it collapses.
    pub collapses: bool,
}

/// How an experiment runs.
#[derive(Clone, Debug)]
pub struct LabOptions {
    pub seeds: Vec<u64>,
    /// Data to train on (default: the bundled subset).
    pub data: Option<PathBuf>,
    /// Epochs instead of the recipes' own.
    pub epochs: Option<usize>,
    /// Only this many training images (0: all): the CI-sized smoke run.
    pub max_images: usize,
    pub out: PathBuf,
}

/// One arm at one seed.
#[derive(Clone, Debug, Serialize)]
pub struct ArmRun {
    pub arm: String,
    pub seed: u64,
    pub dir: PathBuf,
    pub steps: usize,
    /// (step, embedding std / healthy std) of every logged step.
    pub std_curve: Vec<(usize, f64)>,
    /// The first logged step whose std ratio fell below the complete-collapse threshold.
    pub collapse_step: Option<usize>,
    /// The diagnosis after training (2,000 held-out images).
    pub verdict: Verdict,
    pub std_ratio: f64,
    pub effective_rank: f64,
    pub dim: usize,
    /// Eigenvalues of the embeddings' covariance, largest first, over the largest.
    pub spectrum: Vec<f64>,
    pub seconds: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct LabReport {
    pub experiment: Experiment,
    pub claim: &'static str,
    pub arms: Vec<Arm>,
    pub runs: Vec<ArmRun>,
    pub reproduced: bool,
    pub verdict: String,
    pub table: PathBuf,
    pub plot: PathBuf,
}

/// Runs `experiment`: every arm at every seed into `options.out/runs/`, then the table
/// (`table.md`), the plot and the verdict (`lab.json`). `started(i, n, label, seed)` is called
/// before each run; training events go to `observer`.
pub fn run_experiment(
    experiment: Experiment,
    options: &LabOptions,
    observer: &mut dyn Observer,
    mut started: impl FnMut(usize, usize, &str, u64),
) -> Result<LabReport> {
    let arms = experiment.arms();
    let total = arms.len() * options.seeds.len();
    let mut runs = Vec::new();
    for arm in &arms {
        for &seed in &options.seeds {
            started(runs.len(), total, arm.label, seed);
            runs.push(run_arm(arm, seed, options, observer)?);
        }
    }
    let (reproduced, verdict) = judge(experiment, &arms, &runs);
    let table = options.out.join("table.md");
    write_atomic(&table, table_md(experiment, &runs, &verdict).as_bytes())?;
    let plot = match experiment {
        Experiment::Negatives => options.out.join("std.png"),
        Experiment::Dimensional => options.out.join("spectra.png"),
    };
    chart(experiment, &arms, &runs).write(&plot)?;
    let report = LabReport {
        experiment,
        claim: experiment.claim(),
        arms,
        runs,
        reproduced,
        verdict,
        table,
        plot,
    };
    crate::run::write_json(&options.out.join("lab.json"), &report)?;
    Ok(report)
}

fn run_arm(
    arm: &Arm,
    seed: u64,
    options: &LabOptions,
    observer: &mut dyn Observer,
) -> Result<ArmRun> {
    let slug = arm.label.replace(' ', "-");
    let dir = options.out.join("runs").join(format!("{slug}-s{seed}"));
    let mut sets = arm.sets.clone();
    sets.push("train.log_every=2".into());
    if options.max_images > 0 {
        sets.push(format!("data.max_images={}", options.max_images));
    }
    let recipe = Recipe::resolve(&Overrides {
        method: Some(arm.method),
        data: options.data.clone(),
        epochs: options.epochs,
        seed: Some(seed),
        sets,
        ..Overrides::default()
    })?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| crate::error::Error::io(&dir, e))?;
    }
    let mut curve = Vec::new();
    let mut record = |event: &Event| {
        if let Event::Logged(line) = event {
            curve.push((line.step, line.embedding_std / line.healthy_std));
        }
        observer.observe(event);
    };
    let report = pretrain(
        &recipe,
        &TrainOptions::new(&dir),
        false,
        &mut record,
        |_| {},
    )?;
    let d = &report.diagnose;
    let top = d.singular_values.first().copied().unwrap_or(0.0).max(1e-30);
    Ok(ArmRun {
        arm: arm.label.to_string(),
        seed,
        dir,
        steps: report.train.steps,
        collapse_step: curve
            .iter()
            .find(|(_, r)| *r < COMPLETE_COLLAPSE_STD_RATIO)
            .map(|(s, _)| *s),
        std_curve: curve,
        verdict: d.verdict,
        std_ratio: d.std_ratio(),
        effective_rank: d.effective_rank,
        dim: d.dim,
        spectrum: d.singular_values.iter().map(|v| v / top).collect(),
        seconds: report.train.seconds,
    })
}

fn of<'a>(runs: &'a [ArmRun], label: &'a str) -> impl Iterator<Item = &'a ArmRun> + 'a {
    runs.iter().filter(move |r| r.arm == label)
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

fn judge(experiment: Experiment, arms: &[Arm], runs: &[ArmRun]) -> (bool, String) {
    match experiment {
        Experiment::Negatives => {
            let collapsed = |r: &ArmRun| r.verdict == Verdict::CompleteCollapse;
            let mut failures = Vec::new();
            let mut steps = Vec::new();
            for arm in arms {
                for r in of(runs, arm.label) {
                    if arm.collapses != collapsed(r) {
                        failures.push(format!(
                            "{} at seed {} ended {} (std ratio {:.3})",
                            arm.label,
                            r.seed,
                            r.verdict.as_str(),
                            r.std_ratio
                        ));
                    }
                    if arm.collapses {
                        steps.extend(r.collapse_step);
                    }
                }
            }
            let seeds = runs
                .iter()
                .map(|r| r.seed)
                .collect::<std::collections::BTreeSet<_>>();
            if failures.is_empty() {
                let (lo, hi) = (steps.iter().min(), steps.iter().max());
                let when = match (lo, hi) {
                    (Some(lo), Some(hi)) => {
                        format!(", the batch std below a tenth of healthy by step {lo}–{hi}")
                    }
                    _ => String::new(),
                };
                (
                    true,
                    format!(
                        "reproduced: without negatives and without stop-gradient every run collapsed completely{when}; the shipped SimCLR and SimSiam stayed healthy (seeds {seeds:?})"
                    ),
                )
            } else {
                (
                    false,
                    format!("not reproduced at this scale: {}", failures.join("; ")),
                )
            }
        }
        Experiment::Dimensional => {
            let ranks = |label: &str| -> (f64, f64) {
                let fractions: Vec<f64> = of(runs, label)
                    .map(|r| r.effective_rank / r.dim as f64)
                    .collect();
                mean_std(&fractions)
            };
            let decorrelating = ["barlow-twins", "vicreg"].map(ranks);
            let others = ["byol", "simsiam"].map(ranks);
            let worst = decorrelating
                .iter()
                .map(|r| r.0)
                .fold(f64::INFINITY, f64::min);
            let best = others.iter().map(|r| r.0).fold(0.0, f64::max);
            let line = format!(
                "effective rank / dimension: Barlow Twins {:.2} ± {:.2}, VICReg {:.2} ± {:.2}; BYOL {:.2} ± {:.2}, SimSiam {:.2} ± {:.2}",
                decorrelating[0].0,
                decorrelating[0].1,
                decorrelating[1].0,
                decorrelating[1].1,
                others[0].0,
                others[0].1,
                others[1].0,
                others[1].1
            );
            if worst > best {
                (true, format!("reproduced: {line}"))
            } else {
                (false, format!("not reproduced at this scale: {line}"))
            }
        }
    }
}

fn table_md(experiment: Experiment, runs: &[ArmRun], verdict: &str) -> String {
    let mut s = format!(
        "# selfsup lab {}\n\nClaim: {}\n\n",
        experiment.name(),
        experiment.claim()
    );
    s += "| arm | seed | steps | collapse step | verdict | std / healthy | effective rank | train s |\n";
    s += "|---|---:|---:|---:|---|---:|---:|---:|\n";
    for r in runs {
        s += &format!(
            "| {} | {} | {} | {} | {} | {:.3} | {:.1} / {} | {:.0} |\n",
            r.arm,
            r.seed,
            r.steps,
            r.collapse_step.map_or("—".to_string(), |s| s.to_string()),
            r.verdict.as_str(),
            r.std_ratio,
            r.effective_rank,
            r.dim,
            r.seconds
        );
    }
    s += &format!("\nVerdict: {verdict}\n");
    s
}

fn chart(experiment: Experiment, arms: &[Arm], runs: &[ArmRun]) -> Chart {
    let series = arms
        .iter()
        .enumerate()
        .flat_map(|(i, arm)| {
            of(runs, arm.label).enumerate().map(move |(k, r)| Series {
                // One legend entry per arm; its seeds share the colour.
                label: if k == 0 {
                    arm.label.to_string()
                } else {
                    String::new()
                },
                color: PALETTE[i % PALETTE.len()],
                points: match experiment {
                    Experiment::Negatives => {
                        r.std_curve.iter().map(|(s, v)| (*s as f64, *v)).collect()
                    }
                    // Index over the dimension, so embeddings of different widths overlay.
                    Experiment::Dimensional => r
                        .spectrum
                        .iter()
                        .enumerate()
                        .map(|(j, v)| ((j + 1) as f64 / r.dim as f64, v.max(1e-12)))
                        .collect(),
                },
            })
        })
        .collect();
    match experiment {
        Experiment::Negatives => Chart {
            title: "EMBEDDING STD / HEALTHY 1/SQRT(D) PER STEP".into(),
            x_label: "STEP".into(),
            y_label: "STD RATIO".into(),
            log_y: true,
            series,
            threshold: Some((COMPLETE_COLLAPSE_STD_RATIO, "COMPLETE COLLAPSE".into())),
            note: "EACH LINE ONE SEED".into(),
        },
        Experiment::Dimensional => Chart {
            title: "COVARIANCE SPECTRUM OF THE EMBEDDINGS (2000 HELD-OUT IMAGES)".into(),
            x_label: "INDEX / DIMENSION".into(),
            y_label: "EIGENVALUE / LARGEST".into(),
            log_y: true,
            series,
            threshold: None,
            note: "EACH LINE ONE SEED".into(),
        },
    }
}

/// Parses an experiment's name.
pub fn parse_experiment(name: &str) -> Option<Experiment> {
    Experiment::ALL.into_iter().find(|e| e.name() == name)
}

/// Where `selfsup lab` writes an experiment by default.
pub fn default_out(experiment: Experiment) -> PathBuf {
    Path::new("runs").join("lab").join(experiment.name())
}
