//! The method advisor (`selfsup advise`): from what a user needs, the methods that fit, with the
//! papers' reasons, the planner's memory for the user's images and batch, and the user's own runs.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::plan::{Plan, default_shape, plan, plan_recipe, published_arch};
use crate::error::Result;
use crate::method::MethodName;
use crate::nn::backbone::ImageShape;
use crate::recipe::Overrides;

/// What the features are for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Goal {
    /// Frozen features reused for many tasks (kNN, linear probes, retrieval).
    Frozen,
    /// Fine-tuning the whole encoder with labels.
    Finetune,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackboneKind {
    Cnn,
    Vit,
    Any,
}

/// A user's situation.
#[derive(Clone, Debug, Serialize)]
pub struct Needs {
    pub goal: Goal,
    pub backbone: BackboneKind,
    /// Compute is the constraint: prefer the cheapest step per image.
    pub low_compute: bool,
    pub batch: usize,
    pub image_side: usize,
    /// Memory for a step, in bytes.
    pub memory: Option<u64>,
    /// Features must match text (zero-shot classification, text search).
    pub text: bool,
}

/// One recommended method.
#[derive(Clone, Debug, Serialize)]
pub struct Recommendation {
    pub method: MethodName,
    pub backbone: String,
    pub reasons: Vec<&'static str>,
    /// The planner on the user's images and batch with this method's recipe.
    pub peak_bytes: u64,
    pub train_gflops_per_image: f64,
    pub fits: Option<bool>,
    pub largest_batch: Option<usize>,
    /// The `selfsup plan` command behind these numbers.
    pub plan_command: String,
    /// The user's finished runs of this method.
    pub runs: Vec<RunResult>,
}

/// A finished run's evaluation beside its random-init baseline.
#[derive(Clone, Debug, Serialize)]
pub struct RunResult {
    pub dir: PathBuf,
    pub method: MethodName,
    pub knn: f64,
    pub random_init_knn: f64,
    pub linear: f64,
    pub random_init_linear: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Advice {
    pub needs: Needs,
    pub recommendations: Vec<Recommendation>,
    /// Said when the best answer is not a selfsup method.
    pub outside: Option<&'static str>,
}

/// What the papers say of a method, for matching it to needs.
struct Profile {
    method: MethodName,
    vit_only: bool,
    /// Its paper's ImageNet linear-probe top-1 minus 48 points (DINOv2's 81.1% → 33).
    frozen: u8,
    /// Its paper's fine-tuned top-1 minus 54 points (MAE's 83.6% → 30); 20 for the CNN methods,
    /// whose papers report linear probes.
    finetune: u8,
    /// 1–3: training cost per image (1 = cheapest).
    cost: u8,
    /// Works at batches of a few hundred or less.
    small_batch: bool,
    reasons: &'static [&'static str],
}

