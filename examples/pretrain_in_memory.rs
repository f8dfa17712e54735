//! The main job from Rust, as the README's *Library* section shows it: pretrain BYOL on the
//! bundled subset, watch the training events in memory, read the evaluation.
//!
//! cargo run --release --example pretrain_in_memory -- runs/lib

use selfsup::recipe::{Overrides, Recipe};
use selfsup::train::{Event, TrainOptions};

fn main() -> selfsup::Result<()> {
    let out = std::env::args().nth(1).unwrap_or_else(|| "runs/lib".into());
    let recipe = Recipe::resolve(&Overrides {
        method: Some("byol".parse()?),
        ..Default::default()
    })?;
    let options = TrainOptions::new(out);
    let mut losses = Vec::new();
    let mut watch = |e: &Event| {
        if let Event::Logged(line) = e {
            losses.push(line.loss)
        }
    };
    let report = selfsup::pipeline::pretrain(&recipe, &options, true, &mut watch, |_| {})?;
    let eval = report.eval.expect("evaluated");
    println!(
        "{} logged losses, last {:.4}; kNN {:.3} (random init {:.3})",
        losses.len(),
        losses.last().copied().unwrap_or(f64::NAN),
        eval.knn_top1,
        eval.baselines.random_init.knn_top1
    );
    Ok(())
}
