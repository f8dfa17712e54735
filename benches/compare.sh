#!/usr/bin/env bash
# Side-by-side throughput and peak memory: selfsup (burn flex + selfsup's kernels) vs PyTorch /
# torchvision on this machine, same cores, in one run.
#
# Each benchmark runs ROUNDS times (default 3), alternating selfsup and PyTorch so that both
# see the same machine; the table shows the median of the rounds and their ratio, and the most
# CPU time the hypervisor took from this VM during any of a row's runs ("steal %"; above 10% the
# row is named as one to rerun: on a shared host that alone can halve a run's speed).
# Needs `pip install torch torchvision lightly timm` (benchmark tools, not dependencies of the crate).
#
# ROWS picks the groups (default all): `steps` (train steps on random tensors: small networks
# at 32 px, ResNet-50 and ViT-S/16 at 224 px; also the fastest fp32 matrix product either
# framework runs on this machine, `benches/gemm.rs` and `benches/torch_gemm.py`, the ceiling of
# a run made of dense products), `augment`, `loader` (a JPEG folder), `pretrain` (one epoch of
# the shipped BYOL, SimCLR, MoCo v2, MAE and DINO recipes end to end on the bundled subset: data,
# augmentation, step, EMA, monitoring; against `benches/torch_pretrain.py`, the same recipe in
# PyTorch + lightly + timm). The step and epoch rows also get their model FLOP rate, set against
# that product's when the steps ran. PyTorch's pretrain rows run at 1 and THREADS
# threads without DataLoader workers and at 1 thread with one worker process, and keep the
# fastest (on a 2-core VM one computing thread beside one augmenting worker often wins).
# `knn` (not in the default set: about 25 minutes per seed) trains each of those recipes to its
# end at each of SEEDS (default 0; every round repeats them) in both frameworks, PyTorch at the
# same three settings, and prints the training time and held-out kNN of each: the time to the
# same accuracy. Its ratio is PyTorch's fastest setting's median seconds over selfsup's. SETTINGS
# (threads:workers, space-separated) replaces PyTorch's three settings, e.g. with the fastest one
# a `pretrain` round found, to make `knn` rows three times faster.
#
#   benches/compare.sh              # all rows
#   ROUNDS=5 THREADS=2 benches/compare.sh
#   ROWS=pretrain ROUNDS=1 benches/compare.sh
#   ROWS=pretrain PRETRAIN="mae dino" benches/compare.sh   # some of the pretrain rows
#   ROWS=knn ROUNDS=1 SEEDS="0 1" PRETRAIN=simclr benches/compare.sh  # time to a kNN accuracy
#   RAW=rounds.jsonl benches/compare.sh                    # also keep every run's JSON line
#   ROWS=knn SETTINGS=2:0 SEEDS="0 1 2 3 4" PRETRAIN=byol benches/compare.sh  # PyTorch at one setting
#   SIMD=avx2 benches/compare.sh                           # the AVX2 code paths (below)
#
# SIMD=avx2 measures both frameworks' AVX2 code on an AVX-512 machine: selfsup built without
# its `avx512` feature (its own kernels and the `gemm` crate then run their AVX2 versions;
# burn's few elementwise operations still pick AVX-512), PyTorch told to stop at AVX2
# (ATEN_CPU_CAPABILITY, oneDNN's ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS).
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${THREADS:-$(nproc)}
rounds=${ROUNDS:-3}
rows=${ROWS:-steps augment loader pretrain}
want() { [[ " $rows " == *" $1 "* ]]; }
# PyTorch's settings for the pretrain and knn rows, threads:workers — all threads computing, or
# one computing while a DataLoader worker process augments on the other core.
settings=${SETTINGS:-$(printf '%s\n' 1:0 "$threads":0 1:1 | sort -u)}
export RAYON_NUM_THREADS=$threads
if ! python3 -c 'import torch, torchvision, lightly, timm' 2>/dev/null; then
    echo "compare.sh: PyTorch, lightly or timm is not installed; run: pip install torch torchvision lightly timm" >&2
    exit 1
