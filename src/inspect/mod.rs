//! Looking inside a run: collapse diagnostics on held-out embeddings, evaluation beside
//! baselines, reconstructions, fine-tuning. Each works on an opened [`Run`] and data loaded once,
//! and on a method already in memory as well as on one loaded from the run's checkpoint.

pub mod compare;
pub mod diagnose;
pub mod embed;
pub mod evaluate;
pub mod finetune;
pub mod map;
pub mod neighbors;
pub mod reconstruct;

pub use diagnose::{Features, diagnose_method, diagnose_run};
pub use embed::{EmbedReport, Split, embed_run};
pub use evaluate::{evaluate_encoder, evaluate_imported, evaluate_run};
pub use finetune::finetune_run;
pub use reconstruct::{ReconstructionReport, reconstruct_run};

use crate::data::{ImageSet, Images, Splits};
use crate::error::{Error, Result};
use crate::run::Run;

/// The images diagnostics look at: the held-out split when there is one, up to `samples`, at
/// the run's image side when streamed.
fn held_out_images(run: &Run, splits: &Splits, samples: usize) -> Result<ImageSet> {
    let images = splits.test.as_ref().unwrap_or(&splits.train);
    images.in_memory(samples, run.info.image_side)
}

/// Refuses labelled data the run's encoder cannot take (other channels; other size for a ViT).
fn check_eval_data(run: &Run, splits: &Splits) -> Result<()> {
    let (channels, side) = (splits.train.channels(), splits.train.side());
    if channels != run.info.channels {
        return Err(Error::Usage(format!(
            "{}: images have {channels} channel(s) but the encoder was trained on {}",
            splits.description, run.info.channels
        )));
    }
    let streamed = matches!(splits.train, Images::Stream(_));
    if run.recipe.model.is_vit() && !streamed && side != run.info.image_side {
        return Err(Error::Usage(format!(
            "{}: images are {side} px but this ViT was trained on {} px; set data.image_size in the run's recipe.toml or pass data of that size",
            splits.description, run.info.image_side
        )));
    }
    Ok(())
}
