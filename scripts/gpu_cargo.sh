#!/usr/bin/env bash
# cargo for GPU builds: `scripts/gpu_cargo.sh <subcommand> [args…]` runs
# `cargo <subcommand> --features gpu --config gpu/patch.toml [args…]` after scripts/gpu_setup.sh,
# and puts Cargo.lock back afterwards (the patch rewrites cubecl-spirv's entry while it applies).
#   scripts/gpu_cargo.sh build --release
#   scripts/gpu_cargo.sh test --release --test gpu -- --nocapture
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: scripts/gpu_cargo.sh <cargo subcommand> [args…]" >&2; exit 2; }
scripts/gpu_setup.sh >/dev/null
cp Cargo.lock target/gpu-patch/Cargo.lock.orig
trap 'cp target/gpu-patch/Cargo.lock.orig Cargo.lock' EXIT
sub=$1
shift
cargo --config gpu/patch.toml "$sub" --features gpu "$@"
