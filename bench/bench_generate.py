"""Generation speed, measured as ratios within one run (lmbook.generate, chapter 8).

    python bench/bench_generate.py                      # writes bench/results/bench_generate.{json,txt}
    python bench/bench_generate.py --repeats 5 --model shakespeare_char

Three measurements, each interleaved (the variants take turns, repeat after repeat, so that a change
in the machine's load hits them alike; the medians are compared) with the load average recorded:

1. the KV cache: tokens/s of greedy generation from a one-character prompt with the cache, without it
   (the same context windows recomputed at every step: the same tokens, checked) and with nanoGPT's
   loop (``GPT.generate``: the last block_size tokens at every step), for several lengths;
2. lmbook's cached `generate` vs transformers' `generate` (its cache on) on the same weights (the
   committed model with zero biases, exported with `lmbook.hf.to_hf`), greedy, inside the context,
   the same tokens checked;
3. speculative decoding: the larger committed model as the target, and each draft in turn: the
   smaller committed model (when it is in runs/) and chapter 8's draft, a 2 x 128 GPT trained here
   (for 600 steps, where the chapter's time budget allows 200), sampling at temperature 1: the draft's
   cost per step c (its own tokens/s against the target's), the cost v of the target's pass over
   k + 1 tokens (in single-token passes), acceptance rate, tokens per target pass, and the speed-up
   over the target alone, measured and by the formula (1 - a^(k+1)) / ((1 - a)(kc + v)), for several k.

The committed model is ``shakespeare_char`` when it is in runs/, else ``shakespeare_char_gpu``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lmbook import generate, hf, models  # noqa: E402

RESULTS = ROOT / "bench" / "results"


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def kv_cache(model, prompt, lengths, repeats) -> dict:
    times = {n: {"cache": [], "no_cache": [], "nanogpt": []} for n in lengths}
    for _ in range(repeats):
        for n in lengths:
            times[n]["cache"].append(seconds(lambda: generate.generate(model, prompt, n, greedy=True)))
            times[n]["no_cache"].append(seconds(lambda: generate.generate(model, prompt, n, greedy=True, use_cache=False)))
            with torch.inference_mode():
                times[n]["nanogpt"].append(seconds(lambda: model.generate(prompt, n, top_k=1)))
    for n in lengths:
        assert torch.equal(generate.generate(model, prompt, n, greedy=True),
                           generate.generate(model, prompt, n, greedy=True, use_cache=False))
    out = {}
    for n in lengths:
        med = {k: statistics.median(v) for k, v in times[n].items()}
        out[n] = {f"{k}_tokens_per_s": n / t for k, t in med.items()} | {
            "speedup_vs_no_cache": med["no_cache"] / med["cache"], "speedup_vs_nanogpt": med["nanogpt"] / med["cache"]}
    return out


def versus_hf(model, prompt, repeats) -> dict:
    theirs = hf.to_hf(generate.with_biases(model)).eval()
    n = model.config.block_size - prompt.shape[1]
    kw = dict(attention_mask=torch.ones_like(prompt), do_sample=False, max_new_tokens=n, pad_token_id=0, use_cache=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        same = torch.equal(theirs.generate(prompt, **kw), generate.generate(model, prompt, n, greedy=True))
        ours, them = [], []
        for _ in range(repeats):
            ours.append(seconds(lambda: generate.generate(model, prompt, n, greedy=True)))
            with torch.inference_mode():
                them.append(seconds(lambda: theirs.generate(prompt, **kw)))
    t_ours, t_them = statistics.median(ours), statistics.median(them)
    return {"new_tokens": n, "same_tokens": same, "lmbook_tokens_per_s": n / t_ours,
            "transformers_tokens_per_s": n / t_them, "ratio": t_them / t_ours}


def speculative(target, drafts: dict, prompt, n, ks, repeats) -> dict:
    base, alone = [], {name: [] for name in drafts}
    runs = {name: {k: [] for k in ks} for name in drafts}
    for r in range(repeats):
        for k in ks:
            seed = 100 * r + k
            base.append(seconds(lambda: generate.generate(target, prompt, n, generator=torch.Generator().manual_seed(seed))))
            for name, draft in drafts.items():
                alone[name].append(seconds(lambda: generate.generate(draft, prompt, n,
                                                                     generator=torch.Generator().manual_seed(seed))))
                holder = {}

                def run():
                    holder["s"] = generate.speculative_generate(target, draft, prompt, n, k,
                                                                generator=torch.Generator().manual_seed(seed))[1]
                runs[name][k].append((seconds(run), holder["s"]))
    t_base = statistics.median(base)
    verify = verify_costs(target, ks)
    out = {"target_tokens_per_s": n / t_base, "verify_cost_v": verify, "drafts": {}}
    for name in drafts:
        c = statistics.median(alone[name]) / t_base
        by_k = {}
        for k in ks:
            stats = [s for _, s in runs[name][k]]
            accepted = sum(s.accepted for s in stats)
            a = accepted / (accepted + sum(s.rejected for s in stats))
            t = statistics.median([t for t, _ in runs[name][k]])
            by_k[k] = {"acceptance_rate": a,
                       "tokens_per_target_pass": sum(s.emitted for s in stats) / sum(s.target_calls for s in stats),
                       "tokens_per_s": n / t, "speedup": t_base / t,
                       "formula_speedup": ((1 - a ** (k + 1)) / (1 - a) if a < 1 else k + 1) / (k * c + verify[k])}
        out["drafts"][name] = {"draft_tokens_per_s": n / statistics.median(alone[name]), "cost_c": c, "by_k": by_k}
    return out


def verify_costs(target, ks, cached: int = 64, repeats: int = 25) -> dict:
    """v_k: the time of one target pass over k + 1 new tokens (after `cached` tokens in the cache), in
    single-token passes (medians of `repeats`)."""
    ids = torch.randint(0, target.config.vocab_size, (1, cached + max(ks) + 1), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        cache = generate.KVCache(target.config)
        target(ids[:, :cached], cache=cache)
        times = {}
        for T in [1] + [k + 1 for k in ks]:
            runs = []
            for _ in range(repeats):
                runs.append(seconds(lambda: target(ids[:, cached: cached + T], cache=cache)))
                cache.crop(cached)
            times[T] = statistics.median(runs)
    return {k: times[k + 1] / times[1] for k in ks}


def train_draft(chars: list[str], steps: int = 200):
    """Chapter 8's draft: a 2 x 128 GPT trained on the Shakespeare training text (the notebook's settings)."""
    from lmbook import data, tokens
    from lmbook.batching import stream_batches
    from lmbook.gpt import GPT, GPTConfig
    from lmbook.train import train

    ids = torch.from_numpy(tokens.encode_chars(data.shakespeare_split()[0], chars).astype("int64"))
    torch.manual_seed(1337)
    draft = GPT(GPTConfig(vocab_size=len(chars), block_size=128, n_layer=2, n_head=4, n_embd=128, bias=False))
    train(draft, stream_batches(ids, 128, 16, torch.Generator().manual_seed(1337)), steps=steps, lr=3e-3,
          weight_decay=0.1, lr_schedule=lambda t: min(1.0, (t + 1) / 20) * (0.1 + 0.9 * (1 - t / steps)),
          grad_clip=1.0, progress=False, device="cpu")
    return draft.eval()


def committed_or(name: str, fallback: str) -> str:
    try:
        models.path(name)
        return name
    except FileNotFoundError:
        return fallback


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="the committed model for 1 and 2 (default: shakespeare_char, "
                                                      "or shakespeare_char_gpu without it)")
    parser.add_argument("--target", default="shakespeare_char_gpu", help="the target of speculative decoding")
    parser.add_argument("--drafts", nargs="+", default=None, help="the drafts of speculative decoding: committed models "
                                                                  "or 'tiny' (default: shakespeare_char when present, and tiny)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512], help="tokens generated in 1")
    parser.add_argument("--spec-tokens", type=int, default=150, help="tokens generated in 3")
    parser.add_argument("--draft-steps", type=int, default=600, help="training steps of the 'tiny' draft")
    parser.add_argument("--out", default="bench_generate", help="the results' file name in bench/results/")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.model = args.model or committed_or("shakespeare_char", "shakespeare_char_gpu")
    args.drafts = args.drafts or list(dict.fromkeys([committed_or("shakespeare_char", "tiny"), "tiny"]))

    model, meta = models.load(args.model)
    newline = torch.tensor([[meta["chars"].index("\n")]])
    record = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{os.cpu_count()} cpus, {platform.processor() or platform.machine()}",
              "torch": torch.__version__, "threads": torch.get_num_threads(), "model": args.model,
              "load_before": os.getloadavg()[0]}
    record["kv_cache"] = kv_cache(model, newline, args.lengths, args.repeats)
    record["load_after_kv_cache"] = os.getloadavg()[0]
    record["versus_transformers"] = versus_hf(model, newline, args.repeats)
    record["load_after_transformers"] = os.getloadavg()[0]
    target, _ = models.load(args.target)
    tiny = f"2 x 128 GPT trained for {args.draft_steps} steps (chapter 8's draft)"
    drafts = {(tiny if name == "tiny" else name): (train_draft(meta["chars"], args.draft_steps) if name == "tiny"
                                                   else models.load(name)[0]) for name in args.drafts}
    record["speculative"] = {"target": args.target, "new_tokens": args.spec_tokens} | \
        speculative(target, drafts, newline, args.spec_tokens, [1, 2, 3, 4, 6], args.repeats)
    record["load_after"] = os.getloadavg()[0]

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"{args.out}.json").write_text(json.dumps(record, indent=1) + "\n")
    lines = [f"Generation speed (bench/bench_generate.py), {record['date']}, {record['machine']}, torch {record['torch']}, "
             f"{record['threads']} thread(s); {args.repeats} interleaved repeats, medians",
             f"load average (1 min): {record['load_before']:.2f} at the start, {record['load_after_kv_cache']:.2f}, "
             f"{record['load_after_transformers']:.2f}, {record['load_after']:.2f} after each part", "",
             f"1. KV cache, {args.model} (context {model.config.block_size}), greedy from one character: tokens/s",
             f"{'tokens':>7s} {'cache':>8s} {'no cache':>9s} {'nanoGPT':>8s} {'speed-up':>9s} {'vs nanoGPT':>11s}"]
    for n, r in record["kv_cache"].items():
        lines.append(f"{n:7d} {r['cache_tokens_per_s']:8.1f} {r['no_cache_tokens_per_s']:9.1f} {r['nanogpt_tokens_per_s']:8.1f} "
                     f"{r['speedup_vs_no_cache']:8.1f}x {r['speedup_vs_nanogpt']:10.1f}x")
    v = record["versus_transformers"]
    lines += ["", f"2. lmbook generate vs transformers generate (cache on), {args.model} with zero biases, greedy, "
                  f"{v['new_tokens']} tokens, same tokens: {v['same_tokens']}",
              f"   lmbook {v['lmbook_tokens_per_s']:.1f} tokens/s, transformers {v['transformers_tokens_per_s']:.1f} "
              f"tokens/s: ratio {v['ratio']:.2f}"]
    s = record["speculative"]
    lines += ["", f"3. speculative decoding, target {s['target']}, sampling at temperature 1, {s['new_tokens']} tokens; "
                  f"the target alone {s['target_tokens_per_s']:.1f} tokens/s",
              "   a target pass over k + 1 tokens costs v = " + ", ".join(f"{v:.2f} (k = {k})" for k, v in s["verify_cost_v"].items())
              + " single-token passes"]
    for name, d in s["drafts"].items():
        lines += [f"   draft {name}: {d['draft_tokens_per_s']:.1f} tokens/s alone, c = {d['cost_c']:.2f} of a target step",
                  f"{'k':>5s} {'acceptance':>11s} {'tokens/pass':>12s} {'tokens/s':>9s} {'speed-up':>9s} {'formula':>8s}"]
        for k, r in d["by_k"].items():
            lines.append(f"{k:5d} {r['acceptance_rate']:11.2f} {r['tokens_per_target_pass']:12.2f} {r['tokens_per_s']:9.1f} "
                         f"{r['speedup']:8.2f}x {r['formula_speedup']:7.2f}x")
    (RESULTS / f"{args.out}.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
