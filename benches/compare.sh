#!/usr/bin/env bash
# Side-by-side throughput: selfsup (burn flex) vs PyTorch / torchvision on this machine, same cores.
# Needs `pip install torch torchvision` (a benchmark tool, not a dependency of the crate).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
export RAYON_NUM_THREADS=$threads
ours_step=$(cargo bench -q --bench train_step -- resnet18 10 2>/dev/null | tail -1)
torch_step=$(python3 benches/torch_train_step.py resnet18 10 "$threads" | tail -1)
ours_vit=$(cargo bench -q --bench train_step -- vit-tiny 10 2>/dev/null | tail -1)
torch_vit=$(python3 benches/torch_train_step.py vit-tiny 10 "$threads" | tail -1)
ours_aug=$(cargo bench -q --bench augment -- 8192 2>/dev/null | tail -1)
torch_aug=$(python3 benches/torch_augment.py 8192 "$threads" | tail -1)
python3 - "$ours_step" "$torch_step" "$ours_vit" "$torch_vit" "$ours_aug" "$torch_aug" <<'PY'
import json, sys
r = [json.loads(a) for a in sys.argv[1:]]
print(f"{'benchmark':<34} {'selfsup img/s':>14} {'pytorch img/s':>14} {'ratio':>7}")
for o, t in zip(r[0::2], r[1::2]):
    print(f"{o['bench']:<34} {o['images_per_s']:>14.1f} {t['images_per_s']:>14.1f} {o['images_per_s'] / t['images_per_s']:>6.2f}x")
PY
