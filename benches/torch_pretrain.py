"""End-to-end pretraining throughput of PyTorch + lightly with selfsup's shipped recipes on the
bundled Fashion-MNIST subset (10,000 28x28 grayscale images), lightly's heads, losses and
augmentations with the recipe's settings:
- byol, simclr, moco-v2: ResNet-18 with the small-image stem at width 8, 28 px, batch 128, SGD;
- mae: images resized to 32 px, a timm ViT (4-px patches, 128 wide, 6 blocks, 4 heads, learned
  positions as the recipe's, mean pool) through lightly's masked ViT, a 2-block 64-wide decoder
  (fixed sin-cos positions), 75% masking, normalised-pixel loss, batch 128, AdamW;
- dino: 32 px, a timm ViT (8-px patches, 64 wide, 4 blocks, learned positions, CLS), 2 global
  32-px + 2 local 16-px crops, a 64 -> 256 -> 256 -> 64 head onto 1024 prototypes, EMA teacher,
  centring, per-tensor gradient clipping at 3, last layer frozen the first epoch, batch 64, AdamW.
EMA momentum as the recipes: MoCo's constant 0.99, BYOL's and DINO's cosine from 0.99 to 1;
BYOL's loss as the paper's and selfsup's (not lightly's example's quarter-scale one); MoCo's key
encoder in two BatchNorm groups (shuffling BN); AdamW sparing 1-D parameters from decay, DINO's
decay on a cosine from 0.04 to 0.4; DINO's colour jitter lightly's and selfsup's default.
One epoch (load, augment, forward, backward, update, EMA); images/s over the epoch, the same span
as selfsup's `train.json` `images_per_s`. With --knn (bench `knn_METHOD`), trains --epochs and reports the
kNN accuracy (cosine, k=20, T=0.1) on the 2,000 held-out images, as `selfsup eval`.

python3 benches/torch_pretrain.py METHOD THREADS WORKERS [--epochs N] [--knn] [--seed S]
METHOD: byol | simclr | moco-v2 | mae | dino. Prints one JSON line.
"""
import copy
import gzip
import json
import math
import os
import resource
import sys
import time
import warnings

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

# torch's notice that lightly's DINO head uses the older weight_norm API, once per process.
warnings.filterwarnings("ignore", category=FutureWarning)

from lightly.loss import DINOLoss, NegativeCosineSimilarity, NTXentLoss
from lightly.models import utils
from lightly.models.modules import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    DINOProjectionHead,
    MaskedVisionTransformerDecoderTIMM,
    MaskedVisionTransformerTIMM,
    MoCoProjectionHead,
    SimCLRProjectionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import BYOLTransform, DINOTransform, MAETransform, MoCoV2Transform, SimCLRTransform
from lightly.transforms.byol_transform import BYOLView1Transform, BYOLView2Transform
from timm.models.vision_transformer import VisionTransformer

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "fashion-mnist")
NORMALIZE = {"mean": [0.2860], "std": [0.3530]}
BATCH = {"dino": 64}
VIT_SIZE = 32
WARMUP_EPOCHS = {"byol": 0.0, "simclr": 0.5, "moco-v2": 0.5, "mae": 1.0, "dino": 1.0}
# The ViT recipes' AdamW: base lr, betas, weight decay at the first and at the last step.
ADAMW = {"mae": (1.5e-3, (0.9, 0.95), 0.05, 0.05), "dino": (2e-3, (0.9, 0.999), 0.04, 0.4)}


def cosine_between(start, end, step, total):
    """selfsup's `cosine_between`: start at step 0, end at the last step."""
    return end + (start - end) * (math.cos(math.pi * min(1.0, step / max(1, total))) + 1) / 2


def ema_momentum(method, step, total, base=0.99):
    """The recipes' target momentum: MoCo's constant; BYOL's and DINO's cosine from base to 1."""
    return base if method == "moco-v2" else cosine_between(base, 1.0, step, total)


def read_idx(name):
    raw = gzip.open(os.path.join(DATA, name)).read()
    if name.find("labels") >= 0:
        return np.frombuffer(raw, dtype=np.uint8, offset=8)
    n, h, w = np.frombuffer(raw, dtype=">u4", count=3, offset=4)
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, h, w)


