"""Time and memory of causal self-attention against sequence length T (chapter 4's cost section).

    python bench/bench_attention.py        # prints, and writes bench/results/bench_attention.txt

Two implementations of the same function, softmax(QKᵀ/√d + causal mask)·V, on (B, H, T, d) inputs
in float32 on the CPU:

- lmbook.attention.scaled_dot_product_attention, the formula written out: it builds the (T, T)
  score matrix, masks it, exponentiates it, normalises it and multiplies it by V, each step a new
  (B, H, T, T) tensor;
- F.scaled_dot_product_attention, torch's fused kernel (on a CPU, a FlashAttention-style loop
  over blocks of keys with an online softmax): the (T, T) matrix is never stored whole.

For each T: the median time of a forward pass and of forward + backward over REPEATS interleaved
runs (both implementations in the same repeat, so that a neighbour's load hits both), the ratio
lmbook / torch per repeat (median), and the memory autograd keeps for the backward pass
(the bytes of the distinct tensors saved by the forward, counted with saved_tensors_hooks: a
property of the algorithm, the same on every machine). The last lines fit time ∝ T^p between the
two longest sequences: p → 2 once the T² score matrix dominates the T·d projections.
"""

import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lmbook.attention import scaled_dot_product_attention

B, H, D = 1, 8, 64  # one sequence, 8 heads of width 64 (GPT-2 small's head width)
LENGTHS = (64, 128, 256, 512, 1024, 2048)
REPEATS = 5
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
RESULTS = Path(__file__).parent / "results" / "bench_attention.txt"
lines_out: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    lines_out.append(text)


def ours(q, k, v):
    return scaled_dot_product_attention(q, k, v, is_causal=True)


def torchs(q, k, v):
    return F.scaled_dot_product_attention(q, k, v, is_causal=True)


IMPLEMENTATIONS = {"lmbook": ours, "torch fused": torchs}


def inputs(T: int, grad: bool):
    g = torch.Generator().manual_seed(T)
    return [torch.randn(B, H, T, D, generator=g).requires_grad_(grad) for _ in range(3)]


def seconds(fn, T: int, backward: bool) -> float:
    q, k, v = inputs(T, backward)
    start = time.perf_counter()
    if backward:
        fn(q, k, v).sum().backward()
    else:
        with torch.no_grad():
            fn(q, k, v)
    return time.perf_counter() - start


def saved_bytes(fn, T: int) -> int:
    """Bytes of the distinct tensors autograd saves for the backward pass of fn (inputs included)."""
    seen: dict[tuple[int, int], int] = {}

    def pack(t):
        key = (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        seen[key] = t.untyped_storage().nbytes()
        return t

    q, k, v = inputs(T, True)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(q, k, v)
    return sum(seen.values())


def main() -> None:
    torch.set_num_threads(THREADS)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    say(f"machine: {os.cpu_count()} cpus ({cpu}), python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, device cpu")
    say(f"causal self-attention, float32, B={B}, H={H} heads, d_head={D}; median of {REPEATS} interleaved runs "
        f"after a warm-up; load average {os.getloadavg()[0]:.1f} at the start")
    say()
    q, k, v = inputs(256, False)
    err = (ours(q, k, v) - torchs(q, k, v)).abs().max().item()
    say(f"same function: max |lmbook - torch| = {err:.1e} at T=256")
    say()
    say(f"{'T':>5} | {'forward ms':>21} | {'fwd+bwd ms':>21} | {'ratio lmbook/torch':>18} | {'saved for backward MiB':>24}")
    say(f"{'':>5} | {'lmbook':>10} {'torch':>10} | {'lmbook':>10} {'torch':>10} | {'fwd':>8} {'fwd+bwd':>9} | "
        f"{'lmbook':>11} {'torch':>12}")
    medians: dict[tuple[str, str], list[float]] = {}
    for T in LENGTHS:
        row: dict[tuple[str, bool], list[float]] = {(n, b): [] for n in IMPLEMENTATIONS for b in (False, True)}
        for fn in IMPLEMENTATIONS.values():  # warm-up
            seconds(fn, T, False), seconds(fn, T, True)
        for _ in range(REPEATS):
            for backward in (False, True):
                for name, fn in IMPLEMENTATIONS.items():
                    row[name, backward].append(seconds(fn, T, backward))
        ratio = {b: statistics.median(a / t for a, t in zip(row["lmbook", b], row["torch fused", b])) for b in (False, True)}
        mem = {name: saved_bytes(fn, T) / 2**20 for name, fn in IMPLEMENTATIONS.items()}
        ms = {key: 1e3 * statistics.median(v) for key, v in row.items()}
        for key, value in ms.items():
            medians.setdefault((key[0], "fwd+bwd" if key[1] else "fwd"), []).append(value)
        say(f"{T:>5} | {ms['lmbook', False]:>10.2f} {ms['torch fused', False]:>10.2f} | {ms['lmbook', True]:>10.2f} "
            f"{ms['torch fused', True]:>10.2f} | {ratio[False]:>8.2f} {ratio[True]:>9.2f} | "
            f"{mem['lmbook']:>11.1f} {mem['torch fused']:>12.1f}")
    say()
    a, b = LENGTHS[-2], LENGTHS[-1]
    for (name, kind), values in medians.items():
        p = math.log(values[-1] / values[-2]) / math.log(b / a)
        say(f"time ∝ T^p between T={a} and T={b}: {name:12s} {kind:8s} p = {p:.2f}")
    say()
    say("Memory: lmbook keeps (B, H, T, T) tensors for the backward pass (the scores and the weights), so its")
    say("saved memory grows as T²; the fused kernel keeps q, k, v, the output and one logsumexp per query,")
    say("so its memory grows as T. The time of both grows as T² (every query meets every earlier key);")
    say("the fused kernel saves the trips through memory of the (T, T) intermediates.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    print(f"(written to {RESULTS.relative_to(Path(__file__).parent.parent)})")


if __name__ == "__main__":
    main()
