"""PyTorch's GELU and LayerNorm, ns per element, the shapes of `examples/elementwise.rs`
(fastest of 30 calls on 2^20 values). Threads: argv[1] (default 1).

python3 benches/torch_elementwise.py 1
"""
import sys
import time

import torch

torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 1)
n = 1 << 20
x = (torch.arange(n) * 7919 % 2001).float() / 500.0 - 2.0
dy = torch.full((n,), 0.5)


def fastest(f):
    f()
    times = []
    for _ in range(30):
        start = time.perf_counter()
        f()
        times.append(time.perf_counter() - start)
    return min(times) * 1e9 / n


fwd = fastest(lambda: torch.nn.functional.gelu(x))
bwd = fastest(lambda: torch.ops.aten.gelu_backward(dy, x))
print(f"gelu: fwd {fwd:.2f} ns/elem, bwd {bwd:.2f} ns/elem")
for d in [64, 128, 256]:
    rows = x.view(-1, d)
    gamma, beta = torch.full((d,), 1.1), torch.full((d,), 0.1)
    fwd = fastest(lambda: torch.nn.functional.layer_norm(rows, (d,), gamma, beta, 1e-6))
    _, mean, rstd = torch.ops.aten.native_layer_norm(rows, (d,), gamma, beta, 1e-6)
    grads = [True, True, True]
    bwd = fastest(lambda: torch.ops.aten.native_layer_norm_backward(
        dy.view(-1, d), rows, (d,), mean, rstd, gamma, beta, grads))
    print(f"layer norm d={d}: fwd {fwd:.2f} ns/elem, bwd {bwd:.2f} ns/elem")
