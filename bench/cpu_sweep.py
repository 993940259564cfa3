"""The short-budget sweep that chose the CPU settings of the book's shakespeare_char model.

    python bench/cpu_sweep.py                     # every setting, BUDGET seconds of training each
    python bench/cpu_sweep.py --budget 60 b4x256  # one setting, a shorter budget

Each setting trains a character-level GPT on tinyshakespeare (nanoGPT's split) with lmbook.trainer on
the CPU (bf16 autocast and torch.compile, as configs/shakespeare_char.json does) for the same wall-clock
budget: a short probe measures the setting's seconds per step, the schedule is sized to fill the
budget, and the run's validation loss at the end is what the setting buys for that time. Results go
to bench/results/shakespeare_char_cpu_sweep.{txt,json}, merged with earlier entries.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lmbook import tokens  # noqa: E402
from lmbook.data import load_text  # noqa: E402
from lmbook.trainer import Trainer, TrainConfig  # noqa: E402

BUDGET = 240  # seconds of training per setting
COMMON = dict(dataset="tinyshakespeare", data_dir="data/shakespeare_char", device="cpu", dtype="bfloat16",
              compile=True, fused_adamw=False, lr=1e-3, min_lr=1e-4, warmup_steps=100, weight_decay=0.1,
              beta2=0.99, grad_clip=1.0, eval_windows=512, log_every=25, progress=False, seed=1337)
SETTINGS = {  # name: model and batch
    "b4x256_c128": dict(n_layer=4, n_head=4, n_embd=256, block_size=128, batch_size=32, dropout=0.1),
    "b6x256_c128": dict(n_layer=6, n_head=4, n_embd=256, block_size=128, batch_size=32, dropout=0.1),
    "b4x384_c128": dict(n_layer=4, n_head=6, n_embd=384, block_size=128, batch_size=32, dropout=0.1),
    "b4x256_c128_lr2e-3": dict(n_layer=4, n_head=4, n_embd=256, block_size=128, batch_size=32, dropout=0.1, lr=2e-3),
}
RESULTS = ROOT / "bench" / "results" / "shakespeare_char_cpu_sweep"


def seconds_per_step(settings: dict, data_dir: Path, steps: int = 15) -> float:
    """Time `steps` training steps after compilation (and 5 warm-up steps)."""
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(**(COMMON | settings | dict(data_dir=str(data_dir), out_dir=tmp, max_steps=10**6)))
        return Trainer(config).benchmark(steps=steps, warmup=5)["step_ms"] / 1000


def run(name: str, budget: float, data_dir: Path) -> dict:
    settings = SETTINGS[name]
    per_step = seconds_per_step(settings, data_dir)
    steps = max(200, int(budget / per_step))
    out_dir = Path(tempfile.mkdtemp(prefix=f"cpu_sweep_{name}_"))
    config = TrainConfig(**(COMMON | settings | dict(data_dir=str(data_dir), out_dir=str(out_dir), max_steps=steps,
                                                     eval_every=max(1, steps // 6), checkpoint_every=0,
                                                     keep_checkpoints=1)))
    start = time.perf_counter()
    m = Trainer(config).fit()
    wall = time.perf_counter() - start
    shutil.rmtree(out_dir, ignore_errors=True)
    return {"settings": settings, "probe_seconds_per_step": per_step, "steps": steps,
            "tokens": steps * settings["batch_size"] * settings["block_size"], "train_seconds": m.train_seconds,
            "wall_seconds": wall, "eval_step": m.eval_step, "val": m.eval_loss["val"], "train": m.eval_loss["train"],
            "params": m.info["params"], "threads": torch.get_num_threads(), "load_average": os.getloadavg()[0],
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def table(results: dict) -> str:
    lines = ["Short-budget sweep for the CPU shakespeare_char model (bench/cpu_sweep.py): each setting trained "
             "for about the same wall time", f"machine: {results['machine']}", "",
             f"{'setting':14s} {'params':>9s} {'steps':>6s} {'tokens':>7s} {'train s':>8s} {'val (end)':>9s} "
             f"{'train (end)':>11s}  threads  load"]
    for name, r in results["runs"].items():
        lines.append(f"{name:14s} {r['params']:9,d} {r['steps']:6d} {r['tokens'] / 1e6:6.2f}M {r['train_seconds']:8.0f} "
                     f"{r['val'][-1]:9.4f} {r['train'][-1]:11.4f}  {r['threads']:7d}  {r['load_average']:4.1f}")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(SETTINGS), help=f"settings to run (default all: {list(SETTINGS)})")
    parser.add_argument("--budget", type=float, default=BUDGET, help="seconds of training per setting")
    args = parser.parse_args()
    data_dir = ROOT / COMMON["data_dir"]
    if not (data_dir / "meta.json").is_file():
        tokens.prepare_chars(load_text(COMMON["dataset"]), data_dir)
    results = json.loads(RESULTS.with_suffix(".json").read_text()) if RESULTS.with_suffix(".json").is_file() else {"runs": {}}
    results["machine"] = (f"{os.cpu_count()} cpus, python {platform.python_version()}, torch {torch.__version__}, "
                          f"budget {args.budget:.0f} s per setting")
    for name in args.names:
        results["runs"][name] = run(name, args.budget, data_dir)
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
        RESULTS.with_suffix(".txt").write_text(table(results))
        print(table(results), flush=True)


if __name__ == "__main__":
    main()
