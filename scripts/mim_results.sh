#!/usr/bin/env bash
# The README's masked-image-modeling table: trains the VQ tokenizer, then BEiT on its codes, MAE and
# SimMIM with their shipped recipes on the bundled Fashion-MNIST subset; evaluates each frozen
# encoder (kNN, linear probe) and fine-tunes it on 10% of the labels, each beside the same
# architecture from random initialisation. Writes runs/mim-results/<method>/ and table.md.
#
#   scripts/mim_results.sh
#   METHODS="mae" scripts/mim_results.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -q
out=${OUT:-runs/mim-results}
mkdir -p "$out"
methods=${METHODS:-"mae simmim beit"}
bin=./target/release/selfsup
if [[ " $methods " == *" beit "* ]]; then
  rm -rf "$out/vq-tokenizer"
  echo "training vq-tokenizer ..." >&2
  $bin train --method vq-tokenizer --out "$out/vq-tokenizer" --no-eval --json > "$out/vq-tokenizer.json"
fi
for m in $methods; do
  rm -rf "$out/$m"
  echo "training $m ..." >&2
  extra=()
  if [ "$m" = beit ]; then extra=(--set "method.tokenizer=$out/vq-tokenizer"); fi
  $bin train --method "$m" --out "$out/$m" "${extra[@]}" --json > "$out/$m.json"
  echo "fine-tuning $m ..." >&2
  $bin finetune --run "$out/$m" --json > "$out/$m.finetune.json"
done
python3 - "$out" $methods <<'PY'
import json, sys
out, methods = sys.argv[1], sys.argv[2:]
lines = [
    "| method | epochs | kNN top-1 (random init) | linear top-1 (random init) | fine-tune, 10% labels (random init) | train time |",
    "|---|---:|---:|---:|---:|---:|",
]
for m in methods:
    s = json.load(open(f"{out}/{m}.json"))
    f = json.load(open(f"{out}/{m}.finetune.json"))
    e, t, r = s["eval"], s["train"], s["eval"]["baselines"]["random_init"]
    lines.append(f"| {m} | {t['epochs']} | {e['knn_top1']:.3f} ({r['knn_top1']:.3f}) | {e['linear_top1']:.3f} ({r['linear_top1']:.3f}) "
                 f"| {f['top1']:.3f} ({f['random_init_top1']:.3f}) | {t['seconds']/60:.1f} min |")
vq = f"{out}/vq-tokenizer.json"
try:
    v = json.load(open(vq))
    c = v["diagnose"].get("codebook")
    lines.append(f"\nBEiT's tokenizer: {v['train']['epochs']} epochs, {v['train']['seconds']/60:.1f} min; "
                 f"{c['used']} of {c['size']} codes used on held-out images, perplexity {c['perplexity']:.0f}.")
except FileNotFoundError:
    pass
table = "\n".join(lines)
open(f"{out}/table.md", "w").write(table + "\n")
print(table)
PY
