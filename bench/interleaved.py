"""Ours against Hugging Face's, timed in turns: the harness of bench_gpt.py and bench_llama.py.

A training step here is forward on a (B, T) batch, the mean next-token cross-entropy through each
library's own API (``model(x, targets)`` for lmbook, ``model(x, labels=x)`` for transformers, which
shifts the labels inside), and backward. No optimizer step: it is the same code for both and would
only dilute the difference.

`compare` runs each model `repeats` times, interleaved (ours, theirs, ours, …) after a warm-up,
`steps` steps each. Tokens/s is the median over runs; the ratio ours / theirs is the median over
repeats of the two rates measured within the same repeat, so that a neighbour's load on a shared
machine, which comes and goes, hits both sides of each ratio alike.
"""

import os
import platform
import statistics
import time

import torch


def ours_step(model, x):
    _, loss = model(x[:, :-1], x[:, 1:])
    loss.backward()


def theirs_step(model, x):
    model(x[:, :-1], labels=x[:, :-1]).loss.backward()  # transformers shifts the labels by one inside


def tokens_per_second(step, model, x, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        model.zero_grad(set_to_none=True)
        step(model, x)
    return steps * x[:, :-1].numel() / (time.perf_counter() - start)


def compare(ours, theirs, x, *, labels: tuple[str, str], steps: int, repeats: int) -> tuple[dict, float]:
    """Rates of both models on the batch x (B, T + 1), interleaved; returns ({label: [tokens/s per
    run]}, the median ratio ours / theirs)."""
    runs = {labels[0]: (ours_step, ours), labels[1]: (theirs_step, theirs)}
    for step, model in runs.values():
        tokens_per_second(step, model, x, 2)  # warm-up
    rates = {label: [] for label in runs}
    for _ in range(repeats):
        for label, (step, model) in runs.items():
            rates[label].append(tokens_per_second(step, model, x, steps))
    ratio = statistics.median(a / b for a, b in zip(rates[labels[0]], rates[labels[1]]))
    return rates, ratio


def machine() -> str:
    """The CPU, Python, torch and transformers versions and torch's thread count, in one line."""
    import transformers

    cpu = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                   cpu)
    return (f"{os.cpu_count()} cpus ({cpu}), python {platform.python_version()}, torch {torch.__version__}, "
            f"transformers {transformers.__version__}, {torch.get_num_threads()} torch threads, device cpu")
