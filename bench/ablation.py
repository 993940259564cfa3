"""From chapter 5's GPT to a Llama-style block, one change at a time, 3 seeds each (chapter 9).

    python bench/ablation.py                  # the cpu profile's models (about 6 minutes of one core)
    python bench/ablation.py --profile gpu    # larger models and budget, on a GPU

Each row of lmbook.llama.ablation_ladder adds one change to the row before it (no biases, RMSNorm,
SwiGLU, rotary positions, grouped-query attention, an untied output layer), at equal parameters in
the blocks; one more row swaps the learned position table of the SwiGLU row for fixed sinusoids
(chapter 9's length-generalisation experiment uses it). Every row is trained with the same recipe
(lmbook.scaling.train_and_evaluate: chapter 7's trainer, AdamW, warm-up and cosine, the same tokens
for every row and seed) and scored on every window of the validation split.

The learning rate is chosen first, by a probe on the first and the last row (seed 0) over the
profile's `lrs`, widened by its own step while the best rate is at one of its ends: the rate with the
lowest mean validation loss of the two rows is used for every row, so no row gets its own tuning (the
probe's losses are in the results, to show whether the rows would have wanted another). The probe's
runs at that rate are the two rows' seed-0 runs (the same run; it is not trained twice).

Writes bench/results/ablation_<profile>.json (the command, machine, date, load average, settings,
the probe, and every run's losses), a table in ablation_<profile>.txt, and the seed-0 models of the
three rows that differ only in their positions (learned, rotary, sinusoidal) in
ablation_<profile>_models/ (safetensors and JSON, lmbook.llama.save_llama): chapter 9 measures how
they read texts longer than they were trained on.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from lmbook import data, llama, tokens
from lmbook.scaling import train_and_evaluate

RESULTS = Path(__file__).parent / "results"
PROFILES = {
    # model (n_layer, n_head, n_embd, n_kv_head), context, batch, steps, learning rates to probe, seeds
    "test": dict(model=(1, 2, 24, 1), block_size=32, batch_size=4, steps=10, lrs=(3e-3,), seeds=(0, 1, 2)),
    "cpu": dict(model=(2, 4, 48, 2), block_size=128, batch_size=16, steps=200, lrs=(5e-3, 1e-2, 2e-2),
                seeds=(0, 1, 2)),
    "gpu": dict(model=(6, 6, 384, 2), block_size=256, batch_size=64, steps=2000, lrs=(5e-4, 1e-3, 2e-3),
                seeds=(0, 1, 2)),
}


def shakespeare_tokens():
    """(train, val) character ids of tinyshakespeare's standard split, and the vocabulary."""
    train_text, val_text = data.lm_split("tinyshakespeare")
    chars = tokens.char_vocab(data.load_text("tinyshakespeare"))
    return (tokens.encode_chars(train_text, chars), tokens.encode_chars(val_text, chars)), chars


def rows(vocab_size: int, settings: dict) -> list[tuple[str, llama.LlamaConfig]]:
    """The ladder, and the SwiGLU row with sinusoidal positions after it."""
    n_layer, n_head, n_embd, n_kv_head = settings["model"]
    ladder = llama.ablation_ladder(vocab_size, settings["block_size"], n_layer, n_head, n_embd, n_kv_head)
    swiglu = dict(ladder)["SwiGLU"]
    return ladder + [("sinusoidal positions (instead of learned, SwiGLU row)", replace(swiglu, positions="sinusoidal"))]


LENGTH_ROWS = {"SwiGLU": "learned", "rotary positions": "rotary",
               "sinusoidal positions (instead of learned, SwiGLU row)": "sinusoidal"}


