"""Training tokens per second of lmbook's GPT against Hugging Face's GPT2LMHeadModel (chapter 5).

    python bench/bench_gpt.py        # prints, and writes bench/results/bench_gpt.txt

Both models have the same configuration (layers, width, heads, context, vocabulary, batch) and the
same weights (copied with lmbook.hf.to_hf), and run the same work per step, timed in turns by bench/interleaved.py (forward, the loss through each library's own API,
backward; the ratio is the median over repeats of rates measured side by side). torch uses THREADS threads
(`python bench/bench_gpt.py 2` for two).
"""

import os
import statistics
import sys
from pathlib import Path

import torch

from interleaved import compare, machine
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


def main() -> None:
    torch.set_num_threads(THREADS)
    say(f"machine: {machine()}")
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
        rates, ratio = compare(ours, theirs, x, labels=("lmbook GPT", "GPT2LMHeadModel"), steps=STEPS, repeats=REPEATS)
        for label, r in rates.items():
            say(f"  {label:16s} {statistics.median(r):8.0f} tokens/s (runs {min(r):.0f}-{max(r):.0f})")
        say(f"  ratio lmbook / transformers: {ratio:.2f}")
        say()
    say("ratio = lmbook GPT tokens/s / GPT2LMHeadModel tokens/s (median over repeats): above 1.00 means")
    say("ours trains faster than transformers' GPT-2 at the same configuration.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    print(f"(written to {RESULTS.relative_to(Path(__file__).parent.parent)})")


if __name__ == "__main__":
    main()
