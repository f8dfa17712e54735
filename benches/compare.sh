#!/usr/bin/env bash
# Side-by-side throughput and peak memory: selfsup (burn flex + selfsup's kernels) vs PyTorch /
# torchvision on this machine, same cores, in one run.
#
# Each benchmark runs ROUNDS times (default 3), alternating selfsup and PyTorch so that both
# see the same machine; the table shows the median of the rounds and their ratio.
# Needs `pip install torch torchvision` (benchmark tools, not dependencies of the crate).
#
#   benches/compare.sh              # all rows
#   ROUNDS=5 THREADS=2 benches/compare.sh
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-3}
export RAYON_NUM_THREADS=$threads
if ! python3 -c 'import torch, torchvision' 2>/dev/null; then
    echo "compare.sh: PyTorch is not installed; run: pip install torch torchvision" >&2
    exit 1
fi
cargo build -q --release --bench train_step --bench augment --bench loader
# 2,048 camera-sized (500×375) JPEGs cut from the sample photographs in data/photos/.
photos=target/bench-photos-500x375
if [ ! -d "$photos" ]; then
    cargo run -q --release --example photo_folder -- "$photos" photos --train 2048 --val 0 --size 500x375 --jpeg-only
fi
results=$(mktemp)
trap 'rm -f "$results"' EXIT
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    for model in resnet18 vit-tiny; do
        cargo bench -q --bench train_step -- "$model" 10 2>/dev/null | tail -1 >>"$results"
        python3 benches/torch_train_step.py "$model" 10 "$threads" | tail -1 >>"$results"
    done
    for args in "8192 32" "2048 224"; do
        set -- $args
        cargo bench -q --bench augment -- "$1" "$2" 2>/dev/null | tail -1 >>"$results"
        python3 benches/torch_augment.py "$1" "$threads" "$2" | tail -1 >>"$results"
    done
    cargo bench -q --bench loader -- "$photos" 2048 224 2>/dev/null | tail -1 >>"$results"
    python3 benches/torch_loader.py "$photos" 2048 "$threads" 224 | tail -1 >>"$results"
done
python3 - "$results" "$threads" "$rounds" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
threads, rounds = sys.argv[2], sys.argv[3]
names = {
    "train_step_resnet18_b64_32px": "ResNet-18 train step, batch 64, 32x32x3",
    "train_step_vit_tiny_p4_b64_32px": "ViT-Tiny/4 train step, batch 64, 32x32x3",
    "augment_two_simclr_views_32px": "two SimCLR views per image, 32x32",
    "augment_two_simclr_views_224px": "two SimCLR views per image, 224x224",
    "loader_two_simclr_views_224px_jpeg": "500x375 JPEG folder: decode + 2 views 224",
}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
print(f"{cpu} ({simd}), {threads} threads, median of {rounds} alternating rounds")
print(f"{'benchmark':<42} {'selfsup img/s':>13} {'pytorch img/s':>13} {'ratio':>6} {'peak MB selfsup / pytorch':>26}")
for bench, label in names.items():
    ours = [r for r in rows if r["bench"] == bench and r["framework"] == "selfsup"]
    theirs = [r for r in rows if r["bench"] == bench and r["framework"] != "selfsup"]
    if not ours or not theirs:
        continue
    a = statistics.median(r["images_per_s"] for r in ours)
    b = statistics.median(r["images_per_s"] for r in theirs)
    memory = ""
    if "peak_rss_mb" in ours[0] and "peak_rss_mb" in theirs[0]:
        memory = f"{max(r['peak_rss_mb'] for r in ours):.0f} / {max(r['peak_rss_mb'] for r in theirs):.0f}"
    print(f"{label:<42} {a:>13.1f} {b:>13.1f} {a / b:>5.2f}x {memory:>26}")
PY
