# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 6. Tokenization: byte-level BPE from scratch, exact and fast
#
# Every model so far read characters (names, Shakespeare) or words. Real language models read
# neither: GPT-2, GPT-4, Llama and their relatives read *subword tokens*, pieces such as `" the"`,
# `"ing"` or `" Shakes"`, chosen by an algorithm called **byte pair encoding** (BPE). The tokenizer
# is the first and last thing a language model touches: it decides how long the model's sequences
# are, how big its embedding table is, which languages it handles well, and what "loss per token"
# even means.
#
# The plan: (1) text as Unicode code points and UTF-8 bytes, and why neither characters nor words
# make a good vocabulary; (2) the BPE algorithm by hand, then on real text, with GPT-2's
# pre-tokenization and special tokens; (3) a trainer fast enough for real corpora, measured against
# the naive algorithm and against Hugging Face `tokenizers`; (4) GPT-2's own tokenizer loaded from
# its files, producing exactly GPT-2's ids; (5) the vocabulary size as a trade-off; (6) the same GPT
# (chapter 5) trained on characters and on BPE tokens, compared fairly in bits per byte.

# %%
import math
import time
from pathlib import Path

import matplotlib.pyplot as plt
import regex
import torch
import torch.nn as nn

from lmbook import data, env
from lmbook.batching import stream_batches
from lmbook.bpe import (ENDOFTEXT, GPT2_SPLIT_PATTERN, GPT4_SPLIT_PATTERN, Tokenizer, bytes_to_unicode,
                        get_stats, merge, train_merges, train_merges_naive, word_counts)
from lmbook.gpt import GPT, GPTConfig, param_count
from lmbook.plot import use_book_style
from lmbook.train import train

chapter_start, chapter_cpu = time.perf_counter(), time.process_time()
env.seed_everything(1337)
use_book_style()
torch.set_num_threads(1)  # the chapter's small models run fastest on one thread of a busy laptop
device = env.device()
print(env.describe())

# %% [markdown]
# ## 6.1 Text is code points, code points are bytes
#
# A Python string is a sequence of Unicode **code points**: integers from 0 to 0x10FFFF, about
# 150,000 of them assigned to characters today. Files and networks carry **bytes**, and the
# dominant way to turn code points into bytes is **UTF-8**: 1 byte for ASCII, 2 for most European
# and Middle-Eastern letters, 3 for Chinese, Japanese and Korean, 4 for emoji and other characters
# beyond the "basic multilingual plane".

# %% tags=["nbval-check-output"]
for ch in ["a", "é", "Ж", "中", "😀", "\u0301"]:
    b = ch.encode("utf-8")
    print(f"{ch!r:8} U+{ord(ch):05X}  {len(b)} byte(s): {list(b)}")

# %% [markdown]
# The last one is a *combining mark* (an accent that attaches to the previous letter): `"e" +
# "\u0301"` displays as é but is two code points, and `"é"` can also be one. A tokenizer must take
# whatever sequence of code points it is given, including odd ones, and give it back unchanged.
#
# The book's data in these terms: Shakespeare is pure ASCII, TinyStories is English with a few
# stray bytes of *mojibake* (text decoded with the wrong encoding and saved again), and the Tang
# poems are Chinese, three bytes per character.

# %%
texts = {"tinyshakespeare": data.load_text("tinyshakespeare"),
         "tinystories sample": data.load_text("tinystories_valid_sample"),
         "Tang poems": data.load_text("tang_poems")}
print(f"{'text':20s} {'characters':>11s} {'bytes':>10s} {'bytes/char':>10s} {'distinct chars':>15s}")
for name, text in texts.items():
    n_bytes = len(text.encode("utf-8"))
    print(f"{name:20s} {len(text):11,} {n_bytes:10,} {n_bytes / len(text):10.2f} {len(set(text)):15,}")
print("a poem:", texts["Tang poems"][:60].replace("\n", " / "))

# %% [markdown]
# ### Why not characters, why not words
#
# **Characters** work for one script: Shakespeare has 65 distinct characters. But a model that must
# read every language needs a vocabulary of all of Unicode, 150,000 rows of embeddings of which most
# are seen a handful of times (the Tang poems alone use thousands of distinct characters), and
# its sequences are long: every English word costs five or six steps.
#
# **Words** make short sequences, but the vocabulary is open. However many words we keep, new text
# brings words we never saw (names, typos, inflections), and a word model can only map them to one
# `<unk>` token: it cannot see that "kings" is "king" + "s". How often does that happen on
# Shakespeare's own validation split?

# %% tags=["nbval-check-output"]
sh_train, sh_val = data.shakespeare_split()
words_train = regex.findall(r"\p{L}+", sh_train.lower())
words_val = regex.findall(r"\p{L}+", sh_val.lower())
known = set(words_train)
unseen = [w for w in words_val if w not in known]
print(f"{len(known):,} distinct training words; {len(unseen) / len(words_val):.1%} of the validation words "
      f"({len(set(unseen)):,} distinct) never occur in training, e.g. {sorted(set(unseen))[:6]}")

# %% [markdown]
# Subword tokenization sits in between: frequent words become one token, rare words are spelled
# with a few pieces, and (byte-level) every possible string can be written with the 256 byte tokens
# in the worst case, so there is no `<unk>` at all.
#
# An aside on a common recipe: older NLP pipelines "remove stop words" (the, of, and, ...) during
# preprocessing. A language model must never do that: predicting "the" and "of" is most of its job,
# and text without them is not the text the model will be asked to continue. A tokenizer must be
# lossless: `decode(encode(s)) == s`, for every string.

# %% [markdown]
# ## 6.2 Byte pair encoding by hand
#
# BPE (Gage 1994, for compression; Sennrich et al. 2016, for translation) builds a vocabulary
# bottom-up. Start with one token per byte (ids 0-255). Then repeat: count every pair of adjacent
# tokens, replace the most frequent pair everywhere by a new token (id 256, 257, ...), and remember
# the **merge** (pair → new id). After $k$ merges the vocabulary has $256 + k$ tokens. The two steps
# are all there is; here they are as they live in `lmbook.bpe`:

