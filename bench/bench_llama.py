"""Training tokens per second of lmbook's Llama against Hugging Face's LlamaForCausalLM (chapter 9).

    python bench/bench_llama.py        # prints, and writes bench/results/bench_llama.txt and .json

Both models have the same configuration (layers, width, query and key/value heads, SwiGLU width,
context, vocabulary, batch) and the same weights (copied with lmbook.llama.to_hf), and run the same
work per step, timed in turns by bench/interleaved.py (forward, the loss through each library's
own API, backward; the ratio is the median over repeats of rates measured side by side). torch uses THREADS threads
(`python bench/bench_llama.py 2` for two).
"""

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from interleaved import compare, machine
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


def main() -> None:
    torch.set_num_threads(THREADS)
    described = machine()
    load = os.getloadavg()[0]
    say(f"machine: {described}")
    say(f"{REPEATS} interleaved runs of {STEPS} forward+backward steps each, after one warm-up run; "
        f"load average {load:.1f} at the start; {time.strftime('%Y-%m-%d')}")
    say()
    results = {"command": "python bench/bench_llama.py" + (f" {THREADS}" if THREADS != 1 else ""),
               "machine": described, "date": time.strftime("%Y-%m-%d"), "load_at_start": load, "configs": []}
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
        rates, ratio = compare(ours, theirs, x, labels=("lmbook Llama", "LlamaForCausalLM"), steps=STEPS, repeats=REPEATS)
        for label, r in rates.items():
            say(f"  {label:16s} {statistics.median(r):8.0f} tokens/s (runs {min(r):.0f}-{max(r):.0f})")
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
