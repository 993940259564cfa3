"""Forward+backward time of lmbook.rnn's from-scratch LSTM against torch.nn.LSTM (chapter 3).

    python bench/bench_rnn.py        # prints, and writes bench/results/bench_rnn.txt

Both layers have the chapter's Shakespeare size (input 64, hidden 256, 2 layers, batch-first) and the
same weights; each timed call is one forward and one backward pass over a batch of B sequences of T
steps (a training step without the optimizer). The from-scratch layer computes the input projections
of all steps in one matrix product, then loops over time in Python, one cell at a time, and autograd
records every small operation; nn.LSTM runs the same loop in C++, without Python's overhead at each
of those operations (on a GPU it calls cuDNN, which fuses them). The ratio says what the readable
version costs; it is largest when each step has little arithmetic (one sequence) and smallest when
the matrix products dominate.

The two run interleaved (scratch, torch, scratch, …) REPEATS times after a warm-up, CALLS calls each;
the time is the median over runs and the ratio the median over repeats of scratch / torch within the
same repeat, so that a neighbour's load on a shared machine hits both sides of each ratio alike.
torch uses THREADS threads (`python bench/bench_rnn.py 2` for two).
"""

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

from lmbook.rnn import LSTM

INPUT, HIDDEN, LAYERS = 64, 256, 2
SHAPES = [(32, 64), (1, 64), (32, 16)]   # (B, T): the chapter's training batch, one sequence, short chunks
CALLS, REPEATS = 3, 5
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
RESULTS = Path(__file__).parent / "results" / "bench_rnn.txt"
lines_out: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    lines_out.append(text)


def seconds_per_call(layer: nn.Module, x: torch.Tensor, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        out, (h, c) = layer(x)
        (out.square().mean() + h.square().mean()).backward()
    return (time.perf_counter() - start) / calls


def main() -> None:
    torch.set_num_threads(THREADS)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    say(f"machine: {os.cpu_count()} cpus ({cpu}), python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, device cpu")
    torch.manual_seed(0)
    reference = nn.LSTM(INPUT, HIDDEN, LAYERS, batch_first=True)
    scratch = LSTM(INPUT, HIDDEN, LAYERS, batch_first=True)
    scratch.load_state_dict(reference.state_dict())
    say(f"LSTM(input {INPUT}, hidden {HIDDEN}, {LAYERS} layers, batch_first), "
        f"{sum(p.numel() for p in reference.parameters()):,} parameters; forward + backward per call")
    say(f"{REPEATS} interleaved runs of {CALLS} calls each, after one warm-up call; load average "
        f"{os.getloadavg()[0]:.1f} at the start")
    say()
    layers = {"lmbook.rnn.LSTM (from scratch)": scratch, "torch.nn.LSTM": reference}
    for B, T in SHAPES:
        x = torch.randn(B, T, INPUT, generator=torch.Generator().manual_seed(0), requires_grad=True)
        for layer in layers.values():
            seconds_per_call(layer, x, 1)  # warm-up
        times = {name: [] for name in layers}
        for _ in range(REPEATS):
            for name, layer in layers.items():
                times[name].append(seconds_per_call(layer, x, CALLS))
        mine, theirs = times["lmbook.rnn.LSTM (from scratch)"], times["torch.nn.LSTM"]
        say(f"batch {B}, {T} steps:")
        for name, t in times.items():
            say(f"  {name:32s} {1000 * statistics.median(t):7.1f} ms  (runs {1000 * min(t):.1f}-{1000 * max(t):.1f})"
                f"  {B * T / statistics.median(t):8.0f} tokens/s")
        say(f"  ratio from scratch / nn.LSTM: {statistics.median(a / b for a, b in zip(mine, theirs)):.2f}")
    say()
    say("ratio = time of the from-scratch LSTM / time of nn.LSTM for the same forward+backward, median over")
    say("repeats: 2.0 means the readable version takes twice as long.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    print(f"(written to {RESULTS.relative_to(Path(__file__).parent.parent)})")


if __name__ == "__main__":
    main()
