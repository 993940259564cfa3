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
# # 11. Data at scale, and the road ahead: cleaning, deduplication, contamination, privacy, cost
#
# Every model in this book was trained on a file someone had already cleaned: Shakespeare's plays,
# the Tang poems, a sample of TinyStories. A real pretraining corpus starts as billions of web pages,
# and most of the work of building a large language model is turning them into text worth learning
# from. This chapter does that work at the book's scale, measures what each step removes and what it
# wrongly removes, and then asks what the data does to a model: what it memorises, what a leaked
# test set does to a leaderboard, what a bias in the corpus becomes, and what training at a real
# scale costs.
#
# The plan: (1) from raw bytes to clean documents: broken encodings, Unicode normalisation, and a
# word on the cleaning the source articles recommend; (2) which language is a line in, by chapter 1's
# character n-grams; (3) the quality filters of C4 and Gopher on the book's data; (4) deduplication,
# exact and near (MinHash and locality-sensitive hashing, from scratch, checked against
# `datasketch`), with its precision and recall on planted duplicates; (5) a small GPT trained on a
# corpus with planted repeats, secrets and a leaked validation set, and on the same corpus after
# deduplication and decontamination: memorisation, exposure and a contaminated leaderboard, measured;
# (6) what training costs, from chapter 7's FLOP formula; (7) a bias probe on the book's Shakespeare
# model; (8) trends; (9) the source articles' questions, answered with the book's numbers.
#
# The experiments are small: a 2-core CPU, one corpus of a megabyte, a model of a few hundred
# thousand parameters. They show mechanisms, and each section says what a run this small can and
# cannot show about a corpus a million times larger.

# %%
import inspect
import json
import math
import random
import re
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Iterable

import datasketch
import matplotlib.pyplot as plt
import numpy as np
import torch
from datasketch.lsh import _optimal_param

from lmbook import corpus, data, dedup, env, evaluate, generate, memorization, models, scaling, trainer
from lmbook.dedup import MAX_HASH, _check_doc, _check_k, _fmix32, shingle_hashes
from lmbook.gpt import GPT, GPTConfig, flops_per_token, param_count
from lmbook.plot import use_book_style

chapter_start = time.perf_counter()
env.seed_everything(1337)
use_book_style()
torch.set_num_threads(env.pick(test=1, cpu=1, gpu=torch.get_num_threads()))  # small models: one thread
print(env.describe())
print(f"torch uses {torch.get_num_threads()} thread(s)")

# %% [markdown]
# ## 11.1 From bytes to documents
#
# A corpus arrives as files of bytes. Three things go wrong before any model sees it: the bytes are
# decoded with the wrong encoding, the same text is written with different Unicode characters, and
# the documents are too many to hold in memory. The last is the easiest: `corpus.read_documents`
# reads a file a chunk at a time (64 KiB by default) and yields one document at a time (the text
# between blank lines), so a pipeline of generators over it holds one document, whatever the size
# of the file. It decodes incrementally, so a multi-byte character cut by a chunk boundary is not
# broken, and a byte sequence that is not UTF-8 raises an error naming its offset.
#
# **Mojibake.** The TinyStories sample is as its source publishes it, and its source had decoded
# UTF-8 as Windows-1252 somewhere on the way: the right single quote ’ (bytes E2 80 99) became the
# three characters `â€™`. This damage has a signature, a UTF-8 lead byte followed by continuation
# bytes, each shown as its Windows-1252 character, and `corpus.fix_mojibake` finds that signature
# with one regular expression and decodes each match back. One detail matters: Windows-1252 has no
# character for the byte 9D, so the closing quote ” (E2 80 9D) lost its last byte and arrives as
# two characters, `â€`; the repair completes such a sequence with the missing byte.

# %% tags=["nbval-check-output"]
story_path = data.path("tinystories_valid_sample")
raw_stories = story_path.read_text(encoding="utf-8")
paragraphs_raw = list(corpus.read_documents(story_path))
repaired, n_repaired = corpus.fix_mojibake(raw_stories)
kinds = Counter(m.group(0) for m in corpus.MOJIBAKE.finditer(raw_stories))
print(f"TinyStories sample: {len(raw_stories):,} characters, {len(paragraphs_raw):,} paragraphs (read in "
      f"64 KiB chunks)")
print(f"damaged sequences repaired: {n_repaired}; left after the repair: {len(corpus.MOJIBAKE.findall(repaired))}")
for seq, n in kinds.most_common():
    print(f"  {seq!r:10} x{n:3d} -> {corpus.fix_mojibake(seq)[0]!r}")
print("non-ASCII characters in the repaired text:", dict(Counter(c for c in repaired if ord(c) > 127)))
example = next(p for p in paragraphs_raw if "â€" in p)
print("\nbefore:", example[:150])
print("after: ", corpus.fix_mojibake(example)[0][:150])

# %% [markdown]
# All 234 damaged sequences are repaired and none is left. Does the repair damage clean text? It
# only touches a lead character followed by continuation characters, a combination that ordinary
# text in Latin script almost never contains (`tests/test_corpus.py` checks words such as *naïve* and
# *café*, Chinese text, and the round trip of every character of several sentences); in this
# sample, the only non-ASCII characters after the repair are the ones it made: quotes, dashes and a
# hair space (U+200A).
#
# **Normalisation.** Unicode writes some characters in several ways: é as one code point or as e
# plus a combining accent, the comma as `,` or as the full-width `，` of East Asian typesetting. NFC
# composes characters without changing how they look; NFKC also folds *compatibility* characters
# (full-width forms, ligatures such as ﬁ) to their plain equivalents. NFKC is right for *comparing*
# documents (deduplication keys, below) and wrong for rewriting the text a model learns from: the
# Tang poems punctuate with full-width characters, and NFKC would change them.
#
# NFC leaves the poems as they are; NFKC rewrites 7.4% of their characters, nearly all of them the
# full-width comma. A model trained on the NFKC text would be taught ASCII commas in Chinese verse.

# %% tags=["nbval-check-output"]
poems = data.tang_poems()
poem_text = "\n".join(p.text for p in poems)
nfc_changed = sum(a != b for a, b in zip(poem_text, unicodedata.normalize("NFC", poem_text)))
nfkc = unicodedata.normalize("NFKC", poem_text)
folded = Counter(c for c in poem_text if unicodedata.normalize("NFKC", c) != c)
print(f"Tang poems: {len(poem_text):,} characters; NFC changes {nfc_changed}, NFKC changes "
      f"{sum(folded.values()):,} ({sum(folded.values()) / len(poem_text):.1%}):")
for c, n in folded.most_common(4):
    print(f"  {c!r} (U+{ord(c):04X}) x{n:,} -> {unicodedata.normalize('NFKC', c)!r}")
web_text = "Ｈｅｌｌｏ，\u00a0 world\n"
print(f"normalize({web_text!r}) = {corpus.normalize(web_text)!r}")

# %% [markdown]
# **The cleaning the source articles recommend.** Their pipelines begin by removing stop words and
# punctuation. That is a habit from keyword search: a language model must predict the text people
# write, and stop words and punctuation are a large part of it (the book's FAQ gives the numbers).
# The filters real corpora use agree, from the other side: Gopher's quality rules, which we meet in
# section 11.3, *reject* a document that contains fewer than two of the words *the, be, to, of, and,
# that, have, with*, because text without them is rarely prose. Here is what the articles' cleaning
# does to TinyStories' paragraphs under that rule:

# %%
STOP = set("the a an and or but to of in on at for with is was be that this it he she they have".split())
stories = corpus.fix_mojibake(raw_stories)[0]
paragraphs = [p.strip() for p in stories.split("\n\n") if p.strip()]


def articles_cleaning(text):
    """Lower-case, strip punctuation, drop stop words: the preprocessing the source articles recommend."""
    return " ".join(w for w in re.sub(r"[^\w\s]", " ", text.lower()).split() if w not in STOP)


def has_stop_words(doc):
    return "at least 2 stop words" not in corpus.gopher_quality(doc)


before = np.mean([has_stop_words(p) for p in paragraphs])
after = np.mean([has_stop_words(articles_cleaning(p)) for p in paragraphs])
print(f"paragraphs that pass Gopher's stop-word rule: {before:.1%} as written, {after:.1%} after the articles' cleaning")
print("a paragraph after it:", articles_cleaning(paragraphs[1])[:120])

# %% [markdown]
# After the articles' cleaning, no paragraph would survive the filter that real corpora apply (and
# no model trained on it could write a sentence). The rest of this chapter cleans *documents*, by
# deciding which to keep, and leaves the words of the kept ones alone.

# %% [markdown]
# ## 11.2 Which language is this line in?
#
# A web crawl mixes languages, and a corpus is usually built one language at a time. Language
# identification is a classification task that chapter 1 already solved without knowing it: train a
# character n-gram model per language, and give a line to the language whose model finds it most
# probable (fewest bits per character). This is the method of Cavnar and Trenkle
# {cite:p}`cavnar1994`, and fastText's classifier, used for CCNet and most web corpora since, is its
# neural descendant. `corpus.LanguageID` keeps one Kneser–Ney trigram model of chapter 1 per
# language; a line that every model finds expensive is labelled "other", with each language's
# threshold set on held-out lines of that language (the 99th percentile of their costs).
#
# We train English on Shakespeare's training text and Chinese on the training poems, and test on
# lines none of them saw: Shakespeare's validation text, the Tang validation poems, English of
# another kind (TinyStories), and lines that are neither (this book's own Python source).

# %%
shakespeare_train, shakespeare_val = data.shakespeare_split()
train_poems, val_poems, test_poems = data.tang_poems_split()


def lines_of(text):
    """The lines of at least 8 characters, stripped."""
    return [line.strip() for line in text.splitlines() if len(line.strip()) >= 8]


en_train, en_val = lines_of(shakespeare_train), lines_of(shakespeare_val)
zh_train = lines_of("\n".join(p.text for p in train_poems))
zh_val = lines_of("\n".join(p.text for p in val_poems))
n_test = env.pick(test=200, cpu=1000, gpu=1000)
rng = random.Random(0)
code_lines = [line for m in (corpus, dedup, memorization, evaluate) for line in lines_of(inspect.getsource(m))
              if not line.startswith(("#", '"', "'")) and re.search(r"[=():\[\]]", line)]
held_out = {"en": rng.sample(en_val, n_test), "zh": rng.sample(zh_val, n_test),
            "en (TinyStories)": rng.sample(lines_of(stories), n_test), "other (Python)": rng.sample(code_lines, min(n_test, len(code_lines)))}
t0 = time.perf_counter()
calibration_lines = {"en": en_train[::50], "zh": zh_train[::50]}  # held out from the models' training lines below
lid = corpus.LanguageID(order=3).fit({"en": [l for i, l in enumerate(en_train) if i % 50],
                                      "zh": [l for i, l in enumerate(zh_train) if i % 50]})
