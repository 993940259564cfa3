"""Steps per second of lmbook.train.train against a minimal hand-written loop (chapter 2).

    python bench/bench_mlp.py        # prints, and writes bench/results/mlp.txt

The model is the chapter's MLP on names (block_size 8, emb_dim 24, hidden 256, LayerNorm), trained
by AdamW on minibatches from random_batches. Both loops draw the same batches from the same seeded
generator and run the same forward, loss, backward and step; `train` adds its bookkeeping (loss.item()
and the NaN check, the History, the learning-rate schedule hook, the progress bar). The ratio
train / hand loop says what that bookkeeping costs: about 1.0 means nothing worth noticing.

The loops run REPEATS times, interleaved (hand, train, train with its bar, hand, …) after a
warm-up, STEPS steps each. Steps/s is the median over runs; the ratio is the median over repeats of
(hand-loop steps/s) / (train steps/s) within the same repeat, so that a neighbour's load on a shared
machine, which comes and goes, hits both sides of each ratio alike. torch uses THREADS threads
(`python bench/bench_mlp.py 2` for two): one thread is less disturbed by another process on the
other core of a 2-core machine.
"""

import contextlib
import io
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from lmbook.batching import Vocab, context_windows, random_batches
from lmbook.data import names_split
from lmbook.mlp import MLPLanguageModel
from lmbook.train import train

BLOCK_SIZE, EMB_DIM, HIDDEN, NORM, LR = 8, 24, 256, "layer", 1e-3
BATCH_SIZES, STEPS, REPEATS = (64, 512), 500, 7
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
RESULTS = Path(__file__).parent / "results" / "mlp.txt"
lines_out: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    lines_out.append(text)


def fresh_model(vocab_size: int) -> MLPLanguageModel:
    torch.manual_seed(0)
    return MLPLanguageModel(vocab_size, BLOCK_SIZE, emb_dim=EMB_DIM, hidden=HIDDEN, norm=NORM)


def hand_loop(model, batches, steps: int) -> None:
    """The four lines every training loop is made of, and nothing else."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    for _ in range(steps):
        x, y = next(batches)
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


def lmbook_loop(model, batches, steps: int, progress: bool = False) -> None:
    with contextlib.redirect_stderr(io.StringIO()):  # the progress bar draws to stderr: keep it off the output
        train(model, batches, steps=steps, lr=LR, progress=progress, device="cpu")


def steps_per_second(loop, X, Y, batch_size: int, steps: int) -> float:
    model, batches = fresh_model(int(Y.max()) + 1), random_batches(X, Y, batch_size, torch.Generator().manual_seed(0))
    start = time.perf_counter()
    loop(model, batches, steps)
    return steps / (time.perf_counter() - start)


def main() -> None:
    torch.set_num_threads(THREADS)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    say(f"machine: {os.cpu_count()} cpus ({cpu}), python {platform.python_version()}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, device cpu")
    names_train, _, _ = names_split()
    vocab = Vocab("".join(names_train), specials=["."])
    X, Y = context_windows([vocab.encode(name) for name in names_train], block_size=BLOCK_SIZE, boundary_id=0)
    model = fresh_model(len(vocab))
    say(f"names: {len(X):,} training windows; MLPLanguageModel(V={len(vocab)}, block_size={BLOCK_SIZE}, "
        f"emb_dim={EMB_DIM}, hidden={HIDDEN}, norm={NORM!r}), {sum(p.numel() for p in model.parameters()):,} "
        f"parameters; AdamW lr={LR}")
    say(f"{REPEATS} interleaved runs of {STEPS} steps each, after one warm-up run; load average "
        f"{os.getloadavg()[0]:.1f} at the start")
    say()
    loops = {"hand-written loop": hand_loop, "lmbook.train (progress=False)": lmbook_loop,
             "lmbook.train (progress=True)": lambda m, b, s: lmbook_loop(m, b, s, progress=True)}
    for batch_size in BATCH_SIZES:
        for loop in loops.values():
            steps_per_second(loop, X, Y, batch_size, STEPS // 5)  # warm-up
        rates = {name: [] for name in loops}
        for _ in range(REPEATS):
            for name, loop in loops.items():
                rates[name].append(steps_per_second(loop, X, Y, batch_size, STEPS))
        hand = rates["hand-written loop"]
        say(f"batch {batch_size}:")
        for name, r in rates.items():
            ratio = "" if r is hand else f"   ratio {statistics.median(h / x for h, x in zip(hand, r)):.3f}"
            say(f"  {name:30s} {statistics.median(r):5.0f} steps/s (runs {min(r):.0f}-{max(r):.0f}){ratio}")
    say()
    say("ratio = hand-loop steps/s / lmbook.train steps/s, median over repeats: 1.00 means train() costs")
    say("nothing extra per step, 1.05 that it takes 5% longer.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    print(f"(written to {RESULTS.relative_to(Path(__file__).parent.parent)})")


if __name__ == "__main__":
    main()
