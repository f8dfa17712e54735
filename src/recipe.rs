//! A typed, validated training recipe: built-in per-method defaults (the files in `recipes/`),
//! overlaid by a user's recipe file, then by command-line flags and `--set key=value` pairs.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::augment::AugmentConfig;
use crate::error::{Error, Result};
use crate::method::MethodName;
use crate::nn::ModelConfig;
use crate::optim::OptimizerConfig;

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// Dataset folder; empty means the Fashion-MNIST subset bundled with selfsup.
    pub path: String,
    /// Resize every image (train and test, any source) to this side (0: keep the native size).
    pub image_size: usize,
    /// Use only the first N training images (0: all).
    pub max_images: usize,
}

/// Method-specific settings; each method reads the fields it documents.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct MethodConfig {
    pub name: MethodName,
    /// Projector layer widths after the backbone: hidden…, output.
    pub projector: Vec<usize>,
    /// Predictor layer widths: hidden, output (output must equal the projector's). SimSiam, BYOL
    /// and MoCo v3 have one.
    pub predictor: Vec<usize>,
    /// SimSiam: stop the gradient through the target branch (off → the model collapses).
    pub stop_gradient: bool,
    /// SimSiam: keep the predictor's learning rate constant (the paper's fix_pred_lr).
    pub fix_predictor_lr: bool,
    /// BYOL / MoCo v3: base EMA momentum of the target (key) network, raised to 1 with a cosine;
    /// MoCo v1/v2: the constant key-encoder momentum m.
    pub base_momentum: f64,
    /// SimCLR / MoCo: softmax temperature τ of the contrastive loss.
    pub temperature: f64,
    /// MoCo v1/v2: number of past keys kept as negatives (65536 in the paper).
    pub queue_size: usize,
    /// MoCo v1/v2: BatchNorm sub-batches emulating the paper's shuffling BN across GPUs
    /// (keys shuffled between them); 1 turns it off.
    pub shuffle_bn_groups: usize,
    /// Barlow Twins: weight λ of the off-diagonal (redundancy) term.
    pub lambda: f64,
    /// VICReg: weight of the invariance (MSE) term.
    pub invariance_weight: f64,
    /// VICReg: weight of the variance hinge.
    pub variance_weight: f64,
    /// VICReg: weight of the covariance penalty.
    pub covariance_weight: f64,
    /// MAE / SimMIM / BEiT: fraction of patches masked (0.75 / 0.6 / 0.4 in the papers).
    pub mask_ratio: f64,
    /// SimMIM: side of the square mask blocks, in ViT patches (the paper's 32-px mask patches).
    pub mask_block: usize,
    /// BEiT: fewest patches in one masking rectangle (16 in the paper, for a 14×14 grid).
    pub mask_min_block: usize,
    /// MAE: predict each patch standardised by its own mean and variance (norm_pix_loss).
    pub norm_pix_loss: bool,
    /// MAE: decoder width, blocks and heads (the paper's 512 × 8 with 16 heads).
    pub decoder_dim: usize,
    pub decoder_depth: usize,
    pub decoder_heads: usize,
    /// BEiT: run directory of the `vq-tokenizer` run whose codes are the prediction targets.
    pub tokenizer: String,
    /// VQ tokenizer: number of codes in the codebook.
    pub codebook_size: usize,
    /// VQ tokenizer: width of each code (codes and encoder outputs are L2-normalised).
    pub code_dim: usize,
    /// VQ tokenizer: weight β of the commitment term ‖z − sg(e)‖².
    pub commitment: f64,
    /// VQ tokenizer: restart codes that fall out of use at random encoder outputs (off: watch the
    /// codebook collapse).
    pub restart_codes: bool,
    /// DINO / iBOT / DINOv2: prototypes K of the [CLS] head (65536 in DINO). `projector` sets the
    /// head's MLP widths (hidden…, bottleneck) and `temperature` the student's τ_s;
    /// `base_momentum` starts the teacher's cosine EMA schedule.
    pub prototypes: usize,
    /// iBOT / DINOv2: prototypes of the patch head (8192 in iBOT; equal to `prototypes` when
    /// `shared_head`).
    pub patch_prototypes: usize,
    /// DINO family: the teacher's temperature τ_t after warmup (0.04–0.07).
    pub teacher_temperature: f64,
    /// DINO family: τ_t at the start, raised linearly to `teacher_temperature`.
    pub warmup_teacher_temperature: f64,
    /// DINO family: epochs of that linear warmup (30 in the paper).
    pub teacher_temperature_warmup_epochs: f64,
    /// DINO family: how the teacher's outputs are kept from collapsing: "ema" (DINO / iBOT's
    /// centre), "sinkhorn" (DINOv2's Sinkhorn-Knopp) or "none" (watch it collapse).
    pub centering: Centering,
    /// DINO family: EMA momentum of the centre over batch means (0.9).
    pub center_momentum: f64,
    /// DINO family: epochs during which the prototypes get no gradient (1 in the paper).
    pub freeze_last_layer_epochs: f64,
    /// iBOT / DINOv2: weight of the masked patch-token loss (0 turns it off: plain DINO).
    pub patch_loss_weight: f64,
    /// iBOT / DINOv2: the mask ratio of a masked image is drawn in [mask_ratio_min, mask_ratio].
    pub mask_ratio_min: f64,
    /// iBOT / DINOv2: the fraction of global crops that are masked at all (0.5).
    pub mask_probability: f64,
    /// DINOv2: weight of the KoLeo regulariser on the student's [CLS] features (0.1).
    pub koleo_weight: f64,
    /// iBOT: the patch tokens share the [CLS] head; DINOv2 unties them (false).
    pub shared_head: bool,
}