const PROFILES: &[Profile] = &[
    Profile {
        method: MethodName::Dinov2,
        vit_only: true,
        frozen: 33,
        finetune: 28,
        cost: 3,
        small_batch: false,
        reasons: &[
            "the strongest all-purpose frozen ViT features (DINOv2 ViT-S/14: 81.1% ImageNet linear probe)",
            "image-level and patch-level losses (iBOT) with KoLeo spreading the features",
            "the costliest step (multi-crop, a teacher, patch heads), trained at batch 3072 in its paper",
        ],
    },
    Profile {
        method: MethodName::Dino,
        vit_only: false,
        frozen: 29,
        finetune: 29,
        cost: 3,
        small_batch: true,
        reasons: &[
            "frozen features that work with kNN as they are (ViT-S/16: 74.5% kNN, 77.0% linear)",
            "no negatives: centring and sharpening of an EMA teacher prevent collapse; its batch-size ablation loses little down to a few hundred images",
            "multi-crop makes each image several forward passes",
        ],
    },
    Profile {
        method: MethodName::Ibot,
        vit_only: true,
        frozen: 30,
        finetune: 30,
        cost: 3,
        small_batch: false,
        reasons: &[
            "DINO plus masked patch prediction: good frozen features (ViT-S/16: 77.9% linear) that also fine-tune well",
            "patch-level targets help dense tasks; trained at batch 1024 in its paper",
        ],
    },
    Profile {
        method: MethodName::Mae,
        vit_only: true,
        frozen: 20,
        finetune: 30,
        cost: 1,
        small_batch: true,
        reasons: &[
            "the cheapest pretraining per image: the encoder sees a quarter of the patches",
            "fine-tunes best among its peers (ViT-B: 83.6% after fine-tuning) but its frozen features are weak (68.0% linear)",
            "no batch-size dependence: each image is its own task",
        ],
    },
    Profile {
        method: MethodName::Simmim,
        vit_only: true,
        frozen: 9,
        finetune: 30,
        cost: 2,
        small_batch: true,
        reasons: &[
            "masked pixels with one linear head: simple, fine-tunes well (ViT-B: 83.8%)",
            "the encoder sees every patch, so a step costs more than MAE's",
        ],
    },
    Profile {
        method: MethodName::Beit,
        vit_only: true,
        frozen: 9,
        finetune: 29,
        cost: 2,
        small_batch: true,
        reasons: &[
            "predicts discrete tokens of masked patches; fine-tunes well (ViT-B: 83.2%)",
            "two stages: a tokenizer must be trained first (selfsup train --method vq-tokenizer)",
        ],
    },
    Profile {
        method: MethodName::Byol,
        vit_only: false,
        frozen: 26,
        finetune: 20,
        cost: 2,
        small_batch: true,
        reasons: &[
            "strong frozen CNN features without negatives (ResNet-50: 74.3% linear)",
            "holds up at small batches (within about a point from 4096 down to 256 in its paper)",
            "an EMA target network: one more forward pass per view",
        ],
    },
    Profile {
        method: MethodName::BarlowTwins,
        vit_only: false,
        frozen: 25,
        finetune: 20,
        cost: 2,
        small_batch: true,
        reasons: &[
            "decorrelates the embedding's dimensions, which resists dimensional collapse by construction (ResNet-50: 73.2% linear)",
            "no negatives, no target network, works at batch 256; wants a wide projector",
        ],
    },
    Profile {
        method: MethodName::Vicreg,
        vit_only: false,
        frozen: 25,
        finetune: 20,
        cost: 2,
        small_batch: true,
        reasons: &[
            "explicit variance, invariance and covariance terms: each failure mode has its own term to watch (ResNet-50: 73.2% linear)",
            "no negatives, no target network",
        ],
    },
    Profile {
        method: MethodName::Simsiam,
        vit_only: false,
        frozen: 23,
        finetune: 20,
        cost: 1,
        small_batch: true,
        reasons: &[
            "the cheapest joint-embedding method: one encoder, no target, no negatives, batch 256 (ResNet-50: 71.3% linear)",
            "collapses without its stop-gradient and predictor; watch `selfsup diagnose`",
        ],
    },
    Profile {
        method: MethodName::MocoV2,
        vit_only: false,
        frozen: 23,
        finetune: 20,
        cost: 2,
        small_batch: true,
        reasons: &[
            "contrastive with a queue of past keys: many negatives at a small batch (ResNet-50: 71.1% linear)",
            "a momentum key encoder: one more forward pass",
        ],
    },
    Profile {
        method: MethodName::Simclr,
        vit_only: false,
        frozen: 21,
        finetune: 20,
        cost: 2,
        small_batch: false,
        reasons: &[
            "the simplest contrastive method: one encoder, negatives from the batch (ResNet-50: 69.3% linear at batch 4096)",
            "pays a negative-sample tax: accuracy drops several points at small batches",
        ],
    },
    Profile {
        method: MethodName::MocoV3,
        vit_only: false,
        frozen: 29,
        finetune: 29,
        cost: 3,
        small_batch: false,
        reasons: &[
            "contrastive training made stable for ViTs (frozen random patch projection; ViT-B: 76.7% linear)",
            "in-batch negatives: wants large batches",
        ],
    },
];

const CLIP: &str = "Features that match text (zero-shot classification, search by a sentence) need \
    image-text pairs and a text encoder: CLIP-style training (OpenCLIP), which selfsup does not \
    do. Image-only self-supervision gives features to compare images with each other.";

/// Ranks the methods for `needs`; `runs` is a folder of finished runs to quote (any depth 1).
pub fn advise(needs: &Needs, runs: Option<&Path>) -> Result<Advice> {
    let found = runs.map(finished_runs).unwrap_or_default();
    let mut scored: Vec<(i32, &Profile)> = PROFILES
        .iter()
        .filter(|p| !(p.vit_only && needs.backbone == BackboneKind::Cnn))
        .map(|p| (score(p, needs), p))
        .collect();
    scored.sort_by_key(|(s, _)| -s);
    let mut recommendations = Vec::new();
    for (_, profile) in scored.into_iter().take(3) {
        recommendations.push(recommend(profile, needs, &found)?);
    }
    Ok(Advice {
        needs: needs.clone(),
        recommendations,
        outside: needs.text.then_some(CLIP),
    })
}

