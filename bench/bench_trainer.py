"""Tokens/second, memory and MFU of lmbook.trainer (chapter 7), in one run:

1. the speed-ups switched on one at a time (fp32 -> TF32 -> bf16 -> flash attention -> compile ->
   fused AdamW) on our GPT;
2. our GPT against Hugging Face's GPT2LMHeadModel of the same shape, both trained by the same
   Trainer with the same settings (so the ratio compares the models, not the loops);
3. the reference run: configs/shakespeare_char.json (nanoGPT's shakespeare-char size) to the end.

    python bench/bench_trainer.py                  # on a GPU: all three (GPT-2-small shape: 12 layers,
                                                   # width 768, context 1024); on a CPU: 1 and 2 at a small shape
    python bench/bench_trainer.py --reference      # on a CPU too (slow: hours)
    python bench/bench_trainer.py --no-reference   # on a GPU, only 1 and 2

Writes bench/results/trainer_<gpu|cpu>.txt (the tables) and .json (what chapter 7 reads). The reference
run writes runs/shakespeare_char/: metrics.json, config.json and model.safetensors (bf16 weights, ~21 MB):
the files to commit. Its training checkpoint (fp32 weights and AdamW moments) is deleted afterwards.

Tokens/second are medians over REPEATS interleaved measurements of STEPS steps after WARMUP steps.
MFU = tokens/s x lmbook.gpt.flops_per_token / the device's dense bf16 peak (lmbook.trainer.PEAK_TFLOPS;
`--peak-tflops` for a device not listed), the same yardstick for every row.
"""

import argparse
import dataclasses
import gc
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lmbook import gpt  # noqa: E402
from lmbook.trainer import Trainer, TrainConfig  # noqa: E402

CUDA = torch.cuda.is_available()
SHAPE = (dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, batch_size=16) if CUDA else
         dict(vocab_size=512, block_size=128, n_layer=2, n_head=4, n_embd=128, batch_size=8))
WARMUP, STEPS, REPEATS = (10, 30, 3) if CUDA else (2, 8, 3)
ABLATION_REPEATS = 1 if CUDA else REPEATS  # a GPU to itself is steady; a shared CPU is not
ABLATION = [  # each row adds one switch to the row above
    ("fp32", dict(dtype="float32", tf32=False, attention="lmbook", compile=False, fused_adamw=False)),
    ("+ TF32 matmuls", dict(tf32=True)),
    ("+ bf16 autocast", dict(dtype="bfloat16")),
    ("+ flash attention (sdpa)", dict(attention="sdpa")),
    ("+ torch.compile", dict(compile=True)),
    ("+ fused AdamW", dict(fused_adamw=True)),
]
FASTEST_CPU = dict(dtype="float32", tf32=False, attention="sdpa", compile=False, fused_adamw=False)
lines_out: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    lines_out.append(text)


class HFGPT2(nn.Module):
    """GPT2LMHeadModel with our forward(idx, targets) -> (logits, loss), so the same Trainer trains it."""

    def __init__(self, c: dict):
        super().__init__()
        from transformers import GPT2Config, GPT2LMHeadModel

        config = GPT2Config(vocab_size=c["vocab_size"], n_positions=c["block_size"], n_embd=c["n_embd"],
                            n_layer=c["n_layer"], n_head=c["n_head"], resid_pdrop=0.0, embd_pdrop=0.0,
                            attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, attn_implementation="sdpa")
        self.hf = GPT2LMHeadModel(config)

    def forward(self, idx, targets=None):
        logits = self.hf(input_ids=idx).logits  # (B, T, V)
        loss = None if targets is None else F.cross_entropy(logits.flatten(0, 1), targets.flatten())
        return logits, loss


