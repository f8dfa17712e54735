"""PyTorch reference for benches/train_step.rs: torchvision ResNet-18 with the small-image stem
(3x3 conv, stride 1, no max-pool), batch 64, 32x32x3, forward + backward + SGD step."""
import json, sys, time

import torch
import torchvision

threads = int(sys.argv[2]) if len(sys.argv) > 2 else 2
torch.set_num_threads(threads)
steps = int(sys.argv[1]) if len(sys.argv) > 1 else 10
model = torchvision.models.resnet18(num_classes=10)
model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
model.maxpool = torch.nn.Identity()
model.fc = torch.nn.Identity()
opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
x = torch.randn(64, 3, 32, 32)
timed = 0.0
for step in range(steps + 2):
    start = time.perf_counter()
    loss = model(x).square().mean()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    loss.item()
    if step >= 2:
        timed += time.perf_counter() - start
print(json.dumps({"bench": "train_step_resnet18_b64_32px", "framework": "pytorch",
                  "images_per_s": round(steps * 64 / timed, 2), "threads": threads}))
