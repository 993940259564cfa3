"""Kneser-Ney character n-grams on the book's language-model splits: the baselines its trained GPTs
are compared with (chapter 1's model, lmbook.ngram, on lmbook.data.lm_split).

    python bench/ngram_baselines.py          # writes bench/results/ngram_baselines.{txt,json}

For each dataset, orders 1 to MAX_ORDER are fitted on the training text as one stream of characters
and scored on the validation text (nats per character); the best order is the baseline.
"""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from lmbook import ngram  # noqa: E402
from lmbook.data import lm_split  # noqa: E402

MAX_ORDER = 12
DATASETS = ("tinyshakespeare", "tang_poems")


def main() -> None:
    results, lines = {}, ["Kneser-Ney character n-grams (lmbook.ngram) on the book's splits (lmbook.data.lm_split):",
                          "validation loss in nats per character, by order", ""]
    for name in DATASETS:
        train, val = lm_split(name)
        losses = {}
        for n in range(1, MAX_ORDER + 1):
            start = time.perf_counter()
            model = ngram.NgramLM(n, "kneser_ney").fit([list(train)])
            losses[n] = math.log(model.perplexity([list(val)]))
            print(f"{name} n={n}: {losses[n]:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)
        best = min(losses, key=losses.get)
        results[name] = {"train_chars": len(train), "val_chars": len(val), "val_loss": losses, "best_order": best,
                         "best_val_loss": losses[best]}
        lines.append(f"{name:16s} ({len(train):,} training, {len(val):,} validation characters)")
        lines.append("  " + "  ".join(f"n={n}: {v:.4f}" for n, v in losses.items()))
        lines.append(f"  best: n={best}, {losses[best]:.4f} nats/char")
    out = ROOT / "bench" / "results" / "ngram_baselines"
    out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    out.with_suffix(".txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
