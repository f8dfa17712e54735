//! Several runs side by side (`selfsup compare`): what each learned — kNN and linear probe beside
//! the random-init baseline, effective rank, verdict — how long it took, and its loss and kNN
//! curves in one picture.

use std::path::{Path, PathBuf};

use image::RgbImage;
use serde::{Deserialize, Serialize};

use crate::diagnose::chart::{Chart, PALETTE, Series};
use crate::diagnose::{CollapseStats, Verdict};
use crate::error::{Error, Result};
use crate::eval::{EvalReport, Scores};
use crate::run::{Run, RunDir, read_json};
use crate::train::metrics::MetricsLog;

/// One run, as `compare` shows it.
#[derive(Clone, Debug, Serialize)]
pub struct RunRow {
    pub dir: PathBuf,
    /// The folder's name, or its path where two runs share a name.
    pub name: String,
    pub method: String,
    pub backbone: String,
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Absent until `selfsup eval` (or `train` without `--no-eval`) ran.
    pub eval: Option<EvalScores>,
    pub diagnose: Option<Diagnosis>,
    /// Training time of the run's last `train` invocation (all of it unless resumed).
    pub train_seconds: Option<f64>,
    pub resumed: bool,
    /// (step, loss) of every logged step.
    pub loss_curve: Vec<(usize, f64)>,
    /// (epoch, kNN top-1): the online monitor's history, else the final evaluation alone.
    pub knn_curve: Vec<(usize, f64)>,
}

#[derive(Clone, Debug, Serialize)]
pub struct EvalScores {
    pub knn_top1: f64,
    pub linear_top1: f64,
    pub random_init: Scores,
    pub pixels: Scores,
}

#[derive(Clone, Debug, Serialize)]
pub struct Diagnosis {
    pub verdict: Verdict,
    pub effective_rank: f64,
    pub dim: usize,
}

/// What `train.json` holds that a comparison needs.
#[derive(Deserialize)]
struct TrainRecord {
    seconds: f64,
    resumed_from_step: Option<usize>,
}

/// The runs named by `paths`: each a run directory, or a folder whose sub-folders are runs
/// (taken in name order). A path that is neither is an error naming it.
pub fn find_runs(paths: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let is_run = |p: &Path| RunDir::new(p).recipe_path().is_file();
    let mut runs = Vec::new();
    for path in paths {
        if is_run(path) {
            runs.push(path.clone());
            continue;
        }
        let entries = std::fs::read_dir(path).map_err(|e| Error::io(path, e))?;
        let mut children: Vec<PathBuf> = entries
            .flatten()
            .map(|e| e.path())
            .filter(|p| is_run(p))
            .collect();
        if children.is_empty() {
            return Err(Error::data(
                path,
                "neither a run directory nor a folder holding any; give directories `selfsup train` wrote",
            ));
        }
        children.sort();
        runs.extend(children);
    }
    Ok(runs)
}

/// Reads each run's recipe, evaluation, diagnosis, training summary and curves.
pub fn compare(dirs: &[PathBuf]) -> Result<Vec<RunRow>> {
    let mut rows = dirs.iter().map(|d| row(d)).collect::<Result<Vec<_>>>()?;
    let names: Vec<String> = rows.iter().map(|r| r.name.clone()).collect();
    for r in &mut rows {
        if names.iter().filter(|n| **n == r.name).count() > 1 {
            r.name = r.dir.display().to_string();
        }
    }
    Ok(rows)
}

fn optional<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    if path.is_file() {
        read_json(path).map(Some)
    } else {
        Ok(None)
    }
}