/// How a self-distillation teacher's outputs are normalised before they become targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Centering {
    /// Subtract an EMA of the batch-mean logits (DINO, iBOT).
    Ema,
    /// Sinkhorn-Knopp normalisation, 3 iterations (DINOv2).
    Sinkhorn,
    /// Sharpening only: the run collapses onto one prototype.
    None,
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig {
            name: MethodName::Simsiam,
            projector: vec![512, 512, 512],
            predictor: vec![128, 512],
            stop_gradient: true,
            fix_predictor_lr: true,
            base_momentum: 0.99,
            temperature: 0.5,
            queue_size: 4096,
            shuffle_bn_groups: 2,
            lambda: 5e-3,
            invariance_weight: 25.0,
            variance_weight: 25.0,
            covariance_weight: 1.0,
            mask_ratio: 0.75,
            mask_block: 2,
            mask_min_block: 4,
            norm_pix_loss: true,
            decoder_dim: 128,
            decoder_depth: 2,
            decoder_heads: 4,
            tokenizer: String::new(),
            codebook_size: 512,
            code_dim: 32,
            commitment: 0.25,
            restart_codes: true,
            prototypes: 1024,
            patch_prototypes: 1024,
            teacher_temperature: 0.07,
            warmup_teacher_temperature: 0.04,
            teacher_temperature_warmup_epochs: 0.0,
            centering: Centering::Ema,
            center_momentum: 0.9,
            freeze_last_layer_epochs: 1.0,
            patch_loss_weight: 0.0,
            mask_ratio_min: 0.1,
            mask_probability: 0.5,
            koleo_weight: 0.0,
            shared_head: true,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub seed: u64,
    /// Write a metrics line every N steps.
    pub log_every: usize,
    /// Checkpoint every N epochs (and always at the end).
    pub checkpoint_every: usize,
    /// Also checkpoint every N steps inside an epoch (0: off).
    pub checkpoint_every_steps: usize,
    /// kNN-evaluate the frozen encoder every N epochs into `eval_history.jsonl` (0: off).
    pub eval_every: usize,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 5,
            batch_size: 128,
            seed: 0,
            log_every: 10,
            checkpoint_every: 1,
            checkpoint_every_steps: 0,
            eval_every: 0,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct EvalConfig {
    pub knn_k: usize,
    pub knn_temperature: f64,
    pub linear_epochs: usize,
    pub linear_lr: f64,
    pub linear_weight_decay: f64,
    /// Cap on the labelled train images used to fit kNN / the probe (0: all).
    pub max_train: usize,
    /// Cap on the held-out images evaluated (0: all).
    pub max_test: usize,
    /// `selfsup finetune`: fraction of the labelled training images used.
    pub finetune_fraction: f64,
    pub finetune_epochs: usize,
    /// AdamW learning rate at batch 256 (one warmup epoch, then cosine).
    pub finetune_lr: f64,
    pub finetune_weight_decay: f64,
    pub finetune_batch_size: usize,
}

impl Default for EvalConfig {
    fn default() -> Self {
        EvalConfig {
            knn_k: 20,
            knn_temperature: 0.1,
            linear_epochs: 30,
            linear_lr: 0.5,
            linear_weight_decay: 1e-5,
            max_train: 0,
            max_test: 0,
            finetune_fraction: 0.1,
            finetune_epochs: 15,
            finetune_lr: 1e-3,
            finetune_weight_decay: 0.05,
            finetune_batch_size: 64,
        }
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Recipe {
    pub method: MethodConfig,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub augment: AugmentConfig,
    pub optim: OptimizerConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
}

/// The shipped recipe of each method (the same files as `recipes/`).
pub fn builtin_source(method: MethodName) -> &'static str {
    match method {
        MethodName::Simsiam => include_str!("../recipes/simsiam.toml"),
        MethodName::Byol => include_str!("../recipes/byol.toml"),
        MethodName::Simclr => include_str!("../recipes/simclr.toml"),
        MethodName::MocoV1 => include_str!("../recipes/moco-v1.toml"),
        MethodName::MocoV2 => include_str!("../recipes/moco-v2.toml"),
        MethodName::MocoV3 => include_str!("../recipes/moco-v3.toml"),
        MethodName::BarlowTwins => include_str!("../recipes/barlow-twins.toml"),
        MethodName::Vicreg => include_str!("../recipes/vicreg.toml"),
        MethodName::Mae => include_str!("../recipes/mae.toml"),
        MethodName::Simmim => include_str!("../recipes/simmim.toml"),
        MethodName::Beit => include_str!("../recipes/beit.toml"),
        MethodName::VqTokenizer => include_str!("../recipes/vq-tokenizer.toml"),
        MethodName::Dino => include_str!("../recipes/dino.toml"),
        MethodName::Ibot => include_str!("../recipes/ibot.toml"),
        MethodName::Dinov2 => include_str!("../recipes/dinov2.toml"),
    }
}

fn parse_toml(text: &str, origin: &str) -> Result<toml::Table> {
    text.parse::<toml::Table>()
        .map_err(|e| Error::Recipe(format!("{origin}: not valid TOML: {e}")))
}

/// Copies `overlay` onto `base`, refusing keys the base does not have.
fn merge(base: &mut toml::Table, overlay: toml::Table, prefix: &str, origin: &str) -> Result<()> {
    for (key, value) in overlay {
        let full = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(b)), toml::Value::Table(o)) => merge(b, o, &full, origin)?,
            (Some(slot), value) => *slot = value,
            (None, _) => return Err(unknown_key(base, &full, origin)),
        }
    }
    Ok(())
}

