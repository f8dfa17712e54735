#!/usr/bin/env bash
# The README's 224-px runs: writes a photo folder of mixed sizes and aspect ratios (Fashion-MNIST
# upscaled to 160–400 px by examples/photo_folder.rs), pretrains one 224-px recipe on it, and
# evaluates the frozen encoder beside a random-init one and raw pixels. Writes OUT/<recipe>/ and
# OUT/<recipe>.json.
#
#   scripts/photos_224.sh recipes/photos/simclr-resnet50.toml 4
#   DEVICE=gpu scripts/photos_224.sh recipes/photos/dino-vit-s16.toml 3 --batch-size 64
#
# BIN: a folder holding prebuilt `selfsup` and `photo_folder` (default: build them here).
# DATA: the folder to train on (default: OUT/fashion-224, generated once: TRAIN + VAL images).
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:?usage: scripts/photos_224.sh RECIPE [EPOCHS] [train args…]}
epochs=${2:-}
shift $(( $# >= 2 ? 2 : 1 ))
if [[ -z ${BIN:-} ]]; then
  if [[ ${DEVICE:-cpu} == gpu ]]; then
    scripts/gpu_cargo.sh build --release -q --bin selfsup --example photo_folder
  else
    cargo build --release -q --bin selfsup --example photo_folder
  fi
  BIN=target/release
  cp target/release/examples/photo_folder target/release/photo_folder
fi
out=${OUT:-runs/photos-224}
data=${DATA:-$out/fashion-224}
mkdir -p "$out"
if [[ ! -d $data ]]; then
  echo "writing $data ..." >&2
  "$BIN/photo_folder" "$data" fashion --train "${TRAIN:-10000}" --val "${VAL:-2000}" --sides 160-400 >&2
fi
name=$(basename "$recipe" .toml)
rm -rf "${out:?}/$name"
args=(train --recipe "$recipe" --data "$data" --out "$out/$name" --device "${DEVICE:-cpu}" --json)
[[ -n $epochs ]] && args+=(--epochs "$epochs")
echo "training $name ..." >&2
"$BIN/selfsup" "${args[@]}" "$@" > "$out/$name.json"
python3 - "$out/$name.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
t, e = s["train"], s["eval"]
r = e["baselines"]
print(f"{t['method']}: {t['epochs']} epochs, {t['steps']} steps, {t['seconds']:.0f} s, "
      f"{t['images_per_s']:.1f} img/s | kNN {e['knn_top1']:.3f} (random init {r['random_init']['knn_top1']:.3f}, "
      f"pixels {r['pixels']['knn_top1']:.3f}) | linear {e['linear_top1']:.3f} "
      f"(random init {r['random_init']['linear_top1']:.3f}) | verdict {s['diagnose'].get('verdict', '?')}")
PY
