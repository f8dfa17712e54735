"""torchvision reference for benches/augment.rs: two SimCLR-style views per side x side x 3 image
(RandomResizedCrop, flip, ColorJitter p=0.8, RandomGrayscale 0.2, GaussianBlur p=0.5 with SimCLR's
kernel of a tenth of the side, normalise), with a DataLoader using as many worker processes as
cores.

python3 benches/torch_augment.py [images] [workers] [side]"""
import json, sys, time

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2 as T

n = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
workers = int(sys.argv[2]) if len(sys.argv) > 2 else 2
side = int(sys.argv[3]) if len(sys.argv) > 3 else 32
torch.set_num_threads(1)
blur_kernel = max(3, round(side * 0.1) | 1)  # as selfsup::augment::views::blur_kernel_size
pipeline = T.Compose([
    T.RandomResizedCrop(side, scale=(0.08, 1.0), antialias=False),
    T.RandomHorizontalFlip(),
    T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
    T.RandomGrayscale(p=0.2),
    T.RandomApply([T.GaussianBlur(blur_kernel, sigma=(0.1, 2.0))], p=0.5),
    T.ToDtype(torch.float32, scale=True),
    T.Normalize([0.5] * 3, [0.25] * 3),
])
images = torch.from_numpy(((np.arange(n * 3 * side * side, dtype=np.uint64) * 2654435761) >> 13).astype(np.uint8)
                          .reshape(n, 3, side, side))

class TwoViews(Dataset):
    def __len__(self):
        return n
    def __getitem__(self, i):
        img = images[i]
        return pipeline(img), pipeline(img)

loader = DataLoader(TwoViews(), batch_size=min(256, n), num_workers=workers, drop_last=True)
start = time.perf_counter()
count = 0
for a, b in loader:
    count += a.shape[0]
print(json.dumps({"bench": f"augment_two_simclr_views_{side}px", "framework": "torchvision",
                  "images_per_s": round(count / (time.perf_counter() - start), 1), "threads": workers}))