lid.calibrate(calibration_lines, quantile=0.99)
print(f"fitted and calibrated in {time.perf_counter() - t0:.1f} s; thresholds (bits per character): "
      + ", ".join(f"{k} {v:.2f}" for k, v in lid.thresholds.items()))
print(f"{'held-out lines':18s} {'n':>5s}   en      zh      other")
lid_results = {}
for source, lines in held_out.items():
    predicted = Counter(lid.predict(lines))
    lid_results[source] = {k: predicted[k] / len(lines) for k in ("en", "zh", "other")}
    print(f"{source:18s} {len(lines):5d}  " + "  ".join(f"{lid_results[source][k]:6.1%}" for k in ("en", "zh", "other")))
rejected = [line for line, lang in zip(held_out["en"], lid.predict(held_out["en"])) if lang == "other"]
print("Shakespeare validation lines called other, e.g.:", rejected[:4])
mixed = ["To be, or not to be, that is the question.", "床前明月光，疑是地上霜。", "Lily saw a big red ball in the park.",
         "for i, j in sorted(index.candidate_pairs()):", "白日依山盡 — the white sun sets behind the mountains."]
for line, lang in zip(mixed, lid.predict(mixed)):
    print(f"  {lang:6s} {line}")

# %% [markdown]
# English and Chinese are never confused with each other, and TinyStories' English, which the model
# never saw, is mostly English (83.5%). The errors are "other" calls, and more of them than the 1%
# the thresholds aim at (10.0% of Shakespeare's validation lines), for a reason worth knowing: the
# thresholds were set on lines like the training
# lines, and held-out text is not like them. The rejected Shakespeare lines printed are speaker
# names
# (ANTONIO:, GONZALO:, PROSPERO:), characters of the validation play whose names the model finds
# unfamiliar; a child's story is not blank verse either. The Python lines show the other limit:
# 2.1% of them pass as English. A threshold is a trade (lower it, and more code is
# rejected along with more English), and a line that mixes two languages gets one label, here
# "other". Real pipelines label documents, not lines, and keep the label's probability so that each
# use can choose its threshold.
#
# One detail made this work. A Chinese character the English model never saw is one `<unk>` to it,
# and `<unk>` is cheap (the model has seen a few rare characters); a line of rare Chinese characters
# then costs the English model *less* than the Chinese one, which knows each character and finds it
# rare. The fix is to charge an unseen character its share of `<unk>`: one of the 1.1 million code
# points the model has not seen.

# %% [markdown]
# ## 11.3 Quality filters, and what they remove by mistake
#
# A crawl is mostly not prose: menus, lists of links, cookie notices, code, spam that repeats a
# phrase. The corpora of the last years filter it with simple rules about the text's shape. C4
# {cite:p}`raffel2020t5` keeps the lines that end in terminal punctuation and have at least five
# words, drops any line that mentions JavaScript or a cookie policy, and drops a page with a curly
# bracket, "lorem ipsum" or fewer than three sentences. Gopher's MassiveText {cite:p}`rae2021gopher`
# keeps documents of 50 to 100,000 words, with a mean word length of 3 to 10 characters, few
# symbols, few lines that are bullets or end in an ellipsis, most words containing a letter, at least
# two stop words; and it removes documents that repeat themselves (duplicate lines, or one n-gram
# covering too much of the text). `lmbook.corpus` writes each rule as its paper states it and
# returns the names of the rules a document fails.
#
# We run them on the book's three corpora and on a few pages of the kind they were written for.

# %%
junk = {
    "navigation": "Home\nAbout us\nProducts\nContact\nLogin\nSign up\nPrivacy policy\nTerms of use",
    "cookie notice": "This website uses cookies to improve your experience. By continuing you accept our use of cookies. "
                     "Please enable JavaScript in your browser to view this page properly. Accept all cookies now.",
    "link list": "\n".join(f"• Best cheap {w} online deals 2024" for w in "shoes bags hats phones watches toys".split()),
    "spam": "buy cheap pills online now " * 20,
    "code": "function add(a, b) {\n  return a + b;\n}\nconsole.log(add(1, 2));",
    "lorem ipsum": "Lorem ipsum dolor sit amet, consectetur adipiscing elit. " * 6,
}
shakespeare_speeches = [s.strip() for s in shakespeare_train.split("\n\n") if s.strip()]
corpora = {"TinyStories paragraphs": paragraphs, "Shakespeare speeches": shakespeare_speeches,
           "Tang poems": [p.text for p in train_poems], "web junk (above)": list(junk.values())}


def filter_report(docs):
    gopher = [corpus.gopher_quality(d) + corpus.gopher_repetition(d) for d in docs]
    c4 = [corpus.c4_clean(d)[1] for d in docs]
    reasons = Counter(r for rs in gopher + c4 for r in rs)
    return {"gopher": np.mean([bool(r) for r in gopher]), "c4": np.mean([bool(r) for r in c4]),
            "either": np.mean([bool(a or b) for a, b in zip(gopher, c4)]), "reasons": reasons, "n": len(docs)}


t0 = time.perf_counter()
filtered = {name: filter_report(docs) for name, docs in corpora.items()}
print(f"{'corpus':24s} {'docs':>6s}  removed by Gopher   by C4   by either   (main reasons)")
for name, r in filtered.items():
    top = "; ".join(f"{k} {v / r['n']:.0%}" for k, v in r["reasons"].most_common(2))
    print(f"{name:24s} {r['n']:6,d}  {r['gopher']:15.1%} {r['c4']:7.1%} {r['either']:9.1%}   ({top})")
print(f"({time.perf_counter() - t0:.1f} s)")
for name, doc in junk.items():
    print(f"  {name:14s} Gopher: {corpus.gopher_quality(doc) + corpus.gopher_repetition(doc)}  C4: {corpus.c4_clean(doc)[1]}")

# %% [markdown]
# Every junk page is caught, most of them by the rule written for their kind (the curly bracket for
# code, bullets for the link list, n-gram repetition for spam). But the filters also remove most of
# the book's good text. TinyStories' paragraphs are short (a story's paragraphs were cut apart here,
# since the sample does not mark where a story ends) and fail Gopher's 50-word minimum and C4's
# three sentences; Shakespeare's speeches are mostly short too, and the Tang poems have no English
# stop words and no terminal punctuation that C4 recognises. This is what "wrongly removes" means
# in practice: rules tuned on English web pages encode what a web page of prose looks like, and
# text of another kind, verse, dialogue, another language, children's stories cut into paragraphs,
# fails them. The lesson the corpus builders drew is to apply such rules per language and per
# source, with thresholds checked on samples of each, and to read what they remove.
#
# **Personal data.** `corpus.redact_pii` replaces e-mail addresses and runs of five or more digits
# (telephone, card and account numbers) by placeholders. On the book's corpora:

# %%
for name, docs in corpora.items():
    print(f"{name:24s} replacements: {sum(corpus.redact_pii(d)[1] for d in docs)}")
print(corpus.redact_pii("Mail ann.lee@example.org or call (555) 014-2233 before 1 May 2024."))

# %% [markdown]
# The book's corpora hold no e-mail address and no long number, so redaction changes nothing here;
# section 11.5 plants secrets on purpose to see what a model does with them. Rules like these catch
# the formats they describe and miss the rest (a name and a street are personal data too), which is
# why the privacy measures later in this chapter test the *model*, not only the corpus.

# %% [markdown]
# ## 11.4 Deduplication
#
# The web repeats itself: the same article under several addresses, the same licence text on every
# page of a site, the same story copied with a name changed. Lee et al. {cite:p}`lee2022dedup` found
# a single 61-word sentence repeated over 60,000 times in C4, and showed that models trained on
# deduplicated data emit memorised text ten times less often. First, exact duplicates: two documents
# are the same when their normalised text (NFKC, lower case, one space for any run of whitespace) is
# the same, and a 16-byte hash of it stands for the document, so a set of hashes replaces the corpus.

# %%
for name in ("TinyStories paragraphs", "Shakespeare speeches"):
    docs = corpora[name]
    first = dedup.exact_duplicates(docs)
    repeats = Counter(docs[i] for i, f in enumerate(first) if f != i)
    print(f"{name}: {sum(f != i for i, f in enumerate(first))} exact duplicates of {len(docs):,}; most repeated: "
          + ", ".join(f"{d[:25]!r} x{n + 1}" for d, n in repeats.most_common(3)))
poem_texts = [p.text for p in poems]
first = dedup.exact_duplicates(poem_texts)
poem_dups = [(first[i], i) for i in range(len(poems)) if first[i] != i]
other_author = sum(poems[a].author != poems[b].author for a, b in poem_dups)
print(f"Tang poems: {len(poem_dups)} poems are exact copies of an earlier one; {other_author} of them under "
      f"another author's name, e.g. {poems[poem_dups[0][0]].author} and {poems[poem_dups[0][1]].author}: "
      f"{poems[poem_dups[0][1]].title}")

# %% [markdown]
# The repeats in Shakespeare and TinyStories are short formulas ("The end.", a speaker's name alone)
# that no one would remove. The Tang poems are another matter: the anthology holds 174 poems twice,
# a third of them under two names (a poem attributed to Empress Wu and to "unknown", say). Exact
# copies are the easy case; the harder one is a copy with a few characters changed.
#
# **Near duplicates: MinHash.** Represent a document by the set of its character 5-grams, its
# *shingles*, and call two documents near duplicates when the Jaccard similarity of their sets,
# $J(A, B) = |A \cap B| / |A \cup B|$, reaches a threshold (0.8 here). Comparing every pair costs
# $n^2/2$ set intersections: 500 billion for a million documents. Broder's MinHash
# {cite:p}`broder1997` makes each set a short *signature*. Take a random hash function $h$ and keep
# the smallest hash over the set, $\min_{a \in A} h(a)$. Two sets have the same minimum exactly when
# the element of $A \cup B$ with the smallest hash lies in both, which, for a random $h$, happens
# with probability $|A \cap B| / |A \cup B| = J$. With $k$ independent hash functions, the fraction
# of the $k$ minima that agree estimates $J$ with standard error $\sqrt{J(1-J)/k}$: 0.035 at
# $J = 0.8$ with $k = 128$.
#
# The hash functions here are `datasketch`'s, so that the library can check us bit for bit: a
# shingle's 32-bit SHA-1 prefix, mixed, then $h_i(x) = a_i x + b_i \bmod 2^{32}$ with random odd
# $a_i$. The signature is computed for all shingles and all 128 functions at once, as one
# (128, shingles) array.

# %%
# From lmbook/dedup.py
def shingles(text: str, k: int = 5) -> set[str]:
    """The set of character k-grams of `text`. A non-empty text shorter than k is one shingle, itself
    (so it can only match an identical text); the empty text has none.

    >>> sorted(shingles("abcab", 3))
    ['abc', 'bca', 'cab']
    """
    _check_doc(text, "text")
    _check_k(k)
    if 0 < len(text) < k:
        return {text}
    return {text[i : i + k] for i in range(len(text) - k + 1)}


