"""Training tokens per second of lmbook's Llama against Hugging Face's LlamaForCausalLM (chapter 9).

    python bench/bench_llama.py        # prints, and writes bench/results/bench_llama.txt and .json

Both models have the same configuration (layers, width, query and key/value heads, SwiGLU width,
context, vocabulary, batch) and the same weights (copied with lmbook.llama.to_hf), and run the same
work per step: forward on a (B, T) batch, the mean next-token cross-entropy through each library's
own API (``model(x, targets)`` for ours, ``model(x, labels=x)`` for transformers, which shifts the
labels inside), and backward. No optimizer step: it is the same code for both and would only dilute
the difference (bench/bench_gpt.py measures chapter 5's GPT the same way).

Each configuration runs REPEATS times, interleaved (ours, theirs, ours, …) after a warm-up, STEPS
steps each. Tokens/s is the median over runs; the ratio ours / theirs is the median over repeats of
the two rates measured within the same repeat, so that a neighbour's load on a shared machine, which
comes and goes, hits both sides of each ratio alike. torch uses THREADS threads
(`python bench/bench_llama.py 2` for two).
"""

import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from lmbook.llama import Llama, LlamaConfig, flops_per_token, to_hf

CONFIGS = {  # name: (config, batch size)
    "chapter 9's ablation model, grouped-query (2 x 48, 4 heads, 2 kv heads)":
        (LlamaConfig(65, 128, 2, 4, 48, n_kv_head=2, mlp_hidden=144), 16),
    "a character Llama (4 x 128, 8 heads, 2 kv heads)": (LlamaConfig(65, 128, 4, 8, 128, n_kv_head=2), 32),
    "a small Llama, BPE-sized vocabulary (4 x 256, 8 heads, 8 kv heads)": (LlamaConfig(8192, 128, 4, 8, 256), 8),
}
STEPS, REPEATS = 5, 7
THREADS = int(sys.argv[1]) if len(sys.argv) > 1 else 1
RESULTS = Path(__file__).parent / "results" / "bench_llama"
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
    machine = (f"{os.cpu_count()} cpus ({cpu}), python {platform.python_version()}, torch {torch.__version__}, "
               f"transformers {transformers.__version__}, {torch.get_num_threads()} torch threads, device cpu")
    load = os.getloadavg()[0]
    say(f"machine: {machine}")
    say(f"{REPEATS} interleaved runs of {STEPS} forward+backward steps each, after one warm-up run; "
        f"load average {load:.1f} at the start; {time.strftime('%Y-%m-%d')}")
    say()
    results = {"command": "python bench/bench_llama.py" + (f" {THREADS}" if THREADS != 1 else ""),
               "machine": machine, "date": time.strftime("%Y-%m-%d"), "load_at_start": load, "configs": []}
    for name, (config, batch) in CONFIGS.items():
        torch.manual_seed(0)
        ours = Llama(config).train()
        ours.check_inputs = False  # as the trainer runs it: the token ids are checked once, not every step
        theirs = to_hf(ours).train()
        say(f"{name}: {config}")
        say(f"  batch {batch} x {config.block_size} tokens, {ours.num_params():,} parameters, "
            f"attention in transformers: {theirs.config._attn_implementation}, "
            f"{flops_per_token(config) / 1e6:.1f} MFLOP per token")
        x = torch.randint(0, config.vocab_size, (batch, config.block_size + 1),
                          generator=torch.Generator().manual_seed(0))
        runs = {"lmbook Llama": (ours_step, ours), "LlamaForCausalLM": (theirs_step, theirs)}
        for step, model in runs.values():
            tokens_per_second(step, model, x, 2)  # warm-up
        rates = {label: [] for label in runs}
        for _ in range(REPEATS):
            for label, (step, model) in runs.items():
                rates[label].append(tokens_per_second(step, model, x, STEPS))
        for label, r in rates.items():
            say(f"  {label:16s} {statistics.median(r):8.0f} tokens/s (runs {min(r):.0f}-{max(r):.0f})")
        ratio = statistics.median(a / b for a, b in zip(rates["lmbook Llama"], rates["LlamaForCausalLM"]))
        say(f"  ratio lmbook / transformers: {ratio:.2f}")
        say()
        results["configs"].append({"name": name, "config": config.to_dict(), "batch": batch,
                                   "tokens_per_second": {k: statistics.median(v) for k, v in rates.items()},
                                   "runs": rates, "ratio": ratio})
    say("ratio = lmbook Llama tokens/s / LlamaForCausalLM tokens/s (median over repeats): above 1.00 means")
    say("ours trains faster than transformers' Llama at the same configuration and weights.")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.with_suffix(".txt").write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"(written to {RESULTS.relative_to(Path(__file__).parent.parent)}.txt and .json)")


if __name__ == "__main__":
    main()
