//! The lab (`selfsup lab <experiment>`): claims about self-supervised learning turned into runs.
//! Each experiment trains a few variants ("arms") of shipped recipes at several seeds, and writes
//! a table, a plot and a one-line verdict — reproduced, or not reproduced at this scale — into
//! its folder.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::findings::{chart, judge, table_md};
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
    /// What prevents collapse: SimSiam without stop-gradient or predictor, BYOL without its
    /// predictor or without BatchNorm in its heads.
    Ablations,
    /// Dimensional collapse: the spectra of BYOL and SimSiam against Barlow Twins and VICReg,
    /// which decorrelate the embedding's dimensions by construction.
    Dimensional,
    /// The negative-sample tax: kNN against batch size at equal epochs for SimCLR (negatives from
    /// the batch), MoCo v2 (negatives from a queue), BYOL and SimSiam (no negatives).
    BatchSize,
}

impl Experiment {
    pub const ALL: [Experiment; 4] = [
        Experiment::BatchSize,
        Experiment::Negatives,
        Experiment::Ablations,
        Experiment::Dimensional,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Experiment::Negatives => "negatives",
            Experiment::Ablations => "ablations",
            Experiment::Dimensional => "dimensional",
            Experiment::BatchSize => "batch-size",
        }
    }

    pub fn claim(self) -> &'static str {
        match self {
            Experiment::Negatives => {
                "Without negatives (InfoNCE's positive term alone) or without SimSiam's stop-gradient, the embeddings collapse to a point; the shipped SimCLR and SimSiam do not."
            }
            Experiment::Ablations => {
                "SimSiam collapses without its stop-gradient or without its predictor, and BYOL without its predictor; whether BYOL needs BatchNorm in its heads (\"BatchNorm is secretly contrastive\") is put to the test."
            }
            Experiment::BatchSize => {
                "SimCLR keeps improving with the batch (its negatives come from it); MoCo v2's queue decouples the negatives from the batch; BYOL and SimSiam do not need a large batch."
            }
            Experiment::Dimensional => {
                "Barlow Twins and VICReg decorrelate the embedding's dimensions, so they keep more of them in use (a higher effective rank) than BYOL and SimSiam."
            }
        }
    }

    fn arms(self) -> Vec<Arm> {
        use Expect::{Collapse, Healthy, Open};
        let arm = |label: &str, method, sets: &[&str], expect| Arm {
            label: label.to_string(),
            method,
            sets: sets.iter().map(|s| s.to_string()).collect(),
            expect,
        };
        // SimSiam, and SimSiam without the stop-gradient that keeps it from collapsing.
        let simsiam_pair = || {
            vec![
                arm("simsiam", MethodName::Simsiam, &[], Healthy),
                arm(
                    "simsiam no stop-gradient",
                    MethodName::Simsiam,
                    &["method.stop_gradient=false"],
                    Collapse,
                ),
            ]
        };
        match self {
            Experiment::Negatives => {
                let mut arms = vec![
                    arm("simclr", MethodName::Simclr, &[], Healthy),
                    arm(
                        "simclr positives only",
                        MethodName::Simclr,
                        &["method.negatives=false"],
                        Collapse,
                    ),
                ];
                arms.extend(simsiam_pair());
                arms
            }
            Experiment::Ablations => {
                let mut arms = simsiam_pair();
                arms.extend([
                    arm(
                        "simsiam no predictor",
                        MethodName::Simsiam,
                        &["method.predictor=[]"],
                        Collapse,
                    ),
                    arm("byol", MethodName::Byol, &[], Healthy),
                    arm(
                        "byol no predictor",
                        MethodName::Byol,
                        &["method.predictor=[]"],
                        Collapse,
                    ),
                    arm(
                        "byol no batchnorm",
                        MethodName::Byol,
                        &["method.head_bn=false"],
                        Open,
                    ),
                ]);
                arms
            }
            Experiment::Dimensional => vec![
                arm("byol", MethodName::Byol, &[], Healthy),
                arm("simsiam", MethodName::Simsiam, &[], Healthy),
                arm("barlow-twins", MethodName::BarlowTwins, &[], Healthy),
                arm("vicreg", MethodName::Vicreg, &[], Healthy),
            ],
            Experiment::BatchSize => {
                let sweep: &[(&'static str, MethodName, &[usize])] = &[
                    ("simclr", MethodName::Simclr, &[32, 128, 512]),
                    ("moco-v2", MethodName::MocoV2, &[32, 128]),
                    ("byol", MethodName::Byol, &[32, 128, 512]),
                    ("simsiam", MethodName::Simsiam, &[32, 128, 512]),
                ];
                sweep
                    .iter()
                    .flat_map(|&(name, method, batches)| {
                        batches.iter().map(move |&b| Arm {
                            label: format!("{name} b{b}"),
                            method,
                            sets: vec![format!("train.batch_size={b}")],
                            expect: Open,
                        })
                    })
                    .collect()
            }
        }
    }

    /// Whether its runs are evaluated (kNN, linear probe) after training.
    fn evaluates(self) -> bool {
        self == Experiment::BatchSize
    }
}

