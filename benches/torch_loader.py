"""torchvision reference for benches/loader.rs: ImageFolder + DataLoader(num_workers=N) decoding
JPEGs with PIL and making two SimCLR views at 224 px (RandomResizedCrop, flip, ColorJitter p=0.8,
RandomGrayscale 0.2, GaussianBlur(23) p=0.5, ToTensor, Normalize) — the standard PyTorch pipeline.
The time includes building the dataset index, as selfsup's does. Peak memory is the sum over the
main process and its workers (sampled every 50 ms), since each worker is its own process.

python3 benches/torch_loader.py FOLDER [images] [workers] [side]"""
import json, os, sys, threading, time

import torch
from torch.utils.data import DataLoader, Subset
from torchvision import datasets, transforms as T

folder = sys.argv[1]
n = int(sys.argv[2]) if len(sys.argv) > 2 else 2048
workers = int(sys.argv[3]) if len(sys.argv) > 3 else 2
side = int(sys.argv[4]) if len(sys.argv) > 4 else 224
torch.set_num_threads(1)


def rss_mb(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(c) for c in f.read().split()]
    except OSError:
        return []


peak = [0.0]
done = threading.Event()


def sample():
    me = os.getpid()
    while not done.is_set():
        total = rss_mb(me) + sum(rss_mb(c) for c in children(me))
        peak[0] = max(peak[0], total)
        time.sleep(0.05)


threading.Thread(target=sample, daemon=True).start()
view = T.Compose([
    T.RandomResizedCrop(side, scale=(0.08, 1.0)),
    T.RandomHorizontalFlip(),
    T.RandomApply([T.ColorJitter(0.4, 0.4, 0.2, 0.1)], p=0.8),
    T.RandomGrayscale(p=0.2),
    T.RandomApply([T.GaussianBlur(max(3, round(side * 0.1) | 1), sigma=(0.1, 2.0))], p=0.5),
    T.ToTensor(),
    T.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225]),
])


class TwoViews:
    def __call__(self, img):
        return view(img), view(img)


start = time.perf_counter()
dataset = datasets.ImageFolder(os.path.join(folder, "train") if os.path.isdir(os.path.join(folder, "train")) else folder,
                               transform=TwoViews())
dataset = Subset(dataset, range(min(n, len(dataset))))
loader = DataLoader(dataset, batch_size=min(256, len(dataset)), num_workers=workers, shuffle=True,
                    drop_last=True)
count = 0
for (a, b), _ in loader:
    count += a.shape[0]
seconds = time.perf_counter() - start
done.set()
print(json.dumps({"bench": f"loader_two_simclr_views_{side}px_jpeg", "framework": "torchvision",
                  "images_per_s": round(count / seconds, 1), "peak_rss_mb": round(peak[0]),
                  "threads": workers, "images": count}))
