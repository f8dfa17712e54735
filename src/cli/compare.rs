//! `selfsup compare`: several runs in one table and one picture.

use selfsup::diagnose::plot::write_png;
use selfsup::error::Result;
use selfsup::inspect::compare::{RunRow, compare, curves, find_runs};

use super::args::CompareArgs;
use super::print_json;

pub fn compare_command(args: CompareArgs) -> Result<()> {
    let dirs = find_runs(&args.runs)?;
    let rows = compare(&dirs)?;
    let out = args.out.clone().unwrap_or_else(|| {
        let first = &dirs[0];
        first
            .parent()
            .unwrap_or(std::path::Path::new("."))
            .join("compare.png")
    });
    write_png(&curves(&rows), &out)?;
    if args.json {
        print_json(&serde_json::json!({ "runs": rows, "plot": out }));
        return Ok(());
    }
    print!("{}", table(&rows));
    println!("\nCurves: {}", out.display());
    Ok(())
}

fn pct(x: f64) -> String {
    format!("{:.1}", 100.0 * x)
}

fn table(rows: &[RunRow]) -> String {
    let header = [
        "run",
        "method",
        "backbone",
        "epochs",
        "kNN % (random)",
        "linear % (random)",
        "eff. rank",
        "verdict",
        "train time",
    ];
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let (knn, linear) = match &r.eval {
                Some(e) => (
                    format!("{} ({})", pct(e.knn_top1), pct(e.random_init.knn_top1)),
                    format!(
                        "{} ({})",
                        pct(e.linear_top1),
                        pct(e.random_init.linear_top1)
                    ),
                ),
                None => ("-".into(), "-".into()),
            };
            let (rank, verdict) = match &r.diagnose {
                Some(d) => (
                    format!("{:.1} / {}", d.effective_rank, d.dim),
                    d.verdict.as_str().replace('_', " "),
                ),
                None => ("-".into(), "-".into()),
            };
            let time = match r.train_seconds {
                Some(s) if r.resumed => format!("{:.1} min (resumed)", s / 60.0),
                Some(s) => format!("{:.1} min", s / 60.0),
                None => "-".into(),
            };
            vec![
                r.name.clone(),
                r.method.clone(),
                r.backbone.clone(),
                r.epochs.to_string(),
                knn,
                linear,
                rank,
                verdict,
                time,
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|row| row[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    // Text columns left-aligned, numbers right-aligned.
    let numeric = [false, false, false, true, true, true, true, false, true];
    let line = |row: Vec<String>| {
        let parts: Vec<String> = row
            .iter()
            .zip(&widths)
            .zip(numeric)
            .map(|((cell, &w), right)| {
                if right {
                    format!("{cell:>w$}")
                } else {
                    format!("{cell:<w$}")
                }
            })
            .collect();
        format!("  {}\n", parts.join("  ").trim_end())
    };
    let mut s = line(header.iter().map(|h| h.to_string()).collect());
    for row in cells {
        s += &line(row);
    }
    let pixels: Vec<String> = rows
        .iter()
        .filter_map(|r| r.eval.as_ref())
        .map(|e| {
            format!(
                "kNN {} / linear {}",
                pct(e.pixels.knn_top1),
                pct(e.pixels.linear_top1)
            )
        })
        .collect();
    if let Some(first) = pixels.first()
        && pixels.iter().all(|p| p == first)
    {
        s += &format!("\n  Raw pixels on the same data: {first} %.\n");
    }
    s
}
