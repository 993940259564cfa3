"""Kneser–Ney on tinyshakespeare words: lmbook.ngram against NLTK (chapter 1).

    python bench/bench_ngram.py        # prints, and writes bench/results/ngram.txt

Both models are order 3, discount 0.75, and read words seen once in training as <unk>
(min_count=2 / unk_cutoff=2), so <unk> has real counts. NLTK is fitted through
padded_everygram_pipeline minus the n-grams lmbook never counts (those ending in <s>, and those
running past the first </s>); tests/test_ngram.py shows the two models are then equal to 1e-9.
One non-empty line is one sequence; train is the first 90% of the text, validation the last 10%.

NLTK's Kneser–Ney is slow to score (each lower-order probability loops over every n-gram of the
order above), so NLTK scores only the first validation lines, for about NLTK_SECONDS; lmbook
scores exactly those tokens too, and NLTK's time on the whole validation set is extrapolated.
"""

import os
import platform
import re
import time
from pathlib import Path

import nltk
import numpy as np
from nltk.lm import KneserNeyInterpolated, Vocabulary
from nltk.lm.preprocessing import padded_everygram_pipeline

from lmbook.data import shakespeare_split
from lmbook.ngram import BOS, EOS, UNK, NgramLM, pad

ORDER, DISCOUNT, MIN_COUNT = 3, 0.75, 2
NLTK_SECONDS = 45.0
RESULTS = Path(__file__).parent / "results" / "ngram.txt"
lines_out: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    lines_out.append(text)


def words(text: str) -> list[list[str]]:
    return [re.findall(r"[A-Za-z']+|[^\sA-Za-z']", line) for line in text.splitlines() if line.strip()]


def best_of(runs: int, f):
    """(the fastest of `runs` wall times, f's last result)."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        result = f()
        times.append(time.perf_counter() - start)
    return min(times), result


def fit_nltk(train):
    grams, vocabulary_text = padded_everygram_pipeline(ORDER, train)
    grams = ([g for g in gs if g[-1] != BOS and EOS not in g[:-1]] for gs in grams)
    lm = KneserNeyInterpolated(ORDER, discount=DISCOUNT, vocabulary=Vocabulary(unk_cutoff=MIN_COUNT, unk_label=UNK))
    lm.fit(grams, vocabulary_text)
    return lm


def main() -> None:
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    say(f"machine: {os.cpu_count()} cpus ({cpu}), python {platform.python_version()}, "
        f"numpy {np.__version__}, nltk {nltk.__version__}")
    train_text, val_text = shakespeare_split()
    train, val = words(train_text), words(val_text)
    n_train, n_val = (sum(len(s) + 1 for s in seqs) for seqs in (train, val))  # + 1: </s>
    say(f"tinyshakespeare words: train {len(train)} lines, {n_train} predicted tokens; "
        f"validation {len(val)} lines, {n_val} tokens")
    say(f"Kneser-Ney, order {ORDER}, discount {DISCOUNT}, min_count {MIN_COUNT}")
    say()

    # lmbook: fit on all of train, score all of validation (measured, fastest of 3).
    ours_fit, ours = best_of(3, lambda: NgramLM(ORDER, "kneser_ney", discount=DISCOUNT, min_count=MIN_COUNT).fit(train))
    ours_train, train_probs = best_of(3, lambda: ours.token_probs(train))
    ours_val, val_probs = best_of(3, lambda: ours.token_probs(val))
    say(f"lmbook  fit train:                {ours_fit:9.3f} s  (measured)")
    say(f"lmbook  score all train:          {ours_train:9.3f} s  (measured, {1e6 * ours_train / n_train:.2f} µs/token); "
        f"train perplexity {np.exp(-np.log(train_probs).mean()):.4f}")
    say(f"lmbook  score all validation:     {ours_val:9.3f} s  (measured, {1e6 * ours_val / n_val:.2f} µs/token)")
    say(f"lmbook  fit + score train and validation: {ours_fit + ours_train + ours_val:.3f} s  (measured)")
    say(f"lmbook  fit + score validation:   {ours_fit + ours_val:9.3f} s  (measured); "
        f"validation perplexity {np.exp(-np.log(val_probs).mean()):.4f}")
    say()

    # NLTK: fit on all of train (measured), then score whole validation lines until NLTK_SECONDS.
    start = time.perf_counter()
    theirs = fit_nltk(train)
    nltk_fit = time.perf_counter() - start
    say(f"nltk    fit train:                {nltk_fit:9.3f} s  (measured)")
    nltk_probs, n_lines, start = [], 0, time.perf_counter()
    while time.perf_counter() - start < NLTK_SECONDS and n_lines < len(val):
        padded = pad(val[n_lines], ORDER)
        nltk_probs += [theirs.score(padded[i], tuple(padded[i - ORDER + 1 : i])) for i in range(ORDER - 1, len(padded))]
        n_lines += 1
    nltk_score = time.perf_counter() - start
    n = len(nltk_probs)
    nltk_per_token = nltk_score / n
    say(f"nltk    score first {n} val tokens: {nltk_score:7.3f} s  (measured, {1e6 * nltk_per_token:.0f} µs/token, "
        f"{n_lines} lines)")

    # lmbook on exactly the same tokens.
    ours_same, same_probs = best_of(3, lambda: ours.token_probs(val[:n_lines]))
    say(f"lmbook  score the same tokens:    {ours_same:9.4f} s  (measured, {1e6 * ours_same / n:.2f} µs/token)")
    nltk_probs = np.array(nltk_probs)
    say(f"compared {n} tokens (every token of those lines, </s> and <unk> included): "
        f"max |p_lmbook - p_nltk| = {np.abs(same_probs - nltk_probs).max():.2e}")
    say(f"perplexity on those tokens: lmbook {np.exp(-np.log(same_probs).mean()):.10f}, "
        f"nltk {np.exp(-np.log(nltk_probs).mean()):.10f}")
    say()

    nltk_val = nltk_per_token * n_val
    say(f"nltk    score all validation:     {nltk_val:9.1f} s  (EXTRAPOLATED: {n_val} tokens x measured µs/token)")
    say(f"nltk    fit + score validation: {nltk_fit + nltk_val:9.1f} s  (fit measured + score extrapolated)")
    say()
    say("speed-ups (nltk time / lmbook time):")
    say(f"  fit train:                              {nltk_fit / ours_fit:10.0f}x  (both measured)")
    say(f"  score the same {n} tokens:             {nltk_score / ours_same:10.0f}x  (both measured)")
    say(f"  score per token, lmbook on all of val:  {nltk_per_token / (ours_val / n_val):10.0f}x  "
        f"(nltk per-token measured on {n}, lmbook on {n_val})")
    say(f"  fit + score the whole validation set:   {(nltk_fit + nltk_val) / (ours_fit + ours_val):10.0f}x  "
        f"(nltk partly extrapolated, lmbook measured)")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    print(f"(written to {RESULTS.relative_to(Path(__file__).parent.parent)})")


if __name__ == "__main__":
    main()
