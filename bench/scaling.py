"""The scaling sweep of chapter 9: model sizes x compute budgets, the law fitted, and a prediction
for a larger model made before that model is trained.

    python bench/scaling.py                  # the cpu profile: about 5 minutes of one core
    python bench/scaling.py --profile gpu    # larger models and budgets, 3 seeds everywhere, on a GPU

Every run is a Llama-style model (lmbook.llama, multi-head attention, SwiGLU, rotary positions) on
tinyshakespeare's characters (lmbook.data.lm_split), trained by chapter 7's trainer through
lmbook.scaling.train_and_evaluate (AdamW, warm-up, a cosine that ends with the run) and scored on
every non-overlapping window of the validation split. N counts the parameters outside the token
embedding and the output layer (Kaplan et al.'s non-embedding N); D the training tokens; C = 6ND.

The plan, in the order the script runs it:

1. Learning rates: the smallest and the largest size are trained on probe_tokens tokens at each of
   lrs, a grid widened by its own step while the best rate is at one of its ends (so that a neighbour
   on each side is worse); each keeps its best rate, and every other size gets the rate interpolated
   in log N between.
2. The grid: every size at every compute budget C in LEVELS whose D = C / 6N lies in the allowed
   range of tokens, so that each budget is an IsoFLOP profile (runs of equal compute, different
   sizes) and each size is trained for 3 or more numbers of tokens. The `replicated` points
   (size index, budget index) get 3 seeds, the others one.
3. The fits, on the mean over seeds of each point: Hoffmann et al.'s approach 3 (lmbook.scaling.fit_law,
   with a bootstrap), and approach 2 (a parabola per IsoFLOP profile, its vertex the best size).
4. The prediction: the law's loss for `held_out`, a model larger than any in the grid, at the
   largest budget, written to the results file (with the time) before that model is trained.
5. The held-out model, 3 seeds; its mean loss against the prediction.

Results: bench/results/scaling_<profile>.json (the command, machine, date, load average, every run)
and a summary in scaling_<profile>.txt. The file is rewritten after every run, so an interrupted
sweep keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

from lmbook import llama, scaling

sys.path.insert(0, str(Path(__file__).parent))
from ablation import shakespeare_tokens  # noqa: E402  (the same data as the ablations)

RESULTS = Path(__file__).parent / "results"
PROFILES = {
    "test": dict(sizes=[(1, 2, 16), (1, 2, 24), (2, 2, 24)], held_out=(2, 2, 32), block_size=32, batch_size=8,
                 levels=[1e8, 3e8], tokens=(2_000, 40_000), lrs=(3e-3, 1e-2), probe_tokens=4_000,
                 replicated=[(0, 0)], seeds=(0, 1, 2), bootstrap=4),
    "cpu": dict(sizes=[(1, 2, 16), (1, 2, 24), (2, 2, 32), (2, 3, 48), (3, 4, 64), (4, 5, 80)],
                held_out=(6, 6, 96), block_size=64, batch_size=16,
                levels=[3e9, 1e10, 3e10, 1e11, 3e11], tokens=(16_000, 3_000_000), lrs=(3e-3, 1e-2, 3e-2),
                probe_tokens=60_000, replicated=[(1, 1), (3, 2), (5, 4)], seeds=(0, 1, 2), bootstrap=50),
    "gpu": dict(sizes=[(2, 2, 32), (2, 4, 64), (4, 4, 96), (4, 6, 144), (6, 8, 192), (8, 8, 256)],
                held_out=(10, 12, 384), block_size=128, batch_size=64,
                levels=[3e11, 1e12, 3e12, 1e13, 3e13], tokens=(100_000, 20_000_000), lrs=(1e-3, 2.5e-3, 6e-3),
                probe_tokens=1_000_000, replicated="all", seeds=(0, 1, 2), bootstrap=200),
}


def config_of(size: tuple[int, int, int], vocab_size: int, block_size: int) -> llama.LlamaConfig:
    n_layer, n_head, n_embd = size
    return llama.LlamaConfig(vocab_size, block_size, n_layer, n_head, n_embd)


def plan(settings: dict, vocab_size: int) -> list[dict]:
    """One entry per (size, budget) point of the grid: the size, C, the steps (D = C / 6N, rounded
    to whole steps) and how many seeds."""
    tokens_per_step = settings["batch_size"] * settings["block_size"]
    low, high = settings["tokens"]
    points = []
    for i, size in enumerate(settings["sizes"]):
        N = llama.non_embedding_params(config_of(size, vocab_size, settings["block_size"]))
        for j, C in enumerate(settings["levels"]):
            D = C / (6 * N)
            if low <= D <= high:
                replicated = settings["replicated"] == "all" or (i, j) in settings["replicated"]
                points.append({"size": list(size), "N": N, "level": C, "steps": max(1, round(D / tokens_per_step)),
                               "seeds": list(settings["seeds"] if replicated else settings["seeds"][:1])})
    return points


def lr_for(N: int, probe: dict[int, float]) -> float:
    """The learning rate for N non-embedding parameters: the probed sizes' best, interpolated in log N."""
    known = sorted(probe.items())
    if N <= known[0][0]:
        return known[0][1]
    if N >= known[-1][0]:
        return known[-1][1]
    for (n0, lr0), (n1, lr1) in zip(known, known[1:]):
        if n0 <= N <= n1:
            t = (math.log(N) - math.log(n0)) / (math.log(n1) - math.log(n0))
            return math.exp(math.log(lr0) + t * (math.log(lr1) - math.log(lr0)))
    raise AssertionError("unreachable")


