//! Pretrained encoders in: safetensors or PyTorch `.pth` / `.pt` state dicts with timm /
//! torchvision names (DINO, DINOv2, MAE, selfsup's own export), the architecture read off the
//! tensors, position embeddings resampled to the images at hand.

use std::collections::BTreeMap;
use std::path::Path;

use burn::store::{
    ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore, bridge,
};
use burn::tensor::{Device, TensorData};

use super::architecture::{infer, to_resnet, to_vit};
use super::export::card_path;
use super::{ExportCard, Names};
use crate::data::loader::Normalize;
use crate::data::{LoadOptions, Splits};
use crate::error::{Error, Result};
use crate::nn::backbone::ImageShape;
use crate::nn::{Backbone, ModelConfig};

/// ImageNet's per-channel statistics: what timm, torchvision, DINO, DINOv2 and MAE weights expect.
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// An encoder read from a checkpoint file.
pub struct Imported {
    pub encoder: Backbone,
    pub model: ModelConfig,
    pub shape: ImageShape,
    pub normalize: Normalize,
    pub names: Names,
    /// What was left out or changed on the way in (classifier heads, MAE's decoder, resampled
    /// position embeddings), one line each.
    pub notes: Vec<String>,
}

/// Reads `path` and builds the encoder it holds for `side`-pixel images (a ViT's own size when
/// `None`; a ResNet takes any size). Heads of a ViT: `heads` or 64-wide ones.
pub fn import_encoder(
    path: &Path,
    side: Option<usize>,
    heads: Option<usize>,
    device: &Device,
) -> Result<Imported> {
    let raw = read_tensors(path)?;
    let card = read_card(path);
    let (tensors, mut notes) = strip_to_encoder(path, raw)?;
    let (model, mut shape, names) = infer(path, &tensors, heads, card.as_ref())?;
    if let Some(side) = side {
        shape.side = side;
    }
    let (ours, more) = match names {
        Names::Torchvision => (to_resnet(tensors, &model), Vec::new()),
        Names::Timm => to_vit(tensors, &model, shape, device),
    };
    notes.extend(more);
    let mut encoder = model.init(shape, device);
    let pack: Vec<_> = ours
        .into_iter()
        .map(|(name, data)| bridge::from_data(data, name, None))
        .collect();
    let result = encoder.apply(pack, None, Some(Box::new(PyTorchToBurnAdapter)), true);
    let errors: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    let missing: Vec<&str> = result.missing.iter().map(|(k, _)| k.as_str()).collect();
    if !errors.is_empty() || !missing.is_empty() || !result.unused.is_empty() {
        let list = |v: &[&str]| {
            let shown: Vec<&str> = v.iter().take(5).copied().collect();
            let more = v.len().saturating_sub(5);
            if more > 0 {
                format!("{} (+{more} more)", shown.join(", "))
            } else {
                shown.join(", ")
            }
        };
        let mut parts = Vec::new();
        if !errors.is_empty() {
            let e: Vec<&str> = errors.iter().map(String::as_str).collect();
            parts.push(format!("mismatched: {}", list(&e)));
        }
        if !missing.is_empty() {
            parts.push(format!("missing: {}", list(&missing)));
        }
        if !result.unused.is_empty() {
            let u: Vec<&str> = result.unused.iter().map(String::as_str).collect();
            parts.push(format!("unexpected: {}", list(&u)));
        }
        return Err(Error::Weights {
            path: path.to_path_buf(),
            msg: format!(
                "does not fit {} ({}); it holds a different architecture or naming",
                model.describe(),
                parts.join("; ")
            ),
        });
    }
    let normalize = match expected_normalize(path, shape.channels) {
        Some(normalize) => normalize,
        None => {
            notes.push(format!(
                "{}-channel weights without a card: inputs normalised with mean 0.5, std 0.25",
                shape.channels
            ));
            Normalize {
                mean: vec![0.5; shape.channels],
                std: vec![0.25; shape.channels],
            }
        }
    };
    Ok(Imported {
        encoder,
        model,
        shape,
        normalize,
        names,
        notes,
    })
}

pub(super) fn checkpoint_error(path: &Path, msg: impl Into<String>) -> Error {
    Error::Weights {
        path: path.to_path_buf(),
        msg: msg.into(),
    }
}

