#!/usr/bin/env bash
# The README's results table: trains every implemented method with its shipped recipe on the
# bundled Fashion-MNIST subset (or DATA=<folder>), then evaluates (kNN, linear probe, baselines)
# and diagnoses each run. Writes runs/results/<method>/ and runs/results/table.md.
#
#   scripts/results.sh                      # all methods, ResNet-18 width 8, 4 epochs each
#   METHODS="simclr vicreg" scripts/results.sh
#   EXTRA="--epochs 8" scripts/results.sh   # any `selfsup train` flags, applied to every run
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
out=${OUT:-runs/results}
mkdir -p "$out"
methods=${METHODS:-"simclr moco-v1 moco-v2 moco-v3 byol simsiam barlow-twins vicreg"}
data_flag=()
if [ -n "${DATA:-}" ]; then data_flag=(--data "$DATA"); fi
for m in $methods; do
  rm -rf "$out/$m"
  echo "training $m ..." >&2
  # shellcheck disable=SC2086
  ./target/release/selfsup train --method "$m" --out "$out/$m" "${data_flag[@]}" ${EXTRA:-} --json \
    > "$out/$m.json"
done
python3 - "$out" $methods <<'PY'
import json, sys, tomllib
out, methods = sys.argv[1], sys.argv[2:]
rows = []
for m in methods:
    s = json.load(open(f"{out}/{m}.json"))
    recipe = tomllib.load(open(f"{out}/{m}/recipe.toml", "rb"))
    model = recipe["model"]
    backbone = model["arch"] + (f" w{model['width']}" if model["arch"].startswith("resnet") else f"/{model['patch_size']}")
    e, d, t = s["eval"], s["diagnose"], s["train"]
    rows.append((m, backbone, t["epochs"], e["knn_top1"], e["linear_top1"],
                 e["baselines"]["random_init"]["knn_top1"], d["effective_rank"], d["dim"], t["seconds"]))
base = json.load(open(f"{out}/{methods[0]}.json"))["eval"]
lines = [
    f"| method | backbone | epochs | kNN top-1 | linear top-1 | random-init kNN | effective rank | train time |",
    "|---|---|---:|---:|---:|---:|---:|---:|",
]
for m, b, ep, knn, lin, rnd, er, dim, sec in rows:
    lines.append(f"| {m} | {b} | {ep} | {knn:.3f} | {lin:.3f} | {rnd:.3f} | {er:.1f} / {dim} | {sec/60:.1f} min |")
p = base["baselines"]["pixels"]
lines.append(f"\nRaw pixels on the same split: kNN {p['knn_top1']:.3f}, linear {p['linear_top1']:.3f}. "
             f"{base['train_images']} train / {base['test_images']} held-out images ({base['data']}).")
table = "\n".join(lines)
open(f"{out}/table.md", "w").write(table + "\n")
print(table)
PY
