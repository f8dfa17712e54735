//! Results as readable tables.

use selfsup::diagnose::CollapseStats;
use selfsup::diagnose::stats::{COMPLETE_COLLAPSE_STD_RATIO, DIMENSIONAL_COLLAPSE_RANK_FRACTION};
use selfsup::eval::EvalReport;
use selfsup::eval::finetune::FinetuneReport;
use selfsup::method::MethodName;

fn pct(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

pub fn eval_table(r: &EvalReport) -> String {
    let mut s = format!(
        "Evaluation on {} ({} train / {} test images, kNN k={} T={}, feature dim {})\n\n",
        r.data, r.train_images, r.test_images, r.knn_k, r.knn_temperature, r.feature_dim
    );
    s += &format!(
        "  {:<28} {:>8} {:>14}\n",
        "features", "kNN top1", "linear top1"
    );
    s += &format!(
        "  {:<28} {:>8} {:>14}\n",
        "trained encoder",
        pct(r.knn_top1),
        pct(r.linear_top1)
    );
    s += &format!(
        "  {:<28} {:>8} {:>14}\n",
        "random-init encoder",
        pct(r.baselines.random_init.knn_top1),
        pct(r.baselines.random_init.linear_top1)
    );
    s += &format!(
        "  {:<28} {:>8} {:>14}\n",
        "raw pixels",
        pct(r.baselines.pixels.knn_top1),
        pct(r.baselines.pixels.linear_top1)
    );
    s += "\n";
    s += match (r.beats_random_init, r.beats_pixels) {
        (true, true) => "  The encoder beats both baselines.\n",
        (true, false) => {
            "  The encoder beats the random-init encoder (it learned something); raw pixels remain the higher bar.\n"
        }
        (false, _) => {
            "  The encoder does NOT beat a random-init encoder on both metrics: train longer, tune the recipe, or run `selfsup diagnose`.\n"
        }
    };
    s
}

pub fn finetune_table(r: &FinetuneReport) -> String {
    let mut s = format!(
        "Fine-tuning on {} ({} labelled images = {} of the training split, {} epochs; {} test images)\n\n",
        r.data,
        r.labelled_images,
        pct(r.fraction),
        r.epochs,
        r.test_images
    );
    s += &format!("  {:<28} {:>10}\n", "initialisation", "top-1");
    s += &format!("  {:<28} {:>10}\n", "trained encoder", pct(r.top1));
    s += &format!(
        "  {:<28} {:>10}\n",
        "random-init encoder",
        pct(r.random_init_top1)
    );
    s += if r.beats_random_init {
        "\n  Pretraining helps: the trained encoder fine-tunes better than a random initialisation.\n"
    } else {
        "\n  Pretraining does NOT help here: a random initialisation fine-tunes as well or better.\n"
    };
    s
}

pub fn diagnose_table(d: &CollapseStats) -> String {
    let mut s = format!(
        "Collapse diagnostics ({} held-out embeddings, dim {})\n\n",
        d.samples, d.dim
    );
    s += &format!(
        "  embedding std     {:.4}  (healthy ≈ 1/√d = {:.4}; RMS ratio {:.2})\n",
        d.embedding_std,
        d.healthy_std,
        d.std_ratio()
    );
    if let Some(spread) = d.spread {
        s += &format!(
            "  centred           the features' shared offset was removed first (ViT tokens carry one); spread around it {:.3} of their norm\n",
            spread
        );
    }
    s += &format!("  effective rank    {:.1} of {}\n", d.effective_rank, d.dim);
    let top: Vec<String> = d
        .singular_values
        .iter()
        .take(8)
        .map(|v| format!("{v:.2e}"))
        .collect();
    s += &format!("  top eigenvalues   {}\n", top.join(" "));
    s += &format!(
        "  verdict           {}: {}\n",
        d.verdict.as_str(),
        d.verdict.explain()
    );
    for reading in d.readings.iter() {
        s += &format!("  {:<17} {}\n", reading.label(), reading.describe());
        if let Some(why) = reading.explain() {
            s += &format!("  {:<17} {why}\n", "");
        }
    }
    s += &format!(
        "  (complete_collapse: RMS std ratio < {COMPLETE_COLLAPSE_STD_RATIO}; dimensional_collapse: effective rank < max(2, {DIMENSIONAL_COLLAPSE_RANK_FRACTION}·d))\n"
    );
    s
}

pub fn methods_table() -> String {
    let mut s = format!(
        "  {:<13} {:<14} {:<22} {:<10} {}\n",
        "method", "--method", "family", "negatives", "prevents collapse with"
    );
    for &name in MethodName::ALL {
        let a = name.about();
        s += &format!(
            "  {:<13} {:<14} {:<22} {:<10} {}\n",
            a.title,
            name.as_str(),
            a.family,
            if a.negatives { "yes" } else { "no" },
            a.prevents_collapse,
        );
    }
    s
}
