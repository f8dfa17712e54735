"""Export parity, checked by PyTorch: trains small encoders of each kind for one epoch on 512
images of the bundled Fashion-MNIST subset, exports each with `selfsup export`, builds the PyTorch
model its card describes (timm / torchvision), loads the weights with strict=True, and compares
its features on the 2,000 test images with `selfsup embed` on the same images; then reads the
export back (`selfsup embed --init`) and compares again.

Needs: pip install torch torchvision timm safetensors numpy (tools, not crate dependencies).

    python3 scripts/export_parity.py [--bin target/release/selfsup] [--out runs/export-parity]
"""
import argparse, gzip, json, os, shutil, struct, subprocess, sys

import numpy as np
import safetensors.torch
import torch

RUNS = {
    "resnet18-w8-small": ["--method", "byol"],
    "resnet18-w64-imagenet": ["--method", "byol", "--set", "model.width=64", "--set", "model.stem=imagenet"],
    "resnet50-w16-small": ["--method", "simclr", "--set", "model.arch=resnet50", "--set", "model.width=16"],
    "vit-tiny-cls": ["--method", "moco-v3", "--set", "model.arch=vit-tiny", "--set", "model.depth=4"],
    "vit-registers-mean-layerscale": ["--method", "simclr", "--set", "model.arch=vit", "--set", "model.embed_dim=64",
                                      "--set", "model.depth=2", "--set", "model.heads=2", "--set", "model.registers=2",
                                      "--set", "model.pool=mean", "--set", "model.layer_scale=0.1",
                                      "--set", "model.pos_embed=learned"],
}


def idx_images(path):
    raw = gzip.open(path).read()
    n, h, w = struct.unpack(">3I", raw[4:16])
    return np.frombuffer(raw, np.uint8, offset=16).reshape(n, 1, h, w)


def small_idx(src, dst, n_train):
    """The first n_train training images (and all test images) as an IDX folder."""
    os.makedirs(dst, exist_ok=True)
    for name in os.listdir(src):
        raw = gzip.open(os.path.join(src, name)).read()
        if name.startswith("train"):
            magic, n = struct.unpack(">2I", raw[:8])
            header = 16 if "images" in name else 8
            per = (len(raw) - header) // n
            raw = raw[:4] + struct.pack(">I", n_train) + raw[8:header] + raw[header:header + per * n_train]
        with gzip.open(os.path.join(dst, name), "wb") as f:
            f.write(raw)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/release/selfsup")
    ap.add_argument("--out", default="runs/export-parity")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    data = os.path.join(args.out, "fashion-512")
    small_idx(os.path.join(root, "data", "fashion-mnist"), data, 512)
    test = torch.from_numpy(idx_images(os.path.join(data, "t10k-images-idx3-ubyte.gz")).astype(np.float32))
    rows, worst = [], 0.0
    for name, train_args in RUNS.items():
        run = os.path.join(args.out, name)
        shutil.rmtree(run, ignore_errors=True)
        print(f"{name}: training one epoch ...", file=sys.stderr)
        subprocess.run([args.bin, "train", *train_args, "--data", data, "--epochs", "1", "--no-eval",
                        "--out", run, "--json"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([args.bin, "export", "--run", run, "--json"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([args.bin, "embed", "--run", run, "--split", "test", "--out", f"{run}/test.npy", "--json"],
                       check=True, stdout=subprocess.DEVNULL)
        subprocess.run([args.bin, "embed", "--init", f"{run}/encoder.safetensors", "--data", data, "--split", "test",
                        "--out", f"{run}/test-reimported.npy", "--json"], check=True, stdout=subprocess.DEVNULL)
        reimported = np.abs(np.load(f"{run}/test-reimported.npy") - np.load(f"{run}/test.npy")).max()
        card = json.load(open(f"{run}/encoder.json"))
        scope = {}
        exec("\n".join(card["python"]), scope)
        model = scope["model"].eval()
        model.load_state_dict(safetensors.torch.load_file(f"{run}/{card['weights']}"), strict=True)
        mean = torch.tensor(card["mean"]).view(1, -1, 1, 1)
        std = torch.tensor(card["std"]).view(1, -1, 1, 1)
        with torch.no_grad():
            ours = torch.from_numpy(np.load(f"{run}/test.npy"))
            theirs = torch.cat([model((test[i:i + 250] / 255 - mean) / std) for i in range(0, len(test), 250)])
        diff = (ours - theirs).abs().max().item()
        scale = theirs.abs().max().item()
        worst = max(worst, diff / scale)
        rows.append((name, card["constructor"].split("(")[0], tuple(theirs.shape), diff, scale, diff / scale, reimported))
    print("| encoder | PyTorch model | features | max abs diff | max abs feature | relative | re-imported (embed --init) |")
    print("|---|---|---|---:|---:|---:|---:|")
    for name, ctor, shape, diff, scale, rel, back in rows:
        print(f"| {name} | `{ctor}` | {shape[0]} × {shape[1]} | {diff:.2e} | {scale:.3g} | {rel:.2e} | {back:.1e} |")
        worst = max(worst, back / scale)
    print(f"worst relative difference {worst:.2e}: {'PASS' if worst <= 1e-4 else 'FAIL'} (≤ 1e-4)")
    sys.exit(0 if worst <= 1e-4 else 1)


if __name__ == "__main__":
    main()
