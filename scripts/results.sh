#!/usr/bin/env bash
# The README's results tables: trains every implemented method with its shipped recipe on the
# bundled Fashion-MNIST subset (or DATA=<folder>) at each of SEEDS, then evaluates (kNN, linear
# probe, baselines) and diagnoses each run. Writes runs/results/<method>-s<seed>/,
# runs/results/table.md (mean ± std over the seeds, beside random init at the same seeds) and
# runs/results/seeds.md (every run, and whether it beat its random-init twin).
#
#   scripts/results.sh                               # all methods, seeds 0 1 2, 4 epochs each
#   METHODS=byol SEEDS="0 1 2 3 4" scripts/results.sh   # the quickstart at five seeds
#   EXTRA="--epochs 8" scripts/results.sh            # any `selfsup train` flags, for every run
#   OUT=runs/r BIN=/opt/selfsup/bin scripts/results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
# BIN: a folder holding a prebuilt `selfsup` (default: build it here).
if [[ -z ${BIN:-} ]]; then
  cargo build --release -q
  BIN=target/release
fi
out=${OUT:-runs/results}
mkdir -p "$out"
methods=${METHODS:-"simclr moco-v1 moco-v2 moco-v3 byol simsiam barlow-twins vicreg"}
seeds=${SEEDS:-"0 1 2"}
data_flag=()
if [ -n "${DATA:-}" ]; then data_flag=(--data "$DATA"); fi
for m in $methods; do
  for seed in $seeds; do
    rm -rf "$out/$m-s$seed"
    echo "training $m, seed $seed ..." >&2
    # shellcheck disable=SC2086
    "$BIN/selfsup" train --method "$m" --seed "$seed" --out "$out/$m-s$seed" \
      "${data_flag[@]}" ${EXTRA:-} --json > "$out/$m-s$seed.json"
  done
done
python3 - "$out" "$seeds" $methods <<'PY'
import json, statistics, sys, tomllib
out, seeds, methods = sys.argv[1], sys.argv[2].split(), sys.argv[3:]

def pm(xs, digits=3):
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{statistics.mean(xs):.{digits}f} ± {sd:.{digits}f}"

rows, runs = [], []
for m in methods:
    got = []
    for seed in seeds:
        s = json.load(open(f"{out}/{m}-s{seed}.json"))
        e, d, t = s["eval"], s["diagnose"], s["train"]
        r = e["baselines"]["random_init"]
        got.append((e["knn_top1"], e["linear_top1"], r["knn_top1"], r["linear_top1"],
                    d["effective_rank"], d["dim"], t["seconds"], t["epochs"]))
        runs.append(f"| {m} | {seed} | {e['knn_top1']:.3f} | {r['knn_top1']:.3f} | "
                    f"{100 * (e['knn_top1'] - r['knn_top1']):+.1f} | {e['linear_top1']:.3f} | "
                    f"{r['linear_top1']:.3f} | {'yes' if e['knn_top1'] > r['knn_top1'] else 'NO'} |")
    recipe = tomllib.load(open(f"{out}/{m}-s{seeds[0]}/recipe.toml", "rb"))
    model = recipe["model"]
    backbone = model["arch"] + (f" w{model['width']}" if model["arch"].startswith("resnet") else f"/{model['patch_size']}")
    col = lambda i: [g[i] for g in got]
    margins = [g[0] - g[2] for g in got]
    rows.append(f"| {m} | {backbone} | {got[0][7]} | {pm(col(0))} | {pm(col(1))} | {pm(col(2))} | "
                f"{pm([100 * x for x in margins], 1)} | {sum(x > 0 for x in margins)}/{len(margins)} | "
                f"{pm(col(4), 1)} / {got[0][5]} | {statistics.mean(col(6)) / 60:.1f} min |")
base = json.load(open(f"{out}/{methods[0]}-s{seeds[0]}.json"))["eval"]
p = base["baselines"]["pixels"]
table = "\n".join([
    f"Mean ± std over seeds {', '.join(seeds)}.",
    "",
    "| method | backbone | epochs | kNN top-1 | linear top-1 | random-init kNN | kNN gain (points) | beats random init | effective rank | train time |",
    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    *rows,
    "",
    f"Raw pixels on the same split: kNN {p['knn_top1']:.3f}, linear {p['linear_top1']:.3f}. "
    f"{base['train_images']} train / {base['test_images']} held-out images ({base['data']}).",
])
open(f"{out}/table.md", "w").write(table + "\n")
per_seed = "\n".join([
    "| method | seed | kNN | random-init kNN | gain (points) | linear | random-init linear | beats random init (kNN) |",
    "|---|---:|---:|---:|---:|---:|---:|---|",
    *runs,
])
open(f"{out}/seeds.md", "w").write(per_seed + "\n")
print(table)
print()
print(per_seed)
PY