/// What the claim says of an arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Expect {
    Healthy,
    Collapse,
    /// The experiment asks.
    Open,
}

/// One variant of a shipped recipe.
#[derive(Clone, Debug, Serialize)]
pub struct Arm {
    pub label: String,
    pub method: MethodName,
    /// Recipe changes, as `--set` would give them.
    pub sets: Vec<String>,
    pub expect: Expect,
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
    /// Reuse every run an earlier, interrupted invocation finished with the same resolved recipe.
    pub resume: bool,
}

/// One arm at one seed.
#[derive(Clone, Debug, Serialize, Deserialize)]
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
    /// kNN top-1 of the trained and the random-init encoder, when evaluated.
    pub knn: Option<f64>,
    pub random_init_knn: Option<f64>,
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
/// (`table.md`), the plot and the verdict (`lab.json`). `started` is called before each run;
/// training events go to `observer`.
pub fn run_experiment(
    experiment: Experiment,
    options: &LabOptions,
    observer: &mut dyn Observer,
    mut started: impl FnMut(&RunStart),
) -> Result<LabReport> {
    let arms = experiment.arms();
    let total = arms.len() * options.seeds.len();
    let mut runs = Vec::new();
    for arm in &arms {
        for &seed in &options.seeds {
            let planned = plan_arm(arm, seed, options)?;
            let reused = if options.resume {
                planned.finished()
            } else {
                None
            };
            started(&RunStart {
                index: runs.len(),
                total,
                label: &arm.label,
                seed,
                reused: reused.is_some(),
            });
            runs.push(match reused {
                Some(run) => run,
                None => run_arm(arm, planned, experiment.evaluates(), observer)?,
            });
        }
    }
    let (reproduced, verdict) = judge(experiment, &arms, &runs);
    let table = options.out.join("table.md");
    write_atomic(&table, table_md(experiment, &runs, &verdict).as_bytes())?;
    let plot = match experiment {
        Experiment::Negatives | Experiment::Ablations => options.out.join("std.png"),
        Experiment::Dimensional => options.out.join("spectra.png"),
        Experiment::BatchSize => options.out.join("knn.png"),
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

/// What `run_experiment` tells its caller before each run.
pub struct RunStart<'a> {
    pub index: usize,
    pub total: usize,
    pub label: &'a str,
    pub seed: u64,
    /// An earlier invocation finished this run with the same recipe (`resume`).
    pub reused: bool,
}

/// An arm at a seed, resolved: where it runs and with what recipe.
struct PlannedRun {
    seed: u64,
    dir: PathBuf,
    recipe: Recipe,
}

impl PlannedRun {
    fn finished_path(&self) -> PathBuf {
        self.dir.join("lab-run.json")
    }

    /// The result an earlier invocation left here, if the run's recipe (`recipe.toml`, read as
    /// `train --resume` reads it) is this one.
    fn finished(&self) -> Option<ArmRun> {
        let text = std::fs::read_to_string(self.finished_path()).ok()?;
        let run: ArmRun = serde_json::from_str(&text).ok()?;
        let recipe = Recipe::load(&self.dir.join("recipe.toml")).ok()?;
        recipe.differences(&self.recipe).is_empty().then(|| ArmRun {
            dir: self.dir.clone(),
            ..run
        })
    }
}

fn plan_arm(arm: &Arm, seed: u64, options: &LabOptions) -> Result<PlannedRun> {
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
    Ok(PlannedRun { seed, dir, recipe })
}

fn run_arm(
    arm: &Arm,
    planned: PlannedRun,
    evaluate: bool,
    observer: &mut dyn Observer,
) -> Result<ArmRun> {
    let finished_path = planned.finished_path();
    let PlannedRun { seed, dir, recipe } = planned;
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
        evaluate,
        &mut record,
        |_| {},
    )?;
    let d = &report.diagnose;
    let top = d.singular_values.first().copied().unwrap_or(0.0).max(1e-30);
    let run = ArmRun {
        arm: arm.label.clone(),
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
        knn: report.eval.as_ref().map(|e| e.knn_top1),
        random_init_knn: report
            .eval
            .as_ref()
            .map(|e| e.baselines.random_init.knn_top1),
        seconds: report.train.seconds,
    };
    crate::run::write_json(&finished_path, &run)?;
    Ok(run)
}

/// Parses an experiment's name.
pub fn parse_experiment(name: &str) -> Option<Experiment> {
    Experiment::ALL.into_iter().find(|e| e.name() == name)
}

/// Where `selfsup lab` writes an experiment by default.
pub fn default_out(experiment: Experiment) -> PathBuf {
    Path::new("runs").join("lab").join(experiment.name())
}
