"""The "what you should see" page, book/expected.md: each chapter's headline numbers at every profile.

    python tools/expected.py measure   # run every chapter at the test profile, with 1 and with 2 threads,
                                       # and keep the headline numbers: bench/results/expected_test.json
    python tools/expected.py write     # write book/expected.md
    python tools/expected.py check     # exit 1 if book/expected.md is not what `write` would write

The numbers come from where the book keeps them, never typed in by hand: the cpu column from the
committed notebooks' outputs, the test column from `measure`, the gpu column from bench/results
(the chapters' runs on a GPU, the reference run). A headline is a pattern over a chapter's printed
output (HEADLINES below); a pattern that stops matching, because a chapter changed what it prints, is
an error, so the page cannot silently go stale (tests/test_expected.py runs `check`).
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "expected.md"
TEST_RESULTS = ROOT / "bench" / "results" / "expected_test.json"
GPU_LOG = ROOT / "bench" / "results" / "chapters_gpu.txt"

# chapter: [(what the number is, a regular expression whose first group is the number)]
HEADLINES: dict[str, list[tuple[str, str]]] = {
    "01_ngram": [
        ("names: count bigram (add-1), dev nats/char", r"count bigram \(add-1\)\s+names dev loss ([\d.]+)"),
        ("names: Kneser-Ney n-gram, dev nats/char", r"Kneser-Ney, n=\d+\s+names dev loss ([\d.]+)"),
        ("tinyshakespeare: Kneser-Ney character n-gram, val nats/char",
         r"best character model: Kneser-Ney n=\d+, validation ([\d.]+) nats/char"),
    ],
    "02_neural": [
        ("names: neural bigram by gradient descent, loss", r"after \d+ steps ([\d.]+); count model"),
        ("names: Bengio MLP, dev nats/char", r"steps in \d+ s: dev ([\d.]+), test"),
        ("tinyshakespeare: MLP, val nats/char", r"validation loss ([\d.]+) nats/char after [\d,]+ steps"),
    ],
    "03_rnn": [
        ("names: LSTM, dev nats/char", r"steps in \d+ s: dev ([\d.]+), test"),
        ("tinyshakespeare: LSTM, val nats/char", r"validation loss ([\d.]+) nats/char \(state carried"),
    ],
    "04_attention": [
        ("dates: seq2seq without attention, exact match %", r"no attention: exact match ([\d.]+)% on [\d,]+ held-out dates"),
        ("dates: seq2seq with attention, exact match %", r"with attention: exact match ([\d.]+)% on [\d,]+ held-out dates"),
        ("reversal: additive attention, exact match %", r"additive attention: exact match ([\d.]+)% on [\d,]+ held-out strings"),
    ],
    "05_transformer": [
        ("tinyshakespeare: GPT (4 x 128, 1.6M characters), val nats/char",
         r"validation loss ([\d.]+) nats/char on all [\d,]+ validation characters"),
        ("tinyshakespeare: BERT-style masked LM, masked-character accuracy %", r"MLM after \d+ steps .*accuracy ([\d.]+)%"),
        ("dates: encoder-decoder Transformer, exact match %", r"exact match on \d+ test dates .*: ([\d.]+)%"),
    ],
    "06_tokenization": [
        ("tinyshakespeare: character GPT, val bits/byte", r"characters\s+[\d,]+ parameters, .*= ([\d.]+) bits/byte"),
        ("tinyshakespeare: BPE (1,000 tokens) GPT, val bits/byte", r"BPE, 1,000 tokens\s+[\d,]+ parameters, .*= ([\d.]+) bits/byte"),
    ],
    "07_gpu_training": [
        ("tinyshakespeare: the notebook's own trainer run, val nats/char", r"val loss: [\d.]+ at step 0 -> ([\d.]+) at step"),
    ],
    "08_generation": [
        ("tinyshakespeare: the CPU-trained GPT (shakespeare_char) on 20,000 held-out characters, nats/char",
         r"shakespeare_char \(committed\)\s+([\d.]+) \["),
        ("tinyshakespeare: the GPU-trained GPT (shakespeare_char_gpu), same characters, nats/char",
         r"shakespeare_char_gpu \(committed\)\s+([\d.]+) \["),
    ],
    "09_modern": [
        ("ablation: Llama-style minus GPT, nats/char", r"Llama-style minus GPT: ([+-][\d.]+) nats/char"),
        ("scaling law: prediction error for the held-out model, nats", r"prediction error \(predicted - measured\): ([+-][\d.]+) nats"),
    ],
    "10_adapting": [
        ("Tang poets: n-gram naive Bayes, test accuracy %", r"n-gram naive Bayes\s+accuracy\s+([\d.]+)%"),
        ("Tang poets: full fine-tuning, test accuracy %", r"full fine-tuning\s+accuracy\s+([\d.]+)%"),
        ("Tang poets: LoRA r=8, test accuracy %", r"LoRA r=8\s+accuracy\s+([\d.]+)%"),
    ],
    "11_data_and_outlook": [
        ("near duplicates, LSH candidates verified exactly: precision",
         r"recall first, exact Jaccard decides : precision ([\d.]+)"),
        ("near duplicates, LSH candidates verified exactly: recall",
         r"recall first, exact Jaccard decides : precision [\d.]+, recall ([\d.]+)"),
        ("exposure of the secrets planted 64 times, bits (of at most 16.6)", r"model B, mean by copies: .*x64: ([\d.]+)"),
    ],
}


def stdout_text(nb) -> str:
    """Everything a notebook printed (stdout streams), in order."""
    return "\n".join(o["text"] for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []) if o.get("name") == "stdout")


def extract(chapter: str, text: str, strict: bool = True) -> dict[str, str]:
    """The chapter's headline numbers found in `text` (the first match of each pattern)."""
    found = {}
    for label, pattern in HEADLINES[chapter]:
        m = re.search(pattern, text)
        if m:
            found[label] = m.group(1)
        elif strict:
            raise ValueError(f"{chapter}: the headline {label!r} (pattern {pattern!r}) is not in the outputs; "
                             f"update tools/expected.py's HEADLINES to what the chapter prints")
    return found