class BasicBlock(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


class ResNet18Small(nn.Module):
    """selfsup's `arch = "resnet18"`, `stem = "small"`: 3x3 stride-1 stem, no max-pool."""

    def __init__(self, width, channels=1):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        blocks, cin = [], width
        for i in range(4):
            cout = width * 2**i
            blocks += [BasicBlock(cin, cout, 1 if i == 0 else 2), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.out_dim = cin

    def forward(self, x):
        return F.adaptive_avg_pool2d(self.blocks(self.stem(x)), 1).flatten(1)


def transform(method):
    if method == "mae":
        return MAETransform(input_size=VIT_SIZE, min_scale=0.2, normalize=NORMALIZE)
    if method == "dino":
        # lightly's default jitter (0.4 / 0.4 / 0.2 / 0.1 at p 0.8) is selfsup's, which the recipe keeps.
        return DINOTransform(
            global_crop_size=VIT_SIZE, global_crop_scale=(0.4, 1.0), local_crop_size=16,
            local_crop_scale=(0.05, 0.4), n_local_views=2,
            gaussian_blur=(1.0, 0.1, 0.5), solarization_prob=0.0, normalize=NORMALIZE,
        )
    common = dict(input_size=28, min_scale=0.3, normalize=NORMALIZE)
    if method == "byol":
        return BYOLTransform(
            view_1_transform=BYOLView1Transform(**common, gaussian_blur=1.0, solarization_prob=0.0),
            view_2_transform=BYOLView2Transform(**common, gaussian_blur=0.1, solarization_prob=0.0),
        )
    if method == "simclr":
        return SimCLRTransform(**common, gaussian_blur=0.5)
    return MoCoV2Transform(**common, gaussian_blur=0.5)


class Views(torch.utils.data.Dataset):
    def __init__(self, images, method):
        self.images, self.transform = images, transform(method)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(Image.fromarray(self.images[i], mode="L"))


def vit(patch, dim, depth, pool, dynamic=False):
    # fc_norm=False: the final LayerNorm on every token before pooling, as selfsup's ViT.
    return VisionTransformer(
        img_size=VIT_SIZE, patch_size=patch, in_chans=1, embed_dim=dim, depth=depth, num_heads=4,
        num_classes=0, global_pool=pool, fc_norm=False, dynamic_img_size=dynamic,
    )


class Mae(nn.Module):
    """lightly's MAE example with the recipe's sizes; features for kNN: the mean patch token."""

    def __init__(self):
        super().__init__()
        self.patch = 4
        # The recipe's `pos_embed = "learned"`; lightly's own default is frozen sin-cos.
        self.backbone = MaskedVisionTransformerTIMM(
            vit=vit(self.patch, 128, 6, "avg"), pos_embed_initialization="learn"
        )
        self.embed = nn.Linear(128, 64)
        self.decoder = MaskedVisionTransformerDecoderTIMM(
            num_patches=self.backbone.vit.patch_embed.num_patches, embed_dim=64, depth=2, num_heads=4,
        )
        self.predict = nn.Linear(64, self.patch**2)

    def features(self, x):
        return self.backbone.encode(x)[:, 1:].mean(1)

    def loss(self, views):
        images = views[0]
        b, n = images.shape[0], self.backbone.sequence_length
        idx_keep, idx_mask = utils.random_token_mask(size=(b, n), mask_ratio=0.75)
        encoded = self.backbone.encode(images=images, idx_keep=idx_keep)
        x = utils.set_at_index(utils.repeat_token(self.decoder.mask_token, (b, n)), idx_keep, self.embed(encoded))
        pred = self.predict(utils.get_at_index(self.decoder(x), idx_mask))
        target = utils.get_at_index(utils.patchify(images, self.patch), idx_mask - 1)
        mean, var = target.mean(-1, keepdim=True), target.var(-1, keepdim=True)
        return F.mse_loss(pred, (target - mean) / (var + 1e-6).sqrt())


class Dino(nn.Module):
    """lightly's DINO example with the recipe's sizes; features for kNN: the CLS token."""

    def __init__(self):
        super().__init__()
        self.backbone = vit(8, 64, 4, "token", dynamic=True)
        self.head = DINOProjectionHead(64, 256, 64, 1024, freeze_last_layer=1)
        self.teacher_backbone = copy.deepcopy(self.backbone)
        self.teacher_head = DINOProjectionHead(64, 256, 64, 1024)
        self.teacher_head.load_state_dict(self.head.state_dict())
        deactivate_requires_grad(self.teacher_backbone)
        deactivate_requires_grad(self.teacher_head)
        self.criterion = DINOLoss(output_dim=1024, warmup_teacher_temp=0.04, teacher_temp=0.04,
                                  student_temp=0.1, center_momentum=0.9)
        self.epoch = 0

    def features(self, x):
        return self.backbone(x)

    def loss(self, views):
        update_momentum(self.backbone, self.teacher_backbone, m=self.momentum)
        update_momentum(self.head, self.teacher_head, m=self.momentum)
        globals_, locals_ = torch.cat(views[:2]), torch.cat(views[2:])
        with torch.no_grad():
            teacher = self.teacher_head(self.teacher_backbone(globals_)).chunk(2)
        student = [*self.head(self.backbone(globals_)).chunk(2), *self.head(self.backbone(locals_)).chunk(2)]
        return self.criterion(list(teacher), student, epoch=self.epoch)

    def after_backward(self):
        grads = [p.grad for p in self.parameters() if p.grad is not None]
        norms = torch._foreach_norm(grads)
        torch._foreach_mul_(grads, [torch.clamp(3.0 / (n + 1e-6), max=1.0) for n in norms])
        self.head.cancel_last_layer_gradients(self.epoch)


class Pretrain(nn.Module):
    def __init__(self, method, width):
        super().__init__()
        self.method = method
        self.backbone = ResNet18Small(width)
        d = self.backbone.out_dim
        if method == "byol":
            self.projection = BYOLProjectionHead(d, 512, 128)
            self.prediction = BYOLPredictionHead(128, 512, 128)
            self.criterion = NegativeCosineSimilarity()
        elif method == "simclr":
            self.projection = SimCLRProjectionHead(d, 512, 128, num_layers=2)
            self.criterion = NTXentLoss(temperature=0.5)
        else:
            self.projection = MoCoProjectionHead(d, 512, 128)
            self.criterion = NTXentLoss(temperature=0.1, memory_bank_size=(1024, 128))
        if method != "simclr":
            self.backbone_momentum = copy.deepcopy(self.backbone)
            self.projection_momentum = copy.deepcopy(self.projection)
            deactivate_requires_grad(self.backbone_momentum)
            deactivate_requires_grad(self.projection_momentum)

    def features(self, x):
        return self.backbone(x)

    def momentum_branch(self, x):
        return self.projection_momentum(self.backbone_momentum(x)).detach()

    def shuffled_keys(self, x, groups=2):
        """MoCo's shuffling BN as the recipe's `shuffle_bn_groups = 2`: the key encoder sees the
        permuted batch in sub-batches, each with its own BatchNorm statistics."""
        perm = torch.randperm(len(x))
        keys = torch.cat([self.momentum_branch(chunk) for chunk in x[perm].chunk(groups)])
        return keys[torch.argsort(perm)]

    def loss(self, views):
        x0, x1 = views
        if self.method == "simclr":
            return self.criterion(self.projection(self.backbone(x0)), self.projection(self.backbone(x1)))
        update_momentum(self.backbone, self.backbone_momentum, m=self.momentum)
        update_momentum(self.projection, self.projection_momentum, m=self.momentum)
        if self.method == "moco-v2":
            return self.criterion(self.projection(self.backbone(x0)), self.shuffled_keys(x1))
        p0 = self.prediction(self.projection(self.backbone(x0)))
        p1 = self.prediction(self.projection(self.backbone(x1)))
        # The paper's (and selfsup's) loss, (2 - 2 cos) summed over both directions: four times
        # the gradient of lightly's example, 0.5 * (-cos - cos), which matters under SGD.
        negative_cos = self.criterion(p0, self.momentum_branch(x1)) + self.criterion(p1, self.momentum_branch(x0))
        return 4 + 2 * negative_cos


@torch.no_grad()
def knn_accuracy(model, train, train_labels, test, test_labels, k=20, t=0.1):
    model.eval()

    def features(images):
        x = torch.from_numpy(images.copy()).float().div(255).sub(NORMALIZE["mean"][0]).div(NORMALIZE["std"][0])
        return F.normalize(torch.cat([model.features(b.unsqueeze(1)) for b in x.split(256)]), dim=1)

    bank, queries = features(train), features(test)
    labels = torch.from_numpy(train_labels.astype(np.int64))
    sim, idx = (queries @ bank.T).topk(k, dim=1)
    votes = torch.zeros(len(queries), 10).scatter_add_(1, labels[idx], (sim / t).exp())
    return (votes.argmax(1).numpy() == test_labels).mean()


def main():
    method, threads, workers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    epochs = int(sys.argv[sys.argv.index("--epochs") + 1]) if "--epochs" in sys.argv else 1
    seed = int(sys.argv[sys.argv.index("--seed") + 1]) if "--seed" in sys.argv else 0
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    images = read_idx("train-images-idx3-ubyte.gz")
    batch = BATCH.get(method, 128)
    if method in ("mae", "dino"):
        # `data.image_size = 32`: selfsup resizes the dataset once when it loads it.
        resize = lambda a: np.stack([np.asarray(Image.fromarray(i).resize((VIT_SIZE, VIT_SIZE), Image.BILINEAR)) for i in a])
        images = resize(images)
        model = Mae() if method == "mae" else Dino()
        params = [p for p in model.parameters() if p.requires_grad]
        base_lr, betas, decay, final_decay = ADAMW[method]
        # As selfsup's AdamW: biases and norms (the 1-D parameters) are not decayed.
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": decay},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
        ]
        optimizer = torch.optim.AdamW(groups, lr=base_lr * batch / 256, betas=betas)
    else:
        resize = lambda a: a
        model = Pretrain(method, width=8)
        params = [p for p in model.parameters() if p.requires_grad]
        lr = 0.3 * batch / 256
        decay = final_decay = None
        optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4 if method == "moco-v2" else 1e-5)
    loader = torch.utils.data.DataLoader(
        Views(images, method), batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0,
    )
    # The recipes' schedule, stepped per batch: linear warmup from lr/W, then cosine to 0.
    per_epoch = len(images) // batch
    warmup = round(WARMUP_EPOCHS[method] * per_epoch)
    total = epochs * per_epoch
    schedule = lambda step: (step + 1) / warmup if step < warmup else cosine_between(1.0, 0.0, step - warmup, total - warmup)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    steps = 0
    start = time.perf_counter()
    for epoch in range(epochs):
        model.train()
        model.epoch = epoch
        for views in loader:
            model.momentum = ema_momentum(method, steps, total)
            if decay != final_decay:
                decayed = optimizer.param_groups[0]
                decayed["weight_decay"] = cosine_between(decay, final_decay, steps, total)
            loss = model.loss(views)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if hasattr(model, "after_backward"):
                model.after_backward()
            optimizer.step()
            scheduler.step()
            steps += 1
    seconds = time.perf_counter() - start
    row = {
        "bench": f"pretrain_{method}_epoch",
        "framework": "pytorch+lightly",
        "images_per_s": round(steps * batch / seconds, 2),
        "seconds": round(seconds, 2),
        "threads": threads,
        "workers": workers,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if "--knn" in sys.argv:
        row["knn"] = float(knn_accuracy(
            model, images, read_idx("train-labels-idx1-ubyte.gz"),
            resize(read_idx("t10k-images-idx3-ubyte.gz")), read_idx("t10k-labels-idx1-ubyte.gz"),
        ))
        # A run to the recipe's end, not an epoch's throughput: compare.sh's `knn` rows.
        row.update(bench=f"knn_{method}", epochs=epochs, seed=seed)
    print(json.dumps(row))


if __name__ == "__main__":
    main()
