//! The command line: parses arguments, calls the library, draws progress from its events and
//! prints tables or JSON. The only code that prints.

mod advise;
mod args;
mod compare;
mod inspect;
mod lab;
mod map;
mod neighbors;
mod plan;
mod progress;
mod tables;
mod train;

use clap::{Parser, Subcommand};

use selfsup::error::Result;
use selfsup::method::MethodName;

use args::*;
use tables::methods_table;

#[derive(Parser, Debug)]
#[command(
    name = "selfsup",
    version,
    about = "Self-supervised pretraining of vision encoders: train, evaluate, diagnose collapse.",
    after_help = "Quick start (bundled Fashion-MNIST subset):\n  selfsup train --method simclr --out runs/simclr\n  selfsup eval --run runs/simclr\n  selfsup diagnose --run runs/simclr"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Pretrain an encoder without labels, then diagnose it and evaluate it against baselines.
    #[command(
        after_help = "Examples:\n  selfsup train --method byol --out runs/byol\n  selfsup train --method simsiam --data /usr/share/datasets/fashion-mnist --epochs 10 --out runs/simsiam\n  selfsup train --recipe recipes/photos/simclr-resnet50.toml --data ~/photos --out runs/simclr-photos\n  selfsup train --method byol --data shards/ --set augment.size=64 --set data.on_corrupt=fail --out runs/byol-shards\n  selfsup train --method simsiam --set method.stop_gradient=false --out runs/collapse\n  selfsup train --method moco-v3 --set model.arch=vit-tiny --set data.image_size=32 --out runs/moco-v3-vit\n  selfsup train --out runs/byol --resume\n  selfsup train --method dino --data ~/photos --out runs/dino --resume-if-exists   # in a requeued job script\n  selfsup train --method mae --out runs/mae\n  selfsup train --method vq-tokenizer --out runs/vq-tokenizer && selfsup train --method beit --out runs/beit\n  selfsup train --method dino --out runs/dino && selfsup attention --run runs/dino\n  selfsup train --method dino --set method.centering=none --out runs/dino-collapse"
    )]
    Train(TrainArgs),
    /// kNN and linear-probe accuracy of a run's frozen encoder, beside a random-init encoder and raw pixels.
    #[command(after_help = "Example:\n  selfsup eval --run runs/byol --json")]
    Eval(EvalArgs),
    /// Collapse diagnostics of a run: embedding std, singular-value spectrum, effective rank, verdict.
    #[command(
        after_help = "Examples:\n  selfsup diagnose --run runs/byol\n  selfsup diagnose --run runs/moco-v3-vit --encoder   # the CLS-token features themselves\n\nVerdicts: complete_collapse when the RMS per-dimension std of the L2-normalised\nembeddings is below 0.1 × the healthy 1/√d (total variance < 0.01); dimensional_collapse\nwhen the effective rank (RankMe) is below max(2, 0.05·d); healthy otherwise."
    )]
    Diagnose(DiagnoseArgs),
    /// Fine-tune a run's encoder + a linear head on a fraction of the labels, beside the same from random init.
    #[command(
        after_help = "Examples:\n  selfsup finetune --run runs/mae\n  selfsup finetune --run runs/mae --fraction 0.01 --epochs 30 --json\n\nEvery weight trains (AdamW, one warmup epoch, cosine; random flips), unlike the linear probe of\n`selfsup eval`, which freezes the encoder. Both runs use the same labelled images, order and head\ninitialisation; the only difference is the encoder's starting point. Settings: eval.finetune_*\nin the run's recipe.toml."
    )]
    Finetune(FinetuneArgs),
    /// Masked image models: a PNG grid of held-out images, their masked input and the model's prediction.
    #[command(
        after_help = "Examples:\n  selfsup reconstruct --run runs/mae\n  selfsup reconstruct --run runs/simmim --images 16 --seed 3 --out simmim.png\n\nColumns: original | masked input (masked patches in blue) | prediction | prediction and the\nvisible patches pasted back (MAE puts no loss on visible patches, so its raw prediction there is\narbitrary). An MAE trained with norm_pix_loss predicts standardised patches;\nthey are drawn at the original patch's mean and spread, as MAE's own visualisation does.\nBEiT predicts codes, not pixels: its prediction is the tokenizer's decoding of the codes it\npredicts. For a vq-tokenizer run: original | the image decoded from its codes."
    )]
    Reconstruct(ReconstructArgs),
    /// ViT runs: the last block's [CLS] attention per head, drawn as heat maps over images (a PNG).
    #[command(
        after_help = "Examples:\n  selfsup attention --run runs/dino\n  selfsup attention --run runs/dino --image shirt.png --image boot.jpg --out maps.png\n\nColumns: the image | the mean over heads | each head. Each map is scaled to its own maximum\n(bright = where [CLS] looks most) and drawn per patch. Image files are resized to the run's\nimage size and channels. --json adds each map (rescaled to sum to 1) and their mean entropy\nrelative to a uniform map (1 = looks everywhere alike)."
    )]
    Attention(AttentionArgs),
    /// Frozen features of every image of a dataset (the evaluation transform), to .npy or .safetensors.
    #[command(
        after_help = "Examples:\n  selfsup embed --run runs/byol\n  selfsup embed --run runs/dino --data ~/photos --split train --out photos.npy\n\nRows follow the data's order; the .csv beside the features file gives each row's index, split,\nimage (file path, shard:member, or split/position for IDX and CIFAR), label and class.\nStreamed folders are read in batches (memory stays bounded); unreadable images are skipped and\nlisted (data.on_corrupt = \"fail\" in the run's recipe stops instead). Files are written under a\ntemporary name and renamed when complete: an interrupted run leaves no partial output; run it again."
    )]
    Embed(EmbedArgs),
    /// Nearest neighbours and near-duplicate groups from an embedding file, and a contact sheet.
    #[command(
        after_help = "Examples:\n  selfsup embed --run runs/byol && selfsup neighbors --embeddings runs/byol/embeddings.npy --data data/fashion-mnist\n  selfsup neighbors --embeddings photos.npy --k 8 --threshold 0.98 --json\n\nSimilarity is the cosine of mean-centred features (the direction all features share is removed\nfirst). Writes <out>/neighbors.csv (every image's k neighbours), duplicates.csv (groups joined by\na similarity ≥ --threshold) and contact_sheet.png (queries in the first column, their\nneighbours with the similarity above each). Exact search: time grows with the square of the\nnumber of images (seconds for tens of thousands)."
    )]
    Neighbors(NeighborsArgs),
    /// Write a run's encoder as a PyTorch state dict (safetensors, timm / torchvision names) and a
    /// card saying how to build the matching model.
    #[command(
        after_help = "Examples:\n  selfsup export --run runs/byol\n  selfsup export --run runs/dino --out dino-vit.safetensors --json\n\nLoad it in PyTorch (strict: every key matches; the classifier is dropped):\n  import json, safetensors.torch\n  card = json.load(open(\"runs/byol/encoder.json\")); exec(\"\\n\".join(card[\"python\"]))\n  model.load_state_dict(safetensors.torch.load_file(\"runs/byol/encoder.safetensors\"), strict=True)\n\nInputs are normalised as the card says: (pixels / 255 - mean) / std per channel."
    )]
    Export(ExportArgs),
    /// The method families: which are implemented, what prevents collapse, whether negatives are needed.
    #[command(after_help = "Example:\n  selfsup methods --json")]
    Methods(MethodsArgs),
    /// Memory and compute of one training step, counted from the networks' shapes: weights,
    /// gradients, optimizer state, activations per image, FLOPs, and the largest batch that fits.
    #[command(
        after_help = "Examples:\n  selfsup plan --method simclr --arch resnet50 --image-size 224 --batch-size 32\n  selfsup plan --method moco-v2 --arch resnet50 --image-size 224 --batch-size 256 --queue 65536 --memory 80\n  selfsup plan --recipe recipes/photos/dino-vit-s16.toml --batch-size 64 --json\n  selfsup plan --method byol --batch-size 64 --measure   # the shipped recipe, and a real step measured beside it\n\nCounted in f32: what each operation keeps for the backward pass (a convolution or linear layer\nits input, batch norm its input and fused ReLU output, attention its qkv and probabilities),\nfrom the real networks' layer shapes. --arch builds the published network: a ResNet at width 64\nwith the ImageNet stem, a ViT with 16-px patches (from 64 px up). Targets and teachers (BYOL,\nMoCo, DINO) run without gradients: they cost compute and weights, not activations."
    )]
    Plan(PlanArgs),
    /// Which method fits your needs: frozen features or fine-tuning, CNN or ViT, batch, memory,
    /// compute; with the papers' reasons, planned memory and your own runs' results.
    #[command(
        after_help = "Examples:\n  selfsup advise\n  selfsup advise --goal finetune --backbone vit --low-compute\n  selfsup advise --backbone cnn --batch-size 64 --memory 24 --image-size 224\n  selfsup advise --image-size 28 --runs runs/results --json\n\nThe ranking weighs what each method's paper reports (frozen-feature and fine-tuning accuracy,\nbatch-size dependence, cost per image); the memory is `selfsup plan` for your batch and image\nsize; finished runs under --runs are quoted beside their random-init baseline."
    )]
    Advise(AdviseArgs),
    /// Claims about self-supervised learning as experiments: runs, a table, a plot, a verdict.
    #[command(
        after_help = "Experiments:\n  batch-size   the negative-sample tax: kNN against batch size (32 / 128 / 512) at equal epochs\n               for SimCLR, MoCo v2 (its queue), BYOL and SimSiam (plot: kNN per batch size)\n  negatives    a positives-only InfoNCE and SimSiam without stop-gradient, beside the shipped\n               SimCLR and SimSiam: which collapse, and at which step (plot: std per step)\n  ablations    SimSiam without stop-gradient or predictor, BYOL without predictor or without\n               BatchNorm in its heads: which collapse, completely or dimensionally\n  dimensional  BYOL and SimSiam against Barlow Twins and VICReg: effective rank and the\n               covariance spectra on one plot\n\nExamples:\n  selfsup lab negatives                      # 4 arms × seeds 0,1,2, shipped recipes\n  selfsup lab dimensional --seeds 0,1,2,3,4\n  selfsup lab negatives --smoke              # a minute: checks the experiment end to end\n  selfsup lab batch-size --resume            # after Ctrl-C: keeps the runs already finished\n\nWrites <out>/table.md, <out>/std.png, spectra.png or knn.png, <out>/lab.json and every run\nunder <out>/runs/ (each finished run also as runs/<arm>-s<seed>/lab-run.json, which --resume reads)."
    )]
    Lab(LabArgs),
    /// Several runs side by side: accuracy beside random init, effective rank, verdict, time; their loss and kNN curves.
    #[command(
        after_help = "Examples:\n  selfsup compare runs/simclr runs/byol runs/vicreg\n  selfsup compare runs/results            # every run in the folder\n  selfsup compare runs/a runs/b --out a-vs-b.png --json\n\nA folder that is not a run stands for the runs inside it. Runs not yet evaluated show \"-\"\n(`selfsup eval --run DIR` fills them in). The picture: loss per step (scaled per run when the\nmethods differ) and kNN per epoch (the online monitor, `train.eval_every`, where it ran; else the\nfinal evaluation)."
    )]
    Compare(CompareArgs),
    /// A 2-D map (t-SNE or PCA) of a run's held-out embeddings beside its random-init twin, coloured by label.
    #[command(
        after_help = "Examples:\n  selfsup map --run runs/simclr\n  selfsup map --run runs/simclr --projection pca --images 5000\n  selfsup map --run runs/dino --data ~/photos --out photos-map.png --json\n\nBoth maps use the same images; the random-init encoder is the one `selfsup eval` scores. The\nsilhouette score (-1 to 1, higher: classes further apart) is given for each map and for the\nfeatures themselves (cosine distance), since a 2-D map can exaggerate or hide separation.\nt-SNE starts from the PCA map, so the same run always gives the same picture."
    )]
    Map(MapArgs),
}

