//! The student's and the teacher's networks: a backbone, the DINO head, and iBOT's extras.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor};

use super::config::DinoConfig;
use crate::nn::backbone::ImageShape;
use crate::nn::cost::{Stage, shape};
use crate::nn::dino_head::{DinoHead, DinoHeadConfig};
use crate::nn::{Backbone, ModelConfig};

/// Backbone and heads: the student, and the teacher that mirrors it parameter for parameter.
#[derive(Module, Debug)]
pub struct Network {
    pub encoder: Backbone,
    pub head: DinoHead,
    /// DINOv2's untied patch head (iBOT's patches share `head`).
    pub patch_head: Option<DinoHead>,
    /// iBOT's learned embedding of a masked patch (zeros at init, as in its code).
    pub mask_token: Option<Param<Tensor<3>>>,
}

/// One pass of a network over a batch of crops.
pub struct Features {
    /// The pooled representation (the ViT's [CLS]) `[n, d]`.
    pub cls: Tensor<2>,
    /// Patch tokens `[n, patches, d]`, when asked for.
    pub patches: Option<Tensor<3>>,
}

impl Network {
    /// `model`'s backbone for `shape` images with the heads `m` describes.
    pub fn new(m: &DinoConfig, model: &ModelConfig, shape: ImageShape, device: &Device) -> Self {
        let encoder = model.init(shape, device);
        let dim = encoder.out_dim();
        let head = |prototypes| {
            let mut widths = vec![dim];
            widths.extend(&m.projector);
            DinoHeadConfig { widths, prototypes }.init(device)
        };
        let patch_loss = m.patch_loss_weight > 0.0;
        Network {
            head: head(m.prototypes),
            patch_head: (patch_loss && !m.shared_head).then(|| head(m.patch_prototypes)),
            mask_token: patch_loss.then(|| Param::from_tensor(Tensor::zeros([1, 1, dim], device))),
            encoder,
        }
    }

    /// The cost table of one `side`-pixel crop: the backbone (every token when `with_patches`,
    /// as [`Network::features`]), the head on its pooled token, and the patch head on `masked`
    /// of its patch tokens (iBOT's loss reads the masked ones).
    pub fn stages(&self, side: usize, with_patches: bool, masked: usize) -> Vec<Stage> {
        let mut stages = if with_patches {
            self.encoder.model_costs(side)
        } else {
            self.encoder.costs(side)
        };
        let [_, prototypes] = self.head.last_layer.dims();
        let head = Stage::new(
            "head",
            shape(&[prototypes]),
            self.head.num_params(),
            self.head.cost(),
        );
        stages.push(head);
        if masked > 0 {
            let own = self.patch_head.as_ref().map_or(0, |h| h.num_params());
            let cost = self.patch_head().cost().times(masked as u64);
            let [_, k] = self.patch_head().last_layer.dims();
            stages.push(Stage::new("patch head", shape(&[masked, k]), own, cost));
        }
        stages
    }

    pub fn patch_head(&self) -> &DinoHead {
        self.patch_head.as_ref().unwrap_or(&self.head)
    }

    /// The backbone over `images`, with `mask` (`[n, patches]`, 1 = masked) replaced by the mask
    /// token, and the patch tokens kept when `with_patches`.
    pub fn features(
        &self,
        images: Tensor<4>,
        mask: Option<Tensor<2>>,
        with_patches: bool,
    ) -> Features {
        let Some(vit) = self.encoder.vit().filter(|_| with_patches) else {
            return Features {
                cls: self.encoder.forward(images),
                patches: None,
            };
        };
        let tokens = match (mask, &self.mask_token) {
            (Some(mask), Some(token)) => vit.forward_masked(images, mask, token.val()),
            _ => vit.forward_tokens(images),
        };
        Features {
            cls: vit.pool(tokens.clone()),
            patches: Some(vit.patch_part(tokens)),
        }
    }
}