def config_for(settings: dict, peak_tflops: float | None) -> TrainConfig:
    shape = {k: v for k, v in SHAPE.items() if k != "vocab_size"}
    return TrainConfig(**shape, **settings, dropout=0.0, bias=True, max_steps=10**6, warmup_steps=10, lr=3e-4,
                       min_lr=3e-5, progress=False, device="cuda" if CUDA else "cpu", peak_tflops=peak_tflops,
                       out_dir=tempfile.mkdtemp(prefix="bench_trainer_"))


def measure(settings: dict, data, peak_tflops, model_factory=None) -> dict:
    config = config_for(settings, peak_tflops)
    torch.manual_seed(0)
    model = model_factory() if model_factory else None
    flops = gpt.flops_per_token(gpt.GPTConfig(**{k: v for k, v in SHAPE.items() if k != "batch_size"}, bias=True))
    try:
        trainer = Trainer(config, model=model, data=data, flops_per_token=flops)
        return trainer.benchmark(steps=STEPS, warmup=WARMUP)
    except Exception as e:  # e.g. out of memory, or no compiler for torch.compile: report it, go on
        return {"error": f"{type(e).__name__}: {str(e).splitlines()[0][:120]}"}
    finally:
        shutil.rmtree(config.out_dir, ignore_errors=True)
        trainer = model = None
        torch.compiler.reset()  # compiled graphs would keep the old model's memory alive
        gc.collect()
        if CUDA:
            torch.cuda.empty_cache()


def median_of(runs: list[dict]) -> dict:
    ok = [r for r in runs if "error" not in r]
    if not ok:
        return runs[0]
    out = {k: statistics.median(r[k] for r in ok) if ok[0][k] is not None else None for k in ok[0]}
    return out | {"runs": [r["tokens_per_second"] for r in ok]}


def fmt(row: dict, base: float | None) -> str:
    if "error" in row:
        return f"failed: {row['error']}"
    mem = f"{row['peak_memory_gb']:6.2f} GB" if row["peak_memory_gb"] is not None else "     —   "
    mfu = f"{row['mfu']:6.1%}" if row["mfu"] is not None else "    — "
    ratio = f"{row['tokens_per_second'] / base:5.2f}x" if base else "      "
    return f"{row['tokens_per_second']:12,.0f} tok/s  {ratio}  {mem}  MFU {mfu}"


def ablation(data, peak) -> list[dict]:
    say("1. speed-ups, one at a time (each row keeps the ones above):")
    rows, settings, base = [], {}, None
    for name, switch in ABLATION:
        settings = settings | switch
        if not CUDA and name == "+ TF32 matmuls":
            rows.append({"name": name, "settings": dict(settings), "skipped": "TF32 is a GPU tensor-core format"})
            say(f"  {name:28s} skipped on a CPU (TF32 is a GPU tensor-core format)")
            continue
        row = median_of([measure(settings, data, peak) for _ in range(ABLATION_REPEATS)])
        base = base or row.get("tokens_per_second")
        rows.append({"name": name, "settings": dict(settings)} | row)
        say(f"  {name:28s} {fmt(row, base)}")
    return rows


def versus_hf(data, peak) -> dict:
    settings = dict(dtype="bfloat16", tf32=True, attention="sdpa", compile=True, fused_adamw=True) if CUDA else FASTEST_CPU
    say(f"2. lmbook GPT vs Hugging Face GPT2LMHeadModel, same Trainer and settings {settings}:")
    ours, theirs = [], []
    for _ in range(REPEATS):  # interleaved, so that a neighbour's load hits both sides alike
        ours.append(measure(settings, data, peak))
        theirs.append(measure(settings, data, peak, model_factory=lambda: HFGPT2(SHAPE)))
    ratios = [a["tokens_per_second"] / b["tokens_per_second"] for a, b in zip(ours, theirs)
              if "error" not in a and "error" not in b]
    result = {"settings": settings, "lmbook": median_of(ours), "hf": median_of(theirs),
              "ratio": statistics.median(ratios) if ratios else None}
    say(f"  {'lmbook.gpt.GPT':28s} {fmt(result['lmbook'], None)}")
    say(f"  {'transformers GPT2LMHeadModel':28s} {fmt(result['hf'], None)}")
    if ratios:
        say(f"  ratio lmbook / HF: {result['ratio']:.2f} (median over {len(ratios)} interleaved pairs: "
            f"{', '.join(f'{r:.2f}' for r in ratios)})")
    return result