fn row(dir: &Path) -> Result<RunRow> {
    let run = Run::open(dir)?;
    let recipe = &run.recipe;
    let eval: Option<EvalReport> = optional(&run.dir.eval_path())?;
    let diagnose: Option<CollapseStats> = optional(&run.dir.diagnose_path())?;
    let train: Option<TrainRecord> = optional(&run.dir.train_path())?;
    let loss_curve = if run.dir.metrics_path().is_file() {
        MetricsLog::read(&run.dir.metrics_path())?
            .into_iter()
            .map(|l| (l.step, l.loss))
            .collect()
    } else {
        Vec::new()
    };
    let history = run.dir.eval_history_path();
    let mut knn_curve = if history.is_file() {
        crate::train::metrics::read_eval_history(&history)?
    } else {
        Vec::new()
    };
    if knn_curve.is_empty()
        && let Some(e) = &eval
    {
        knn_curve.push((recipe.train.epochs, e.knn_top1));
    }
    Ok(RunRow {
        dir: dir.to_path_buf(),
        name: dir
            .file_name()
            .map_or_else(|| dir.display().to_string(), |n| n.to_string_lossy().into()),
        method: recipe.method.name().to_string(),
        backbone: recipe.model.describe(),
        epochs: recipe.train.epochs,
        batch_size: recipe.train.batch_size,
        seed: recipe.train.seed,
        eval: eval.map(|e| EvalScores {
            knn_top1: e.knn_top1,
            linear_top1: e.linear_top1,
            random_init: e.baselines.random_init,
            pixels: e.baselines.pixels,
        }),
        diagnose: diagnose.map(|d| Diagnosis {
            verdict: d.verdict,
            effective_rank: d.effective_rank,
            dim: d.dim,
        }),
        train_seconds: train.as_ref().map(|t| t.seconds),
        resumed: train.is_some_and(|t| t.resumed_from_step.is_some()),
        loss_curve,
        knn_curve,
    })
}

/// A run's name without a trailing seed (`byol-s2`, `byol-seed2` → `byol`): its seeds share a
/// colour.
fn without_seed(name: &str) -> &str {
    for mark in ["-seed", "-s"] {
        if let Some(i) = name.rfind(mark) {
            let digits = &name[i + mark.len()..];
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
                return &name[..i];
            }
        }
    }
    name
}

