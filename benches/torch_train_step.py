"""PyTorch reference for benches/train_step.rs, batch 64, 32x32x3, forward + backward + SGD step
(images/s from the median step time; peak resident memory of the process):
`resnet18` = torchvision ResNet-18 with the small-image stem (3x3 conv, stride 1, no max-pool);
`vit-tiny` = a timm-style ViT-Tiny, patch 4 (fused qkv, pre-norm, GELU MLP, fixed position
embedding, CLS output), attention through F.scaled_dot_product_attention as timm does;
`resnet50-224` / `vit-s16-224`: torchvision's ResNet-50 and the same ViT at 384-d, 6 heads,
patch 16, batch 32 of 224x224x3.

python3 benches/torch_train_step.py [resnet18|vit-tiny|resnet50-224|vit-s16-224] [steps] [threads]"""
import json, resource, sys, time

import torch
import torch.nn as nn
import torch.nn.functional as F


def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


import_rss_mb = rss_mb()  # what importing torch alone holds, before any model exists

args = sys.argv[1:]
model_name = args[0] if args and not args[0].isdigit() else "resnet18"
nums = [int(a) for a in args if a.isdigit()]
steps = nums[0] if nums else 10
threads = nums[1] if len(nums) > 1 else 2
torch.set_num_threads(threads)


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.heads = heads
        self.norm1 = nn.LayerNorm(d, eps=1e-6)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d, eps=1e-6)
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x):
        b, n, d = x.shape
        qkv = self.qkv(self.norm1(x)).reshape(b, n, 3, self.heads, d // self.heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d)
        x = x + self.proj(a)
        return x + self.fc2(F.gelu(self.fc1(self.norm2(x))))


class VitTiny(nn.Module):
    def __init__(self, side=32, patch=4, d=192, depth=12, heads=3):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, d, patch, patch)
        n = (side // patch) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, d))
        self.register_buffer("pos_embed", torch.randn(1, n + 1, d) * 0.02)
        self.blocks = nn.ModuleList(Block(d, heads) for _ in range(depth))
        self.norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)[:, 0]


batch, side = (32, 224) if model_name.endswith("-224") else (64, 32)
if model_name == "vit-tiny":
    model = VitTiny()
    bench = "train_step_vit_tiny_p4_b64_32px"
elif model_name == "vit-s16-224":
    model = VitTiny(side=224, patch=16, d=384, depth=12, heads=6)
    bench = "train_step_vit_s16_b32_224px"
elif model_name == "resnet50-224":
    import torchvision

    model = torchvision.models.resnet50()
    model.fc = torch.nn.Identity()
    bench = "train_step_resnet50_b32_224px"
else:
    import torchvision

    model = torchvision.models.resnet18(num_classes=10)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    model.maxpool = torch.nn.Identity()
    model.fc = torch.nn.Identity()
    bench = "train_step_resnet18_b64_32px"
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
x = torch.randn(batch, 3, side, side)
times = []
for step in range(steps + 2):
    start = time.perf_counter()
    loss = model(x).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    loss.item()
    if step >= 2:
        times.append(time.perf_counter() - start)
median = sorted(times)[len(times) // 2]
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"bench": bench, "framework": "pytorch", "images_per_s": round(batch / median, 2),
                  "peak_rss_mb": round(peak_mb), "import_rss_mb": round(import_rss_mb),
                  "threads": threads}))