fn unknown_key(section: &toml::Table, key: &str, origin: &str) -> Error {
    let mut valid: Vec<&str> = section.keys().map(String::as_str).collect();
    valid.sort_unstable();
    Error::Recipe(format!(
        "{origin}: unknown key '{key}'; valid keys here: {}",
        valid.join(", ")
    ))
}

fn parse_value(raw: &str) -> toml::Value {
    format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

/// Applies one `key=value` override (dotted key, TOML value; bare words are strings).
pub fn apply_set(table: &mut toml::Table, assignment: &str) -> Result<()> {
    let (key, raw) = assignment.split_once('=').ok_or_else(|| {
        Error::Recipe(format!(
            "--set {assignment}: expected key=value, e.g. --set optim.base_lr=0.1"
        ))
    })?;
    let key = key.trim();
    let origin = format!("--set {assignment}");
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut section = &mut *table;
    let mut walked = String::new();
    for part in parts {
        walked = if walked.is_empty() {
            part.to_string()
        } else {
            format!("{walked}.{part}")
        };
        let exists = matches!(section.get(part), Some(toml::Value::Table(_)));
        if !exists {
            return Err(unknown_key(section, &walked, &origin));
        }
        section = match section.get_mut(part) {
            Some(toml::Value::Table(t)) => t,
            _ => unreachable!(),
        };
    }
    if !section.contains_key(last) {
        return Err(unknown_key(section, key, &origin));
    }
    section.insert(last.to_string(), parse_value(raw.trim()));
    Ok(())
}

/// What the command line says about the recipe.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    pub method: Option<MethodName>,
    pub recipe_file: Option<PathBuf>,
    pub data: Option<PathBuf>,
    pub epochs: Option<usize>,
    pub batch_size: Option<i64>,
    pub seed: Option<u64>,
    pub sets: Vec<String>,
}