pub(crate) fn print_json<T: serde::Serialize>(value: &T) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).expect("serialisable")
    );
}

/// The parsed command line; `train --help` ends with the list of methods, from the method table.
pub fn parse() -> Cli {
    use clap::{CommandFactory, FromArgMatches};
    let names: Vec<&str> = MethodName::ALL.iter().map(|m| m.as_str()).collect();
    let methods = format!(
        "Methods: {} (see `selfsup methods`; beit needs a vq-tokenizer run first).",
        names.join(", ")
    );
    let command = Cli::command().mut_subcommand("train", |train| {
        let examples = train
            .get_after_help()
            .map(|h| h.to_string())
            .unwrap_or_default();
        train.after_help(format!("{examples}\n\n{methods}"))
    });
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Train(args) => train::train_command(args),
        Command::Embed(args) => inspect::embed_command(args),
        Command::Neighbors(args) => neighbors::neighbors_command(args),
        Command::Export(args) => inspect::export_command(args),
        Command::Eval(args) => inspect::eval_command(args),
        Command::Diagnose(args) => inspect::diagnose_command(args),
        Command::Finetune(args) => inspect::finetune_command(args),
        Command::Reconstruct(args) => inspect::reconstruct_command(args),
        Command::Attention(args) => inspect::attention_command(args),
        Command::Lab(args) => lab::lab_command(args),
        Command::Compare(args) => compare::compare_command(args),
        Command::Map(args) => map::map_command(args),
        Command::Advise(args) => advise::advise_command(args),
        Command::Plan(args) => plan::plan_command(args, &crate::ALLOC),
        Command::Methods(args) => {
            if args.json {
                let rows: Vec<serde_json::Value> = MethodName::ALL
                    .iter()
                    .map(|&name| {
                        let a = name.about();
                        serde_json::json!({
                            "method": a.title, "cli_name": name.as_str(), "family": a.family,
                            "prevents_collapse": a.prevents_collapse, "negatives": a.negatives,
                            "implemented": true,
                        })
                    })
                    .collect();
                print_json(&rows);
            } else {
                print!("{}", methods_table());
            }
            Ok(())
        }
    }
}