def train_point(size, steps: int, lr: float, seed: int, settings: dict, tokens_, vocab_size: int) -> dict:
    """One run of the sweep; the chapter re-runs a point with exactly this function's settings."""
    config = config_of(size, vocab_size, settings["block_size"])
    torch.manual_seed(seed)
    model = llama.Llama(config)
    r = scaling.train_and_evaluate(model, tokens_, steps=steps, batch_size=settings["batch_size"],
                                   block_size=settings["block_size"], lr=lr, seed=seed,
                                   dtype="float32" if not torch.cuda.is_available() else "auto")
    return {"val": r["val"], "train": r["train"], "tokens": r["tokens"], "seconds": round(r["seconds"], 1)}


def points_of(runs: list[dict]) -> list[dict]:
    """The runs grouped by (size, steps): mean and spread of the validation loss over seeds."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault((tuple(r["size"]), r["steps"]), []).append(r)
    out = []
    for (size, steps), rs in groups.items():
        vals = [r["val"] for r in rs]
        out.append({"size": list(size), "N": rs[0]["N"], "D": rs[0]["tokens"], "level": rs[0]["level"],
                    "steps": steps, "val": statistics.mean(vals), "val_std": statistics.stdev(vals) if len(vals) > 1 else None,
                    "train": statistics.mean(r["train"] for r in rs), "seeds": len(rs)})
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", choices=list(PROFILES), default="cpu")
    args = parser.parse_args(argv)
    s = PROFILES[args.profile]
    torch.set_num_threads(1 if not torch.cuda.is_available() else torch.get_num_threads())
    tokens_, chars = shakespeare_tokens()
    V = len(chars)
    machine = (f"{os.cpu_count()} cpus, python {platform.python_version()}, torch {torch.__version__}, "
               f"{'cuda ' + torch.cuda.get_device_name() if torch.cuda.is_available() else 'no GPU'}, "
               f"{torch.get_num_threads()} torch thread(s)")
    path = RESULTS / f"scaling_{args.profile}.json"
    out = {"command": "python bench/scaling.py" + (f" --profile {args.profile}" if args.profile != "cpu" else ""),
           "machine": machine, "date": time.strftime("%Y-%m-%d"), "load_at_start": os.getloadavg()[0],
           "settings": {k: v for k, v in s.items()} | {"vocab_size": V, "dataset": "tinyshakespeare characters",
                                                      "N": "non-embedding parameters", "C": "6ND"},
           "lr_probe": [], "runs": []}
    start = time.time()

    def save():
        out["wall_seconds"] = round(time.time() - start, 1)
        path.write_text(json.dumps(out, indent=1) + "\n")

    def say(text):
        print(text, flush=True)

    say(f"{machine}; load {out['load_at_start']:.2f}")
    # 1. learning rates
    tokens_per_step = s["batch_size"] * s["block_size"]
    probed = [s["sizes"][0], s["sizes"][-1]]
    best = {}
    for size in probed:
        N = llama.non_embedding_params(config_of(size, V, s["block_size"]))
        results = {}
        grid = sorted(s["lrs"])
        while True:  # the grid, widened by its own step while the best rate is at one of its ends
            for lr in grid:
                if lr not in results:
                    probe_steps = max(1, s["probe_tokens"] // tokens_per_step)
                    try:
                        r = train_point(size, probe_steps, lr, 0, s, tokens_, V)
                    except FloatingPointError:  # diverged: the worst possible result for this rate
                        r = {"val": math.inf, "tokens": probe_steps * tokens_per_step}
                    results[lr] = r["val"]
                    out["lr_probe"].append({"size": list(size), "N": N, "lr": lr,
                                            "val": r["val"] if math.isfinite(r["val"]) else None, "tokens": r["tokens"]})
                    say(f"probe {size} N={N:,} lr {lr:g}: val {r['val']:.4f}")
                    save()
            lr_best, step = min(results, key=results.get), grid[1] / grid[0]
            if lr_best == grid[0]:
                grid.insert(0, lr_best / step)
            elif lr_best == grid[-1]:
                grid.append(lr_best * step)
            else:
                break
        best[N] = lr_best
    out["lr_best"] = {str(N): lr for N, lr in best.items()}
    # 2. the grid
    for point in plan(s, V):
        lr = lr_for(point["N"], best)
        for seed in point["seeds"]:
            r = train_point(point["size"], point["steps"], lr, seed, s, tokens_, V)
            out["runs"].append({"size": point["size"], "N": point["N"], "level": point["level"], "steps": point["steps"],
                                "lr": lr, "seed": seed, "flops_per_token": llama.flops_per_token(
                                    config_of(point["size"], V, s["block_size"])) } | r)
            say(f"{point['size']} N={point['N']:,} C={point['level']:.0e} D={r['tokens']:,} lr {lr:.2g} seed {seed}: "
                f"val {r['val']:.4f} train {r['train']:.4f} ({r['seconds']:.0f} s)")
            save()
    # 3. the fits
    points = points_of(out["runs"])
    N, D, L = ([p[k] for p in points] for k in ("N", "D", "val"))
    law = scaling.fit_law(N, D, L)
    out["points"], out["fit"] = points, law.to_dict()
    isoflop = []
    for C in s["levels"]:
        at = [p for p in points if p["level"] == C]
        entry = {"level": C, "sizes": len(at)}
        if len(at) >= 3:
            try:
                N_opt, info = scaling.isoflop_vertex([p["N"] for p in at], [p["val"] for p in at])
                entry |= {"N_opt": N_opt} | info
            except ValueError as e:
                entry["error"] = str(e)
        isoflop.append(entry)
    out["isoflop"] = isoflop
    say(f"fit: {law}")
    # 4. the prediction, written before the held-out model is trained
    held = config_of(s["held_out"], V, s["block_size"])
    N_held = llama.non_embedding_params(held)
    level = s["levels"][-1]
    steps = max(1, round(level / (6 * N_held) / tokens_per_step))
    D_held = steps * tokens_per_step
    fits = scaling.bootstrap(N, D, L, n=s["bootstrap"], seed=0)
    spread = [f(N_held, D_held) for f in fits]
    out["prediction"] = {"size": list(s["held_out"]), "N": N_held, "D": D_held, "level": level, "steps": steps,
                         "lr": lr_for(N_held, best), "predicted": law(N_held, D_held),
                         "bootstrap": {"n": len(fits), "mean": statistics.mean(spread), "std": statistics.stdev(spread),
                                       "p05": sorted(spread)[int(0.05 * len(spread))],
                                       "p95": sorted(spread)[int(0.95 * len(spread)) - 1],
                                       "fits": [f.to_dict() for f in fits]},
                         "predicted_at": time.strftime("%Y-%m-%d %H:%M:%S")}
    save()
    say(f"prediction for {s['held_out']} (N={N_held:,}, D={D_held:,}): {law(N_held, D_held):.4f} "
        f"(bootstrap {statistics.mean(spread):.4f} ± {statistics.stdev(spread):.4f})")
    # 5. the held-out model
    held_runs = []
    for seed in s["seeds"]:
        r = train_point(s["held_out"], steps, out["prediction"]["lr"], seed, s, tokens_, V)
        held_runs.append({"seed": seed} | r)
        out["held_out"] = {"runs": held_runs, "trained_at": time.strftime("%Y-%m-%d %H:%M:%S")}
        say(f"held-out seed {seed}: val {r['val']:.4f} ({r['seconds']:.0f} s)")
        save()
    vals = [r["val"] for r in held_runs]
    out["held_out"] |= {"mean": statistics.mean(vals), "std": statistics.stdev(vals),
                        "error": out["prediction"]["predicted"] - statistics.mean(vals)}
    save()
    lines = [f"{out['command']} | {out['date']} | {machine} | load {out['load_at_start']:.2f} at start | "
             f"{out['wall_seconds']:.0f} s",
             f"learning rates: best of {list(s['lrs'])} at {PROFILES[args.profile]['probe_tokens']:,} tokens per probed "
             f"size: {out['lr_best']}", "",
             f"{'size (L, h, d)':16s} {'N':>9s} {'C':>7s} {'D':>10s} {'val':>7s} {'± std':>7s} {'train':>7s}"]
    for p in sorted(points, key=lambda p: (p["N"], p["D"])):
        std = f"{p['val_std']:.4f}" if p["val_std"] is not None else "      -"
        lines.append(f"{str(tuple(p['size'])):16s} {p['N']:9,} {p['level']:7.0e} {p['D']:10,} {p['val']:7.4f} {std:>7s} "
                     f"{p['train']:7.4f}")
    lines += ["", f"approach 3: L(N, D) = {law.E:.3f} + {law.A:.4g}/N^{law.alpha:.3f} + {law.B:.4g}/D^{law.beta:.3f}"]
    for e in isoflop:
        if "N_opt" in e:
            lines.append(f"approach 2: C = {e['level']:.0e}: N_opt = {e['N_opt']:,.0f} "
                         f"({'inside' if e['inside'] else 'outside'} the sizes run)")
    p, h = out["prediction"], out["held_out"]
    lines += ["", f"held-out {tuple(p['size'])}, N = {p['N']:,}, D = {p['D']:,}: predicted {p['predicted']:.4f} "
                  f"(bootstrap {p['bootstrap']['mean']:.4f} ± {p['bootstrap']['std']:.4f}) at {p['predicted_at']}; "
                  f"measured {h['mean']:.4f} ± {h['std']:.4f} over {len(h['runs'])} seeds; error {h['error']:+.4f}"]
    (RESULTS / f"scaling_{args.profile}.txt").write_text("\n".join(lines) + "\n")
    say("\n".join(lines))


if __name__ == "__main__":
    main()