fi
cargo_flags=()
target=target
if [ "${SIMD:-}" = avx2 ]; then
    target=target/avx2
    cargo_flags=(--no-default-features --features cli --target-dir "$target")
    export ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2
elif [ -n "${SIMD:-}" ]; then
    echo "compare.sh: SIMD=$SIMD is not one this script knows; use SIMD=avx2, or leave it unset for the CPU's best" >&2
    exit 1
fi
cargo build -q --release "${cargo_flags[@]}" --bin selfsup --bench train_step --bench gemm --bench augment --bench loader
# 2,048 camera-sized (500×375) JPEGs cut from the sample photographs in data/photos/.
photos=target/bench-photos-500x375
if want loader && [ ! -d "$photos" ]; then
    cargo run -q --release --example photo_folder -- "$photos" photos --train 2048 --val 0 --size 500x375 --jpeg-only
fi
# The hypervisor's share of this VM's busy CPU time during each run ("steal" in /proc/stat): on
# a shared host a run can lose half its time to other guests, which no code change explains.
# steal_start before a run; the run's JSON line piped through with_steal gains `steal_pct`,
# read after the line's producer has exited.
steal_start() { stat_before=$(head -1 /proc/stat); }
with_steal() {
    python3 -c '
import json, sys
line = sys.stdin.read().strip().splitlines()[-1]
before = [int(v) for v in sys.argv[1].split()[1:]]
after = [int(v) for v in open("/proc/stat").readline().split()[1:]]
delta = [b - a for a, b in zip(before, after)]
row = json.loads(line)
busy = sum(delta[:8]) - delta[3] - delta[4]  # all but idle and iowait
row["steal_pct"] = round(100 * delta[7] / max(busy, 1), 1)
print(json.dumps(row))' "$stat_before"
}
results=$(mktemp)
runs=$(mktemp -d)
trap 'rm -rf "$results" "$runs"' EXIT
# One epoch of selfsup's own `train` as a user runs it; images/s over the training loop, as
# train.json reports it, and the process's peak resident memory.
selfsup_pretrain() {
    python3 - "$1" "$runs/$1" "$target/release/selfsup" <<'PY'
import json, resource, subprocess, sys
method, out, selfsup = sys.argv[1], sys.argv[2], sys.argv[3]
subprocess.run([selfsup, "train", "--method", method, "--epochs", "1", "--no-eval",
                "--out", out, "--json"], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
train = json.load(open(f"{out}/train.json"))
peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
# The step's counted FLOPs per image (forward and backward of every view, targets forward).
plan = json.loads(subprocess.run([selfsup, "plan", "--method", method, "--json"], check=True,
                                 capture_output=True, text=True).stdout)["plan"]
print(json.dumps({"bench": f"pretrain_{method}_epoch", "framework": "selfsup",
                  "images_per_s": train["images_per_s"], "peak_rss_mb": peak_rss_mb,
                  "gflops_per_image": plan["train_gflops_per_image"], "model": plan["model"]}))
PY
    rm -rf "${runs:?}/$1"
}
# A shipped recipe trained to its end at seed $2, then `eval`: training seconds (train.json)
# and the held-out kNN top-1.
selfsup_knn() {
    python3 - "$1" "$2" "$runs/$1-s$2" "$target/release/selfsup" <<'PY'
import json, subprocess, sys
method, seed, out, selfsup = sys.argv[1:5]
subprocess.run([selfsup, "train", "--method", method, "--seed", seed, "--out", out, "--json"],
               check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
train, scores = json.load(open(f"{out}/train.json")), json.load(open(f"{out}/eval.json"))
print(json.dumps({"bench": f"knn_{method}", "framework": "selfsup", "seconds": train["seconds"],
                  "knn": scores["knn_top1"], "epochs": train["epochs"], "seed": int(seed)}))
PY
    rm -rf "${runs:?}/$1-s$2"
}
recipe_epochs() { python3 -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["train"]["epochs"])' "recipes/$1.toml"; }
for round in $(seq "$rounds"); do
    echo "round $round of $rounds" >&2
    if want steps; then
        for model in resnet18 vit-tiny resnet50-224 vit-s16-224; do
            steal_start
            cargo bench -q "${cargo_flags[@]}" --bench train_step -- "$model" 10 2>/dev/null | tail -1 | with_steal >>"$results"
            steal_start
            python3 benches/torch_train_step.py "$model" 10 "$threads" | tail -1 | with_steal >>"$results"
        done
        # Each framework's fp32 matrix product alone: what a step made only of products could reach.
        cargo bench -q "${cargo_flags[@]}" --bench gemm 2>/dev/null | grep '^{' >>"$results"
        python3 benches/torch_gemm.py "$threads" >>"$results"
    fi
    if want augment; then
        for args in "8192 32" "2048 224"; do
            set -- $args
            steal_start
            cargo bench -q "${cargo_flags[@]}" --bench augment -- "$1" "$2" 2>/dev/null | tail -1 | with_steal >>"$results"
            steal_start
            python3 benches/torch_augment.py "$1" "$threads" "$2" | tail -1 | with_steal >>"$results"
        done
    fi
    if want loader; then
        steal_start
        cargo bench -q "${cargo_flags[@]}" --bench loader -- "$photos" 2048 224 2>/dev/null | tail -1 | with_steal >>"$results"
        steal_start
        python3 benches/torch_loader.py "$photos" 2048 "$threads" 224 | tail -1 | with_steal >>"$results"
    fi
    if want pretrain; then
        for method in ${PRETRAIN:-byol simclr moco-v2 mae dino}; do
            steal_start
            selfsup_pretrain "$method" | with_steal >>"$results"
            for setting in $settings; do
                steal_start
                python3 benches/torch_pretrain.py "$method" "${setting%:*}" "${setting#*:}" | tail -1 | with_steal >>"$results"
            done
        done
    fi
    if want knn; then
        for method in ${PRETRAIN:-byol simclr moco-v2 mae dino}; do
            for seed in ${SEEDS:-0}; do
                steal_start
                selfsup_knn "$method" "$seed" | with_steal >>"$results"
                for setting in $settings; do
                    steal_start
                    python3 benches/torch_pretrain.py "$method" "${setting%:*}" "${setting#*:}" \
                        --epochs "$(recipe_epochs "$method")" --knn --seed "$seed" | tail -1 |
                        with_steal >>"$results"
                done
            done
        done
    fi
done
if [ -n "${RAW:-}" ]; then cp "$results" "$RAW"; fi
python3 - "$results" "$threads" "$rounds" "${SIMD:-}" <<'PY'
import json, statistics, sys
rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
threads, rounds, limit = sys.argv[2], sys.argv[3], sys.argv[4]
names = {
    "train_step_resnet18_b64_32px": "ResNet-18 train step, batch 64, 32x32x3",
    "train_step_vit_tiny_p4_b64_32px": "ViT-Tiny/4 train step, batch 64, 32x32x3",
    "train_step_resnet50_b32_224px": "ResNet-50 train step, batch 32, 224x224x3",
    "train_step_vit_s16_b32_224px": "ViT-S/16 train step, batch 32, 224x224x3",
    "augment_two_simclr_views_32px": "two SimCLR views per image, 32x32",
    "augment_two_simclr_views_224px": "two SimCLR views per image, 224x224",
    "loader_two_simclr_views_224px_jpeg": "500x375 JPEG folder: decode + 2 views 224",
    "pretrain_byol_epoch": "BYOL recipe, 1 epoch end to end (lightly)",
    "pretrain_simclr_epoch": "SimCLR recipe, 1 epoch end to end (lightly)",
    "pretrain_moco-v2_epoch": "MoCo v2 recipe, 1 epoch end to end (lightly)",
    "pretrain_mae_epoch": "MAE recipe, 1 epoch end to end (lightly + timm)",
    "pretrain_dino_epoch": "DINO recipe, 1 epoch end to end (lightly + timm)",
}
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
flags = next((l.split(":", 1)[1].split() for l in open("/proc/cpuinfo") if l.startswith("flags")), [])
simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "SSE"
if limit == "avx2":
    simd += "; both frameworks on their AVX2 code paths"
print(f"{cpu} ({simd}), {threads} threads, median of {rounds} alternating rounds")
width = max(len(label) for label in names.values()) + len(" [pytorch N thr, N wkr]")
if any(not r["bench"].startswith("knn_") for r in rows):
    print(f"{'benchmark':<{width}} {'selfsup img/s':>13} {'pytorch img/s':>13} {'ratio':>6} {'peak MB selfsup / pytorch':>26} {'steal %':>8}")
noisy = []
medians = {}  # bench: (selfsup's images/s, pytorch's at its best setting, one selfsup row)
for bench, label in names.items():
    ours = [r for r in rows if r["bench"] == bench and r["framework"] == "selfsup"]
    theirs = [r for r in rows if r["bench"] == bench and r["framework"] != "selfsup"]
    if not ours or not theirs:
        continue
    a = statistics.median(r["images_per_s"] for r in ours)
    # PyTorch's best setting (threads, DataLoader workers): the median per setting, then the fastest.
    setting = lambda r: (r.get("threads"), r.get("workers", 0))
    settings = {setting(r) for r in theirs}
    best = max(settings, key=lambda t: statistics.median(r["images_per_s"] for r in theirs if setting(r) == t))
    theirs = [r for r in theirs if setting(r) == best]
    b = statistics.median(r["images_per_s"] for r in theirs)
    if len(settings) > 1:
        label = f"{label} [pytorch {best[0]} thr, {best[1]} wkr]"
    memory = ""
    if "peak_rss_mb" in ours[0] and "peak_rss_mb" in theirs[0]:
        memory = f"{max(r['peak_rss_mb'] for r in ours):.0f} / {max(r['peak_rss_mb'] for r in theirs):.0f}"
    # The most CPU time the host took during any of the row's runs, both frameworks.
    steal = max(r.get("steal_pct", 0.0) for r in rows if r["bench"] == bench)
    if steal > 10:
        noisy.append(label.split(" [")[0])
    print(f"{label:<{width}} {a:>13.1f} {b:>13.1f} {a / b:>5.2f}x {memory:>26} {steal:>8.1f}")
    medians[bench] = (a, b, ours[0])
# The rows' arithmetic rate: model FLOPs per image (6 x the forward's multiply-accumulates for a
# step; the plan's count of every view's forward and backward for an epoch) times images/s.
flops = lambda r: r.get("gflops_per_image") or 6 * r.get("macs_per_image", 0) / 1e9
rated = [bench for bench in medians if flops(medians[bench][2])]
if rated:
    # Against the fastest fp32 matrix product either framework ran here, when the steps ran.
    gemm = [r for r in rows if r["bench"].startswith("gemm ") and str(r["threads"]) == threads]
    rate = lambda fw: max(statistics.median(r["gflops"] for r in gemm if r["bench"] == b and r["framework"] == fw)
                          for b in {r["bench"] for r in gemm if r["framework"] == fw})
    peak = max(rate(fw) for fw in {r["framework"] for r in gemm}) if gemm else None
    # The CPU's own f32 FMA throughput at the same threads: no run of either framework is faster.
    fma = [r["gflops"] for r in rows if r["bench"] == "fma peak" and str(r["threads"]) == threads]
    fma = statistics.median(fma) if fma else None
    print()
    print("model GFLOP/s: FLOPs per image (a step: 6 x its forward multiply-accumulates; an epoch: `selfsup plan`'s")
    print("count for the recipe's step, the work selfsup does: it skips rows that nothing reads, so PyTorch's epoch")
    print("does somewhat more than counted) x images/s.")
    if peak:
        print(f"'of gemm': a share of the fastest fp32 matrix product measured here, on ViT-S/16's shapes:")
        print(f"{peak:.1f} GFLOP/s (selfsup's {rate('selfsup'):.1f}, pytorch's {rate('pytorch'):.1f}). 'bound': the ratio "
              f"to pytorch's of a run going")
        print("wholly at that rate; dense products bound a ViT, but a ResNet's 3x3 convolutions run as Winograd, with")
        print("fewer multiplications than counted, so none is shown for it.")
    if fma:
        simd = next(r["simd"] for r in rows if r["bench"] == "fma peak")
        print(f"'FMA bound': the same against the CPU's f32 FMA peak, {fma:.1f} GFLOP/s ({simd}, {threads} threads,")
        print("independent chains; `cargo bench --bench gemm`): what no implementation can pass at the same work.")
    print(f"{'benchmark':<{width}} {'selfsup GFLOP/s':>15} {'of gemm':>8} {'pytorch GFLOP/s':>15} {'of gemm':>8} {'bound':>6} {'FMA bound':>9}")
    share = lambda x: f"{x / peak:>8.0%}" if peak else f"{'':>8}"
    for bench in rated:
        a, b, ours = medians[bench]
        a, b = a * flops(ours), b * flops(ours)
        # A step's model (vit-tiny, resnet50-224, ...) or an epoch's plan ("vit/4 (128-d × 6)").
        vit = ours.get("model", "").startswith("vit")
        bound = f"{peak / b:>5.2f}x" if peak and vit else f"{'-':>6}"
        fma_bound = f"{fma / b:>8.2f}x" if fma and vit else f"{'-':>9}"
        print(f"{names[bench]:<{width}} {a:>15.1f} {share(a)} {b:>15.1f} {share(b)} {bound} {fma_bound}")
knn = [r for r in rows if r["bench"].startswith("knn_")]
if knn:
    print()
    print(f"time to a kNN accuracy: each recipe trained to its end, medians over seeds {sorted({r['seed'] for r in knn})}")
    print(f"{'recipe':<10} {'epochs':>6} {'selfsup s':>10} {'kNN':>6} {'pytorch s':>10} {'kNN':>6} {'setting':>14} {'time ratio':>11} {'steal %':>8}")
    for method in dict.fromkeys(r["bench"][4:] for r in knn):
        ours = [r for r in knn if r["bench"] == f"knn_{method}" and r["framework"] == "selfsup"]
        theirs = [r for r in knn if r["bench"] == f"knn_{method}" and r["framework"] != "selfsup"]
        if not ours or not theirs:
            continue
        setting = lambda r: (r["threads"], r["workers"])
        best = min({setting(r) for r in theirs},
                   key=lambda t: statistics.median(r["seconds"] for r in theirs if setting(r) == t))
        theirs = [r for r in theirs if setting(r) == best]
        med = lambda rs, key: statistics.median(r[key] for r in rs)
        steal = max(r.get("steal_pct", 0.0) for r in ours + theirs)
        if steal > 10:
            noisy.append(f"kNN {method}")
        print(f"{method:<10} {ours[0]['epochs']:>6} {med(ours, 'seconds'):>10.1f} {med(ours, 'knn'):>6.3f} "
              f"{med(theirs, 'seconds'):>10.1f} {med(theirs, 'knn'):>6.3f} {f'{best[0]} thr, {best[1]} wkr':>14} "
              f"{med(theirs, 'seconds') / med(ours, 'seconds'):>10.2f}x {steal:>8.1f}")
if noisy:
    print(f"steal above 10% during {', '.join(noisy)}: the host took CPU time from this VM in those runs; rerun them when it is quieter before reading their ratios")
PY