/// Every tensor of the file as f32, by its name in the file.
fn read_tensors(path: &Path) -> Result<BTreeMap<String, TensorData>> {
    if !path.is_file() {
        return Err(checkpoint_error(
            path,
            "no such file; give a .safetensors, .pth or .pt checkpoint",
        ));
    }
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let tensors = match ext {
        "safetensors" => SafetensorsStore::from_file(path)
            .get_all_tensors()
            .map_err(|e| checkpoint_error(path, e.to_string()))?
            .clone(),
        "pth" | "pt" | "bin" | "ckpt" => PytorchStore::from_file(path)
            .get_all_tensors()
            .map_err(|e| checkpoint_error(path, e.to_string()))?
            .clone(),
        _ => {
            return Err(checkpoint_error(
                path,
                "unknown checkpoint format; give a .safetensors, .pth or .pt file",
            ));
        }
    };
    tensors
        .iter()
        .map(|(name, t)| {
            let data = bridge::to_data(t)
                .map_err(|e| checkpoint_error(path, format!("{name}: {e}")))?
                .convert::<f32>();
            Ok((name.clone(), data))
        })
        .collect()
}

/// The card `selfsup export` wrote beside the file, if any.
fn read_card(path: &Path) -> Option<ExportCard> {
    let text = std::fs::read_to_string(card_path(path)).ok()?;
    serde_json::from_str(&text).ok()
}

/// Keeps the encoder's tensors: finds the prefix nested checkpoints put before them (`model.`,
/// `module.`, `teacher.backbone.`, …), drops it, and drops what no encoder holds (classifier
/// heads, MAE's decoder, DINOv2's mask token, BatchNorm counters).
fn strip_to_encoder(
    path: &Path,
    raw: BTreeMap<String, TensorData>,
) -> Result<(BTreeMap<String, TensorData>, Vec<String>)> {
    const ANCHORS: [&str; 2] = ["patch_embed.proj.weight", "layer1.0.conv1.weight"];
    let prefixes: Vec<String> = raw
        .keys()
        .filter_map(|k| {
            ANCHORS
                .iter()
                .find_map(|a| k.strip_suffix(a).map(str::to_string))
        })
        .collect();
    // A DINO checkpoint holds both teacher and student: take the teacher, as DINO evaluates.
    let prefix = prefixes
        .iter()
        .find(|p| p.contains("teacher"))
        .or_else(|| prefixes.iter().min_by_key(|p| p.len()))
        .cloned()
        .ok_or_else(|| {
            let some: Vec<&str> = raw.keys().take(5).map(String::as_str).collect();
            checkpoint_error(
                path,
                format!(
                    "no ViT (patch_embed.proj.weight) or ResNet (layer1.0.conv1.weight) tensors found; it holds {}",
                    some.join(", ")
                ),
            )
        })?;
    let mut kept = BTreeMap::new();
    let mut dropped = Vec::new();
    for (name, data) in raw {
        let Some(own) = name.strip_prefix(&prefix) else {
            continue;
        };
        let head = own.starts_with("fc.")
            || own.starts_with("head.")
            || own.starts_with("head_dist.")
            || own.starts_with("fc_norm.")
            || own.starts_with("decoder")
            || own == "mask_token"
            || own.ends_with("num_batches_tracked");
        if head {
            if !own.ends_with("num_batches_tracked") {
                dropped.push(own.to_string());
            }
        } else {
            kept.insert(own.to_string(), data);
        }
    }
    let mut notes = Vec::new();
    if !dropped.is_empty() {
        let groups: std::collections::BTreeSet<&str> = dropped
            .iter()
            .map(|k| k.split('.').next().unwrap_or(k))
            .collect();
        notes.push(format!(
            "left out {} tensors no encoder holds ({})",
            dropped.len(),
            groups.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    Ok((kept, notes))
}

impl Imported {
    /// Images for this encoder from `path`: streamed ones cropped to its side, in-memory ones
    /// resized to it for a ViT; a clear error when their channels differ from the weights'.
    pub fn load_data(&self, path: &Path) -> Result<Splits> {
        let options = LoadOptions {
            image_size: self.model.is_vit().then_some(self.shape.side),
            view_side: Some(self.shape.side),
            shuffle_buffer: 1,
            ..LoadOptions::default()
        };
        let splits = crate::data::load(Some(path), &options)?;
        let channels = splits.train.channels();
        if channels != self.shape.channels {
            return Err(Error::Usage(format!(
                "{}: images have {channels} channel(s) but the imported encoder takes {}",
                splits.description, self.shape.channels
            )));
        }
        Ok(splits)
    }
}

/// How images should be normalised for the weights in `path`: as its export card says, else
/// ImageNet's statistics for 3-channel weights; `None` when neither applies.
pub fn expected_normalize(path: &Path, channels: usize) -> Option<Normalize> {
    match read_card(path) {
        Some(card) => Some(Normalize {
            mean: card.mean,
            std: card.std,
        }),
        None if channels == 3 => Some(Normalize {
            mean: IMAGENET_MEAN.to_vec(),
            std: IMAGENET_STD.to_vec(),
        }),
        None => None,
    }
}
