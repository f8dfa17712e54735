"""PyTorch's sgemm on the shapes of benches/gemm.rs: GFLOP/s, best of 10, on one thread and on
THREADS (default: all cores).

    python3 benches/torch_gemm.py [THREADS]
"""
import json
import os
import sys
import time

import torch

# (m, k, n, layout, name) as in benches/gemm.rs: "b_t" multiplies by a row-major [n, k] stored
# operand transposed, "a_t" by a row-major [k, m] one.
SHAPES = [(6304, 384, 1152, "", "qkv x·W"), (6304, 1152, 384, "b_t", "qkv dy·Wt"),
          (384, 6304, 1152, "a_t", "qkv xt·dy"), (6304, 1536, 384, "", "mlp2 x·W"),
          (6304, 384, 1536, "b_t", "mlp2 dy·Wt"), (1536, 6304, 384, "a_t", "mlp2 xt·dy")]


def best_gflops(m, k, n, layout):
    a = torch.rand(k, m).t() if layout == "a_t" else torch.rand(m, k)
    b = torch.rand(n, k).t() if layout == "b_t" else torch.rand(k, n)
    best = float("inf")
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * m * n * k / best / 1e9


threads = int(sys.argv[1]) if len(sys.argv) > 1 else os.cpu_count()
for m, k, n, layout, name in SHAPES:
    for t in sorted({1, threads}):
        torch.set_num_threads(t)
        print(json.dumps({"bench": f"gemm {name} {m}x{k}x{n}", "framework": "pytorch",
                          "threads": t, "gflops": round(best_gflops(m, k, n, layout), 1)}))