class MinHasher:
    """`num_perm` random hash functions, h → a·h + b mod 2³² after MurmurHash3's mix, with the (a, b)
    that datasketch's ``MinHash(num_perm, seed)`` draws; `signature` is the minimum of each over a
    set of shingle hashes.

    >>> m = MinHasher(num_perm=4)
    >>> m.signature(shingle_hashes("abcdef", 3)).shape
    (4,)
    """

    def __init__(self, num_perm: int = 128, seed: int = 1):
        if isinstance(num_perm, bool) or not isinstance(num_perm, int) or num_perm < 1:
            raise ValueError(f"num_perm must be an int >= 1 (128 is usual), got {num_perm!r}")
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an int in 0..2**32-1 (numpy's RandomState), got {seed!r}")
        self.num_perm, self.seed = num_perm, seed
        gen = np.random.RandomState(seed)  # datasketch's draws, in datasketch's order
        self.a = gen.randint(0, 1 << 31, num_perm, dtype=np.uint32) * np.uint32(2) + np.uint32(1)  # odd: a bijection
        self.b = gen.randint(0, 1 << 32, num_perm, dtype=np.uint32)

    def signature(self, hashes: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """(num_perm,) uint32: min over the shingle hashes of each permuted hash; all 2³²-1 for no hashes."""
        hashes = np.asarray(hashes)
        if hashes.ndim != 1 or hashes.dtype != np.uint32:
            raise TypeError(f"hashes must be a 1-D uint32 array (from shingle_hashes), got {hashes.dtype} {hashes.shape}")
        sig = np.full(self.num_perm, MAX_HASH, dtype=np.uint32)
        mixed = _fmix32(hashes)
        for i in range(0, len(mixed), chunk):  # (num_perm, chunk) at a time: bounded memory for long documents
            permuted = self.a[:, None] * mixed[None, i : i + chunk] + self.b[:, None]  # uint32: wraps mod 2^32
            sig = np.minimum(sig, permuted.min(axis=1))
        return sig

    def signatures(self, docs: Iterable[str], k: int = 5, hash: str = "sha1") -> np.ndarray:
        """(n_docs, num_perm) uint32: the signature of each document's k-shingles."""
        return np.stack([self.signature(shingle_hashes(d, k, hash)) for d in docs]) if docs else \
            np.zeros((0, self.num_perm), np.uint32)


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> float:
    """The fraction of positions where two signatures agree: an unbiased estimate of J(A, B)."""
    if sig_a.shape != sig_b.shape:
        raise ValueError(f"signatures of different lengths: {sig_a.shape} and {sig_b.shape} (use one MinHasher)")
    return float(np.mean(sig_a == sig_b))


# %% [markdown]
# The helpers these use (`shingle_hashes`, the mixing function `_fmix32`, the input checks) were
# imported from `lmbook.dedup` at the top. The check against `datasketch` compares the signatures of
# the same shingles under the same seed; then the estimates are compared with exact Jaccard
# similarities on pairs made by editing TinyStories paragraphs.

# %%
hasher = MinHasher(num_perm=128, seed=1)
sample = paragraphs[:env.pick(test=50, cpu=500, gpu=500)]
same = 0
for doc in sample:
    reference = datasketch.MinHash(num_perm=128, seed=1)
    reference.update_batch([s.encode("utf-8") for s in shingles(doc)])
    same += np.array_equal(hasher.signature(shingle_hashes(doc)), reference.hashvalues)
print(f"signatures equal to datasketch {datasketch.__version__}'s, bit for bit: {same} of {len(sample)}")


def edit_words(text, fraction, rng):
    """Replace, delete or insert words at random: about `fraction` of the words changed."""
    words = text.split()
    for _ in range(max(1, round(fraction * len(words)))):
        i, op = rng.randrange(len(words)), rng.choice("rdi")
        if op == "r":
            words[i] = rng.choice(words)
        elif op == "d" and len(words) > 5:
            del words[i]
        else:
            words.insert(i, rng.choice(words))
    return " ".join(words)


rng = random.Random(1)
pool = [p for p in paragraphs if len(p) > 200]
pairs = [(p, edit_words(p, rng.uniform(0.0, 0.3), rng)) for p in rng.sample(pool, min(300, len(pool)))]
exact_J = np.array([dedup.jaccard(shingles(a), shingles(b)) for a, b in pairs])
est_J = np.array([estimated_jaccard(hasher.signature(shingle_hashes(a)), hasher.signature(shingle_hashes(b)))
                  for a, b in pairs])
z = (est_J - exact_J) / np.sqrt(np.clip(exact_J * (1 - exact_J), 1e-12, None) / 128)
inside = (exact_J > 0) & (exact_J < 1)
print(f"{len(pairs)} edited pairs, exact J from {exact_J.min():.2f} to {exact_J.max():.2f}: mean error of the "
      f"estimate {np.mean(est_J - exact_J):+.4f}, errors / standard error: mean {z[inside].mean():+.2f}, "
      f"sd {z[inside].std():.2f}, beyond 3: {np.mean(np.abs(z[inside]) > 3):.1%}")

# %% [markdown]
# The signatures equal `datasketch`'s, and the estimates scatter around the exact similarities with
# the spread the formula predicts (errors divided by their standard error have a standard deviation
# near 1, and almost none beyond 3).
#
# **Locality-sensitive hashing.** A signature is cheaper than a set, but comparing every pair of
# signatures is still quadratic. LSH cuts each signature into $b$ *bands* of $r$ rows, and puts each
# band's $r$ values as a key in the band's hash table: two documents become *candidates* when they
# share a whole band. One band agrees with probability $J^r$, so a pair is a candidate with
# probability $1 - (1 - J^r)^b$, an S-shaped curve in $J$ whose steep part $b$ and $r$ place.
# Only candidates are compared, so the work grows with the number of documents and candidates, not
# with its square.

# %%
# From lmbook/dedup.py
def candidate_probability(s, bands: int, rows: int):
    """The probability that two sets of Jaccard similarity s share at least one of b bands of r rows:
    1 - (1 - s^r)^b.

    >>> round(float(candidate_probability(0.8, bands=20, rows=5)), 4)
    0.9996
    """
    return 1 - (1 - np.asarray(s, dtype=float) ** rows) ** bands


class LSHIndex:
    """Signatures cut into `bands` bands of `rows` rows; each band's value is a key in its own table.

    >>> index = LSHIndex(bands=2, rows=2)
    >>> index.insert("x", np.array([1, 2, 3, 4], dtype=np.uint32))
    >>> index.query(np.array([1, 2, 9, 9], dtype=np.uint32))
    {'x'}
    """

    def __init__(self, bands: int, rows: int):
        for name, value in (("bands", bands), ("rows", rows)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        self.bands, self.rows = bands, rows
        self.tables: list[dict[bytes, list]] = [defaultdict(list) for _ in range(bands)]

    def _keys(self, sig: np.ndarray) -> list[bytes]:
        if sig.ndim != 1 or len(sig) < self.bands * self.rows:
            raise ValueError(f"a signature of {sig.shape} cannot fill {self.bands} bands of {self.rows} rows "
                             f"(it needs at least {self.bands * self.rows} positions)")
        return [sig[i * self.rows : (i + 1) * self.rows].tobytes() for i in range(self.bands)]

    def insert(self, key, sig: np.ndarray) -> None:
        for table, band in zip(self.tables, self._keys(sig)):
            table[band].append(key)

    def query(self, sig: np.ndarray) -> set:
        """Every inserted key that shares at least one band with `sig`."""
        found: set = set()
        for table, band in zip(self.tables, self._keys(sig)):
            found.update(table.get(band, ()))
        return found

    def candidate_pairs(self) -> set[tuple]:
        """Every pair (i, j), i < j, of inserted keys that share a band."""
        pairs: set[tuple] = set()
        for table in self.tables:
            for bucket in table.values():
                for x in range(len(bucket)):
                    for y in range(x + 1, len(bucket)):
                        pairs.add((min(bucket[x], bucket[y]), max(bucket[x], bucket[y])))
        return pairs


# %% [markdown]
# How to choose $b$ and $r$? `datasketch` minimises the area under the curve below the threshold
# (false candidates) plus the area above it that the curve misses (lost duplicates), with equal
# weights; `dedup.optimal_bands` does the same, and agrees with it. For deduplication the two errors
# do not cost the same: a false candidate costs one comparison of signatures, a lost duplicate stays
# in the corpus. So `lmbook` weights a lost duplicate 19 times more (`RECALL_FIRST`), which moves
# the steep part of the curve below the threshold:

# %%
THRESHOLD = 0.8
equal = dedup.optimal_bands(THRESHOLD, 128)
recall_first = dedup.optimal_bands(THRESHOLD, 128, dedup.RECALL_FIRST)
assert equal == _optimal_param(THRESHOLD, 128, 0.5, 0.5)
print(f"equal weights: {equal[0]} bands of {equal[1]} rows (datasketch's choice too); "
      f"recall first: {recall_first[0]} bands of {recall_first[1]} rows")
s = np.linspace(0, 1, 201)
fig, ax = plt.subplots(figsize=(6, 3.5))
for (b, r), label in [(equal, "equal weights"), (recall_first, "recall first")]:
    ax.plot(s, candidate_probability(s, b, r), label=f"{label}: b={b}, r={r}")
    print(f"  b={b}, r={r}: a pair at J = 0.8 is a candidate with probability {float(candidate_probability(0.8, b, r)):.3f}, "
          f"at J = 0.5 with {float(candidate_probability(0.5, b, r)):.3f}")
ax.axvline(THRESHOLD, color="gray", ls="--", lw=1)
ax.set(xlabel="Jaccard similarity J of two documents", ylabel="P(candidate)", title="The LSH S-curve, 128 hash functions")
ax.legend()
plt.show()

# %% [markdown]
# With equal weights, a pair exactly at the threshold becomes a candidate less than half the time:
# the curve is centred on the threshold. Recall first keeps 95% of them, and pays with more
# candidates between 0.5 and 0.8, which the comparison that follows must reject.
#
# **Precision and recall on planted duplicates.** We plant near duplicates among TinyStories
# paragraphs: copies with words replaced, deleted or inserted, and with case and spacing changed,
# at edit rates that put their similarity on both sides of the threshold. The truth is the set of
# *all* pairs whose exact Jaccard similarity reaches 0.8, found by `dedup.all_pairs_jaccard`
# (a prefix-filtered exact join: it compares only pairs that share one of their rarest shingles, and
# `tests/test_dedup.py` checks it against comparing every pair). Precision and recall are the right
# measures here, for a detector that makes yes/no decisions; they are the wrong ones for a language
# model, as the FAQ explains.

# %%
n_originals = env.pick(test=300, cpu=3000, gpu=3000)
rng = random.Random(2)
originals = [p for p in paragraphs if len(p.split()) >= 20][:n_originals]
planted_docs, planted_from = list(originals), {}
for i in rng.sample(range(len(originals)), len(originals) // 3):
    copy = edit_words(originals[i], rng.uniform(0.0, 0.25), rng)
    if rng.random() < 0.3:
        copy = copy.upper() if rng.random() < 0.5 else copy.replace(" ", "  \n", 3)
    planted_from[len(planted_docs)] = i
    planted_docs.append(copy)
t0 = time.perf_counter()
truth = {(i, j) for i, j, _ in dedup.all_pairs_jaccard(planted_docs, THRESHOLD)}
t_truth = time.perf_counter() - t0
near_results = {}
for label, weights, verify in [("equal weights, signatures decide", (0.5, 0.5), "minhash"),
                               ("recall first, signatures decide", dedup.RECALL_FIRST, "minhash"),
                               ("recall first, exact Jaccard decides", dedup.RECALL_FIRST, "exact")]:
    t0 = time.perf_counter()
    found = {(i, j) for i, j, _ in dedup.near_duplicate_pairs(planted_docs, THRESHOLD, weights=weights, verify=verify)}
    seconds = time.perf_counter() - t0
    tp = len(found & truth)
    near_results[label] = {"precision": tp / max(len(found), 1), "recall": tp / max(len(truth), 1), "seconds": seconds}
planted_true = sum((planted_from[j], j) in truth for j in planted_from)
print(f"{len(planted_docs):,} documents, {len(planted_from):,} planted copies ({planted_true} of them at J >= 0.8); "
      f"{len(truth):,} pairs at J >= 0.8 in all (exact join: {t_truth:.1f} s)")
for label, r in near_results.items():
    print(f"  {label:36s}: precision {r['precision']:.3f}, recall {r['recall']:.3f}  ({r['seconds']:.1f} s)")

# %% [markdown]
# When the signatures decide, neither setting reaches 0.95 on both precision and recall:
# equal weights lose a fifth of the duplicates (recall 0.783), and recall-first bands raise recall to
# 0.923 at some cost in precision. The misses are pairs near the threshold: the signature estimates
# J with a standard error of about 0.035 there, so a pair at 0.78 is called a duplicate, and one at
# 0.82 is not, between a quarter and a third of the time (the binomial law of 128 agreements). When
# the candidates are verified with the exact Jaccard
# similarity of their shingles, no false pair survives (precision 1.000) and the only misses are the
# pairs LSH never proposed: recall 0.998. That costs the texts of every candidate pair, cheap here,
# a second pass over the corpus at scale; the streaming `Deduplicator` keeps signatures only and
# decides by them. Pairs just above and just below 0.8 are, in any case, equally "near" duplicates:
# the threshold is a choice, not a fact about the documents.
#
# **Speed.** Here is our MinHash against `datasketch`'s (its batch interface, `MinHash.bulk`) on the
# same paragraphs, in the same run (our SHA-1 hashes are `datasketch`'s; `hash="fast"` replaces them
# by a polynomial hash that numpy computes for all shingles at once: other random functions, with the
# same statistics):

# %%
bench_docs = paragraphs[: env.pick(test=200, cpu=2000, gpu=2000)]
timings = {}
t0 = time.perf_counter()
datasketch.MinHash.bulk([[s.encode("utf-8") for s in shingles(doc)] for doc in bench_docs], num_perm=128, seed=1)
timings["datasketch"] = time.perf_counter() - t0
for h in ("sha1", "fast"):
    t0 = time.perf_counter()
    for doc in bench_docs:
        hasher.signature(shingle_hashes(doc, 5, h))
    timings[f"lmbook ({h})"] = time.perf_counter() - t0
chars = sum(map(len, bench_docs))
for label, seconds in timings.items():
    print(f"{label:15s} {len(bench_docs) / seconds:8,.0f} documents/s  {chars / seconds / 1e6:5.2f} M characters/s  "
          f"({timings['datasketch'] / seconds:.2f}x datasketch)")

# %% [markdown]
# With the same SHA-1 hashes, the two sign documents at about the same rate in this run (0.94x); the
# numpy hash is faster. One run on a shared 2-core machine is a noisy measurement:
# `bench/bench_dedup.py` repeats it, interleaved, and reports the spread. Either way, both are far
# from what a web corpus needs: at a few hundred thousand characters a second, one core would take
# years for 30 TB of text, which is why production deduplication runs in parallel over many
# machines, in compiled code.
#
# **The book's own data.** The Tang poems' near duplicates matter for chapter 10, which trained on
# the training poems and tested on the others: a test poem whose near copy is in the training split
# was, in effect, seen.

# %%
t0 = time.perf_counter()
split_of = {}
for name, part in (("train", train_poems), ("val", val_poems), ("test", test_poems)):
    for p in part:
        split_of[id(p)] = name
ordered = train_poems + val_poems + test_poems
tang_pairs = dedup.near_duplicate_pairs([p.text for p in ordered], THRESHOLD)
crossing = Counter()
seen_poems = {"val": set(), "test": set()}
for i, j, _ in tang_pairs:
    a, b = split_of[id(ordered[i])], split_of[id(ordered[j])]
    if a == "train" and b in seen_poems:
        seen_poems[b].add(j)
print(f"{len(tang_pairs)} near-duplicate pairs among the {len(ordered):,} Tang poems ({time.perf_counter() - t0:.1f} s)")
copy_of = {j: i for i, j, _ in tang_pairs if split_of[id(ordered[i])] == "train"}
for split, part in (("val", val_poems), ("test", test_poems)):
    print(f"  {split}: {len(seen_poems[split])} of {len(part):,} poems ({len(seen_poems[split]) / len(part):.1%}) have a "
          f"near copy in the training split")
poets10 = [a for a, n in Counter(p.author for p in poems).most_common() if n >= 400 and a != "不詳"]  # chapter 10's
offset = len(train_poems) + len(val_poems)
test10 = [offset + k for k, p in enumerate(test_poems) if p.author in poets10]
copied = [j for j in test10 if j in copy_of]
same_poet = sum(ordered[copy_of[j]].author == ordered[j].author for j in copied)
print(f"chapter 10's test poems (its {len(poets10)} poets): {len(copied)} of {len(test10)} ({len(copied) / len(test10):.1%}) "
      f"have a near copy in training, {same_poet} of them under the same poet's name")

# %% [markdown]
# About one validation or test poem in twenty has a near copy among the training poems. Of chapter
# 10's test poems, 17 of 348 have one, every one of them under the same poet's name: for those 4.9%
# of the test set the answer was in the training data, and chapter 10's accuracies are optimistic by
# at most that much (a classifier may still miss a poem it has seen). The pretrained model's
# validation loss is optimistic for the same reason, by an amount this chapter does not measure.
# Deduplicating *before* splitting is the
# rule that avoids both: the book's split predates this chapter, and we leave it as it is, with this
# measurement next to it.

# %% [markdown]
# ## 11.5 What repeats, secrets and leaks do to a model
#
# Now the experiment the previous sections prepare. We build a training corpus the way a careless
# pipeline would, from Shakespeare's training speeches, and plant three things in it:
#
# - **repeated passages**: speeches of the training text copied 4, 16 or 64 times in all, at random
#   places (the web's boilerplate and mirrored pages);
# - **canaries** {cite:p}`carlini2019secret`: sentences such as "Ada's secret number is 48213",
#   each with its own name and a random five-digit secret, inserted 1, 4, 16 or 64 times (personal
#   data that found its way in);
# - **a leaked validation set**: a third of the validation text inserted once, another third
#   inserted 8 times (a benchmark copied onto the web), the last third left out.
#
# Model **B** trains on that corpus. Model **A** trains on the same corpus after the pipeline of this
# chapter: exact and near deduplication (`dedup.Deduplicator`, streaming, the first copy kept) and
# decontamination (any training document that shares a word 13-gram with the validation text is
# dropped, GPT-3's rule {cite:p}`brown2020gpt3`). Both are the same small GPT, trained for the same
# number of steps on the same number of tokens, with the same seed.

# %%
val_docs = [s.strip() for s in shakespeare_val.split("\n\n") if s.strip()]
val_chunks, current = [], []
for doc in val_docs:  # chunks of whole speeches, at least 400 characters each
    current.append(doc)
    if sum(map(len, current)) >= 400:
        val_chunks.append("\n\n".join(current))
        current = []
val_parts = {"leaked x1": val_chunks[0::3], "leaked x8": val_chunks[1::3], "clean": val_chunks[2::3]}

rng = random.Random(3)
long_speeches = [i for i, s in enumerate(shakespeare_speeches) if 200 <= len(s) <= 400]
chosen = rng.sample(long_speeches, 3 * env.pick(test=4, cpu=8, gpu=8) + env.pick(test=4, cpu=8, gpu=8))
per_group = len(chosen) // 4
repeat_groups = {copies: [shakespeare_speeches[i] for i in chosen[g * per_group : (g + 1) * per_group]]
                 for g, copies in enumerate((1, 4, 16, 64))}  # copies = 1: in the corpus once, as written
NAMES = ["Ada", "Basil", "Cora", "Dorian", "Edith", "Felix", "Greta", "Hugo"]
canaries = []
for n, name in enumerate(NAMES):
    secret = f"{rng.randrange(10**5):05d}"
    canaries.append({"name": name, "prefix": f"{name}'s secret number is ", "secret": secret,
                     "copies": (1, 4, 16, 64)[n % 4]})

inserted = []
for copies, speeches in repeat_groups.items():
    inserted += [s for s in speeches for _ in range(copies - 1)]
inserted += [f"{c['prefix']}{c['secret']}." for c in canaries for _ in range(c["copies"])]
inserted += val_parts["leaked x1"] + [d for d in val_parts["leaked x8"] for _ in range(8)]
corpus_B = list(shakespeare_speeches)
for doc in inserted:  # each at a random place between speeches
    corpus_B.insert(rng.randrange(len(corpus_B) + 1), doc)
print(f"corpus B: {len(corpus_B):,} documents, {sum(map(len, corpus_B)):,} characters "
      f"({len(inserted):,} inserted documents, {sum(map(len, inserted)):,} characters)")
for c in canaries:
    print(f"  canary {c['prefix']}{c['secret']}  x{c['copies']}")

# %% [markdown]
# The pipeline, streamed over corpus B one document at a time:

# %%
t0 = time.perf_counter()
deduper = dedup.Deduplicator(threshold=THRESHOLD)
deduplicated = list(deduper.filter(corpus_B))
val_index = dedup.NgramIndex(n=13, unit="word")
for doc in val_docs:
    val_index.add(doc)
corpus_A = [d for d in deduplicated if not val_index.overlap(d) > 0]  # NaN (shorter than 13 words) is kept
print(f"redact_pii on corpus B: {sum(corpus.redact_pii(d)[1] for d in corpus_B)} replacements, "
      f"{sum(c['copies'] for c in canaries)} canary copies")
print(f"deduplication: kept {deduper.stats['kept']:,}, dropped {deduper.stats['exact']:,} exact and "
      f"{deduper.stats['near']:,} near duplicates; decontamination dropped {len(deduplicated) - len(corpus_A)} documents "
      f"({time.perf_counter() - t0:.1f} s)")
in_A = Counter(corpus_A)
print(f"corpus A: {len(corpus_A):,} documents, {sum(map(len, corpus_A)):,} characters")
print("copies left in A: repeated passages", sorted({in_A[s] for ss in repeat_groups.values() for s in ss}),
      "| canaries", sorted({in_A[f"{c['prefix']}{c['secret']}."] for c in canaries}),
      "| leaked validation chunks", sum(in_A[d] for d in val_parts["leaked x1"] + val_parts["leaked x8"]))
leaked_set = set(val_parts["leaked x1"] + val_parts["leaked x8"])
dropped = [d for d in deduplicated if val_index.overlap(d) > 0]
print(f"decontamination dropped {sum(d in leaked_set for d in dropped)} of the {len(leaked_set)} leaked chunks and "
      f"{sum(d not in leaked_set for d in dropped)} of Shakespeare's own training speeches; e.g. "
      f"{next((d for d in dropped if d not in leaked_set), '')[:70]!r}")

# %% [markdown]
# Deduplication leaves one copy of every repeated passage and canary; decontamination removes the
# leaked validation chunks that hold a 13-word n-gram of a validation speech (a chunk made of short
# speeches only has none, and two such chunks stay), and no speech of Shakespeare's own training
# text, which shares no 13-word run with the validation plays. The rule needs the evaluation set at
# hand: real pipelines run it against every benchmark they intend to report.
#
# Both models: 2 blocks of width 128, context 128, characters as tokens, the same steps, batch and
# seed. The tokenizer covers every character of both corpora.

# %%
vocab = sorted(set("".join(corpus_B)) | set(shakespeare_val) | set("0123456789"))
stoi = {c: i for i, c in enumerate(vocab)}


def encode(text):
    return np.array([stoi[c] for c in text], dtype=np.int64)


def decode(ids):
    return "".join(vocab[i] for i in ids)


STEPS = env.pick(test=30, cpu=700, gpu=3000)
BATCH, BLOCK = 16, 128
config = GPTConfig(vocab_size=len(vocab), block_size=BLOCK, n_layer=2, n_head=4, n_embd=128, dropout=0.0, bias=False)
val_tokens = encode(shakespeare_val)
trained = {}
for label, docs in (("A (deduplicated, decontaminated)", corpus_A), ("B (as collected)", corpus_B)):
    torch.manual_seed(0)
    model = GPT(config)
    run = scaling.train_and_evaluate(model, (encode("\n\n".join(docs) + "\n\n"), val_tokens), steps=STEPS,
                                     batch_size=BATCH, block_size=BLOCK, lr=3e-3, seed=0, eval_windows=64)
    model.eval()
    trained[label[0]] = {"model": model, "run": run, "chars": sum(map(len, docs))}
    print(f"model {label}: {param_count(config):,} parameters, {run['tokens']:,} tokens "
          f"({run['tokens'] / trained[label[0]]['chars']:.2f} passes over its corpus) in {run['seconds']:.0f} s; "
          f"validation loss {run['val']:.3f}")

# %% [markdown]
# **Memorisation of repeated text.** For each passage, we give the model its first 64 characters
# and let it continue greedily for the next 64, counting the passage as *regurgitated* when all 64
# come back exactly; and we measure the model's loss on the passages themselves. Passages in the
# corpus once are the control.

# %%
PROMPT, CONT = 64, 64


def memorisation(model, passages):
    ids = torch.tensor(np.stack([encode(p[: PROMPT + CONT]) for p in passages]))
    kept = memorization.regurgitation(model, ids[:, :PROMPT], ids[:, PROMPT:])
    losses = [-evaluate.token_logprobs(model, torch.tensor(encode(p)), BLOCK).logprob.mean().item() for p in passages]
    return float((kept == 1).float().mean()), float(kept.mean()), float(np.mean(losses))


print(f"{'copies in B':>12s}   {'model A: verbatim, prefix kept, loss':>38s}   {'model B: verbatim, prefix kept, loss':>38s}")
memo = {}
for copies, passages in repeat_groups.items():
    memo[copies] = {m: memorisation(trained[m]["model"], passages) for m in "AB"}
    print(f"{copies:12d}   " + "   ".join(f"{v:12.0%} {k:12.0%} {l:10.3f}" for v, k, l in memo[copies].values()))
clean_loss = {m: -evaluate.token_logprobs(trained[m]["model"], torch.tensor(encode("\n\n".join(val_parts["clean"]))),
                                          BLOCK).logprob.mean().item() for m in "AB"}
print(f"{'held out':>12s}   " + "   ".join(f"{'':12s} {'':12s} {clean_loss[m]:10.3f}" for m in "AB"))

# %% [markdown]
# No passage comes back verbatim, from either model, even after 64 copies: a model of 420 thousand
# parameters trained for 0.95 to 1.45 passes has not stored 64-character continuations. The
# loss shows
# memorisation beginning: model B's loss on the passages it saw 64 times is 1.674 nats per
# character, against 1.923 on passages it saw once and 1.853 on held-out text; 16 copies move it
# much less. Model A, which saw every passage once, has about the same loss on all of them. At this
# size and budget repetition lowers the loss on the repeated text; Carlini et al. found that
# verbatim extraction grows with both the number of copies and the model's size
# {cite:p}`carlini2021extracting`, and this run has neither a large model nor many passes.
#
# **Exposure of a secret.** Carlini et al. {cite:p}`carlini2019secret` measure how much a model gives
# away about a secret $s$ drawn from a space $R$ (here the $10^5$ five-digit strings): rank every
# candidate $r \in R$ by the model's probability of "prefix + $r$", and define
#
# $$\text{exposure}(s) = \log_2 |R| - \log_2 \operatorname{rank}(s).$$
#
# A secret the model knows nothing about sits in the middle of the ranking, with an exposure of about
# 1 bit; a secret the model would write first has the largest exposure there is, $\log_2 10^5 = 16.6$
# bits. `memorization.candidate_logprobs` scores all $10^5$ candidates exactly, reading the prefix
# once and then walking the tree of digits with chapter 8's KV cache, one level per digit.

# %%
digits = torch.tensor(encode("0123456789"))
t0 = time.perf_counter()
exposures = {m: [] for m in "AB"}
for c in canaries:
    for m in "AB":
        logp = memorization.candidate_logprobs(trained[m]["model"], torch.tensor(encode(c["prefix"])), digits, 5)
        exposures[m].append(memorization.exposure(logp, memorization.secret_index(c["secret"], "0123456789")))
print(f"exposure (bits, at most {math.log2(1e5):.1f}), {2 * len(canaries)} canaries scored in {time.perf_counter() - t0:.0f} s")
print(f"{'canary':34s} {'copies in B':>11s} {'A':>6s} {'B':>6s}")
for c, a, b in zip(canaries, exposures["A"], exposures["B"]):
    print(f"{c['prefix'] + c['secret']:34s} {c['copies']:11d} {a:6.1f} {b:6.1f}")
by_copies = {k: np.mean([b for c, b in zip(canaries, exposures["B"]) if c["copies"] == k]) for k in (1, 4, 16, 64)}
print("model B, mean by copies:", ", ".join(f"x{k}: {v:.1f}" for k, v in by_copies.items()))
greedy = {c["prefix"] + c["secret"]: decode(generate.generate(trained["B"]["model"], torch.tensor(encode(c["prefix"]))[None],
                                                           5, greedy=True)[0, -5:].tolist()) for c in canaries[3::4]}
print("model B, greedy continuation of the 64-copy canaries' prefixes:", greedy)

# %% [markdown]
# The two secrets inserted 64 times have exposures of 16.6 and 14.3 bits in model B: the first is the
# most probable of all 100,000 five-digit strings after its prefix, the second about the fifth.
# Below 64 copies nothing stands out: model B gives the secrets it saw 16, 4 or 1 times 0.2 to 6.3
# bits, and model A, which saw each of them once, gives them 0.3 to 6.1 (Cora's secret: 6.0 bits in
# A after one copy, 4.6 in B after 16). A model that knew nothing would reach 6 bits once in 64
# tries, and three of these twelve scores are near or above it (6.0, 6.1, 6.3), so something besides
# the copies, such as a
# taste for some digit patterns, lifts some secrets seen once; eight canaries cannot say what.
# Greedy
# decoding did not write either secret: after "Dorian's secret number is", the model's most probable
# next character is a letter (it goes on "the t..."). Exposure measures what an attacker who knows
# the format can do: score the 100,000 candidates, about 2 seconds a canary here, and read
# off the first. Deduplication caps every secret at one copy, and model A's exposures for the
# 64-copy secrets are 0.7 and 1.4 bits: what Kandpal et al. {cite:p}`kandpal2022dedup` found at
# scale, that much of what models give away is what their corpora repeat. It does not remove the
# secret, and larger models trained for more passes memorise text seen once
# {cite:p}`carlini2021extracting`; `corpus.redact_pii` replaced exactly the 170 canary copies, the
# only measure here that leaves nothing to find.
#
# What this run cannot show: how exposure scales with model size and training passes (one small
# model, about one pass), and how often such strings occur in a real crawl.
#
# **A leaked test set on the leaderboard.** The validation text has three parts, leaked once, leaked
# 8 times, and clean. Chapter 8 ranked models by their loss on held-out text; here is what each part
# says about models A and B, with 95% intervals over segments of the text:

# %%
leader = {}
for part, chunks in val_parts.items():
    text_ids = torch.tensor(encode("\n\n".join(chunks)))
    for m in "AB":
        lp = evaluate.token_logprobs(trained[m]["model"], text_ids, BLOCK).logprob
        leader[(part, m)] = lp
        mean, low, high = evaluate.bootstrap_interval(-lp, segments=50)
        print(f"{part:10s} model {m}: {mean:.3f} nats per character [{low:.3f}, {high:.3f}]")
for part in val_parts:
    d = evaluate.paired_bootstrap(-leader[(part, "B")], -leader[(part, "A")], segments=50)
    print(f"  B - A on {part:10s}: {d[0]:+.3f} [{d[1]:+.3f}, {d[2]:+.3f}]")
full = {m: -torch.cat([leader[(p, m)] for p in val_parts]).mean().item() for m in "AB"}
print(f"on the whole validation set, as a leaderboard would report it: A {full['A']:.3f}, B {full['B']:.3f}")

# %% [markdown]
# Model B is ahead everywhere, by 0.12 nats per character on the whole validation set (1.820 against
# 1.943): on a leaderboard it is the better model. On the chunks it saw 8 times its lead is largest
# (0.143), and on the chunks it saw once it is 0.123, not clearly apart from the clean third, never
# in B's training data, where it still leads by 0.104. The clean chunks are not independent of the
# leaked ones: they alternate with them through
# the same scenes of the same plays, with the same characters (the speaker names that section 11.2's
# identifier found unfamiliar), so text leaked from around a test document most likely teaches the
# test document too. If so, the leak-specific part of B's lead, what 8 copies add beyond
# proximity, is only about 0.04 (0.143 against 0.104, a difference the run gives no interval for),
# and a "clean" subset of a contaminated benchmark need not be clean when it shares the leaked
# documents' topics and names. Either way, the honest number is model A's, trained without any
# of it. (This run cannot prove that proximity is the cause: B's corpus also differs from A's by its
# repeats and its fewer passes over the training speeches, though both should cost it, not help it.
# Leaking one half of the validation text and testing on the other half would separate them.)
# Nothing in B's own scores says which part of its lead is real; only an overlap
# check against the training data does, which is why a benchmark result is trustworthy only with a
# contamination check beside it (GPT-3's authors ran this 13-gram check over every benchmark
# {cite:p}`brown2020gpt3`).

# %% [markdown]
# ## 11.6 What training costs
#
# Chapter 7's formula counts a training step's floating-point operations: about $6N$ per token for a
# model with $N$ weights in its matrix products, plus the attention scores. A run of $D$ tokens costs
# $C \approx 6ND$ operations, and a GPU delivers a fraction, the *model FLOPs utilisation* (MFU), of
# its peak. So the time is $C / (\text{GPUs} \times \text{peak} \times \text{MFU})$, the money is the
# GPU-hours times a price, and the energy is the GPU-hours times the power each draws. The table
# below is the calculation; change the GPU, the MFU, the price or the power and run it again.
# The book measured two of its inputs: the MFU of chapter 7's reference run on one H200, and the rate
# of this chapter's CPU runs. The table assumes an MFU of 40%, about what large runs report (PaLM's
# reached 46% {cite:p}`chowdhery2022palm`), a rental price of \$2.50 per GPU-hour, and the H100's
# rated 700 W.

# %%
gpu_run = models.metrics("shakespeare_char_gpu")
measured_mfu = float(np.median([m for m in gpu_run["mfu"] if m]))
cpu_flops = flops_per_token(config) * trained["A"]["run"]["tokens"] / trained["A"]["run"]["seconds"]
print(f"measured: chapter 7's reference run on one {gpu_run['info']['device']} sustained MFU {measured_mfu:.2f} "
      f"(median over its log), {gpu_run['info']['flops_per_token']:,} FLOPs per token, {gpu_run['train_seconds']:.1f} s")
print(f"          this chapter's model A on one CPU thread: {cpu_flops / 1e9:.1f} GFLOP/s")

GPU = "H100"                 # a name in lmbook.trainer.PEAK_TFLOPS: its dense bfloat16 peak
PEAK = dict(trainer.PEAK_TFLOPS)[GPU][0] * 1e12
MFU = 0.40                   # large runs report about this; chapter 7's small model reached the value above
PRICE_PER_GPU_HOUR = 2.50    # US dollars, a rented GPU; change it
WATTS_PER_GPU = 700          # the H100 SXM's maximum power; a whole server draws more (cooling, CPUs, network)
N_GPUS = 1024


def training_cost(n_params, n_tokens, peak=PEAK, mfu=MFU, gpus=N_GPUS, price=PRICE_PER_GPU_HOUR, watts=WATTS_PER_GPU):
    """(FLOPs, days on `gpus` GPUs, GPU-hours, dollars, megawatt-hours) of a run of 6·N·D operations."""
    flops = 6 * n_params * n_tokens
    gpu_hours = flops / (peak * mfu) / 3600
    return flops, gpu_hours / gpus / 24, gpu_hours, gpu_hours * price, gpu_hours * watts / 1e6


runs = [("GPT-2 small, 10B tokens", 124e6, 10e9),
        ("1B, 20 tokens/param", 1e9, 20e9),
        ("7B, 2T tokens", 7e9, 2e12),
        ("70B, 15T tokens", 70e9, 15e12),
        ("400B, 15T tokens", 400e9, 15e12)]
print(f"\n{GPU}: {PEAK / 1e12:.0f} TFLOP/s peak, MFU {MFU:.0%}, {N_GPUS:,} GPUs, ${PRICE_PER_GPU_HOUR:.2f} per GPU-hour, "
      f"{WATTS_PER_GPU} W per GPU")
print(f"{'run':26s} {'FLOPs':>9s} {'days':>9s} {'GPU-hours':>11s} {'dollars':>13s} {'MWh':>9s}")
for name, n, d in runs:
    flops, days, hours, dollars, mwh = training_cost(n, d)
    print(f"{name:26s} {flops:9.1e} {days:9.3g} {hours:11,.0f} {dollars:13,.0f} {mwh:9,.1f}")

# %% [markdown]
# The rows span nearly seven orders of magnitude of compute, and the one in the middle is what the
# source articles mean by "days or weeks": a 7-billion-parameter model on 2 trillion
# tokens is about $8 \times 10^{22}$ operations, some 60,000 GPU-hours, 2.4 days on 1,024 GPUs.
# Chapter 7's small model reached about half the MFU the table assumes (0.21): a small model keeps a
# large GPU less busy. Energy in the table is the GPUs' alone; a data centre's overhead (cooling,
# power
# conversion) adds a tenth to a half again, and the emissions depend on where the power comes from
# {cite:p}`patterson2021carbon`.
#
# **How big, for a given budget?** Chapter 9 fitted a scaling law to the book's CPU runs, but its
# bootstrap left the exponent of the model size unmeasured, so it cannot be carried to these sizes.
# Hoffmann et al. {cite:p}`hoffmann2022` fitted the same law to more than 400 runs of up to 16 billion
# parameters. The constants they published for this fit (their approach 3) disagree with their own
# other two approaches; Besiroglu et al. {cite:p}`besiroglu2024chinchilla` refitted the same runs and
# found constants that agree with them. `scaling.compute_optimal` gives the best size and data for a
# budget under each:

# %%
laws = {"Hoffmann et al., as published": scaling.ScalingLaw(E=1.69, A=406.4, B=410.7, alpha=0.34, beta=0.28),
        "Besiroglu et al.'s refit": scaling.ScalingLaw(E=1.8172, A=482.01, B=2085.43, alpha=0.3478, beta=0.3658)}
for label, law in laws.items():
    print(label)
    for C in (1e21, 1e23, 1e25):
        N_opt, D_opt = (float(x) for x in scaling.compute_optimal(law, torch.tensor(C)))
        flops, days, hours, dollars, mwh = training_cost(N_opt, D_opt)
        print(f"  C = {C:.0e}: N = {N_opt / 1e9:6.2f}B parameters, D = {D_opt / 1e9:8,.0f}B tokens ({D_opt / N_opt:3.0f} "
              f"tokens per parameter); {hours:12,.0f} GPU-hours, ${dollars:14,.0f}")

# %% [markdown]
# Under the refit, the budget buys a model and data in proportion, about 20 tokens per parameter at
# every budget: the rule of thumb that came out of the paper. Since 2023 many models train well past
# this optimum (Llama 3's 8B model saw 15 trillion tokens {cite:p}`grattafiori2024llama3`, nearly
# 2,000
# per parameter) because the optimum minimises the cost of *training*, and a model that will answer
# billions of requests is cheaper to serve when it is small.

# %% [markdown]
# ## 11.7 Bias: what the Shakespeare model associates with "he" and "she"
#
# A model reproduces the statistics of its corpus, including the ones nobody chose. A bias probe
# measures one such statistic in the model and compares it with the corpus. We ask chapter 7's
# reference model (`shakespeare_char_gpu`, 10.7M parameters, trained on Shakespeare) how much
# more probable each of a list of words is after "she is" than after "he is":
# $\log p(\text{word} \mid \text{" she is "}) - \log p(\text{word} \mid \text{" he is "})$, the
# word's characters scored one by one, averaged over three contexts. The corpus's side is a count of
# each word on the training lines that mention a woman (she, her) and no man, against the lines that
# mention a man (he, him, his) and no woman, as a log ratio corrected for the two kinds' numbers
# (there are more lines about men).

# %%
sh_model, sh_meta = models.load("shakespeare_char_gpu")
sh_stoi = {c: i for i, c in enumerate(sh_meta["chars"])}
WORDS = ["fair", "sweet", "gentle", "beautiful", "young", "old", "dead", "mad", "false", "true", "noble", "wise",
         "proud", "honest", "valiant", "brave", "kind", "cruel", "chaste", "foul", "good", "poor"]


@torch.no_grad()
def word_logprob(context, word):
    ids = torch.tensor([sh_stoi[c] for c in context + word])[None]
    logp = sh_model(ids)[0][0].log_softmax(-1)
    n = len(word)
    return float(logp[len(context) - 1 : len(context) - 1 + n].gather(1, ids[0, -n:, None]).sum())


CONTEXTS = ["\nShe is ", "\nHe is ", "And she is ", "And he is ", "I think she is ", "I think he is "]
line_words = [set(re.findall(r"[a-z]+", line.lower())) for line in shakespeare_train.splitlines()]
female = [("she" in ws or "her" in ws) and not ws & {"he", "him", "his"} for ws in line_words]
male = [bool(ws & {"he", "him", "his"}) and not ("she" in ws or "her" in ws) for ws in line_words]
base = math.log(sum(female) / sum(male))
probe = []
for w in WORDS:
    lp = [word_logprob(c, w) for c in CONTEXTS]
    model_score = np.mean(lp[0::2]) - np.mean(lp[1::2])                 # she-contexts minus he-contexts
    f = sum(w in ws for ws, is_f in zip(line_words, female) if is_f)
    m = sum(w in ws for ws, is_m in zip(line_words, male) if is_m)
    probe.append((w, model_score, f, m, math.log((f + 0.5) / (m + 0.5)) - base))
probe.sort(key=lambda r: -r[1])
print(f"training lines with she/her only: {sum(female):,}; with he/him/his only: {sum(male):,}")
print(f"{'word':10s} {'model: she - he':>16s} {'corpus lines: she / he':>24s} {'corpus: log ratio':>18s}")
for w, score, f, m, corpus_score in probe:
    print(f"{w:10s} {score:+16.2f} {f:12d} / {m:<9d} {corpus_score:+18.2f}")
columns = np.array([[r[1], r[4]] for r in probe])
rho = np.corrcoef(columns.T)[0, 1]
boot_rng = np.random.default_rng(0)
boot = [np.corrcoef(columns[i].T)[0, 1] for i in (boot_rng.integers(0, len(columns), len(columns)) for _ in range(2000))]
print(f"correlation of the model's and the corpus's columns over {len(probe)} words: {rho:.2f} "
      f"(95% bootstrap interval over words [{np.quantile(boot, 0.025):.2f}, {np.quantile(boot, 0.975):.2f}])")

# %% [markdown]
# The corpus has a direction: Shakespeare's lines mention men almost four times as often as women,
# and, corrected for that, words such as *sweet*, *fair*, *chaste* and *mad* lean towards the lines
# about women, *valiant* and *cruel* towards those about men. The model's preferences are small
# (under one nat for every word but *sweet*), and they follow the corpus only loosely: *sweet*
# leads both columns, but *noble* leans "she" in the model and not in the corpus, and *valiant*,
# the corpus's most masculine word, is neutral to the model. The correlation of 0.35 has a bootstrap
# interval that reaches zero. With a handful of lines per word, this probe shows the method and the
# corpus's imbalance, and cannot show how closely a model of this size copies each association; a
# real audit uses thousands of templates and words, and several models.
#
# Two things follow all the same. Associations come from the data, so they are audited in the data
# (counting, as the corpus column does); and deduplication does not remove them: they are not
# repeats of one text but a pattern across thousands of speeches. Changing them means changing what
# the corpus holds, or what the model is trained to prefer afterwards (chapter 10's preference
# tuning).

# %% [markdown]
# ## 11.8 Where the field is going
#
# The source articles name three trends; each has a place in this book's arc.
#
# - **Multimodality.** The Transformer does not care what its tokens are: images cut into patches
#   and encoded into the same embedding space {cite:p}`radford2021clip`, interleaved with text
#   {cite:p}`alayrac2022flamingo`, or audio frames. The data problems of this chapter come with them,
#   at larger sizes (image-text pairs from the web need deduplication and filtering too).
# - **Efficiency.** Most of the progress per dollar since 2020 came from using hardware better, not
#   from new architectures: attention kernels that read memory once {cite:p}`dao2022flashattention`
#   (chapter 7), grouped-query attention and the KV cache (chapters 8 and 9), low-rank adapters and
#   quantised fine-tuning {cite:p}`hu2022lora,dettmers2023qlora` (chapter 10), and training
#   compute-optimal or deliberately small models for cheaper serving (section 11.6).
# - **Alignment and safety.** Instruction and preference tuning
# {cite:p}`ouyang2022instructgpt,rafailov2023dpo`
#   (chapter 10) make a model follow requests; the measurements of this chapter (what it memorises,
#   what it was evaluated on, which associations it learned) are part of knowing what it will do.
#
# The challenges the articles list, compute, data bias, privacy and safety, are the sections of
# this chapter: each is a measurement a builder can run, not only a worry.

# %% [markdown]
# ## 11.9 The source articles' questions, answered with the book's numbers
#
# The articles end with the same questions. The book's FAQ page gives the short answers; here they
# are with the measurements behind them, each from a committed result of the book. The numbers read
# from files are printed here; the others are rounded from the chapters they link to.

# %%
scaling_run = json.loads((models.runs_dir().parent / "bench" / "results" / "scaling_cpu.json").read_text())
tang_run = models.metrics("tang_poems_char")
print(f"chapter 7: shakespeare_char_gpu, {gpu_run['info']['params']:,} parameters, {gpu_run['train_seconds']:.1f} s "
      f"on one {gpu_run['info']['device']}, validation loss {gpu_run['eval_loss']['val'][-1]:.3f} nats per character")
print(f"chapter 7: tang_poems_char, {tang_run['info']['params']:,} parameters, {tang_run['train_seconds'] / 3600:.2f} h "
      f"on a 2-core CPU, validation loss {tang_run['eval_loss']['val'][-1]:.3f}, training loss "
      f"{tang_run['eval_loss']['train'][-1]:.3f}")
gaps = [v - t for t, v in zip(tang_run["eval_loss"]["train"], tang_run["eval_loss"]["val"])]
print("           its validation minus training loss at each evaluation: " + " ".join(f"{g:.2f}" for g in gaps))
held = scaling_run["held_out"]
print(f"chapter 9: a loss predicted before training, {scaling_run['prediction']['predicted']:.3f}; measured "
      f"{held['mean']:.3f} ± {held['std']:.3f} over {len(held['runs'])} seeds")
print(f"this chapter: model A {trained['A']['run']['val']:.3f}, model B {trained['B']['run']['val']:.3f} validation loss "
      f"after {STEPS} steps; on the whole leaked validation set A {full['A']:.3f}, B {full['B']:.3f}")

# %% [markdown]
# **Which architecture should I choose?** For generating text, a decoder-only Transformer. The book
# measured why rather than asserting it: at a laptop's budget a recurrent network was ahead (chapter
# 5's LSTM beat its GPT at an equal number of training characters), and the Transformer's advantage
# is that it turns parallel hardware into more data per second (chapter 7); in chapter 9's
# ablations, two of the modern decoder's changes (rotary positions, an untied output layer) improved
# on chapter 5's GPT by margins its three seeds could separate, SwiGLU made it worse at that short
# budget, and the other changes stayed within the noise. For classification, chapter 10's
# pretrained GPT fine-tuned reached
# about 63% on poet attribution, against about 69% for a naive Bayes classifier on character
# n-grams: the right architecture depends on the task and the data, and a cheap baseline is part of
# the answer. BERT, which one of the articles suggests for translation, is an encoder trained to
# fill in blanks and does not generate text; translation needs a decoder.
#
# **How do I fight overfitting?** First measure it: the Tang model's validation loss, printed above,
# ended more than half a nat per character above its training loss, a gap that widened at every
# evaluation of its run. The remedies the book measured are more data, weight decay, dropout and
# early stopping (chapter 2), smoothing for counts (chapter 1); and this chapter adds one:
# *deduplicate*, since a repeated passage is fitted more closely than the rest (model B's loss on
# its 64-copy passages, section 11.5, ended well below its loss on held-out text). One article
# suggests
# increasing the model's complexity; that makes overfitting worse.
#
# **How do I evaluate a language model?** By its loss (or perplexity) on held-out text it was never
# trained on, with an interval, at an equal budget: chapter 8's leaderboard. Not by precision, recall
# and F1, which the articles list: those score yes/no decisions, like the duplicate detector of
# section 11.4, and a language model makes none. And *held-out* must be checked, not assumed:
# model B of section 11.5, trained on leaked validation text, was ahead of model A on every part of
# the validation set, including the third it never saw, and about one Tang test poem in twenty has a
# near copy in
# the training split (section 11.4).
#
# **How long does training take?** $6ND$ operations divided by what the hardware sustains. The
# book's reference GPU run, 10.7M parameters, took well under a minute on one H200 at an MFU
# of about a fifth; the Tang model took over an hour on two CPU cores; section 11.6's table carries
# the same arithmetic to models of billions of parameters (about 2,500 GPU-days for the 7B row, a
# million for the 400B one); and chapter 9's law predicted the loss of one new run within 0.03 nats,
# a model 2.2 times larger than its sweep's but trained on a number of characters inside the sweep's
# range, where size hardly mattered (its exponent for model size was not pinned down, so it does not
# reach far beyond).
#
# **Which pretrained model should I use?** One whose objective fits the task (a decoder to generate,
# as chapter 10 adapted), whose tokenizer covers your language (GPT-2's byte-level tokenizer spends
# two or three tokens on most classical Chinese characters, chapter 6), whose training data did not
# include your test set (section 11.5), and which you have measured on your own held-out data at the
# size you can afford to serve. Chapter 10's learning curve shows what pretraining buys when
# labelled data are few, and its LoRA runs what a cheap adapter gives up against full fine-tuning.
#
# **How do I keep data private and models safe?** The articles answer "anonymise, audit, encrypt".
# Section 11.5 measured why the first two matter and what each step buys: the two secrets repeated
# 64 times ranked first and about fifth of the 100,000 five-digit strings after their prefixes (16.6
# and 14.3 bits of exposure); deduplication cut every secret to one copy, and those two secrets'
# exposure to 0.7 and 1.4 bits, but left the secret in the data; redaction before training removes
# it. Encryption protects
# data at rest, not from a model trained on the decrypted text. Audit the model
# as well as the corpus (exposure, regurgitation of training text), keep test sets out of training
# data, and treat generated text as untrusted output.

# %% [markdown]
# ## Summary
#
# - Clean text before counting it: repair broken encodings (234 in the TinyStories sample), normalise
#   Unicode for comparison (NFKC) but keep the text as written, and do not strip stop words or
#   punctuation from text a language model must learn to write.
# - Language identification by character n-grams never confused English and Chinese here; its
#   thresholds call unfamiliar text (new names, another genre) "other" more often than they aim to.
# - Quality filters written for English web pages catch web junk and also remove most of the book's
#   verse and short dialogue: read what a filter removes, per source.
# - MinHash with LSH finds near duplicates without comparing every pair, equal to `datasketch` bit
#   for bit; with recall-first bands and exact verification of the candidates, precision 1.000 and
#   recall 0.998 on planted copies (signatures alone: 0.925 and 0.923).
# - On one small model: text repeated 64 times gets a lower loss than the rest, a secret repeated 64
#   times ranks at or near the top of the strings of its format, and the model trained with a leaked
#   validation set leads on all of the validation text, the unleaked third included.
#   Deduplication, decontamination (134 of the 136 leaked chunks) and redaction remove the planted
#   repeats, leaks and secrets.
# - Training cost is $6ND$ over what the hardware sustains, and the budget buys a model and data in
#   proportion.

# %%
print(f"this notebook ran in {time.perf_counter() - chapter_start:.0f} s at the {env.profile()} profile")

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (autograded).** Gopher's repetition rules also bound the characters covered by
# *duplicated* word n-grams, for $n = 5, \dots, 10$: the fraction of the document's characters that
# lie inside any n-gram that occurs more than once (each character counted once, however many such
# n-grams cover it; characters are the words' letters, spaces not counted). Write
# `duplicate_ngram_char_fraction(words, n)`. It is not `corpus.top_ngram_char_fraction`, which counts
# the *most frequent* n-gram only; the hidden tests take that function away.

# %%
def duplicate_ngram_char_fraction(words: list[str], n: int) -> float:
    ### BEGIN SOLUTION
    total = sum(map(len, words))
    if total == 0 or len(words) < n:
        return 0.0
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    covered = np.zeros(len(words), dtype=bool)
    for i in range(len(words) - n + 1):
        if grams[tuple(words[i : i + n])] > 1:
            covered[i : i + n] = True
    return sum(len(w) for w, c in zip(words, covered) if c) / total
    ### END SOLUTION

# %%
# Autograded test: ex1_duplicate_ngrams (2 points)
assert duplicate_ngram_char_fraction("a b c d".split(), 2) == 0.0, "no 2-gram occurs twice: nothing is duplicated"
assert duplicate_ngram_char_fraction("x a b y a b".split(), 2) == 4 / 6, "(a b) occurs twice: its 4 letters of 6"
assert duplicate_ngram_char_fraction([], 5) == 0.0, "an empty document has no duplicated characters"
### BEGIN HIDDEN TESTS
from lmbook import grading

_rng = random.Random(11)
_cases = []
for _ in range(40):
    _w = [_rng.choice(["the", "cat", "sat", "on", "a", "mat", "x" * _rng.randint(1, 9)]) for _ in range(_rng.randint(0, 40))]
    _n = _rng.randint(2, 8)
    _total = sum(map(len, _w))
    _pos = {}
    for _i in range(len(_w) - _n + 1):
        _pos.setdefault(tuple(_w[_i : _i + _n]), []).append(_i)
    _cov = set()
    for _starts in _pos.values():
        if len(_starts) > 1:
            for _i in _starts:
                _cov.update(range(_i, _i + _n))
    _cases.append((_w, _n, sum(len(_w[_i]) for _i in _cov) / _total if _total else 0.0))
_overlap = "a a a a".split()  # (a a a) occurs twice, overlapping: every character is covered once
with grading.without("lmbook.corpus.top_ngram_char_fraction", "lmbook.corpus.gopher_repetition"):
    assert duplicate_ngram_char_fraction(_overlap, 3) == 1.0, "overlapping occurrences cover each character once"
    for _w, _n, _expected in _cases:
        assert abs(duplicate_ngram_char_fraction(_w, _n) - _expected) < 1e-12, f"{_w}, n={_n}: expected {_expected}"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2 (autograded).** Scoring every candidate is impossible for a secret space of $10^{12}$
# (a credit card's digits). Carlini et al. estimate the rank from a sample: if a fraction $f$ of
# candidates drawn uniformly from $R$ are more probable than the secret, its rank is about
# $1 + f\,|R|$. Write `estimated_exposure(secret_logprob, sample_logprobs, space_size)`, returning
# $\log_2 |R| - \log_2(1 + f\,|R|)$ (ties count as not more probable). The hidden tests take the
# package's `exposure` and `rank` away.

# %%
def estimated_exposure(secret_logprob: float, sample_logprobs: torch.Tensor, space_size: int) -> float:
    ### BEGIN SOLUTION
    f = float((sample_logprobs > secret_logprob).double().mean())
    return math.log2(space_size) - math.log2(1 + f * space_size)
    ### END SOLUTION

# %%
# Autograded test: ex2_estimated_exposure (2 points)
assert estimated_exposure(0.0, torch.tensor([-1.0, -2.0]), 1024) == 10.0, "nothing beats the secret: rank 1, log2 1024"
assert abs(estimated_exposure(-1.5, torch.tensor([-1.0, -2.0]), 1024) - (10 - math.log2(513))) < 1e-12, \
    "half the sample beats the secret: rank 1 + 512"
### BEGIN HIDDEN TESTS
from lmbook import grading

_g = torch.Generator().manual_seed(5)
_all = torch.randn(10**5, generator=_g, dtype=torch.float64)
_exact = [(i, memorization.exposure(_all, i)) for i in (0, 17, 99_999, int(_all.argmax()))]
_sample = _all[torch.randint(0, 10**5, (20_000,), generator=_g)]
_expected = [(i, math.log2(1e5) - math.log2(1 + float((_sample > _all[i]).double().mean()) * 1e5)) for i, _ in _exact]
with grading.without("lmbook.memorization.exposure", "lmbook.memorization.rank"):
    for (i, e), (_, ex) in zip(_exact, _expected):
        got = estimated_exposure(float(_all[i]), _sample, 10**5)
        assert abs(got - ex) < 1e-9, f"candidate {i}: expected {ex:.4f}, got {got:.4f}"
        assert abs(got - e) < 1.0 or e > 12, f"candidate {i}: the estimate {got:.2f} is far from the exact {e:.2f}"
    assert estimated_exposure(10.0, torch.zeros(5), 10**12) == math.log2(10**12), "a space of 10^12: rank 1"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3.** Section 11.4 chose 128 hash functions and recall-first bands. Measure precision,
# recall and time on the planted set for 32, 64 and 256 hash functions, and for thresholds 0.7 and
# 0.9 (recompute the truth at each threshold). Which setting would you choose for a corpus of a
# billion documents, where a signature's size decides the memory?

# %%
### BEGIN SOLUTION
for num_perm in (32, 64, 256):
    t0 = time.perf_counter()
    _found = {(i, j) for i, j, _ in dedup.near_duplicate_pairs(planted_docs, THRESHOLD, num_perm=num_perm)}
    _tp = len(_found & truth)
    print(f"num_perm {num_perm:3d}: precision {_tp / max(len(_found), 1):.3f}, recall {_tp / len(truth):.3f}, "
          f"{time.perf_counter() - t0:.1f} s, {4 * num_perm} bytes per signature")
for threshold in (0.7, 0.9):
    _truth = {(i, j) for i, j, _ in dedup.all_pairs_jaccard(planted_docs, threshold)}
    _found = {(i, j) for i, j, _ in dedup.near_duplicate_pairs(planted_docs, threshold)}
    _tp = len(_found & _truth)
    print(f"threshold {threshold}: {len(_truth)} true pairs, precision {_tp / max(len(_found), 1):.3f}, "
          f"recall {_tp / max(len(_truth), 1):.3f}")
# Fewer hash functions widen the estimate's error (sqrt(J(1-J)/k)): more pairs near the threshold land on the
# wrong side. At a billion documents, 128 functions are 512 bytes a document, half a terabyte in all; 64 halve it
# at a small cost in precision, and verifying candidates exactly (verify="exact") buys the precision back.
### END SOLUTION

# %% [markdown]
# **Exercise 4.** Add a third language to section 11.2's identifier: the names of `data.names_split()`
# as a language "name" (one name a line). How often are held-out names called English, and English
# lines called names? What does this say about identifying a language from very short lines?

# %%
### BEGIN SOLUTION
_names_train, _names_dev, _ = data.names_split()
_lid3 = corpus.LanguageID(order=3).fit({"en": en_train, "zh": zh_train, "name": _names_train})
_lid3.calibrate({"en": en_val[:500], "zh": zh_val[:500], "name": _names_dev[:500]})
for _source, _lines in {"names": _names_dev[500:1500], "en": held_out["en"], "zh": held_out["zh"]}.items():
    print(_source, Counter(_lid3.predict(_lines)).most_common())
# Names and English lines are never confused here: the names are lower case a-z only, and Shakespeare's lines
# have capitals and punctuation, which the character models see. The misses are "other" calls: a 6-letter name
# gives the models 7 predictions to judge it by, so short lines are the uncertain ones. Real identifiers report
# low confidence on short lines and decide by document.
### END SOLUTION

# %% [markdown]
# **Exercise 5.** Change the cost table of section 11.6: the same 7B model on 2T tokens on A100s
# (their bfloat16 peak is in `trainer.PEAK_TFLOPS`) at MFU 0.5 and \$1.50 an hour, and on H100s at
# MFU 0.3 and \$2.50. Which is cheaper, and which is faster on 1,024 GPUs? At what price per hour
# would the two cost the same?

# %%
### BEGIN SOLUTION
_peak_a100 = dict(trainer.PEAK_TFLOPS)["A100"][0] * 1e12
_a = training_cost(7e9, 2e12, peak=_peak_a100, mfu=0.5, price=1.50)
_h = training_cost(7e9, 2e12, peak=PEAK, mfu=0.3, price=2.50)
print(f"A100, MFU 0.5, $1.50: {_a[1]:.1f} days, ${_a[3]:,.0f};  H100, MFU 0.3, $2.50: {_h[1]:.1f} days, ${_h[3]:,.0f}")
print(f"the A100 price at which they cost the same: ${2.50 * _h[2] / _a[2]:.2f} per hour")
### END SOLUTION

# %% [markdown]
# **Exercise 6.** Section 11.5 planted each canary with its own name. Plant four canaries that share
# one prefix ("the secret number is "), with 1, 4, 16 and 64 copies, train model B again, and measure
# their exposures. What happens to the secret seen once when a secret with the same prefix is seen 64
# times? (One reason to test one canary per prefix.)

# %%
### BEGIN SOLUTION
_rng = random.Random(9)
_shared = [{"prefix": "the secret number is ", "secret": f"{_rng.randrange(10**5):05d}", "copies": k} for k in (1, 4, 16, 64)]
_docs = list(shakespeare_speeches)
for _c in _shared:
    for _ in range(_c["copies"]):
        _docs.insert(_rng.randrange(len(_docs) + 1), f"{_c['prefix']}{_c['secret']}.")
torch.manual_seed(0)
_model = GPT(config)
scaling.train_and_evaluate(_model, (encode("\n\n".join(_docs) + "\n\n"), val_tokens), steps=STEPS, batch_size=BATCH,
                           block_size=BLOCK, lr=3e-3, seed=0, eval_windows=8)
_logp = memorization.candidate_logprobs(_model, torch.tensor(encode(_shared[0]["prefix"])), digits, 5)
for _c in _shared:
    print(f"x{_c['copies']:2d} {_c['secret']}: exposure {memorization.exposure(_logp, memorization.secret_index(_c['secret'], '0123456789')):.1f}")
# The candidates are ranked under one distribution: the 64-copy secret takes the top of it, and whatever the
# model writes after the shared prefix is that secret. The secrets seen fewer times rank below it, as their
# copies say; with one prefix, exposure measures each secret against the others as well as against chance.
### END SOLUTION

# %% [markdown]
# **Exercise 7.** Repeat the bias probe of section 11.7 with the Tang poems model
# (`models.load("tang_poems_char")`): which characters does it find more probable after 妾 (a woman's
# "I", humble) than after 臣 (a minister's "I")? Compare with counts in the training poems. Are the
# differences about gender, or about the genres in which each word occurs?

# %%
### BEGIN SOLUTION
_tang, _tmeta = models.load("tang_poems_char")
_tstoi = {c: i for i, c in enumerate(_tmeta["chars"])}
_train_text = "".join(p.text for p in train_poems)
with torch.no_grad():
    _rows = {}
    for _w in ("妾", "臣"):
        _ids = torch.tensor([_tstoi[c] for c in "\n" + _w])[None]
        _rows[_w] = _tang(_ids)[0][0, -1].log_softmax(-1)
_diff = _rows["妾"] - _rows["臣"]
for _i in _diff.argsort(descending=True)[:8].tolist() + _diff.argsort()[:8].tolist():
    _c = _tmeta["chars"][_i]
    print(f"{_c} {float(_diff[_i]):+.2f}  corpus: 妾{_c} x{_train_text.count('妾' + _c)}, 臣{_c} x{_train_text.count('臣' + _c)}")
# 妾 opens the voice of a woman in boudoir and frontier-wife poems, 臣 the voice of a minister in court poems:
# the model's preferences follow the genres, and through them the roles the poems give women and men.
### END SOLUTION
