"""What pays when lmbook.trainer trains on a CPU (chapter 7): number format, compilation, threads.

    python bench/bench_cpu_recipe.py      # writes bench/results/cpu_recipe.{txt,json}

1. Training tokens per second of the laptop model (configs/shakespeare_char_cpu.json: 4 layers x 128,
   context 64, batch 12) for eager float32 (nanoGPT's CPU example), bf16 autocast, and each with
   torch.compile, at every thread count up to the machine's cores: medians of REPEATS interleaved
   measurements, so that a neighbour's load hits every setting alike.
2. The shipped laptop run itself, `python -m lmbook.trainer --config configs/shakespeare_char_cpu.json`,
   timed from the command's start to its end (start-up, compilation, evaluations and export included),
   and its final validation loss.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from lmbook import tokens  # noqa: E402
from lmbook.data import lm_split, load_text  # noqa: E402
from lmbook.trainer import Trainer, TrainConfig, bf16_native  # noqa: E402

SETTINGS = [("eager float32", dict(dtype="float32", compile=False)),
            ("bf16 autocast", dict(dtype="bfloat16", compile=False)),
            ("float32 + compile", dict(dtype="float32", compile=True)),
            ("bf16 + compile", dict(dtype="bfloat16", compile=True))]
REPEATS, WARMUP, STEPS = 2, 5, 40
CONFIG = ROOT / "configs" / "shakespeare_char_cpu.json"
lines: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    lines.append(text)


def tokens_per_second(settings: dict, threads: int, data_dir: Path) -> float:
    torch.set_num_threads(threads)
    base = json.loads(CONFIG.read_text())
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig.from_dict(base | settings | dict(data_dir=str(data_dir), out_dir=tmp, max_steps=10**6,
                                                              progress=False))
        result = Trainer(config).benchmark(steps=STEPS, warmup=WARMUP)
    torch.compiler.reset()
    return result["tokens_per_second"]


def main() -> None:
    cores = os.cpu_count() or 1
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    say(f"machine: {cpu}, {cores} cores, bf16 instructions: {bf16_native(torch.device('cpu'))} | python "
        f"{platform.python_version()}, torch {torch.__version__} | {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"| load average {os.getloadavg()[0]:.1f}")
    base = json.loads(CONFIG.read_text())
    data_dir = ROOT / base["data_dir"]
    if not (data_dir / "meta.json").is_file():
        tokens.prepare_char_split(*lm_split(base["dataset"]), data_dir, vocab_text=load_text(base["dataset"]))
    say(f"1. training tokens/s, {base['n_layer']} layers x {base['n_embd']}, context {base['block_size']}, batch "
        f"{base['batch_size']} ({STEPS} steps after {WARMUP}; median of {REPEATS} interleaved measurements)")
    results = {"machine": lines[0], "threads": {}}
    thread_counts = sorted({1, cores})
    for threads in thread_counts:
        runs = {name: [] for name, _ in SETTINGS}
        for _ in range(REPEATS):
            for name, settings in SETTINGS:
                runs[name].append(tokens_per_second(settings, threads, data_dir))
        medians = {name: statistics.median(v) for name, v in runs.items()}
        base_tps = medians["eager float32"]
        results["threads"][threads] = {name: {"median": medians[name], "runs": runs[name]} for name in runs}
        for name in runs:
            say(f"  {threads} thread{'s' if threads > 1 else ' '}  {name:18s} {medians[name]:9,.0f} tok/s  "
                f"{medians[name] / base_tps:5.2f}x")
    say(f"\n2. the laptop run: python -m lmbook.trainer --config {CONFIG.relative_to(ROOT)} "
        f"(dtype {base.get('dtype', 'auto')}, compile {base.get('compile')})")
    with tempfile.TemporaryDirectory() as tmp:
        start = time.perf_counter()
        done = subprocess.run([sys.executable, "-m", "lmbook.trainer", "--config", str(CONFIG), "--out_dir", tmp,
                               "--progress", "false"], cwd=ROOT, capture_output=True, text=True,
                              env=os.environ | {"PYTHONPATH": str(ROOT)})
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise SystemExit(done.stderr[-3000:])
        m = json.loads((Path(tmp) / "metrics.json").read_text())
    results["laptop_run"] = {"wall_seconds": wall, "train_seconds": m["train_seconds"], "val": m["eval_loss"]["val"][-1],
                             "steps": m["eval_step"][-1], "info": m["info"]}
    say(f"  {m['eval_step'][-1]} steps: val loss {m['eval_loss']['val'][-1]:.4f}; {wall:.0f} s from start to end "
        f"({m['train_seconds']:.0f} s in training steps, {m['info'].get('first_step_seconds', 0):.0f} s of it the "
        f"first step), dtype {m['info']['dtype']}, compile {m['info']['compile']}")
    out = ROOT / "bench" / "results" / "cpu_recipe"
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
