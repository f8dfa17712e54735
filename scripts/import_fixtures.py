"""Writes the import fixtures in tests/fixtures/import/ (run once; the files are committed, so tests
need no PyTorch): small random-init encoders as PyTorch saves them, and their features on a few
bundled Fashion-MNIST images computed by PyTorch itself.

- vit-p14-reg4: timm VisionTransformer, patch 14, 56 px, 128-d x 2 blocks (64-wide heads),
  4 registers, LayerScale, CLS pooling. `.safetensors` in timm's layout (no_embed_class); `.pth`
  in DINOv2's (register_tokens, a mask_token, CLS's position row) under MAE's top-level "model".
- resnet18-w8: torchvision ResNet-18 (ImageNet stem) at width 8 for 1-channel images, BatchNorm
  statistics made non-trivial. `.safetensors` as is; `.pth` as a DDP training checkpoint
  ({"state_dict": {"module.conv1.weight": ...}, "epoch": 3}), with its classifier.
- inputs.safetensors: `inputs` [8, 1, 56, 56] (normalised) and each model's `features`.

Needs: pip install torch torchvision timm safetensors numpy.

    python3 scripts/import_fixtures.py
"""
import gzip, os, struct

import numpy as np
import safetensors.torch
import timm
import torch
import torchvision

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
out = os.path.join(root, "tests", "fixtures", "import")
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)

raw = gzip.open(os.path.join(root, "data", "fashion-mnist", "t10k-images-idx3-ubyte.gz")).read()
images = torch.from_numpy(np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 1, 28, 28)[:8].astype(np.float32))
inputs = torch.nn.functional.interpolate(images, size=56, mode="nearest")
inputs = (inputs / 255 - 0.5) / 0.25

vit = timm.models.vision_transformer.VisionTransformer(
    img_size=56, patch_size=14, in_chans=1, embed_dim=128, depth=2, num_heads=2, reg_tokens=4,
    no_embed_class=True, init_values=0.1, class_token=True, global_pool="token", num_classes=0,
).eval()
with torch.no_grad():
    for p in vit.parameters():  # timm zero-initialises biases and some tokens: make every value count
        p.add_(torch.randn_like(p) * 0.02)
    vit_features = vit(inputs)
sd = {k: v.contiguous() for k, v in vit.state_dict().items()}
safetensors.torch.save_file(sd, os.path.join(out, "vit-p14-reg4.safetensors"), metadata={"format": "pt"})
dinov2 = {k: v.clone() for k, v in sd.items() if k not in ("reg_token", "pos_embed")}
dinov2["register_tokens"] = sd["reg_token"].clone()
dinov2["pos_embed"] = torch.cat([torch.zeros(1, 1, 128), sd["pos_embed"]], dim=1)
dinov2["mask_token"] = torch.zeros(1, 128)
torch.save({"model": dinov2, "epoch": 10}, os.path.join(out, "vit-p14-reg4.pth"))

resnet = torchvision.models.resnet18()
resnet.conv1 = torch.nn.Conv2d(1, 8, kernel_size=7, stride=2, padding=3, bias=False)
resnet.bn1 = torch.nn.BatchNorm2d(8)
resnet.inplanes = 8
for i, n in enumerate([2, 2, 2, 2]):
    setattr(resnet, f"layer{i + 1}", resnet._make_layer(torchvision.models.resnet.BasicBlock, 8 << i, n, stride=1 if i == 0 else 2))
resnet.fc = torch.nn.Linear(64, 10)
with torch.no_grad():
    for m in resnet.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.1)
            m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
            m.weight.copy_(torch.rand_like(m.weight) + 0.5)
            m.bias.copy_(torch.randn_like(m.bias) * 0.1)
resnet.eval()
sd = {k: v.contiguous() for k, v in resnet.state_dict().items()}
safetensors.torch.save_file(sd, os.path.join(out, "resnet18-w8.safetensors"), metadata={"format": "pt"})
torch.save({"state_dict": {f"module.{k}": v for k, v in sd.items()}, "epoch": 3}, os.path.join(out, "resnet18-w8.pth"))
resnet.fc = torch.nn.Identity()
with torch.no_grad():
    resnet_features = resnet(inputs)

safetensors.torch.save_file(
    {"inputs": inputs.contiguous(), "vit-p14-reg4": vit_features.contiguous(), "resnet18-w8": resnet_features.contiguous()},
    os.path.join(out, "inputs.safetensors"),
)
with open(os.path.join(out, "README.md"), "w") as f:
    f.write("Written by `scripts/import_fixtures.py` with torch %s, timm %s, torchvision %s.\n"
            % (torch.__version__, timm.__version__, torchvision.__version__))
for name in sorted(os.listdir(out)):
    print(name, os.path.getsize(os.path.join(out, name)))
