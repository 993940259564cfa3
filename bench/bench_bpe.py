"""Speed of lmbook.bpe (chapter 6): training against the naive algorithm and Hugging Face
`tokenizers`, encoding with GPT-2's merges against `tiktoken`.

    python bench/bench_bpe.py        # prints, and writes bench/results/bench_bpe.txt

Training: tinyshakespeare (all 1,115,394 characters) to a vocabulary of 1,000 tokens (744 merges),
split with GPT-2's pattern, no special tokens, timed from the raw text to the finished merges
(pre-tokenization included) for all three:
- naive: `Tokenizer.train(algorithm="naive")`, which recounts every pair after every merge (over
  the unique words weighted by their counts, already far kinder than recounting the raw text);
- fast: `Tokenizer.train()` (incremental pair counts, heap with lazy deletion);
- Hugging Face `tokenizers` (Rust): BPE with the same split (a Split pre-tokenizer with GPT-2's
  regex, then ByteLevel without its own regex), the 256 byte tokens as initial alphabet, the same
  vocabulary size; once with its default thread pool, once with TOKENIZERS_PARALLELISM=false.
  It is given the text in pieces cut at "x\\ny" newlines (as `Tokenizer.encode_stream` does),
  which splits exactly as the whole text would and is faster for it than one 1 MB string.
Targets: fast >= 20x faster than naive; fast within 5x of Hugging Face (the faster of its two runs).

Encoding: all of tinyshakespeare with GPT-2's merges (gpt2_encoder.json, gpt2_vocab.bpe) by
lmbook.bpe with an empty cache (cold: every distinct word merged once) and with a warm cache, by a
`tiktoken.Encoding` built locally from the same two files (tiktoken's own loader and split
pattern, no download), and by Hugging Face's GPT-2 tokenizer from the same files. The ids must be
identical. Target: lmbook (cold) within 3x of tiktoken.

Runs are interleaved and repeated (the naive trainer runs once, as it takes minutes, and is
compared with the mean of the fast runs just before and after it); times are medians, and each ratio is the median of the per-repeat ratios, so that a neighbour's load on a
shared machine hits both sides of a ratio alike.
"""

import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path

os.environ.setdefault("TIKTOKEN_CACHE_DIR", "")  # tiktoken: read the local files, cache nothing

import regex  # noqa: E402

from lmbook import data  # noqa: E402
from lmbook.bpe import GPT2_SPLIT_PATTERN, Tokenizer  # noqa: E402

VOCAB_SIZE, REPEATS = 1000, 5
RESULTS = Path(__file__).parent / "results" / "bench_bpe.txt"
lines_out: list[str] = []


def say(text: str = "") -> None:
    print(text, flush=True)
    lines_out.append(text)


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