def reference_run() -> dict:
    config = TrainConfig.from_dict(json.loads((ROOT / "configs" / "shakespeare_char.json").read_text()))
    config = dataclasses.replace(config, data_dir=str(ROOT / config.data_dir), out_dir=str(ROOT / config.out_dir))
    if Path(config.out_dir).exists():
        say(f"  (removing the previous {config.out_dir})")
        shutil.rmtree(config.out_dir)
    say("3. the reference run: python -m lmbook.trainer --config configs/shakespeare_char.json")
    trainer = Trainer(config)
    trainer.metrics.info["command"] = "python bench/bench_trainer.py (python -m lmbook.trainer --config configs/shakespeare_char.json)"
    m = trainer.fit()
    shutil.rmtree(Path(config.out_dir) / "checkpoints", ignore_errors=True)  # ~130 MB of fp32 state: not for git
    reached = next((s for s, v in zip(m.eval_step, m.eval_loss["val"]) if v <= 1.45), None)
    seconds_at = dict(zip(m.log_step, m.elapsed))
    result = {"val_loss": m.eval_loss["val"][-1], "train_loss": m.eval_loss["train"][-1], "steps": trainer.step,
              "train_seconds": m.train_seconds, "first_step_val_le_1.45": reached,
              "seconds_to_val_le_1.45": seconds_at.get(reached - 1) if reached else None,
              "median_tokens_per_second": statistics.median(m.tokens_per_second[1:] or m.tokens_per_second),
              "median_mfu": statistics.median(x for x in m.mfu[1:] if x is not None) if any(m.mfu[1:]) else None,
              "info": m.info}
    say(f"  val loss {result['val_loss']:.4f} after {result['steps']} steps, {result['train_seconds']:.1f} s of "
        f"training; val <= 1.45 first at step {reached} ({result['seconds_to_val_le_1.45']} s)")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", action=argparse.BooleanOptionalAction, default=CUDA,
                        help="run the reference shakespeare-char training (default: on a GPU only)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of a GPU not in PEAK_TFLOPS")
    args = parser.parse_args()
    if not CUDA:
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    device = torch.cuda.get_device_name(0) if CUDA else next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    say(f"device: {device} | {date} | python {platform.python_version()}, torch {torch.__version__}"
        + ("" if CUDA else f", {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}"))
    say(f"shape: {SHAPE}; {WARMUP} warm-up steps, then {STEPS} timed steps; median of {ABLATION_REPEATS} "
        f"(speed-ups) and {REPEATS} (lmbook vs HF) measurements")
    say()
    data = tuple(np.random.default_rng(i).integers(0, SHAPE["vocab_size"], 2_000_000 if CUDA else 200_000,
                                                   dtype=np.uint16) for i in range(2))
    results = {"device": device, "date": date, "torch": torch.__version__, "shape": SHAPE,
               "warmup": WARMUP, "steps": STEPS, "repeats": REPEATS, "command": "python bench/bench_trainer.py"}
    results["ablation"] = ablation(data, args.peak_tflops)
    say()
    results["hf"] = versus_hf(data, args.peak_tflops)
    if args.reference:
        say()
        results["reference"] = reference_run()
    say()
    say("tok/s: training tokens per second (forward, backward, optimizer step); ratio to the first row;")
    say("memory: peak allocated on the GPU; MFU: model FLOPs / the device's dense bf16 peak.")
    out = ROOT / "bench" / "results" / f"trainer_{'gpu' if CUDA else 'cpu'}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    print(f"(written to {out.relative_to(ROOT)}.txt and .json)")


if __name__ == "__main__":
    main()
