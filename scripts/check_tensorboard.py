#!/usr/bin/env python3
"""Reads a run's TensorBoard event files with TensorBoard's own reader and checks them against
the run: every scalar of metrics.jsonl (and eval_history.jsonl, eval.json) at its step, the
pictures as PNGs of their size, the recipe as text, and no step logged twice.

    pip install tensorboard        # a tool for this check, not a dependency of selfsup
    python3 scripts/check_tensorboard.py runs/quickstart [more runs...]

Exits non-zero, naming the tag and step, on the first disagreement.
"""
import io
import json
import math
import os
import sys

from tensorboard.backend.event_processing import event_accumulator as ea


def flatten(prefix, value, out):
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for k, v in value.items():
            flatten(f"{prefix}/{k}" if prefix else k, v, out)


def check(run):
    acc = ea.EventAccumulator(
        os.path.join(run, "tb"),
        size_guidance={ea.SCALARS: 0, ea.IMAGES: 0, ea.TENSORS: 0},
    )
    acc.Reload()
    tags = acc.Tags()
    scalars = {t: {e.step: e.value for e in acc.Scalars(t)} for t in tags["scalars"]}
    for t in tags["scalars"]:
        steps = [e.step for e in acc.Scalars(t)]
        if len(steps) != len(set(steps)):
            sys.exit(f"{run}: tag {t} has a step logged twice: {steps}")

    expected = {}
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            row = json.loads(line)
            flat = {}
            flatten("", row, flat)
            step = row["step"]
            for tag, v in flat.items():
                if tag != "step":
                    expected.setdefault(tag, {})[step] = v
    history = os.path.join(run, "eval_history.jsonl")
    if os.path.exists(history):
        with open(history) as f:
            for line in f:
                row = json.loads(line)
                expected.setdefault("online_knn_top1", {})[row["step"]] = row["knn_top1"]
    compared = 0
    for tag, by_step in expected.items():
        got = scalars.get(tag)
        if got is None:
            sys.exit(f"{run}: scalar {tag} missing from tb/ (tags: {sorted(scalars)})")
        if sorted(got) != sorted(by_step):
            sys.exit(f"{run}: {tag} steps {sorted(got)} != metrics.jsonl {sorted(by_step)}")
        for step, v in by_step.items():
            # float32 in the event file
            if not math.isclose(got[step], v, rel_tol=1e-6, abs_tol=1e-6):
                sys.exit(f"{run}: {tag} at step {step}: {got[step]} != {v}")
            compared += 1
    eval_path = os.path.join(run, "eval.json")
    if os.path.exists(eval_path):
        report = json.load(open(eval_path))
        for tag, v in [("eval/knn_top1", report["knn_top1"]),
                       ("eval/linear_top1", report["linear_top1"])]:
            got = list(scalars.get(tag, {}).values())
            if not got or not math.isclose(got[-1], v, rel_tol=1e-6):
                sys.exit(f"{run}: {tag} {got} != eval.json {v}")
            compared += 1

    images = []
    for t in tags["images"]:
        for e in acc.Images(t):
            png = e.encoded_image_string
            if png[:8] != b"\x89PNG\r\n\x1a\n":
                sys.exit(f"{run}: image {t} at step {e.step} is not a PNG")
            try:
                from PIL import Image
                size = Image.open(io.BytesIO(png)).size
                if size != (e.width, e.height):
                    sys.exit(f"{run}: image {t}: PNG is {size}, event says {e.width}x{e.height}")
            except ImportError:
                pass
            images.append(f"{t}@{e.step} {e.width}x{e.height}")
    if "spectrum" not in tags["images"]:
        sys.exit(f"{run}: no spectrum image")

    texts = tags["tensors"]
    recipe = acc.Tensors("recipe") if "recipe" in texts else []
    if not recipe:
        sys.exit(f"{run}: no recipe text (tensor tags: {texts})")
    plugin = acc.SummaryMetadata("recipe").plugin_data.plugin_name
    if plugin != "text":
        sys.exit(f"{run}: the recipe is tagged for plugin '{plugin}', not 'text'")
    text = recipe[0].tensor_proto.string_val[0].decode()
    if "[train]" not in text:
        sys.exit(f"{run}: the recipe text lacks [train]")

    last = max(max(s) for s in scalars.values())
    print(f"{run}: {len(scalars)} scalar tags, {compared} values equal to metrics.jsonl / "
          f"eval.json, steps 1..{last}, no step twice; images: {', '.join(images)}; "
          f"recipe text {len(text.splitlines())} lines")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    for run in sys.argv[1:]:
        check(run)