def cpu_column() -> dict[str, dict[str, str]]:
    return {ch: extract(ch, stdout_text(nbformat.read(ROOT / "chapters" / f"{ch}.ipynb", 4))) for ch in HEADLINES}


def gpu_column() -> dict[str, dict[str, str]]:
    """What the chapters' runs on a GPU printed before their time limit (bench/results/chapters_gpu.txt)."""
    text = GPU_LOG.read_text(encoding="utf-8") if GPU_LOG.is_file() else ""
    sections = dict(re.findall(r"== (\w+): [^\n]*\n((?:   [^\n]*\n)*)", text))
    return {ch: extract(ch, sections.get(ch, ""), strict=False) for ch in HEADLINES}


def measure() -> None:
    """Run every chapter at the test profile with 1 and 2 threads; keep both sets of headlines."""
    sys.path.insert(0, str(ROOT / "tools"))
    import notebooks
    from nbclient import NotebookClient

    results = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": {}}
    for threads in ("1", "2"):
        for ch in HEADLINES:
            nb = notebooks.build(ROOT / "chapters" / f"{ch}.py")
            os.environ.update(LMBOOK_PROFILE="test", OMP_NUM_THREADS=threads, MKL_NUM_THREADS=threads)
            NotebookClient(nb, timeout=1800, kernel_name="python3",
                           resources={"metadata": {"path": str(ROOT / "chapters")}}).execute()
            results["runs"].setdefault(ch, {})[threads] = extract(ch, stdout_text(nb))
            print(ch, threads, results["runs"][ch][threads], flush=True)
    TEST_RESULTS.write_text(json.dumps(results, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


def render() -> str:
    cpu, gpu = cpu_column(), gpu_column()
    test = json.loads(TEST_RESULTS.read_text(encoding="utf-8")) if TEST_RESULTS.is_file() else {"runs": {}}
    lines = [
        "# What you should see",
        "",
        "Each chapter prints its headline numbers as it runs. This page lists them for each profile, so",
        "that you can tell at a glance whether your run went as the book's did. The **cpu** column is what",
        "the committed notebooks show (a 2-core CPU); **test** is the quick profile that the book's tests",
        "run; **gpu** is what the chapters printed on one NVIDIA H200 where that run got that far",
        "(bench/results/chapters_gpu.txt). The page is written by `python tools/expected.py write` from",
        "those files, and a test fails when it no longer matches them.",
        "",
        "**How close should yours be?** On a CPU, the same torch version and the same number of threads",
        "give the same numbers, digit for digit: every chapter seeds everything. A different thread count",
        "changes the order of floating-point sums, and training amplifies such differences a little: the",
        "*spread* column is the largest difference between a run of the test profile with one thread and",
        "one with two" + (f" (measured {test['date']})." if test.get("date") else "."),
        "A different processor, another torch version or a GPU moves the numbers by about as much or a",
        "little more. Differences in the second decimal of a loss are normal; a difference in the first",
        "decimal is not.",
        "",
        "**If yours differ by more:** check `lmbook.env.describe()` in the first cell (the profile, torch",
        "version and threads); run the chapter top to bottom in a fresh kernel (`Kernel → Restart & Run",
        "All`), since cells run out of order share state; check the datasets (`lmbook.data.path(name)`",
        "verifies each file's sha256); and compare the profile: `LMBOOK_PROFILE=cpu` gives the committed",
        "numbers.",
        "",
        "| chapter | headline | test | spread | cpu | gpu |",
        "|---|---|---|---|---|---|",
    ]
    for ch in HEADLINES:
        runs = test["runs"].get(ch, {})
        for label, _ in HEADLINES[ch]:
            t1, t2 = runs.get("1", {}).get(label), runs.get("2", {}).get(label)
            spread = f"{abs(float(t1) - float(t2)):.4f}" if t1 and t2 else "—"
            lines.append(f"| {ch.replace('_', ' ', 1)} | {label} | {t1 or '—'} | {spread} | {cpu[ch][label]} | "
                         f"{gpu[ch].get(label, 'not run to this point')} |")
    lines += ["", "The trained models of the book (`runs/`, loaded with `lmbook.models.load`):", "",
              "| model | trained on | characters seen | training time | val loss (nats/char) |", "|---|---|---|---|---|"]
    for name in ("shakespeare_char", "tang_poems_char", "shakespeare_char_gpu"):
        file = ROOT / "runs" / name / "metrics.json"
        if file.is_file():
            m = json.loads(file.read_text(encoding="utf-8"))
            i = m["info"]
            seen = m["eval_step"][-1] * i["tokens_per_step"]
            device = i["device"] if i["device"] != "cpu" else "CPU" + (f", {i['threads']} thread(s)" if "threads" in i else "")
            lines.append(f"| `{name}` | {device} | {seen / 1e6:.1f}M | {m['train_seconds'] / 60:.1f} min | "
                         f"{m['eval_loss']['val'][-1]:.4f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "check"
    if command == "measure":
        measure()
    elif command == "write":
        PAGE.write_text(render(), encoding="utf-8")
    elif command == "check":
        if not PAGE.is_file() or PAGE.read_text(encoding="utf-8") != render():
            print("book/expected.md is out of date: run python tools/expected.py write")
            return 1
    else:
        print(__doc__)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
