//! The short human-readable report (`report.md`) left in a run directory.

use crate::diagnose::CollapseStats;
use crate::error::{Result, write_atomic};
use crate::eval::EvalReport;
use crate::run::Run;
use crate::train::TrainSummary;

pub fn write(
    run: &Run,
    summary: &TrainSummary,
    stats: &CollapseStats,
    eval: Option<&EvalReport>,
) -> Result<()> {
    let recipe = &run.recipe;
    let mut s = format!("# selfsup run: {}\n\n", recipe.method.name());
    s += &format!(
        "- backbone: {}\n- epochs {}, batch {}, {} steps, {:.0} s ({:.0} img/s)\n- final loss {:.4}\n",
        recipe.model.describe(),
        summary.epochs,
        recipe.train.batch_size,
        summary.steps,
        summary.seconds,
        summary.images_per_s,
        summary.final_loss
    );
    if let Some(step) = summary.collapse_warning_step {
        s += &format!("- **complete collapse warning** first raised at step {step}\n");
    }
    if let Some(step) = summary.dimensional_collapse_warning_step {
        s += &format!("- **dimensional collapse warning** first raised at step {step}\n");
    }
    if let Some(step) = summary.codebook_collapse_warning_step {
        s += &format!("- **codebook collapse warning** first raised at step {step}\n");
    }
    if let Some(step) = summary.distillation_collapse_warning_step {
        s += &format!("- **teacher collapse warning** first raised at step {step}\n");
    }
    s += &format!(
        "\n## Collapse diagnostics\n\nverdict **{}** — embedding std {:.4} (healthy {:.4}), effective rank {:.1} of {}. Spectrum: `spectrum.png`.\n",
        stats.verdict.as_str(),
        stats.embedding_std,
        stats.healthy_std,
        stats.effective_rank,
        stats.dim
    );
    for reading in stats.readings.iter() {
        let label = reading.label();
        let label = label[..1].to_uppercase() + &label[1..];
        match reading.explain() {
            Some(why) => s += &format!("\n{label}: {} ({why}).\n", reading.describe()),
            None => s += &format!("\n{label}: {}.\n", reading.describe()),
        }
    }
    if recipe.model.is_vit() {
        s += "\nWhere the [CLS] token looks: `selfsup attention --run <this run>`.\n";
    }
    if recipe.method.name().needs().vit {
        s += "\nPictures of what the model predicts: `selfsup reconstruct --run <this run>`.\n";
    }
    if let Some(r) = eval {
        s += &format!(
            "\n## Evaluation ({} train / {} test)\n\n| features | kNN top-1 | linear top-1 |\n|---|---|---|\n| trained encoder | {:.3} | {:.3} |\n| random-init encoder | {:.3} | {:.3} |\n| raw pixels | {:.3} | {:.3} |\n",
            r.train_images,
            r.test_images,
            r.knn_top1,
            r.linear_top1,
            r.baselines.random_init.knn_top1,
            r.baselines.random_init.linear_top1,
            r.baselines.pixels.knn_top1,
            r.baselines.pixels.linear_top1
        );
    }
    write_atomic(&run.dir.report_path(), s.as_bytes())
}
