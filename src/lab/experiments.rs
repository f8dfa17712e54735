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
            started(runs.len(), total, &arm.label, seed);
            runs.push(run_arm(
                arm,
                seed,
                experiment.evaluates(),
                options,
                observer,
            )?);
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

fn run_arm(
    arm: &Arm,
    seed: u64,
    evaluate: bool,
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
        evaluate,
        &mut record,
        |_| {},
    )?;
    let d = &report.diagnose;
    let top = d.singular_values.first().copied().unwrap_or(0.0).max(1e-30);
    Ok(ArmRun {
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
        Experiment::Negatives | Experiment::Ablations => judge_collapse(experiment, arms, runs),
        Experiment::Dimensional => judge_rank(runs),
        Experiment::BatchSize => judge_batch(runs),
    }
}

/// Every arm the claim says collapses did, at every seed, and every healthy one did not: for
/// `negatives` completely, for the ablations completely or dimensionally.
fn judge_collapse(experiment: Experiment, arms: &[Arm], runs: &[ArmRun]) -> (bool, String) {
    let collapsed = |r: &ArmRun| match experiment {
        Experiment::Negatives => r.verdict == Verdict::CompleteCollapse,
        _ => r.verdict != Verdict::Healthy,
    };
    let mut failures = Vec::new();
    let mut open = Vec::new();
    let mut steps = Vec::new();
    for arm in arms {
        for r in of(runs, &arm.label) {
            let ended = format!(
                "{} at seed {} ended {} (std ratio {:.3}, effective rank {:.1})",
                arm.label,
                r.seed,
                r.verdict.as_str(),
                r.std_ratio,
                r.effective_rank
            );
            match arm.expect {
                Expect::Open => open.push(ended),
                Expect::Collapse if !collapsed(r) => failures.push(ended),
                Expect::Healthy if collapsed(r) => failures.push(ended),
                Expect::Collapse => steps.extend(r.collapse_step),
                Expect::Healthy => {}
            }
        }
    }
    let seeds: std::collections::BTreeSet<u64> = runs.iter().map(|r| r.seed).collect();
    let asked = if open.is_empty() {
        String::new()
    } else {
        format!("; asked: {}", open.join("; "))
    };
    if failures.is_empty() {
        let when = match (steps.iter().min(), steps.iter().max()) {
            (Some(lo), Some(hi)) => {
                format!(" (the batch std below a tenth of healthy by step {lo}–{hi})")
            }
            _ => String::new(),
        };
        (
            true,
            format!(
                "reproduced at seeds {seeds:?}: every arm expected to collapse did{when}, every healthy one stayed healthy{asked}"
            ),
        )
    } else {
        (
            false,
            format!(
                "not reproduced at this scale: {}{asked}",
                failures.join("; ")
            ),
        )
    }
}