impl Recipe {
    /// Resolves the recipe: built-in defaults ← recipe file ← flags ← `--set`.
    pub fn resolve(o: &Overrides) -> Result<Recipe> {
        let file = match &o.recipe_file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                Some(parse_toml(&text, &path.display().to_string())?)
            }
            None => None,
        };
        let file_method = file
            .as_ref()
            .and_then(|t| t.get("method"))
            .and_then(|m| m.get("name"))
            .and_then(|n| n.as_str())
            .map(MethodName::parse)
            .transpose()?;
        let method = match (o.method, file_method) {
            (Some(a), Some(b)) if a != b => {
                return Err(Error::Recipe(format!(
                    "--method {a} contradicts method.name = \"{b}\" in {}",
                    o.recipe_file.as_ref().unwrap().display()
                )));
            }
            (Some(m), _) | (None, Some(m)) => m,
            (None, None) => {
                return Err(Error::Usage(
                    "no method given: pass --method (see `selfsup methods`) or a --recipe with method.name".into(),
                ));
            }
        };
        let mut table =
            toml::Table::try_from(Recipe::default()).map_err(|e| Error::Recipe(e.to_string()))?;
        merge(
            &mut table,
            parse_toml(builtin_source(method), "built-in recipe")?,
            "",
            "built-in recipe",
        )?;
        if let (Some(file), Some(path)) = (file, &o.recipe_file) {
            merge(&mut table, file, "", &path.display().to_string())?;
        }
        let mut recipe = Self::from_table(table, "recipe")?;
        recipe.method.name = method;
        if let Some(data) = &o.data {
            recipe.data.path = data.display().to_string();
        }
        if let Some(epochs) = o.epochs {
            recipe.train.epochs = epochs;
        }
        if let Some(b) = o.batch_size {
            if b <= 0 {
                return Err(Error::Usage(format!(
                    "--batch-size {b}: the batch size must be a positive number (e.g. 128)"
                )));
            }
            recipe.train.batch_size = b as usize;
        }
        if let Some(seed) = o.seed {
            recipe.train.seed = seed;
        }
        if !o.sets.is_empty() {
            let mut table =
                toml::Table::try_from(&recipe).map_err(|e| Error::Recipe(e.to_string()))?;
            for set in &o.sets {
                apply_set(&mut table, set)?;
            }
            recipe = Self::from_table(table, "--set")?;
            if recipe.method.name != method {
                return Err(Error::Recipe(
                    "method.name cannot be changed with --set; use --method".into(),
                ));
            }
        }
        recipe.validate()?;
        Ok(recipe)
    }

    fn from_table(table: toml::Table, origin: &str) -> Result<Recipe> {
        Recipe::deserialize(toml::Value::Table(table))
            .map_err(|e| Error::Recipe(format!("{origin}: {}", e.message())))
    }

    pub fn validate(&self) -> Result<()> {
        let check = |r: std::result::Result<(), String>| r.map_err(Error::Recipe);
        check(self.model.validate())?;
        check(self.augment.validate())?;
        check(self.optim.validate())?;
        let t = &self.train;
        if t.batch_size == 0 {
            return Err(Error::Recipe(
                "train.batch_size = 0: the batch size must be a positive number (e.g. 128)".into(),
            ));
        }
        if t.batch_size < 2 {
            return Err(Error::Recipe(
                "train.batch_size = 1: BatchNorm needs at least 2 images per batch".into(),
            ));
        }
        if t.epochs == 0 {
            return Err(Error::Recipe("train.epochs must be at least 1".into()));
        }
        if t.log_every == 0 || t.checkpoint_every == 0 {
            return Err(Error::Recipe(
                "train.log_every and train.checkpoint_every must be at least 1".into(),
            ));
        }
        let m = &self.method;
        if self.augment.local_crops > 0 && !m.name.is_distillation() {
            // Only self-distillation reads local crops: others would augment them and ignore them.
            return Err(Error::Recipe(format!(
                "augment.local_crops = {}: multi-crop feeds the self-distillation methods (dino, ibot, dinov2); {} trains on its global views only, so set it to 0",
                self.augment.local_crops, m.name
            )));
        }
        if m.name.is_distillation() {
            self.validate_distillation()?;
        }
        if m.name.needs_vit() && !self.model.is_vit() {
            return Err(Error::Recipe(format!(
                "{} masks ViT patches: set model.arch to vit-tiny, vit-small, vit-base or vit (with embed_dim, depth, heads)",
                m.name
            )));
        }
        if !(m.mask_ratio > 0.0 && m.mask_ratio < 1.0) {
            return Err(Error::Recipe(format!(
                "method.mask_ratio = {} must be in (0, 1) (MAE 0.75, SimMIM 0.6, BEiT 0.4)",
                m.mask_ratio
            )));
        }
        if m.mask_block == 0 || m.mask_min_block == 0 {
            return Err(Error::Recipe(
                "method.mask_block and method.mask_min_block must be at least 1 patch".into(),
            ));
        }
        if matches!(m.name, MethodName::Mae | MethodName::VqTokenizer) {
            let any = crate::nn::backbone::ImageShape {
                channels: 1,
                side: 1,
            };
            crate::nn::decoder::DecoderConfig::pixels(1, m, any, 1)
                .validate()
                .map_err(Error::Recipe)?;
        }
        if m.name == MethodName::VqTokenizer && (m.codebook_size < 2 || m.code_dim == 0) {
            return Err(Error::Recipe(
                "method.codebook_size must be at least 2 and method.code_dim at least 1".into(),
            ));
        }
        if !(m.commitment.is_finite() && m.commitment >= 0.0) {
            return Err(Error::Recipe(format!(
                "method.commitment = {} must be ≥ 0 (0.25 in the VQ-VAE paper)",
                m.commitment
            )));
        }
        if m.projector.is_empty() || m.projector.contains(&0) {
            return Err(Error::Recipe(
                "method.projector needs at least one positive width (e.g. [512, 128])".into(),
            ));
        }
        let predictor = m.name.uses_predictor();
        if predictor && (m.predictor.len() < 2 || m.predictor.contains(&0)) {
            return Err(Error::Recipe(
                "method.predictor needs [hidden, output] positive widths".into(),
            ));
        }
        if predictor && m.predictor.last() != m.projector.last() {
            return Err(Error::Recipe(format!(
                "method.predictor output {} must equal the projector output {}",
                m.predictor.last().unwrap(),
                m.projector.last().unwrap()
            )));
        }
        if !(0.0..=1.0).contains(&m.base_momentum) {
            return Err(Error::Recipe(format!(
                "method.base_momentum = {} must be in [0, 1]",
                m.base_momentum
            )));
        }
        if !(m.temperature.is_finite() && m.temperature > 0.0) {
            return Err(Error::Recipe(format!(
                "method.temperature = {} must be a positive number (0.07–0.5 is usual)",
                m.temperature
            )));
        }
        if m.shuffle_bn_groups == 0 {
            return Err(Error::Recipe(
                "method.shuffle_bn_groups must be at least 1 (1 = off)".into(),
            ));
        }
        if m.queue_size == 0 {
            return Err(Error::Recipe(
                "method.queue_size must be at least 1 (the paper uses 65536)".into(),
            ));
        }
        for (name, w) in [
            ("lambda", m.lambda),
            ("invariance_weight", m.invariance_weight),
            ("variance_weight", m.variance_weight),
            ("covariance_weight", m.covariance_weight),
        ] {
            if !(w.is_finite() && w >= 0.0) {
                return Err(Error::Recipe(format!("method.{name} = {w} must be ≥ 0")));
            }
        }
        let e = &self.eval;
        if !(e.finetune_fraction > 0.0 && e.finetune_fraction <= 1.0) {
            return Err(Error::Recipe(format!(
                "eval.finetune_fraction = {} must be in (0, 1] (0.1 = a tenth of the labels)",
                e.finetune_fraction
            )));
        }
        if e.finetune_epochs == 0 || e.finetune_batch_size < 2 || !(e.finetune_lr > 0.0) {
            return Err(Error::Recipe(
                "eval.finetune_epochs must be ≥ 1, eval.finetune_batch_size ≥ 2 and eval.finetune_lr > 0".into(),
            ));
        }
        if e.knn_k == 0 || !(e.knn_temperature > 0.0) {
            return Err(Error::Recipe(
                "eval.knn_k must be ≥ 1 and eval.knn_temperature > 0".into(),
            ));
        }
        Ok(())
    }

    fn validate_distillation(&self) -> Result<()> {
        let m = &self.method;
        if self.augment.global_views() != 2 {
            return Err(Error::Recipe(format!(
                "{} pairs two global crops: give augment.blur_p two entries (e.g. [1.0, 0.1]), not {}",
                m.name,
                self.augment.global_views()
            )));
        }
        if m.prototypes < 2 || m.patch_prototypes < 2 {
            return Err(Error::Recipe(
                "method.prototypes and method.patch_prototypes must be at least 2".into(),
            ));
        }
        if m.patch_loss_weight > 0.0 && m.shared_head && m.patch_prototypes != m.prototypes {
            return Err(Error::Recipe(format!(
                "method.shared_head = true uses one head for [CLS] and patches: set method.patch_prototypes = {} (or shared_head = false)",
                m.prototypes
            )));
        }
        for (name, t) in [
            ("teacher_temperature", m.teacher_temperature),
            ("warmup_teacher_temperature", m.warmup_teacher_temperature),
        ] {
            if !(t.is_finite() && t > 0.0) {
                return Err(Error::Recipe(format!(
                    "method.{name} = {t} must be a positive number (DINO: 0.04 → 0.07)"
                )));
            }
        }
        for (name, v) in [
            (
                "teacher_temperature_warmup_epochs",
                m.teacher_temperature_warmup_epochs,
            ),
            ("freeze_last_layer_epochs", m.freeze_last_layer_epochs),
            ("patch_loss_weight", m.patch_loss_weight),
            ("koleo_weight", m.koleo_weight),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::Recipe(format!("method.{name} = {v} must be ≥ 0")));
            }
        }
        if !(0.0..1.0).contains(&m.center_momentum) {
            return Err(Error::Recipe(format!(
                "method.center_momentum = {} must be in [0, 1) (0.9 in the paper)",
                m.center_momentum
            )));
        }
        if !(0.0..=1.0).contains(&m.mask_probability) {
            return Err(Error::Recipe(format!(
                "method.mask_probability = {} must be in [0, 1]",
                m.mask_probability
            )));
        }
        if m.patch_loss_weight > 0.0
            && !(m.mask_ratio_min > 0.0 && m.mask_ratio_min <= m.mask_ratio)
        {
            return Err(Error::Recipe(format!(
                "method.mask_ratio_min = {} must be in (0, method.mask_ratio = {}] (iBOT: 0.1 to 0.5)",
                m.mask_ratio_min, m.mask_ratio
            )));
        }
        if (m.patch_loss_weight > 0.0 || m.koleo_weight > 0.0) && !self.model.is_vit() {
            return Err(Error::Recipe(format!(
                "{}'s patch loss and KoLeo need ViT tokens: set model.arch to a ViT, or method.patch_loss_weight = 0 and method.koleo_weight = 0",
                m.name
            )));
        }
        Ok(())
    }

    pub fn data_path(&self) -> Option<PathBuf> {
        (!self.data.path.is_empty()).then(|| PathBuf::from(&self.data.path))
    }

    pub fn image_size(&self) -> Option<usize> {
        (self.data.image_size > 0).then_some(self.data.image_size)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("recipes serialise")
    }

    pub fn load(path: &Path) -> Result<Recipe> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let recipe = Self::from_table(
            parse_toml(&text, &path.display().to_string())?,
            &path.display().to_string(),
        )?;
        recipe.validate()?;
        Ok(recipe)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(method: MethodName, sets: &[&str]) -> Result<Recipe> {
        Recipe::resolve(&Overrides {
            method: Some(method),
            sets: sets.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    #[test]
    fn builtin_recipes_resolve_and_validate() {
        for m in MethodName::IMPLEMENTED {
            let r = resolve(m, &[]).unwrap();
            assert_eq!(r.method.name, m);
            // The resolved recipe round-trips through its own TOML.
            let back = Recipe::from_table(r.to_toml().parse().unwrap(), "test").unwrap();
            assert_eq!(back, r);
        }
    }

    #[test]
    fn every_shipped_recipe_file_resolves() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let r = Recipe::resolve(&Overrides {
                recipe_file: Some(path.clone()),
                ..Default::default()
            })
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(MethodName::IMPLEMENTED.contains(&r.method.name));
        }
    }

    #[test]
    fn set_overrides_typed_values() {
        let r = resolve(
            MethodName::Simsiam,
            &[
                "method.stop_gradient=false",
                "optim.base_lr=0.1",
                "augment.crop_scale=[0.3, 1.0]",
            ],
        )
        .unwrap();
        assert!(!r.method.stop_gradient);
        assert_eq!(r.optim.base_lr, 0.1);
        assert_eq!(r.augment.crop_scale, [0.3, 1.0]);
    }

    #[test]
    fn bad_values_name_the_field() {
        let err = resolve(MethodName::Byol, &["optim.learning_rate=0.1"])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key 'optim.learning_rate'") && err.contains("base_lr"),
            "{err}"
        );
        let err = resolve(MethodName::Byol, &["nosuch.key=1"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key 'nosuch'"), "{err}");
        let err = resolve(MethodName::Byol, &["train.batch_size=0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("train.batch_size"), "{err}");
        let err = resolve(MethodName::Byol, &["augment.local_crops=6"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("augment.local_crops"), "{err}");
        let err = resolve(MethodName::Byol, &["optim.base_lr=fast"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("--set"), "{err}");
        let err = Recipe::resolve(&Overrides {
            method: Some(MethodName::Byol),
            batch_size: Some(-4),
            ..Default::default()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("batch size"), "{err}");
    }
}
