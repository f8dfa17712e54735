"""PyTorch reference for benches/gpu_step.rs on a CUDA GPU: torchvision ResNet-50 and timm
ViT-S/16, batch 64, 224 px, forward + backward + SGD step (median of 5 steps after 2 warm-up
steps), fp32 without TF32 (as burn's Vulkan backend computes) and with TF32 (PyTorch's default
for convolutions), plus the 4096^3 fp32 matrix product.

python3 benches/torch_gpu_step.py"""
import json, time

import timm
import torch
import torchvision

dev = "cuda"
for tf32 in (False, True):
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    a = torch.randn(4096, 4096, device=dev)
    b = torch.randn(4096, 4096, device=dev)
    a @ b
    torch.cuda.synchronize()
    start = time.time()
    for _ in range(20):
        a @ b
    torch.cuda.synchronize()
    tflops = 20 * 2 * 4096**3 / (time.time() - start) / 1e12
    print(json.dumps({"bench": "matmul_4096_f32", "framework": "torch", "tf32": tf32, "tflops": round(tflops, 1)}))
    models = {
        "resnet50": torchvision.models.resnet50(),
        "vit_small_p16": timm.create_model("vit_small_patch16_224", num_classes=0),
    }
    for name, model in models.items():
        model = model.to(dev).train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        x = torch.randn(64, 3, 224, 224, device=dev)
        forward, step = [], []
        for i in range(7):
            torch.cuda.synchronize()
            start = time.time()
            y = model(x)
            torch.cuda.synchronize()
            forward.append(time.time() - start)
            loss = y.square().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            torch.cuda.synchronize()
            step.append(time.time() - start)
        f, s = sorted(forward[2:])[2], sorted(step[2:])[2]
        print(json.dumps({"bench": f"train_step_{name}_b64_224px", "framework": "torch", "tf32": tf32,
                          "images_per_s": round(64 / s, 1), "forward_s": round(f, 4), "step_s": round(s, 4)}))