def run(config: llama.LlamaConfig, seed: int, lr: float, settings: dict, tokens_, save_to: Path | None = None) -> dict:
    torch.manual_seed(seed)
    model = llama.Llama(config)
    result = train_and_evaluate(model, tokens_, steps=settings["steps"], batch_size=settings["batch_size"],
                                block_size=settings["block_size"], lr=lr, seed=seed,
                                dtype="float32" if not torch.cuda.is_available() else "auto")
    if save_to is not None:
        llama.save_llama(model.to("cpu"), save_to)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=list(PROFILES), default="cpu")
    args = parser.parse_args(argv)
    settings = PROFILES[args.profile]
    torch.set_num_threads(1 if not torch.cuda.is_available() else torch.get_num_threads())
    tokens_, chars = shakespeare_tokens()
    table = rows(len(chars), settings)
    machine = (f"{os.cpu_count()} cpus, python {platform.python_version()}, torch {torch.__version__}, "
               f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, "
               f"{torch.get_num_threads()} torch thread(s)")
    out = {"command": "python bench/ablation.py" + (f" --profile {args.profile}" if args.profile != "cpu" else ""),
           "machine": machine, "date": time.strftime("%Y-%m-%d"), "load_at_start": os.getloadavg()[0],
           "settings": settings | {"tokens_per_run": settings["steps"] * settings["batch_size"] * settings["block_size"],
                                   "dataset": "tinyshakespeare, characters, lmbook.data.lm_split"},
           "lr_probe": [], "rows": []}
    path = RESULTS / f"ablation_{args.profile}.json"
    start = time.time()

    def save():
        out["wall_seconds"] = round(time.time() - start, 1)
        path.write_text(json.dumps(out, indent=1) + "\n")

    print(f"{machine}; load {out['load_at_start']:.2f}; {out['settings']['tokens_per_run']:,} tokens per run", flush=True)
    done = {}  # (row, seed, lr) -> result: the probe's runs at the chosen rate are reused, not repeated
    probed_rows = [table[0], table[-2]]
    grid = sorted(settings["lrs"])
    while True:  # the grid, widened by its own step while the best rate is at one of its ends
        for name, config in probed_rows:
            for lr in grid:
                if (name, 0, lr) not in done:
                    try:
                        done[name, 0, lr] = r = run(config, 0, lr, settings, tokens_)
                    except FloatingPointError:  # diverged: the worst possible result for this rate
                        done[name, 0, lr] = r = {"val": float("inf")}
                    out["lr_probe"].append({"row": name, "lr": lr, "val": r["val"] if r["val"] < float("inf") else None})
                    print(f"  probe {name:28s} lr {lr:.0e}: val {r['val']:.4f}", flush=True)
                    save()
        mean_val = {lr: statistics.mean(done[name, 0, lr]["val"] for name, _ in probed_rows) for lr in grid}
        lr = min(mean_val, key=mean_val.get)
        if len(grid) > 1 and lr == grid[0]:
            grid.insert(0, lr / (grid[1] / grid[0]))
        elif len(grid) > 1 and lr == grid[-1]:
            grid.append(lr * (grid[-1] / grid[-2]))
        else:
            break
    out["lr"] = lr
    print(f"learning rate for every row: {lr:g}", flush=True)
    for name, config in table:
        row = {"name": name, "config": config.to_dict(), "params": llama.param_count(config),
               "non_embedding_params": llama.non_embedding_params(config), "runs": []}
        out["rows"].append(row)
        for seed in settings["seeds"]:
            keep = (RESULTS / f"ablation_{args.profile}_models" / LENGTH_ROWS[name]
                    if name in LENGTH_ROWS and seed == 0 else None)
            r = done.get((name, seed, lr)) if keep is None else None  # the probe's finished run, if any
            r = r or run(config, seed, lr, settings, tokens_, save_to=keep)
            row["runs"].append({"seed": seed, "val": r["val"], "train": r["train"], "seconds": round(r["seconds"], 1)})
            print(f"  {name:28s} seed {seed}: val {r['val']:.4f} train {r['train']:.4f} ({r['seconds']:.0f} s)", flush=True)
            save()
    save()
    lines = [f"{out['command']} | {out['date']} | {machine} | load {out['load_at_start']:.2f} at start | "
             f"{out['wall_seconds']:.0f} s", f"{out['settings']['tokens_per_run']:,} tokens per run, lr {lr:g}", ""]
    base = statistics.mean(r["val"] for r in out["rows"][0]["runs"])
    for row in out["rows"]:
        vals = [r["val"] for r in row["runs"]]
        lines.append(f"{row['name']:55s} {row['params']:>9,} {row['non_embedding_params']:>9,}  val "
                     f"{statistics.mean(vals):.4f} ± {statistics.stdev(vals):.4f}  vs GPT {statistics.mean(vals) - base:+.4f}")
    (RESULTS / f"ablation_{args.profile}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
