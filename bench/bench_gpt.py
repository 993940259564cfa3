"""Training tokens per second of lmbook's GPT against Hugging Face's GPT2LMHeadModel (chapter 5).

    python bench/bench_gpt.py        # prints, and writes bench/results/bench_gpt.txt

Both models have the same configuration (layers, width, heads, context, vocabulary, batch) and the
same weights (copied with lmbook.hf.to_hf), and run the same work per step: forward on a (B, T)
batch, the mean next-token cross-entropy through each library's own API (``model(x, targets)``
for ours, ``model(x, labels=x)`` for transformers, which shifts the labels inside), and backward.
No optimizer step: it is the same code for both and would only dilute the difference.

Each configuration runs REPEATS times, interleaved (ours, theirs, ours, …) after a warm-up, STEPS
steps each. Tokens/s is the median over runs; the ratio ours / theirs is the median over repeats
of the two rates measured within the same repeat, so that a neighbour's load on a shared machine,
which comes and goes, hits both sides of each ratio alike. torch uses THREADS threads
(`python bench/bench_gpt.py 2` for two).
"""

import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from lmbook.gpt import GPT, GPTConfig, flops_per_token
from lmbook.hf import to_hf

CONFIGS = {  # name: (config, batch size)
    "chapter 5's character GPT (cpu profile)": (GPTConfig(65, 128, 4, 4, 128), 32),
    "a small GPT-2-shaped model": (GPTConfig(8192, 128, 4, 8, 256), 8),
}
STEPS, REPEATS = 5, 5
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
RESULTS = Path(__file__).parent / "results" / "bench_gpt.txt"
lines_out: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    lines_out.append(text)


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


def main() -> None:
    import transformers

    torch.set_num_threads(THREADS)
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    say(f"machine: {os.cpu_count()} cpus ({cpu}), python {platform.python_version()}, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {torch.get_num_threads()} torch threads, device cpu")
    say(f"{REPEATS} interleaved runs of {STEPS} forward+backward steps each, after one warm-up run; "
        f"load average {os.getloadavg()[0]:.1f} at the start")
    say()
    for name, (config, batch) in CONFIGS.items():
        torch.manual_seed(0)
        ours = GPT(config).train()
        theirs = to_hf(ours).train()
        say(f"{name}: {config}")
        say(f"  batch {batch} x {config.block_size} tokens, {ours.num_params():,} parameters, "
            f"attention in transformers: {theirs.config._attn_implementation}, "
            f"{flops_per_token(config) / 1e6:.1f} MFLOP per token")
        x = torch.randint(0, config.vocab_size, (batch, config.block_size + 1),
                          generator=torch.Generator().manual_seed(0))
        runs = {"lmbook GPT": (ours_step, ours), "GPT2LMHeadModel": (theirs_step, theirs)}
        for step, model in runs.values():
            tokens_per_second(step, model, x, 2)  # warm-up
        rates = {label: [] for label in runs}
        for _ in range(REPEATS):
            for label, (step, model) in runs.items():
                rates[label].append(tokens_per_second(step, model, x, STEPS))
        for label, r in rates.items():
            say(f"  {label:16s} {statistics.median(r):8.0f} tokens/s (runs {min(r):.0f}-{max(r):.0f})")
        ratio = statistics.median(a / b for a, b in zip(rates["lmbook GPT"], rates["GPT2LMHeadModel"]))
        say(f"  ratio lmbook / transformers: {ratio:.2f}")
        say()
    say("ratio = lmbook GPT tokens/s / GPT2LMHeadModel tokens/s (median over repeats): above 1.00 means")
    say("ours trains faster than transformers' GPT-2 at the same configuration.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    print(f"(written to {RESULTS.relative_to(Path(__file__).parent.parent)})")


if __name__ == "__main__":
    main()
