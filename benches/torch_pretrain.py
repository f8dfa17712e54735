"""End-to-end pretraining throughput of PyTorch + lightly with selfsup's shipped recipe: the bundled
Fashion-MNIST subset (10,000 28x28 grayscale images), ResNet-18 with the small-image stem at
width 8, batch 128, SGD, lightly's heads, losses and augmentations with the recipe's settings.
One epoch (78 steps: load, augment, forward, backward, update, EMA); images/s over the epoch, the
same span as selfsup's `train.json` `images_per_s`. With --knn, trains the recipe's epochs and
reports the kNN accuracy (cosine, k=20, T=0.1) on the 2,000 held-out images, as `selfsup eval`.

python3 benches/torch_pretrain.py METHOD THREADS WORKERS [--epochs N] [--knn] [--seed S]
METHOD: byol | simclr | moco-v2. Prints one JSON line.
"""
import copy
import gzip
import json
import os
import resource
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

from lightly.loss import NegativeCosineSimilarity, NTXentLoss
from lightly.models.modules import (
    BYOLPredictionHead,
    BYOLProjectionHead,
    MoCoProjectionHead,
    SimCLRProjectionHead,
)
from lightly.models.utils import deactivate_requires_grad, update_momentum
from lightly.transforms import BYOLTransform, MoCoV2Transform, SimCLRTransform
from lightly.transforms.byol_transform import BYOLView1Transform, BYOLView2Transform

DATA = os.path.join(os.path.dirname(__file__), "..", "data", "fashion-mnist")
NORMALIZE = {"mean": [0.2860], "std": [0.3530]}
BATCH = 128


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

    def momentum_branch(self, x):
        return self.projection_momentum(self.backbone_momentum(x)).detach()

    def loss(self, x0, x1):
        if self.method == "simclr":
            return self.criterion(self.projection(self.backbone(x0)), self.projection(self.backbone(x1)))
        update_momentum(self.backbone, self.backbone_momentum, m=0.99)
        update_momentum(self.projection, self.projection_momentum, m=0.99)
        if self.method == "moco-v2":
            return self.criterion(self.projection(self.backbone(x0)), self.momentum_branch(x1))
        p0 = self.prediction(self.projection(self.backbone(x0)))
        p1 = self.prediction(self.projection(self.backbone(x1)))
        return 0.5 * (self.criterion(p0, self.momentum_branch(x1)) + self.criterion(p1, self.momentum_branch(x0)))


@torch.no_grad()
def knn_accuracy(backbone, train, train_labels, test, test_labels, k=20, t=0.1):
    backbone.eval()

    def features(images):
        x = torch.from_numpy(images.copy()).float().div(255).sub(NORMALIZE["mean"][0]).div(NORMALIZE["std"][0])
        return F.normalize(torch.cat([backbone(b.unsqueeze(1)) for b in x.split(256)]), dim=1)

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
    model = Pretrain(method, width=8)
    params = [p for p in model.parameters() if p.requires_grad]
    lr = 0.3 * BATCH / 256
    optimizer = torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4 if method == "moco-v2" else 1e-5)
    loader = torch.utils.data.DataLoader(
        Views(images, method), batch_size=BATCH, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0,
    )
    steps = 0
    start = time.perf_counter()
    for _ in range(epochs):
        model.train()
        for views in loader:
            loss = model.loss(views[0], views[1])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            steps += 1
    seconds = time.perf_counter() - start
    row = {
        "bench": f"pretrain_{method}_epoch",
        "framework": "pytorch+lightly",
        "images_per_s": round(steps * BATCH / seconds, 2),
        "seconds": round(seconds, 2),
        "threads": threads,
        "workers": workers,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    if "--knn" in sys.argv:
        row["knn"] = float(knn_accuracy(
            model.backbone, images, read_idx("train-labels-idx1-ubyte.gz"),
            read_idx("t10k-images-idx3-ubyte.gz"), read_idx("t10k-labels-idx1-ubyte.gz"),
        ))
        row["epochs"] = epochs
    print(json.dumps(row))


if __name__ == "__main__":
    main()
