"""Tokens/second, memory and MFU of lmbook.trainer (chapter 7), in one run:

1. the speed-ups switched on one at a time (fp32 -> TF32 -> bf16 -> flash attention -> compile ->
   fused AdamW) on our GPT, and on a GPU one more row at a larger micro-batch;
2. our GPT against Hugging Face's GPT2LMHeadModel of the same shape, both trained by the same
   Trainer with the same settings (so the ratio compares the models, not the loops).

    python bench/bench_trainer.py                  # GPU: GPT-2 small's shape (12 layers, width 768,
                                                   # context 1024); CPU: a small shape
    python bench/bench_trainer.py --seconds 240    # leave out the optional rows when time runs short

Writes bench/results/trainer_<gpu|cpu>.txt (the tables) and .json (what chapter 7 reads), row by row,
so an interrupted run keeps what it measured. The reference training run of chapter 7 is
bench/gpu_reference.py.

Tokens/second are medians over the measurements of STEPS steps after WARMUP steps (which absorb
compilation). MFU = tokens/s x lmbook.gpt.flops_per_token / the device's dense bf16 peak from its
data sheet (lmbook.trainer.PEAK_TFLOPS; `--peak-tflops` for a device not listed), the same yardstick
for every row; on a GPU the script also measures what a large bf16 matrix product reaches, the
practical ceiling.
"""

import argparse
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
from lmbook.trainer import Trainer, TrainConfig, peak_tflops  # noqa: E402

CUDA = torch.cuda.is_available()
SHAPE = (dict(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768, batch_size=16) if CUDA else
         dict(vocab_size=512, block_size=128, n_layer=2, n_head=4, n_embd=128, batch_size=8))
WARMUP, STEPS, REPEATS = (8, 20, 2) if CUDA else (2, 8, 3)
ABLATION_REPEATS = 1 if CUDA else REPEATS  # a GPU to itself is steady; a shared CPU is not
ABLATION = [  # each row adds one switch to the row above
    ("fp32", dict(dtype="float32", tf32=False, attention="lmbook", compile=False, fused_adamw=False)),
    ("+ TF32 matmuls", dict(tf32=True)),
    ("+ bf16 autocast", dict(dtype="bfloat16")),
    ("+ flash attention (sdpa)", dict(attention="sdpa")),
    ("+ torch.compile", dict(compile=True)),
    ("+ fused AdamW", dict(fused_adamw=True)),
]
BIGGER_BATCH = ("+ micro-batch 32", dict(batch_size=32))  # GPU only, if time allows: a fuller GPU
FASTEST_CPU = dict(dtype="float32", tf32=False, attention="sdpa", compile=False, fused_adamw=False)
lines_out: list[str] = []
results: dict = {}
DEADLINE = float("inf")  # time.monotonic() after which optional measurements are left out


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
    shape = {k: v for k, v in SHAPE.items() if k != "vocab_size"} | {k: v for k, v in settings.items() if k in SHAPE}
    settings = {k: v for k, v in settings.items() if k not in SHAPE}
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
    rows, settings, base = results.setdefault("ablation", []), {}, None
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
        write()
    return rows


def bigger_batch(data, peak) -> None:
    """On a GPU, the last row again at micro-batch 32 (a fuller GPU), if time allows."""
    rows = results["ablation"]
    name, switch = BIGGER_BATCH
    if time.monotonic() > DEADLINE:
        say(f"  ({name}: left out, out of time)")
        return
    base = next(r["tokens_per_second"] for r in rows if "tokens_per_second" in r)
    row = measure(rows[-1]["settings"] | switch, data, peak)
    rows.append({"name": name, "settings": rows[-1]["settings"] | switch} | row)
    say()
    say("3. the last row of 1 at a larger micro-batch (ratio to the first row of 1):")
    say(f"  {name:28s} {fmt(row, base)}")
    write()


def versus_hf(data, peak) -> dict:
    settings = dict(dtype="bfloat16", tf32=True, attention="sdpa", compile=True, fused_adamw=True) if CUDA else FASTEST_CPU
    say(f"2. lmbook GPT vs Hugging Face GPT2LMHeadModel, same Trainer and settings {settings}:")
    ours, theirs = [], []
    for i in range(REPEATS):  # interleaved, so that a neighbour's load hits both sides alike
        if i and time.monotonic() > DEADLINE:
            say(f"  (out of time after {i} pairs)")
            break
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


def matmul_tflops(n: int = 8192, repeats: int = 10) -> float:
    """What one large bf16 matrix product reaches on this GPU (TFLOP/s): the practical ceiling."""
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def write() -> None:
    """The tables so far, to bench/results/trainer_<gpu|cpu>.{txt,json}."""
    out = ROOT / "bench" / "results" / f"trainer_{'gpu' if CUDA else 'cpu'}"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".txt").write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")


def main() -> None:
    global DEADLINE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peak-tflops", type=float, default=None, help="dense bf16 peak of a GPU not in PEAK_TFLOPS")
    parser.add_argument("--seconds", type=float, default=None,
                        help="after this many seconds, leave out the optional measurements (extra rows and pairs)")
    args = parser.parse_args()
    if args.seconds:
        DEADLINE = time.monotonic() + args.seconds
    if not CUDA:
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "1")))
    device = torch.cuda.get_device_name(0) if CUDA else next(
        (line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
        platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    say(f"device: {device} | {date} | python {platform.python_version()}, torch {torch.__version__}"
        + (f", CUDA {torch.version.cuda}" if CUDA else
           f", {torch.get_num_threads()} torch threads, load average {os.getloadavg()[0]:.1f}"))
    say(f"shape: {SHAPE}; {WARMUP} warm-up steps, then {STEPS} timed steps; median of {ABLATION_REPEATS} "
        f"(speed-ups) and {REPEATS} (lmbook vs HF) measurements")
    results.update({"device": device, "date": date, "torch": torch.__version__, "cuda": torch.version.cuda,
                    "shape": SHAPE, "warmup": WARMUP, "steps": STEPS, "repeats": REPEATS,
                    "command": "python bench/bench_trainer.py"})
    if CUDA:
        peak = args.peak_tflops or peak_tflops(torch.device("cuda"), "bfloat16")
        results["datasheet_bf16_tflops"] = peak
        results["matmul_bf16_tflops"] = measured = matmul_tflops()
        say(f"dense bf16 peak {peak} TFLOP/s (data sheet); an 8192^3 bf16 matrix product reaches {measured:.0f} TFLOP/s"
            + (f" ({measured / peak:.0%} of it)" if peak else ""))
    say()
    data = tuple(np.random.default_rng(i).integers(0, SHAPE["vocab_size"], 2_000_000 if CUDA else 200_000,
                                                   dtype=np.uint16) for i in range(2))
    ablation(data, args.peak_tflops)
    say()
    results["hf"] = versus_hf(data, args.peak_tflops)
    write()
    if CUDA:
        bigger_batch(data, args.peak_tflops)
    say()
    say("tok/s: training tokens per second (forward, backward, optimizer step); ratio to the first row;")
    say("memory: peak allocated on the GPU; MFU: model FLOPs / the device's dense bf16 peak (data sheet).")
    write()
    print(f"(written to bench/results/trainer_{'gpu' if CUDA else 'cpu'}.txt and .json)")


if __name__ == "__main__":
    main()