@contextlib.contextmanager
def env_var(name: str, value: str | None):
    old = os.environ.get(name)
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def hf_train(pieces: list[str]):
    from tokenizers import Regex, models, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(GPT2_SPLIT_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    trainer = trainers.BpeTrainer(vocab_size=VOCAB_SIZE, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tok.train_from_iterator(pieces, trainer=trainer)
    return tok


def hf_merges_as_bytes(tok) -> list[tuple[bytes, bytes]]:
    """Hugging Face's merges in rank order, with GPT-2's printable stand-ins turned back into bytes."""
    from lmbook.bpe import bytes_to_unicode

    char_byte = {c: b for b, c in bytes_to_unicode().items()}
    merges = json.loads(tok.to_str())["model"]["merges"]
    return [tuple(bytes(char_byte[c] for c in part) for part in m) for m in merges]


def bench_training(text: str) -> None:
    say(f"## Training: tinyshakespeare ({len(text):,} characters) to {VOCAB_SIZE} tokens, GPT-2 split")
    pieces = regex.split(r"(?<=\S\n)(?=\S)", text)  # the cut points of Tokenizer.encode_stream
    assert "".join(pieces) == text
    times: dict[str, list[float]] = {"fast": [], "hf": [], "hf1": []}
    t_fast, fast = timed(lambda: Tokenizer().train(text, VOCAB_SIZE))  # warm-up
    for _ in range(REPEATS):
        times["fast"].append(timed(lambda: Tokenizer().train(text, VOCAB_SIZE))[0])
        with env_var("TOKENIZERS_PARALLELISM", None):
            t, hf = timed(lambda: hf_train(pieces))
        times["hf"].append(t)
        with env_var("TOKENIZERS_PARALLELISM", "false"):
            times["hf1"].append(timed(lambda: hf_train(pieces))[0])
    fast_before = timed(lambda: Tokenizer().train(text, VOCAB_SIZE))[0]
    t_naive, naive = timed(lambda: Tokenizer().train(text, VOCAB_SIZE, algorithm="naive"))
    fast_after = timed(lambda: Tokenizer().train(text, VOCAB_SIZE))[0]
    fast_median = statistics.median(times["fast"])
    same = naive.merges == fast.merges
    say(f"  naive (recount after every merge)  {t_naive:7.2f} s   (one run, between two fast runs of "
        f"{fast_before:.2f} and {fast_after:.2f} s)")
    say(f"  lmbook.bpe fast                    {fast_median:7.2f} s   (median of {REPEATS}; runs "
        f"{min(times['fast']):.2f}-{max(times['fast']):.2f})")
    for key, name in [("hf", "HF tokenizers, default threads"), ("hf1", "HF tokenizers, 1 thread")]:
        say(f"  {name:34s} {statistics.median(times[key]):7.2f} s   (median of {REPEATS}; runs "
            f"{min(times[key]):.2f}-{max(times[key]):.2f})")
    speedup = t_naive / ((fast_before + fast_after) / 2)  # the fast runs next to it, under the same load
    hf_best = min(statistics.median(times["hf"]), statistics.median(times["hf1"]))
    ratio_hf = statistics.median(f / min(h, h1) for f, h, h1 in zip(times["fast"], times["hf"], times["hf1"]))
    ours_merges = [(fast.vocab[a], fast.vocab[b]) for a, b in fast.merges]
    theirs = hf_merges_as_bytes(hf)
    same_order = next((k for k, (x, y) in enumerate(zip(ours_merges, theirs)) if x != y), len(ours_merges))
    say(f"  naive and fast learn the same merges: {same}")
    say(f"  merges identical to Hugging Face's, in the same order: {same_order} of {len(ours_merges)}; "
        f"as sets: {len(set(ours_merges) & set(theirs))} in common (the order differs where equally frequent "
        f"pairs tie: Hugging Face breaks ties by its own token numbering)")
    say(f"  fast vs naive (the runs next to it): {speedup:.0f}x faster (target >= 20x: {'met' if speedup >= 20 else 'NOT met'})")
    say(f"  fast vs Hugging Face (faster of its two runs, {hf_best:.2f} s): {ratio_hf:.1f}x slower "
        f"(target <= 5x: {'met' if ratio_hf <= 5 else 'NOT met'})")
    say()


def bench_encoding(text: str) -> None:
    import tiktoken
    from tiktoken.load import data_gym_to_mergeable_bpe_ranks
    from tiktoken_ext.openai_public import r50k_pat_str
    from transformers import GPT2Tokenizer

    encoder_json, vocab_bpe = str(data.path("gpt2_encoder")), str(data.path("gpt2_vocab"))
    say(f"## Encoding: tinyshakespeare ({len(text.encode('utf-8')):,} bytes) with GPT-2's merges")
    t_load, ours = timed(lambda: Tokenizer.from_gpt2_files(encoder_json, vocab_bpe))
    ranks = data_gym_to_mergeable_bpe_ranks(vocab_bpe_file=vocab_bpe, encoder_json_file=encoder_json)
    tik = tiktoken.Encoding("gpt2-local", pat_str=r50k_pat_str, mergeable_ranks=ranks,
                            special_tokens={"<|endoftext|>": 50256})
    hf = GPT2Tokenizer(vocab=encoder_json, merges=vocab_bpe)
    say(f"  (loading GPT-2's files into lmbook.bpe: {t_load:.2f} s)")

    def cold():
        ours._cache.clear()
        return ours.encode(text)

    runs = {"lmbook.bpe, cold cache": cold, "lmbook.bpe, warm cache": lambda: ours.encode(text),
            "tiktoken (local files)": lambda: tik.encode_ordinary(text),
            "HF GPT2Tokenizer (local files)": lambda: hf.encode(text)}
    ids = {name: fn() for name, fn in runs.items()}  # warm-up, and the ids to compare
    identical = all(v == ids["tiktoken (local files)"] for v in ids.values())
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(REPEATS):
        for name, fn in runs.items():
            times[name].append(timed(fn)[0])
    t_stream, streamed = timed(lambda: list(ours.encode_file(data.path("tinyshakespeare"), block_chars=1 << 16)))
    for name, t in times.items():
        say(f"  {name:32s} {statistics.median(t):6.3f} s   {len(text) / statistics.median(t) / 1e6:5.2f} MB/s")
    say(f"  lmbook.bpe encode_file (64k blocks, warm cache): {t_stream:.3f} s, same ids: {streamed == ids['tiktoken (local files)']}")
    say(f"  {len(ids['tiktoken (local files)']):,} tokens; ids identical across all four: {identical}")
    for name in ("lmbook.bpe, cold cache", "lmbook.bpe, warm cache"):
        r = statistics.median(a / b for a, b in zip(times[name], times["tiktoken (local files)"]))
        target = f"   (target <= 3x: {'met' if r <= 3 else 'NOT met'})" if "cold" in name else ""
        say(f"  {name} vs tiktoken: {r:.2f}x slower{target}")
    say()


def main() -> None:
    import tiktoken
    import tokenizers

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    say(f"machine: {os.cpu_count()} cpus ({cpu}), python {platform.python_version()}, tiktoken {tiktoken.__version__}, "
        f"tokenizers {tokenizers.__version__}; load average {os.getloadavg()[0]:.1f} at the start")
    say()
    text = data.load_text("tinyshakespeare")
    bench_training(text)
    bench_encoding(text)
    say(f"load average {os.getloadavg()[0]:.1f} at the end")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines_out) + "\n", encoding="utf-8")
    print(f"(written to {RESULTS.relative_to(Path(__file__).parent.parent)})")


if __name__ == "__main__":
    main()