fn score(p: &Profile, needs: &Needs) -> i32 {
    let quality = match needs.goal {
        Goal::Frozen => p.frozen,
        Goal::Finetune => p.finetune,
    } as i32;
    let mut s = quality;
    if needs.low_compute {
        s -= 8 * (p.cost as i32 - 1);
    } else {
        s -= 2 * (p.cost as i32 - 1);
    }
    if needs.batch < 512 && !p.small_batch {
        s -= 8;
    }
    // A CNN user is better served by the methods designed for CNNs.
    match needs.backbone {
        BackboneKind::Cnn if p.method == MethodName::Dino => s -= 6,
        BackboneKind::Vit
            if !p.vit_only && !matches!(p.method, MethodName::Dino | MethodName::MocoV3) =>
        {
            s -= 4
        }
        _ => {}
    }
    s
}

fn recommend(p: &Profile, needs: &Needs, runs: &[RunResult]) -> Result<Recommendation> {
    let large = needs.image_side >= 64;
    let base = Overrides {
        method: Some(p.method),
        batch_size: Some(needs.batch),
        ..Overrides::default()
    };
    let shipped_vit = plan_recipe(&base, None)?.model.is_vit();
    let vit = match needs.backbone {
        BackboneKind::Vit => true,
        BackboneKind::Cnn => false,
        BackboneKind::Any => p.vit_only || shipped_vit,
    };
    // Small images keep the shipped recipes' small networks (swapped to the other kind when the
    // need asks for it); large ones get the published networks.
    let sets: Vec<String> = match (large, vit, shipped_vit) {
        (true, true, _) => published_arch("vit-small", true),
        (true, false, _) => published_arch("resnet50", true),
        (false, true, false) => [
            "model.arch=vit-tiny",
            "model.embed_dim=0",
            "model.depth=0",
            "model.heads=0",
            "model.patch_size=4",
            "data.image_size=32",
        ]
        .map(String::from)
        .to_vec(),
        (false, false, true) => ["model.arch=resnet18", "model.width=8", "model.stem=small"]
            .map(String::from)
            .to_vec(),
        (false, _, _) => Vec::new(),
    };
    let overrides = Overrides {
        sets: sets.clone(),
        ..base
    };
    let mut plan_command = format!(
        "selfsup plan --method {} --batch-size {}",
        p.method.as_str(),
        needs.batch
    );
    if large {
        plan_command += &format!(" --image-size {}", needs.image_side);
    }
    for set in sets {
        plan_command += &format!(" --set {set}");
    }
    let recipe = plan_recipe(&overrides, large.then_some(needs.image_side))?;
    let shape = if large {
        ImageShape {
            channels: 3,
            side: needs.image_side,
        }
    } else {
        default_shape(&recipe)
    };
    let planned: Plan = plan(&recipe, shape, needs.batch, needs.memory)?;
    let peak = planned.memory.total();
    Ok(Recommendation {
        method: p.method,
        backbone: recipe.model.describe(),
        reasons: p.reasons.to_vec(),
        peak_bytes: peak,
        train_gflops_per_image: planned.train_gflops_per_image,
        fits: needs.memory.map(|m| peak <= m),
        largest_batch: planned.fit.and_then(|f| f.largest_batch),
        plan_command,
        runs: runs
            .iter()
            .filter(|r| r.method == p.method)
            .cloned()
            .collect(),
    })
}

/// The run directories under `dir` (and `dir` itself) that hold an evaluation.
pub fn finished_runs(dir: &Path) -> Vec<RunResult> {
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut children: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
        children.sort();
        dirs.extend(children);
    }
    dirs.into_iter().filter_map(|d| run_result(&d)).collect()
}

fn run_result(dir: &Path) -> Option<RunResult> {
    let eval: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("eval.json")).ok()?).ok()?;
    let recipe: toml::Table = std::fs::read_to_string(dir.join("recipe.toml"))
        .ok()?
        .parse()
        .ok()?;
    let name = recipe.get("method")?.get("name")?.as_str()?;
    let random = &eval["baselines"]["random_init"];
    Some(RunResult {
        dir: dir.to_path_buf(),
        method: MethodName::parse(name).ok()?,
        knn: eval["knn_top1"].as_f64()?,
        random_init_knn: random["knn_top1"].as_f64()?,
        linear: eval["linear_top1"].as_f64()?,
        random_init_linear: random["linear_top1"].as_f64()?,
    })
}
