//! What an experiment's runs show: the verdict on its claim, the table and the plot.

use super::experiments::{Arm, ArmRun, Expect, Experiment};
use crate::diagnose::chart::{Chart, PALETTE, Series};
use crate::diagnose::stats::{COMPLETE_COLLAPSE_STD_RATIO, Verdict};

fn of<'a>(runs: &'a [ArmRun], label: &'a str) -> impl Iterator<Item = &'a ArmRun> + 'a {
    runs.iter().filter(move |r| r.arm == label)
}

fn mean_std(values: &[f64]) -> (f64, f64) {
    let n = values.len().max(1) as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    (mean, var.sqrt())
}

pub(super) fn judge(experiment: Experiment, arms: &[Arm], runs: &[ArmRun]) -> (bool, String) {
    match experiment {
        Experiment::Negatives | Experiment::Ablations => judge_collapse(experiment, arms, runs),
        Experiment::Dimensional => judge_rank(runs),
        Experiment::BatchSize => judge_batch(runs),
    }
}

/// Every arm the claim says collapses did, at every seed, and every healthy one did not: for
/// `negatives` completely, for the ablations completely or dimensionally. The verdict counts,
/// arm by arm, the seeds that collapsed, and names the seeds that went against the claim.
fn judge_collapse(experiment: Experiment, arms: &[Arm], runs: &[ArmRun]) -> (bool, String) {
    let collapsed = |r: &ArmRun| match experiment {
        Experiment::Negatives => r.verdict == Verdict::CompleteCollapse,
        _ => r.verdict != Verdict::Healthy,
    };
    let mut reproduced = true;
    let mut parts = Vec::new();
    for arm in arms {
        let arm_runs: Vec<&ArmRun> = of(runs, &arm.label).collect();
        let fell: Vec<&&ArmRun> = arm_runs.iter().filter(|r| collapsed(r)).collect();
        let against: Vec<String> = arm_runs
            .iter()
            .filter(|r| match arm.expect {
                Expect::Collapse => !collapsed(r),
                Expect::Healthy => collapsed(r),
                Expect::Open => false,
            })
            .map(|r| {
                format!(
                    "seed {} {} (std ratio {:.3}, effective rank {:.1} of {})",
                    r.seed,
                    r.verdict.as_str().replace('_', " "),
                    r.std_ratio,
                    r.effective_rank,
                    r.dim
                )
            })
            .collect();
        reproduced &= against.is_empty();
        let steps: Vec<usize> = fell.iter().filter_map(|r| r.collapse_step).collect();
        let when = match (steps.iter().min(), steps.iter().max()) {
            (Some(lo), Some(hi)) if lo == hi => format!(", batch std below a tenth by step {lo}"),
            (Some(lo), Some(hi)) => format!(", batch std below a tenth by step {lo}–{hi}"),
            _ => String::new(),
        };
        let expected = match arm.expect {
            Expect::Collapse => "expected to collapse",
            Expect::Healthy => "expected healthy",
            Expect::Open => "asked",
        };
        let mut part = format!(
            "{} ({expected}): {}/{} collapsed{when}",
            arm.label,
            fell.len(),
            arm_runs.len()
        );
        if !against.is_empty() {
            part += &format!(" — against the claim: {}", against.join(", "));
        }
        parts.push(part);
    }
    let seeds: std::collections::BTreeSet<u64> = runs.iter().map(|r| r.seed).collect();
    let head = if reproduced {
        format!("reproduced at seeds {seeds:?}")
    } else {
        "not reproduced at this scale".to_string()
    };
    (reproduced, format!("{head}: {}", parts.join("; ")))
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

pub(super) fn table_md(experiment: Experiment, runs: &[ArmRun], verdict: &str) -> String {
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

pub(super) fn chart(experiment: Experiment, arms: &[Arm], runs: &[ArmRun]) -> Chart {
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