/// The loss curves (left) and kNN curves (right) of `rows`: a colour per run, or per run name
/// without its seed when there are more runs than colours, or per method when there are still
/// too many; runs sharing a colour share a legend entry.
pub fn curves(rows: &[RunRow]) -> RgbImage {
    let distinct = |key: fn(&RunRow) -> &str| {
        let mut keys: Vec<&str> = rows.iter().map(key).collect();
        keys.sort();
        keys.dedup();
        keys.len()
    };
    let key: fn(&RunRow) -> &str = if rows.len() <= PALETTE.len() {
        |r| &r.name
    } else if distinct(|r| without_seed(&r.name)) <= PALETTE.len() {
        |r| without_seed(&r.name)
    } else {
        |r| &r.method
    };
    let mut keys: Vec<&str> = Vec::new();
    let mut styles = Vec::new();
    for r in rows {
        let k = key(r);
        let first = !keys.contains(&k);
        if first {
            keys.push(k);
        }
        let i = keys.iter().position(|m| *m == k).expect("pushed");
        let label = if first { k.to_string() } else { String::new() };
        styles.push((PALETTE[i % PALETTE.len()], label));
    }
    let one_method = rows.iter().all(|r| r.method == rows[0].method);
    let series = |points: &dyn Fn(&RunRow) -> Vec<(f64, f64)>| -> Vec<Series> {
        rows.iter()
            .zip(&styles)
            .map(|(r, (color, label))| Series {
                label: label.clone(),
                color: *color,
                points: points(r),
            })
            .collect()
    };
    let loss_series = series(&|r| {
        if one_method {
            r.loss_curve.iter().map(|(s, l)| (*s as f64, *l)).collect()
        } else {
            scaled(&r.loss_curve)
        }
    });
    // Without an online monitor every run has one kNN point: then each run gets its own column
    // (the table's order), its random-init twin as a black point in the same column.
    let final_only = rows.iter().all(|r| r.knn_curve.len() <= 1);
    let knn_series = if final_only {
        let black = image::Rgb([0, 0, 0]);
        let mut out = Vec::new();
        for (i, (r, (color, label))) in rows.iter().zip(&styles).enumerate() {
            let x = (i + 1) as f64;
            if let Some(e) = &r.eval {
                out.push(Series {
                    label: label.clone(),
                    color: *color,
                    points: vec![(x, e.knn_top1)],
                });
                out.push(Series {
                    label: if i == 0 {
                        "random init".into()
                    } else {
                        String::new()
                    },
                    color: black,
                    points: vec![(x, e.random_init.knn_top1)],
                });
            }
        }
        out
    } else {
        series(&|r| r.knn_curve.iter().map(|(e, k)| (*e as f64, *k)).collect())
    };
    let loss = Chart {
        title: "TRAINING LOSS PER STEP".into(),
        x_label: "STEP".into(),
        y_label: if one_method {
            "LOSS".into()
        } else {
            "SCALED LOSS".into()
        },
        log_y: false,
        series: loss_series,
        threshold: None,
        note: if one_method {
            String::new()
        } else {
            "THE METHODS DIFFER SO EACH LOSS IS SCALED TO ITS OWN RANGE 0 TO 1".into()
        },
    };
    let evaluated = rows.iter().any(|r| !r.knn_curve.is_empty());
    let knn = Chart {
        title: "KNN TOP-1 ON HELD-OUT IMAGES".into(),
        x_label: if final_only {
            "RUN (TABLE ORDER)".into()
        } else {
            "EPOCH".into()
        },
        y_label: "KNN TOP-1".into(),
        log_y: false,
        series: knn_series,
        threshold: None,
        note: if evaluated && final_only {
            "FINAL EVALUATION. TRAIN.EVAL_EVERY = 1 DRAWS KNN PER EPOCH".into()
        } else if evaluated {
            "ONLINE MONITOR WHERE TRAIN.EVAL_EVERY WAS SET AND ELSE THE FINAL EVALUATION".into()
        } else {
            "NO RUN EVALUATED YET: SELFSUP EVAL --RUN DIR".into()
        },
    };
    let (left, right) = (loss.render(), knn.render());
    let mut img = RgbImage::new(
        left.width() + right.width(),
        left.height().max(right.height()),
    );
    image::imageops::replace(&mut img, &left, 0, 0);
    image::imageops::replace(&mut img, &right, i64::from(left.width()), 0);
    img
}

/// A loss curve on its own scale, lowest 0 and highest 1 (losses of different methods differ
/// in sign and size).
fn scaled(curve: &[(usize, f64)]) -> Vec<(f64, f64)> {
    let low = curve.iter().map(|(_, l)| *l).fold(f64::INFINITY, f64::min);
    let high = curve
        .iter()
        .map(|(_, l)| *l)
        .fold(f64::NEG_INFINITY, f64::max);
    let span = (high - low).max(1e-12);
    curve
        .iter()
        .map(|(s, l)| (*s as f64, (l - low) / span))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scaled_curve_spans_zero_to_one() {
        let curve = [(1, -0.2), (2, -0.1), (3, -0.9), (4, -0.8)];
        let s = scaled(&curve);
        assert_eq!(s[1], (2.0, 1.0));
        assert!((s[0].1 - 0.7 / 0.8).abs() < 1e-12);
        assert_eq!(s[2].1, 0.0);
        assert!((s[3].1 - 0.1 / 0.8).abs() < 1e-12);
    }

    #[test]
    fn seeds_are_stripped_from_run_names() {
        assert_eq!(without_seed("byol-s2"), "byol");
        assert_eq!(without_seed("simclr-b128-seed10"), "simclr-b128");
        assert_eq!(
            without_seed("simsiam-no-stop-gradient-s0"),
            "simsiam-no-stop-gradient"
        );
        assert_eq!(without_seed("moco-v3"), "moco-v3");
        assert_eq!(without_seed("runs-s"), "runs-s");
    }
}
