#!/usr/bin/env bash
# Prepares GPU builds: copies cubecl-spirv 0.11.3 (pulled in by burn 0.22.1's Vulkan backend) out of
# cargo's registry into target/gpu-patch/ and applies gpu/cubecl-spirv-shared-memory.patch, which
# gpu/patch.toml then substitutes for the registry crate. Why: the README's "GPU" section.
# scripts/gpu_cargo.sh runs it before every GPU build; run it alone only to inspect the result.
set -euo pipefail
cd "$(dirname "$0")/.."
version=0.11.3
dest=target/gpu-patch/cubecl-spirv
patch=gpu/cubecl-spirv-shared-memory.patch
# Already prepared with this patch: leave the files (and cargo's build of them) alone.
if cmp -s "$patch" "$dest/.selfsup-applied.patch"; then exit 0; fi
manifest=$(cargo metadata -q --format-version 1 --filter-platform "$(rustc -vV | sed -n "s/^host: //p")" |
  grep -o "\"manifest_path\":\"[^\"]*/cubecl-spirv-$version/Cargo.toml\"" | head -n1 | cut -d'"' -f4)
if [ -z "$manifest" ]; then
  echo "gpu_setup: cubecl-spirv $version is not in Cargo.lock; burn's version changed —" \
    "check whether upstream fixed shared memory (README, GPU) and update or drop gpu/" >&2
  exit 1
fi
rm -rf "$dest"
mkdir -p "$(dirname "$dest")"
cp -R "$(dirname "$manifest")" "$dest"
git apply --unsafe-paths --directory="$dest" "$patch"
cp "$patch" "$dest/.selfsup-applied.patch"
echo "gpu_setup: patched cubecl-spirv $version in $dest"