fn judge_rank(runs: &[ArmRun]) -> (bool, String) {
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

/// Mean kNN (± std over seeds) of each `method b<batch>` arm.
fn knn_by_batch(runs: &[ArmRun], method: &str) -> Vec<(usize, f64, f64)> {
    let mut batches: Vec<usize> = runs
        .iter()
        .filter_map(|r| {
            let (m, b) = r.arm.rsplit_once(" b")?;
            (m == method).then(|| b.parse().ok()).flatten()
        })
        .collect();
    batches.sort_unstable();
    batches.dedup();
    batches
        .into_iter()
        .map(|b| {
            let label = format!("{method} b{b}");
            let knn: Vec<f64> = of(runs, &label).filter_map(|r| r.knn).collect();
            let (mean, std) = mean_std(&knn);
            (b, mean, std)
        })
        .collect()
}

fn judge_batch(runs: &[ArmRun]) -> (bool, String) {
    let describe = |method: &str| {
        knn_by_batch(runs, method)
            .iter()
            .map(|(b, m, s)| format!("b{b} {m:.3} ± {s:.3}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // The change in kNN from the smallest batch to the largest, and its noise.
    let gain = |method: &str| {
        let rows = knn_by_batch(runs, method);
        match (rows.first(), rows.last()) {
            (Some(lo), Some(hi)) => (hi.1 - lo.1, (lo.2.powi(2) + hi.2.powi(2)).sqrt()),
            _ => (0.0, 0.0),
        }
    };
    let (simclr, noise) = gain("simclr");
    let (byol, _) = gain("byol");
    let (simsiam, _) = gain("simsiam");
    let small = |method: &str| knn_by_batch(runs, method).first().map_or(0.0, |r| r.1);
    let queue_helps = small("moco-v2") > small("simclr");
    let reproduced = simclr > noise && simclr > byol && simclr > simsiam && queue_helps;
    let line = format!(
        "kNN by batch at equal epochs — SimCLR: {}; MoCo v2: {}; BYOL: {}; SimSiam: {} (smallest → largest batch: SimCLR {:+.1}, BYOL {:+.1}, SimSiam {:+.1} points)",
        describe("simclr"),
        describe("moco-v2"),
        describe("byol"),
        describe("simsiam"),
        100.0 * simclr,
        100.0 * byol,
        100.0 * simsiam
    );
    if reproduced {
        (true, format!("reproduced: {line}"))
    } else {
        (false, format!("not reproduced at this scale: {line}"))
    }
}

fn table_md(experiment: Experiment, runs: &[ArmRun], verdict: &str) -> String {
    let mut s = format!(
        "# selfsup lab {}\n\nClaim: {}\n\n",
        experiment.name(),
        experiment.claim()
    );
    s += "| arm | seed | steps | collapse step | verdict | std / healthy | effective rank | kNN (random init) | train s |\n";
    s += "|---|---:|---:|---:|---|---:|---:|---:|---:|\n";
    for r in runs {
        s += &format!(
            "| {} | {} | {} | {} | {} | {:.3} | {:.1} / {} | {} | {:.0} |\n",
            r.arm,
            r.seed,
            r.steps,
            r.collapse_step.map_or("—".to_string(), |s| s.to_string()),
            r.verdict.as_str(),
            r.std_ratio,
            r.effective_rank,
            r.dim,
            match (r.knn, r.random_init_knn) {
                (Some(k), Some(b)) => format!("{k:.3} ({b:.3})"),
                _ => "—".into(),
            },
            r.seconds
        );
    }
    s += &format!("\nVerdict: {verdict}\n");
    s
}

fn chart(experiment: Experiment, arms: &[Arm], runs: &[ArmRun]) -> Chart {
    if experiment == Experiment::BatchSize {
        return batch_chart(runs);
    }
    let series = arms
        .iter()
        .enumerate()
        .flat_map(|(i, arm)| {
            of(runs, &arm.label).enumerate().map(move |(k, r)| Series {
                // One legend entry per arm; its seeds share the colour.
                label: if k == 0 {
                    arm.label.clone()
                } else {
                    String::new()
                },
                color: PALETTE[i % PALETTE.len()],
                points: match experiment {
                    // Index over the dimension, so embeddings of different widths overlay.
                    Experiment::Dimensional => r
                        .spectrum
                        .iter()
                        .enumerate()
                        .map(|(j, v)| ((j + 1) as f64 / r.dim as f64, v.max(1e-12)))
                        .collect(),
                    _ => r.std_curve.iter().map(|(s, v)| (*s as f64, *v)).collect(),
                },
            })
        })
        .collect();
    match experiment {
        Experiment::Dimensional => Chart {
            title: "COVARIANCE SPECTRUM OF THE EMBEDDINGS (2000 HELD-OUT IMAGES)".into(),
            x_label: "INDEX / DIMENSION".into(),
            y_label: "EIGENVALUE / LARGEST".into(),
            log_y: true,
            series,
            threshold: None,
            note: "EACH LINE ONE SEED".into(),
        },
        _ => Chart {
            title: "EMBEDDING STD / HEALTHY 1/SQRT(D) PER STEP".into(),
            x_label: "STEP".into(),
            y_label: "STD RATIO".into(),
            log_y: true,
            series,
            threshold: Some((COMPLETE_COLLAPSE_STD_RATIO, "COMPLETE COLLAPSE".into())),
            note: "EACH LINE ONE SEED".into(),
        },
    }
}

/// Mean kNN against log2 of the batch, a line per method.
fn batch_chart(runs: &[ArmRun]) -> Chart {
    let series = ["simclr", "moco-v2", "byol", "simsiam"]
        .iter()
        .enumerate()
        .map(|(i, method)| Series {
            label: method.to_string(),
            color: PALETTE[i],
            points: knn_by_batch(runs, method)
                .iter()
                .map(|(b, mean, _)| ((*b as f64).log2(), *mean))
                .collect(),
        })
        .collect();
    Chart {
        title: "KNN TOP-1 AGAINST BATCH SIZE AT EQUAL EPOCHS".into(),
        x_label: "LOG2 BATCH SIZE".into(),
        y_label: "KNN TOP-1".into(),
        log_y: false,
        series,
        threshold: None,
        note: "MEAN OVER SEEDS".into(),
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