# %%
# From lmbook/bpe.py
def get_stats(ids: list[int], counts: dict[tuple[int, int], int] | None = None,
              weight: int = 1) -> dict[tuple[int, int], int]:
    """Count the adjacent pairs in `ids` (each occurrence adds `weight`), into `counts` if given.

    >>> get_stats([1, 2, 3, 1, 2])
    {(1, 2): 2, (2, 3): 1, (3, 1): 1}
    """
    counts = {} if counts is None else counts
    for pair in zip(ids, ids[1:]):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def merge(ids: list[int], pair: tuple[int, int], new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids`, left to right without overlaps, by `new_id`.

    >>> merge([1, 2, 3, 1, 2], (1, 2), 4)
    [4, 3, 4]
    >>> merge([5, 5, 5], (5, 5), 6)  # left to right: the first two merge, the third stays
    [6, 5]
    """
    a, b = pair
    out, i, n = [], 0, len(ids)
    while i < n:
        if ids[i] == a and i + 1 < n and ids[i + 1] == b:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out

# %% [markdown]
# Wikipedia's example string, `aaabdaaabac`, three merges. When two pairs are equally frequent we
# need a rule, or two runs could learn different tokenizers; ours (everywhere in this chapter) is:
# **the smallest pair of ids wins** (compare the first ids, then the second).

# %% tags=["nbval-check-output"]
def show(ids, vocab):
    return " ".join(vocab[i].decode("utf-8", errors="replace") for i in ids)


ids = list("aaabdaaabac".encode("utf-8"))
vocab = {i: bytes([i]) for i in range(256)}
for new_id in range(256, 259):
    stats = get_stats(ids)
    pair = min(stats, key=lambda p: (-stats[p], p))  # most frequent; ties: smallest ids
    ids = merge(ids, pair, new_id)
    vocab[new_id] = vocab[pair[0]] + vocab[pair[1]]
    print(f"merge {pair} ({stats[pair]}x) -> {new_id} = {vocab[new_id]!r:8}  text: {show(ids, vocab)}")

# %% [markdown]
# Eleven bytes became five tokens. Wikipedia's walk-through names the new tokens Z = aa, Y = ab,
# X = ZY, the same merges. To **encode** new text, apply the learned merges in the order they were
# learned (their *rank*): among the adjacent pairs that have a merge, merge the one learned first,
# and repeat. To **decode**, look up each token's bytes and join them.
#
# ## 6.3 Pre-tokenization and special tokens
#
# Run on raw text, BPE would happily learn tokens such as `"e. T"` that span a word boundary and
# punctuation, and `"dog"`, `"dog."`, `"dog!"` and `"dog?"` would become four unrelated tokens.
# GPT-2 therefore first cuts the text into **pieces** with a regular expression, and BPE merges only
# inside a piece:

# %% tags=["nbval-check-output"]
print(GPT2_SPLIT_PATTERN)
example = "Hello world! It's 2024, and we've   got 12345 tokens\n\n\tto count."
print(regex.findall(GPT2_SPLIT_PATTERN, example))

# %% [markdown]
# Read the pattern left to right: the contractions `'s 't 're 've 'm 'll 'd`; an optional space
# then letters (`\p{L}`, any script), or digits (`\p{N}`), or other symbols; finally whitespace,
# where `\s+(?!\S)` leaves the last space of a run to start the next word. So most words carry
# their leading space: `" world"` is one token in GPT-2, `"world"` another.
#
# GPT-4's pattern (tiktoken's `cl100k_base`) fixes some weaknesses: contractions match in any case
# (`'S` as well as `'s`), numbers are cut into groups of at most three digits (so the vocabulary
# does not waste tokens on `"2024"`, `"2025"`, ...), any one non-letter (a tab, a quote) may lead a
# word, and newlines stick to the punctuation before them:

# %% tags=["nbval-check-output"]
print(regex.findall(GPT4_SPLIT_PATTERN, example))
print(regex.findall(GPT2_SPLIT_PATTERN, "DON'T 1234567"), "vs", regex.findall(GPT4_SPLIT_PATTERN, "DON'T 1234567"))

# %% [markdown]
# **Special tokens** such as `<|endoftext|>`, which GPT-2 puts between documents, are not text: a
# tokenizer cuts them out *before* pre-tokenization, gives each one its own id, and never merges
# across them. `word_counts` does the cutting for training: it returns each piece with its count.

# %% tags=["nbval-check-output"]
word_counts("the cat sat.<|endoftext|>the cat ran.", special_tokens=[ENDOFTEXT])

# %% [markdown]
# Whether `<|endoftext|>` *inside user text* is a special token is a security question: if anyone
# can type it, anyone can end your document. `Tokenizer.encode` therefore refuses such text by
# default (as tiktoken does) and makes the caller choose: `allowed_special="all"` (or a set) treats
# them as special, `"none"` as ordinary characters. When special tokens overlap (`<|a|>` and
# `<|a|><|b|>`), the longest one at the leftmost position wins.

# %% [markdown]
# ## 6.4 Training on real text, slowly and then fast
#
# Pre-tokenization has a second gift: the same piece occurs many times (`" the"` thousands of
# times in Shakespeare), and a merge does the same thing to every copy. So we train on the
# **unique** pieces, each weighted by its count:

# %% tags=["nbval-check-output"]
all_words = word_counts(texts["tinyshakespeare"])
print(f"tinyshakespeare: {len(texts['tinyshakespeare']):,} characters, {sum(all_words.values()):,} pieces, "
      f"{len(all_words):,} distinct; the most frequent: {all_words.most_common(6)}")

# %% [markdown]
# The textbook algorithm recounts all pairs after every merge:

# %%
# From lmbook/bpe.py
def train_merges_naive(words: dict[str, int], num_merges: int, first_id: int = 256) -> list[tuple[int, int]]:
    """BPE as the textbook states it: after every merge, count all pairs again from scratch.

    `words` maps each unique word (a string, or a tuple of byte ids) to its count. Merge k creates
    token ``first_id + k``. Stops early when no pair is left. Ties go to the smallest pair.

    >>> train_merges_naive({"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}, 3)  # u=117, g=103
    [(117, 103), (117, 110), (104, 256)]
    """
    _check_training_args(words, num_merges, first_id)
    corpus = list(_as_byte_words(words).items())
    merges: list[tuple[int, int]] = []
    for k in range(num_merges):
        stats: dict[tuple[int, int], int] = {}
        for w, n in corpus:
            get_stats(w, stats, n)
        if not stats:
            break
        pair = min(stats, key=lambda p: (-stats[p], p))  # most frequent; ties: smallest ids
        merges.append(pair)
        corpus = [(merge(list(w), pair, first_id + k), n) for w, n in corpus]
    return merges

# %% [markdown]
# This is how minbpe (Karpathy 2024) trains, and it is fine for a toy string. On a real corpus it is
# slow: every merge costs a pass over the whole corpus, although a merge of `(" t", "h")` changes only
# the words that contain it. The fast trainer keeps the pair counts between merges and repairs only
# what a merge touches:
#
# - `counts[pair]`: how often each pair occurs, weighted by word frequency;
# - `where[pair]`: the words in which the pair occurs;
# - a **heap** of `(-count, pair)` entries, so that the most frequent pair (ties: the smallest) is
#   at the top and found in $O(\log n)$.
#
# After merging pair $p$ in the words `where[p]`, each changed word subtracts its old pairs from the
# counts and adds its new ones; every pair whose count changed is pushed onto the heap again with
# its new count. The old entries stay in the heap: finding and removing them would cost a search.
# Instead, when an entry reaches the top, we compare its count with `counts[pair]`; if they differ
# the entry is stale and we drop it (**lazy deletion**). The cost of a merge is proportional to the
# number of words it touches, not to the size of the corpus.

# %%
import heapq
from collections import defaultdict

from lmbook.bpe import _as_byte_words  # str words -> tuples of byte ids
from lmbook.bpe import _check_training_args  # the input checks both trainers call

# %%
# From lmbook/bpe.py
def train_merges(words: dict[str, int], num_merges: int, first_id: int = 256) -> list[tuple[int, int]]:
    """BPE with incremental pair counts: the same merges as `train_merges_naive`, much faster.

    Instead of recounting, keep (1) `counts`: every pair's count, weighted by word frequency;
    (2) `where`: for each pair, the words it occurs in; (3) a max-heap of (count, pair). A merge
    visits only the words that contain its pair: it subtracts the old word's pairs from the counts,
    adds the new word's pairs, and pushes every pair whose count changed onto the heap with its new
    count. Old heap entries are not removed (that would cost a search); an entry whose count no
    longer equals the pair's current count is stale and skipped when it comes to the top (lazy
    deletion). The heap orders by (-count, first id, second id), so ties go to the smallest pair,
    as in the naive version.
    """
    _check_training_args(words, num_merges, first_id)
    byte_words = _as_byte_words(words)
    corpus, freq = [list(w) for w in byte_words], list(byte_words.values())
    counts: dict[tuple[int, int], int] = defaultdict(int)
    where: dict[tuple[int, int], set[int]] = defaultdict(set)
    for i, (w, n) in enumerate(zip(corpus, freq)):
        for pair in zip(w, w[1:]):
            counts[pair] += n
            where[pair].add(i)
    heap = [(-c, a, b) for (a, b), c in counts.items()]
    heapq.heapify(heap)
    merges: list[tuple[int, int]] = []
    while heap and len(merges) < num_merges:
        neg_count, a, b = heapq.heappop(heap)
        pair = (a, b)
        if counts.get(pair, 0) != -neg_count:
            continue  # stale: this pair's count changed after the entry was pushed
        new_id = first_id + len(merges)
        merges.append(pair)
        delta: dict[tuple[int, int], int] = defaultdict(int)  # change of each pair's count
        for i in where.pop(pair):
            w = corpus[i]
            new = merge(w, pair, new_id)
            if len(new) == len(w):
                continue  # `where` can remember words that a previous merge changed
            n = freq[i]
            for p in zip(w, w[1:]):
                delta[p] -= n
            for p in zip(new, new[1:]):
                delta[p] += n
                if new_id in p:  # the only pairs the word did not have before
                    where[p].add(i)
            corpus[i] = new
        for p, d in delta.items():
            if d == 0:
                continue
            c = counts[p] + d
            if c > 0:
                counts[p] = c
                heapq.heappush(heap, (-c, *p))
            else:  # a pair that no longer occurs anywhere (the merged pair among them)
                del counts[p]
                where.pop(p, None)
    return merges

# %% [markdown]
# Both must learn exactly the same merges. On a slice of Shakespeare (the whole text at the cpu
# profile would keep the naive trainer busy for minutes):

# %%
n_chars, n_merges = env.pick(test=(60_000, 100), cpu=(200_000, 200), gpu=(1_003_854, 744))
words = word_counts(sh_train[:n_chars])
start = time.perf_counter()
slow = train_merges_naive(words, n_merges)
t_naive = time.perf_counter() - start
start = time.perf_counter()
fast = train_merges(words, n_merges)
t_fast = time.perf_counter() - start
print(f"{n_chars:,} characters, {sum(words.values()):,} pieces, {len(words):,} distinct; {n_merges} merges")
print(f"naive {t_naive:.2f} s, fast {t_fast:.3f} s: {t_naive / t_fast:.0f}x faster; same merges: {slow == fast}")
assert slow == fast

# %% [markdown]
# The gap grows with the number of merges and the size of the corpus, since the naive trainer pays
# for the whole corpus at every merge. `bench/bench_bpe.py` measures the whole of tinyshakespeare to
# a vocabulary of 1,000 (744 merges), pre-tokenization included, against the naive trainer and
# against Hugging Face's `tokenizers` (Rust) with the same split and vocabulary size; its last
# results:

# %%
import lmbook

bench_results = Path(lmbook.__file__).parent.parent / "bench" / "results" / "bench_bpe.txt"
if bench_results.exists():
    print(bench_results.read_text(encoding="utf-8"))
else:
    print("run `python bench/bench_bpe.py` from the repository root to measure")

# %% [markdown]
# Pure Python, within a small factor of compiled Rust, and learning the same merges. In `lmbook`, `Tokenizer.train(text, vocab_size,
# special_tokens=...)` wraps it all up: pre-tokenize, train, and give the special tokens the last
# ids. A tokenizer with 1,000 tokens, trained on Shakespeare's training split:

# %% tags=["nbval-check-output"]
tok = Tokenizer("gpt2").train(sh_train, 1000, special_tokens=[ENDOFTEXT])
print(tok)
print("first merges:", [tok.vocab[i] for i in list(tok.merges.values())[:12]])
print("last merges: ", [tok.vocab[i] for i in list(tok.merges.values())[-8:]])

# %% [markdown]
# ## 6.5 Encoding, decoding, saving
#
# `encode` pre-tokenizes, then merges each piece by rank. Pieces repeat, so the encoder keeps a
# **cache** from piece to ids: each distinct piece is merged once, and every later occurrence is a
# dictionary look-up. Let us look at the pieces of a validation line:

# %% tags=["nbval-check-output"]
line = sh_val[1000:1100]
ids = tok.encode(line)
print(f"{len(line.encode('utf-8'))} bytes -> {len(ids)} tokens:")
print("|".join(tok.decode([i]) for i in ids))
assert tok.decode(ids) == line

# %% [markdown]
# Decoding joins the tokens' bytes and decodes them as UTF-8. A single token, or a cut sequence of
# tokens, can end in the middle of a character: a byte-level vocabulary knows nothing of
# characters. Such bytes are not valid UTF-8; like tiktoken and Hugging Face, `decode` replaces
# each invalid sequence by U+FFFD `�` (and `errors="strict"` raises instead). Special tokens come
# back as their text, and `allowed_special` decides whether text is read as one:

# %% tags=["nbval-check-output"]
zh = tok.encode("中")
print("中 ->", zh, "; first token alone:", repr(tok.decode(zh[:1])), "; all:", tok.decode(zh))
doc = "Exeunt.<|endoftext|>ACT II"
print(tok.encode(doc, allowed_special="all"), "vs as text:", tok.encode(doc, allowed_special="none"))
try:
    tok.encode(doc)
except ValueError as err:
    print("default:", str(err)[:75], "...")

# %% [markdown]
# A tokenizer is saved as JSON (the split pattern, the byte ids, the merges in rank order, the
# special tokens), never as a pickle, and loading checks every field:

# %% tags=["nbval-check-output"]
tok.save("tokenizer_shakespeare.json")
again = Tokenizer.load("tokenizer_shakespeare.json")
print(f"{Path('tokenizer_shakespeare.json').stat().st_size:,} bytes on disk; same ids after loading:",
      again.encode(sh_val) == tok.encode(sh_val))
Path("tokenizer_shakespeare.json").unlink()

# %% [markdown]
# For files too large to hold in memory, `encode_file` (and `encode_stream`, for any iterable of
# strings) reads blocks and yields ids. The catch is that a block boundary can fall inside a piece,
# or change how the text before it splits: GPT-2's `\s+(?!\S)` splits `"  \n"` differently when a
# letter follows. The streaming encoder therefore encodes each block only up to its last newline
# that sits between two non-whitespace characters (`"x\ny"`), a place where neither the GPT-2 nor
# the GPT-4 pattern can join or re-split anything, and carries the rest over. The ids are exactly
# those of encoding the whole text:

# %% tags=["nbval-check-output"]
Path("val.txt").write_text(sh_val, encoding="utf-8")
streamed = list(tok.encode_file("val.txt", block_chars=4096))
print(f"{len(streamed):,} ids streamed in blocks of 4,096 characters; equal to encode(whole text):",
      streamed == tok.encode(sh_val))
Path("val.txt").unlink()

# %% [markdown]
# ## 6.6 GPT-2's own tokenizer, exactly
#
# OpenAI published GPT-2's tokenizer as two files: `encoder.json` (50,257 tokens and their ids) and
# `vocab.bpe` (the 50,000 merges in rank order). Both write bytes with printable stand-ins: GPT-2
# maps each of the 256 bytes to a visible character, so that the files contain no spaces or control
# characters. Space is `Ġ`, newline `Ċ`. (These are the files that Hugging Face's
# `GPT2Tokenizer.from_pretrained("gpt2")` downloads; here they come from the book's data folder.)

# %% tags=["nbval-check-output"]
stand_in = bytes_to_unicode()
print({chr(b) if b > 32 else repr(chr(b)): stand_in[b] for b in [10, 32, 33, 65, 97]})
print(Path(data.path("gpt2_vocab")).read_text(encoding="utf-8").splitlines()[:4])

# %% [markdown]
# GPT-2 numbers its byte tokens in that printable order (`!` is id 0), so `Tokenizer` keeps a
# `byte_ids` table instead of assuming that byte $b$ is token $b$. `from_gpt2_files` reads both
# files, checks every line (a truncated or corrupt file is an error that says where) and builds a
# `Tokenizer`. The reference implementations: tiktoken, with an `Encoding` built locally from the
# same two files (its own loader and its own split pattern, nothing downloaded), and Hugging Face's
# `GPT2Tokenizer`, also from the same files.

# %%
import os

os.environ.setdefault("TIKTOKEN_CACHE_DIR", "")  # tiktoken reads the local files and caches nothing
import tiktoken
from tiktoken.load import data_gym_to_mergeable_bpe_ranks
from tiktoken_ext.openai_public import r50k_pat_str
from transformers import GPT2Tokenizer

encoder_json, vocab_bpe = str(data.path("gpt2_encoder")), str(data.path("gpt2_vocab"))
gpt2 = Tokenizer.from_gpt2_files(encoder_json, vocab_bpe)
tik = tiktoken.Encoding("gpt2-local", pat_str=r50k_pat_str, special_tokens={ENDOFTEXT: 50256},
                        mergeable_ranks=data_gym_to_mergeable_bpe_ranks(vocab_bpe, encoder_json))
hf = GPT2Tokenizer(vocab=encoder_json, merges=vocab_bpe)
print(gpt2)

# %% tags=["nbval-check-output"]
samples = {
    "English": "The quick brown fox jumps over the lazy dog. It's 3:14 p.m., isn't it?",
    "code": "def f(x):\n    return {k: v ** 2 for k, v in x.items()}  # squares\n",
    "Chinese": texts["Tang poems"][:40],
    "emoji": "I ❤️ 🦄s 👨‍👩‍👧 🇯🇵",
    "German": "Größenwahn: Übermäßig heißer Straßenkaffee.",
    "whitespace": "a" + " " * 20 + "b\n\n\n\t\t  c   ",
    "special": "end of one.<|endoftext|>Start of two",
}
for name, text in samples.items():
    ours = gpt2.encode(text, allowed_special="all")
    same = ours == tik.encode(text, allowed_special="all") == hf.encode(text)
    print(f"{name:10s} {len(text.encode('utf-8')):3d} bytes -> {len(ours):3d} tokens   identical to tiktoken "
          f"and Hugging Face: {same}")
    assert same and gpt2.decode(ours) == text

# %% [markdown]
# And on all of Shakespeare, timed against tiktoken (Rust). Our encoder starts with an empty cache,
# so every distinct piece is merged once; the second run finds every piece in the cache.

# %%
def seconds(fn):
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


shakespeare = texts["tinyshakespeare"]
gpt2._cache.clear()
t_cold, ours = seconds(lambda: gpt2.encode(shakespeare))
t_warm, _ = seconds(lambda: gpt2.encode(shakespeare))
t_tik, theirs = seconds(lambda: tik.encode_ordinary(shakespeare))
print(f"{len(ours):,} GPT-2 tokens, identical to tiktoken's: {ours == theirs}")
print(f"lmbook.bpe {t_cold:.2f} s (cold cache), {t_warm:.2f} s (warm); tiktoken {t_tik:.2f} s: "
      f"{t_cold / t_tik:.1f}x and {t_warm / t_tik:.1f}x its time")
assert ours == theirs

# %% [markdown]
# (The interleaved, repeated measurement is in the bench results above.) The verdict of the test
# suite is stronger than these samples: `tests/test_bpe.py` compares our ids with tiktoken's on
# thousands of random Unicode strings (lone combining marks, astral-plane characters, whitespace
# runs) and checks that `decode(encode(s)) == s` for every one.
#
# ### What an English tokenizer does to Chinese
#
# GPT-2's merges were learned mostly from English web text. Compression is measured in **bytes
# per token**: how much text one step of the model covers.

# %%
n_eval = env.pick(test=50_000, cpu=300_000, gpu=None)
print(f"{'text (' + (f'first {n_eval:,}' if n_eval else 'all') + ' chars)':30s} {'GPT-2':>7s} {'ours, 1k, Shakespeare':>22s}   "
      f"(bytes per token)")
compression = {}
for name, text in texts.items():
    text = text[:n_eval]
    n_bytes = len(text.encode("utf-8"))
    compression[name] = (n_bytes / len(gpt2.encode(text)), n_bytes / len(tok.encode(text)))
    print(f"{name:30s} {compression[name][0]:7.2f} {compression[name][1]:22.2f}")
zh_line = "床前明月光，疑是地上霜。"
print(zh_line, "->", len(zh_line), "characters,", len(gpt2.encode(zh_line)), "GPT-2 tokens:",
      "|".join(gpt2.decode([i]) for i in gpt2.encode(zh_line)))

# %% [markdown]
# On English, GPT-2 packs three to four bytes into a token. On classical Chinese it manages little
# more than one: most characters cost two or three tokens, and a token is often a fragment of a
# character (each `�` above is one). Our Shakespeare tokenizer has never seen a Chinese byte pair and
# falls back to one token per byte. A Chinese reader pays two to three times more tokens for the
# same content, and so more compute, a shorter effective context, and a higher price per word. This
# is why later tokenizers (GPT-4's, Qwen's) train on many languages and use 100,000 tokens or more.

# %% [markdown]
# ## 6.7 Vocabulary size is a trade-off
#
# Merges are learned in order, and the first $k$ merges of a long run are exactly the merges a run
# stopped at $k$ would learn. So one training run gives every smaller vocabulary too. More tokens
# compress better, but each token adds a row to the embedding table (and to the output layer), and
# rare tokens get few training examples.

# %%
max_vocab = env.pick(test=1024, cpu=8192, gpu=32768)
big = Tokenizer("gpt2").train(sh_train, max_vocab)
sizes = [v for v in [256, 300, 384, 512, 768, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 16384, 32768]
         if v <= len(big)]
val_bytes = len(sh_val.encode("utf-8"))
bytes_per_token = []
for v in sizes:
    sub = Tokenizer("gpt2", dict(list(big.merges.items())[: v - 256]))
    bytes_per_token.append(val_bytes / len(sub.encode(sh_val)))
for v, c in zip(sizes, bytes_per_token):
    print(f"vocab {v:6,}: {c:.2f} bytes per token on validation")
assert all(a < b for a, b in zip(bytes_per_token, bytes_per_token[1:]))

# %%
gpt2_val = val_bytes / len(gpt2.encode(sh_val))
level = next((v for v, c in zip(sizes, bytes_per_token) if c >= gpt2_val), None)
print(f"GPT-2's {len(gpt2):,} tokens: {gpt2_val:.2f} bytes per token on the same validation text; "
      f"ours reach it at a vocabulary of {level:,}" if level else "ours stay below it at every size tried")
fig, ax = plt.subplots()
ax.plot(sizes, bytes_per_token, "o-", label="BPE trained on Shakespeare (train split)")
ax.axhline(gpt2_val, color="C1", ls="--", label=f"GPT-2 ({len(gpt2):,} tokens)")
ax.set_xscale("log", base=2)
ax.set_xlabel("vocabulary size")
ax.set_ylabel("bytes per token (validation)")
ax.set_title("Compression grows ever more slowly with the vocabulary")
ax.legend()
plt.show()
gpt2_small = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
print(f"GPT-2 small: {gpt2_small.vocab_size * gpt2_small.n_embd / 1e6:.1f} million of its "
      f"{param_count(gpt2_small) / 1e6:.0f} million parameters are the token embedding")

# %% [markdown]
# Each doubling of the vocabulary buys less: the first merges take the very frequent pairs
# (`" t"`, `"he"`, `" the"`), the later ones whole words that occur a few times. A tokenizer
# trained on this very text compresses it as well as GPT-2's vocabulary, several times larger, at
# the size printed above: a vocabulary fits the text it was trained on. And tokens are not free.
# In a model, every token costs $2d$ parameters (a row of the input embedding and a row of the
# output layer), or $d$ with weight tying as in GPT-2, whose token embedding is the share of its
# parameters printed above.

# %% [markdown]
# ## 6.8 Comparing models across tokenizations: bits per byte
#
# A language model trained on BPE tokens reports a loss per *token*; one trained on characters, a
# loss per *character*. The two numbers are not comparable: a token covers several characters, so
# predicting a token is a harder task with a larger loss, even when the model is better. What is
# comparable is the probability each model assigns to the same text. Over a text of $B$ bytes that
# one model splits into $N$ tokens, the total negative log-likelihood $\sum_{t=1}^{N} -\ln
# p(x_t \mid x_{<t})$ is the number of nats needed to encode the text, so
#
# $$
# \text{bits per byte} = \frac{1}{B \ln 2} \sum_{t=1}^{N} -\ln p(x_t \mid x_{<t})
# = \frac{\text{loss per token}}{\ln 2} \cdot \frac{N}{B}.
# $$
#
# Bits per byte does not care how the text was cut. We train the same small GPT of chapter 5 twice,
# on characters (65 tokens) and on the 1,000-token BPE, for the same number of steps with the same
# batch shape. With equal context lengths in tokens, the BPE model sees more than twice as much
# text per example (its bytes per token, below): that is one of the reasons for subwords.

# %%
char_itos = sorted(set(sh_train))
char_stoi = {c: i for i, c in enumerate(char_itos)}
streams = {
    "characters": (torch.tensor([char_stoi[c] for c in sh_train]), torch.tensor([char_stoi[c] for c in sh_val]),
                   len(char_itos), lambda i: 1),  # every character is one byte (ASCII)
    "BPE, 1,000 tokens": (torch.tensor(tok.encode(sh_train)), torch.tensor(tok.encode(sh_val)),
                          len(tok), lambda i: len(tok.vocab[i])),
}
for name, (tr, va, V, _) in streams.items():
    print(f"{name:18s} V = {V:5,}: {len(tr):,} training tokens, {len(va):,} validation tokens "
          f"({val_bytes / len(va):.2f} bytes per token)")

# %%
@torch.no_grad()
def bits_per_byte(model: GPT, ids: torch.Tensor, block_size: int, token_bytes) -> tuple[float, float]:
    """(mean nats per token, bits per byte) over consecutive windows of `ids`; every target is
    counted once, with its bytes."""
    model.eval()
    n = (len(ids) - 1) // block_size
    x = ids[: n * block_size].view(n, block_size)           # (n, T)
    y = ids[1 : n * block_size + 1].view(n, block_size)     # (n, T) the next token at every position
    nats = 0.0
    for i in range(0, n, 64):
        logits, _ = model(x[i : i + 64].to(device))
        nats += nn.functional.cross_entropy(logits.flatten(0, 1), y[i : i + 64].flatten().to(device),
                                            reduction="sum").item()
    n_bytes = sum(token_bytes(int(t)) for t in y.flatten())
    return nats / y.numel(), nats / math.log(2) / n_bytes


steps = env.pick(test=30, cpu=1000, gpu=5000)
shape = env.pick(test=dict(n_layer=2, n_head=2, n_embd=32), cpu=dict(n_layer=2, n_head=4, n_embd=64),
                 gpu=dict(n_layer=6, n_head=6, n_embd=384))
block_size, batch_size = env.pick(test=(32, 16), cpu=(64, 16), gpu=(256, 64))
results = {}
for name, (tr, va, V, token_bytes) in streams.items():
    torch.manual_seed(1337)
    gpt = GPT(GPTConfig(vocab_size=V, block_size=block_size, **shape))
    start = time.perf_counter()
    history = train(gpt, stream_batches(tr, block_size, batch_size, torch.Generator().manual_seed(0)),
                    steps=steps, lr=1e-3, lr_schedule=lambda t: min(1.0, (t + 1) / 50) * (0.1 + 0.9 * (1 - t / steps)),
                    grad_clip=1.0, progress=False, device=device)
    per_token, bpb = bits_per_byte(gpt, va, block_size, token_bytes)
    results[name] = (gpt.num_params(), per_token, bpb, time.perf_counter() - start)
    print(f"{name:18s} {gpt.num_params():,} parameters, {steps} steps in {results[name][3]:.0f} s: "
          f"validation {per_token:.3f} nats/token = {bpb:.3f} bits/byte")

# %% [markdown]
# ## 6.9 Results
#
# Every number below was measured in this run.

# %%
print(f"{'tokenization':18s} {'params':>9s} {'nats/token':>11s} {'bits/byte':>10s}")
for name, (params, per_token, bpb, _) in results.items():
    print(f"{name:18s} {params:9,} {per_token:11.3f} {bpb:10.3f}")
print(f"\nGPT-2 vs tiktoken on tinyshakespeare: identical ids; lmbook.bpe took {t_cold / t_tik:.1f}x tiktoken's "
      f"time (cold cache)")
print(f"fast vs naive trainer on {n_chars:,} characters: {t_naive / t_fast:.0f}x faster, same merges")
print(f"\nthis notebook ran in {time.perf_counter() - chapter_start:.0f} s at the {env.profile()} profile, "
      f"using {time.process_time() - chapter_cpu:.0f} s of CPU time")
char_loss, bpe_loss = results["characters"][1], results["BPE, 1,000 tokens"][1]
assert bpe_loss > char_loss  # per token, BPE's task is harder: the raw losses are not comparable

# %% [markdown]
# The BPE model's loss per token is much larger than the character model's, and means nothing next
# to it; in bits per byte the two can be compared directly. With the same steps and batch shape the
# BPE model reads more than twice as much text per example, which at small budgets usually gives
# it the lower bits per byte, though it also pays for a 1,000-row embedding table that the character
# model does not have. Both models are tiny and trained briefly (the seconds are printed above), far from converged
# (exercise 7 puts chapter 1's best n-gram on the same scale). At the test profile, with a few dozen
# steps, neither has learned much and the comparison says little.
#
# What to take away:
#
# - Byte-level BPE can encode every string (no unknown tokens), and `decode(encode(s)) == s`.
# - Training is: pre-tokenize, count the unique pieces, then merge the most frequent pair again and
#   again, with a rule for ties. Incremental pair counts and a heap with lazy deletion make it fast.
# - Encoding replays the merges by rank, inside each piece; a cache per piece makes it fast.
# - GPT-2's tokenizer is these algorithms plus two files, and we reproduce its ids exactly.
# - Compare language models across tokenizations in bits per byte, never in loss per token.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (autograded).** Decoding needs no vocabulary table: every token from 256 on is a merge
# of two earlier tokens. Write `expand_to_bytes(ids, merges)`, which turns a list of token ids into
# the list of byte values (0-255) they stand for, given the merges in rank order (merge $k$ made
# token $256 + k$, as `train_merges` returns them). The hidden tests take `Tokenizer` away.

# %%
def expand_to_bytes(ids: list[int], merges: list[tuple[int, int]]) -> list[int]:
    ### BEGIN SOLUTION
    out, stack = [], list(reversed(ids))
    while stack:
        token = stack.pop()
        if token < 256:
            out.append(token)
        else:
            a, b = merges[token - 256]
            stack += [b, a]  # a is expanded first
    return out
    ### END SOLUTION

# %%
# Autograded test: ex1_expand (2 points)
_merges = [(97, 97), (97, 98), (256, 257)]  # Wikipedia's example: aa, ab, aaab
assert expand_to_bytes([258, 100, 258, 97, 99], _merges) == list(b"aaabdaaabac"), "X d X a c is aaabdaaabac"
assert expand_to_bytes([], _merges) == [] and expand_to_bytes([104, 105], _merges) == [104, 105], \
    "byte tokens stand for themselves"
### BEGIN HIDDEN TESTS
from lmbook import grading

_m = train_merges(word_counts(sh_train[:20_000] + "中文 é", pattern=None), 80)
_ids = Tokenizer(None, {p: 256 + k for k, p in enumerate(_m)}).encode(sh_val[:500] + " 中文 é")
_zh = Tokenizer(None, {p: 256 + k for k, p in enumerate(_m)}).encode("中")
with grading.without("lmbook.bpe.Tokenizer", "Tokenizer", "lmbook.bpe.Tokenizer.decode"):
    assert expand_to_bytes(_ids, _m) == list((sh_val[:500] + " 中文 é").encode("utf-8")), "expand every merge, in order"
    assert expand_to_bytes(_zh[:1], _m) == list("中".encode("utf-8")[: len(expand_to_bytes(_zh[:1], _m))]), \
        "a token can be part of a character: return its bytes, whatever they decode to"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2 (autograded).** WordPiece, the tokenizer of BERT, builds its vocabulary with the same
# loop as BPE but a different choice of pair: not the most frequent, but the one with the highest
# score $c(ab) / (c(a)\,c(b))$, where $c(ab)$ counts the pair and $c(a)$, $c(b)$ count the tokens
# (all weighted by the word counts, in the current state of the corpus). A pair whose parts rarely
# occur apart wins over a frequent pair of common parts. Write `wordpiece_train(words, num_merges)`:
# start from each word's UTF-8 bytes, merge the pair with the highest score (ties: the smallest
# pair), give merge $k$ the id $256 + k$, and return the list of merged pairs; stop early when no
# pair is left.

# %%
def wordpiece_train(words: dict[str, int], num_merges: int) -> list[tuple[int, int]]:
    ### BEGIN SOLUTION
    corpus = [(list(w.encode("utf-8")), n) for w, n in words.items()]
    merges = []
    for k in range(num_merges):
        pairs: dict[tuple[int, int], int] = {}
        tokens: dict[int, int] = {}
        for w, n in corpus:
            for t in w:
                tokens[t] = tokens.get(t, 0) + n
            for p in zip(w, w[1:]):
                pairs[p] = pairs.get(p, 0) + n
        if not pairs:
            break
        pair = min(pairs, key=lambda p: (-pairs[p] / (tokens[p[0]] * tokens[p[1]]), p))
        merges.append(pair)
        corpus = [(merge(w, pair, 256 + k), n) for w, n in corpus]
    return merges
    ### END SOLUTION

# %%
# Autograded test: ex2_wordpiece (3 points)
_words = {"hug": 10, "pug": 5, "pun": 12, "bun": 4, "hugs": 5}
assert wordpiece_train(_words, 1) == [(103, 115)], \
    "BPE's first merge would be 'ug' (20 times); WordPiece's is 'gs': 5 / (20 * 5) beats 20 / (36 * 20)"
assert wordpiece_train({"ab": 1}, 5) == [(97, 98)], "stop when no pair is left"
### BEGIN HIDDEN TESTS
from lmbook import grading


def _reference(words, num_merges):
    corpus, merges = [(list(w.encode("utf-8")), n) for w, n in words.items()], []
    for k in range(num_merges):
        pairs, tokens = {}, {}
        for w, n in corpus:
            for t in w:
                tokens[t] = tokens.get(t, 0) + n
            for p in zip(w, w[1:]):
                pairs[p] = pairs.get(p, 0) + n
        if not pairs:
            break
        best = min(pairs, key=lambda p: (-pairs[p] / (tokens[p[0]] * tokens[p[1]]), p))
        merges.append(best)
        corpus = [(merge(w, best, 256 + k), n) for w, n in corpus]
    return merges


_wc = dict(word_counts(sh_train[:20_000]))
_expected = _reference(_wc, 30)
with grading.without("lmbook.bpe.train_merges", "lmbook.bpe.train_merges_naive", "train_merges",
                     "train_merges_naive", "lmbook.bpe.Tokenizer.train"):
    assert wordpiece_train(_words, 2) == [(103, 115), (98, 117)], \
        "after 'gs', every pair scores 1/36: the tie goes to the smallest pair, 'bu'"
    assert wordpiece_train(_wc, 30) == _expected, "on Shakespeare: recount tokens and pairs after every merge"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3 (autograded).** Write `bpe_encode(text, merges)`, which encodes `text` (no
# pre-tokenization: the whole text is one piece) with a list of merges as returned by
# `train_merges`: start from the UTF-8 bytes and repeatedly merge the adjacent pair learned
# earliest, until no adjacent pair has a merge. The hidden tests take `Tokenizer` away.

# %%
def bpe_encode(text: str, merges: list[tuple[int, int]]) -> list[int]:
    ### BEGIN SOLUTION
    rank = {pair: k for k, pair in enumerate(merges)}
    ids = list(text.encode("utf-8"))
    while len(ids) >= 2:
        pair = min(zip(ids, ids[1:]), key=lambda p: rank.get(p, math.inf))
        if pair not in rank:
            break
        ids = merge(ids, pair, 256 + rank[pair])
    return ids
    ### END SOLUTION

# %%
# Autograded test: ex3_encode (2 points)
_merges = train_merges({"aaabdaaabac": 1}, 3)
assert bpe_encode("aaabdaaabac", _merges) == [258, 100, 258, 97, 99], "Wikipedia's example: X d X a c"
assert bpe_encode("", _merges) == [] and bpe_encode("z", _merges) == [122], "no pairs, no merges"
### BEGIN HIDDEN TESTS
from lmbook import grading

_m = train_merges(word_counts(sh_train[:20_000], pattern=None), 60)
_ref = Tokenizer(None, {p: 256 + k for k, p in enumerate(_m)})
_cases = [sh_val[:300], "héllo wörld", "😀😀", "the the the"]
_expected = [_ref.encode(c) for c in _cases]
with grading.without("lmbook.bpe.Tokenizer", "Tokenizer", "lmbook.bpe.Tokenizer.encode",
                     "lmbook.bpe.Tokenizer.encode_ordinary"):
    for _s, _e in zip(_cases, _expected):
        assert bpe_encode(_s, _m) == _e, f"differs from lmbook on {_s[:30]!r}"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 4.** Compare the GPT-2 and GPT-4 split patterns on Python code and on numbers: train
# two 1,000-token tokenizers, one per pattern, on the same text (a slice of Shakespeare, the source
# of `lmbook/bpe.py` and 2,000 random 6-digit numbers), and compare their bytes per token on the
# code and on 2,000 *other* random 6-digit numbers. How does each cut `123456 654321 100000`?

# %%
### BEGIN SOLUTION
import inspect

import lmbook.bpe

code = inspect.getsource(lmbook.bpe)


def random_numbers(seed: int, n: int = 2000) -> str:
    g = torch.Generator().manual_seed(seed)
    return " ".join(str(x) for x in torch.randint(100_000, 1_000_000, (n,), generator=g).tolist())


for pattern in ["gpt2", "gpt4"]:
    t = Tokenizer(pattern).train(sh_train[:200_000] + code + random_numbers(0), 1000)
    print(pattern, {name: round(len(s.encode()) / len(t.encode(s)), 2) for name, s in [("code", code),
                                                                                       ("new numbers", random_numbers(1))]},
          [t.decode([i]) for i in t.encode(" 123456 654321 100000")])
# On code the two patterns compress about alike. On numbers GPT-2's pattern compresses more: a whole
# number, with its leading space, is one piece, so a merge can join any two digits of it. GPT-4's
# pattern first cuts every number into groups of at most three digits (and the space off), so no
# token crosses a group boundary and more tokens are needed. What it buys is consistency, not
# compression: every number is cut at the same place-value boundaries before BPE starts, where
# GPT-2's pieces fall wherever its learned merges happen to (compare the two cuts printed above).
### END SOLUTION

# %% [markdown]
# **Exercise 5.** Train a 2,000-token tokenizer on the Tang poems and compare its bytes per token
# on Chinese with GPT-2's (section 6.6). Which merges does it learn first, and why are most of
# them 2 bytes long?

# %%
### BEGIN SOLUTION
poems = texts["Tang poems"][: env.pick(test=100_000, cpu=500_000, gpu=None)]
zh_tok = Tokenizer("gpt2").train(poems, 2000)
sample = texts["Tang poems"][-50_000:]
print(f"bytes per token: ours {len(sample.encode()) / len(zh_tok.encode(sample)):.2f}, "
      f"GPT-2 {len(sample.encode()) / len(gpt2.encode(sample)):.2f}")
print([(len(zh_tok.vocab[i]), zh_tok.vocab[i].decode("utf-8", "replace")) for i in list(zh_tok.merges.values())[:16]])
# A Chinese character is 3 bytes, and characters of one Unicode block share their first two bytes:
# so the first merges are those shared 2-byte prefixes (incomplete characters, shown as �) and the
# most frequent punctuation (，。). A second merge completes a character, and later ones join
# frequent characters into words. Pieces are whole lines between punctuation, because Chinese has
# no spaces: \p{L}+ matches a run of characters.
### END SOLUTION

# %% [markdown]
# **Exercise 6.** Why does the streaming encoder not simply encode each block on its own? Find a
# text and a cut point where `tok.encode(a) + tok.encode(b) != tok.encode(a + b)`, once where the
# cut falls inside a word and once where it falls between two whitespace characters.

# %%
### BEGIN SOLUTION
for a, b in [(" t", "he"), ("to be   ", "or not")]:
    print(repr(a), repr(b), tok.encode(a) + tok.encode(b) == tok.encode(a + b),
          [tok.decode([i]) for i in tok.encode(a + b)])
# Inside a word, the merges across the cut are lost. Between whitespace characters, GPT-2's
# \s+(?!\S) leaves the last space of a run for the following word only when it can see that word.
### END SOLUTION

# %% [markdown]
# **Exercise 7.** Express the Kneser-Ney 6-gram of chapter 1 on Shakespeare's characters in bits
# per byte, and place it in the results table of section 6.9. (Hint: its cross-entropy is in nats
# per character, and every character is one byte.)

# %%
### BEGIN SOLUTION
from lmbook import ngram

kn = ngram.NgramLM(6, "kneser_ney").fit([list(sh_train)]).cross_entropy([list(sh_val)])
print(f"Kneser-Ney 6-gram: {kn:.3f} nats/char = {kn / math.log(2):.3f} bits per byte")
### END SOLUTION

# %% [markdown]
# **Exercise 8.** GPT-2's vocabulary contains tokens that its own encoder never produces from
# their text, and tokens that almost never occurred in its training data (the "glitch tokens", such
# as `" SolidGoldMagikarp"`). Encode the text of every GPT-2 token with `gpt2.encode` and count the
# tokens whose text does not encode back to the token itself. What does that say about the
# training data of a tokenizer versus that of its model?

# %%
### BEGIN SOLUTION
odd = [i for i, b in gpt2.vocab.items() if i != 50256 and gpt2.encode_ordinary(b.decode("utf-8", "replace")) != [i]]
print(f"{len(odd):,} of {len(gpt2.vocab):,} tokens do not encode back to themselves, e.g.",
      [gpt2.vocab[i] for i in odd[:8]])
print(gpt2.encode(" SolidGoldMagikarp"))
# Most are tokens whose text is not valid UTF-8 on its own (part of a character) or which the
# split pattern cuts differently. " SolidGoldMagikarp" is a single token: the tokenizer's training
# text contained it often (a Reddit user name), the model's training data almost never, so its
# embedding was barely trained. Tokenizer and model should be trained on the same distribution.
### END SOLUTION
