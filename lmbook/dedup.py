"""Deduplication and decontamination: exact hashes, MinHash with locality-sensitive hashing, n-gram
overlap (chapter 11).

A web crawl repeats itself: the same page under many addresses, the same boilerplate on every page
of a site, the same story copied with a changed name. This module finds the repeats.

- **Exact duplicates** (`exact_key`): two documents are the same when their normalised text is the
  same; a 16-byte hash of it stands for the document, so a set of hashes replaces the corpus.
- **Near duplicates** (`MinHasher`, `LSHIndex`, `Deduplicator`, `near_duplicate_pairs`): a document
  is the set of its character k-grams ("shingles"), and two documents are near duplicates when
  the Jaccard similarity J(A, B) = |A ∩ B| / |A ∪ B| of their sets reaches a threshold. MinHash
  (Broder 1997) turns each set into a signature of `num_perm` numbers, the minimum of each of
  `num_perm` random hash functions over the set; two signatures agree in each position with
  probability exactly J, so the fraction of agreeing positions estimates J with standard error
  sqrt(J(1 - J) / num_perm). Locality-sensitive hashing cuts each signature into b bands of r rows
  and calls two documents candidates when one whole band agrees: probability 1 - (1 - J^r)^b, an
  S-shaped curve whose steep part `optimal_bands` puts at the threshold. Only candidates are
  compared, so the cost grows with the number of documents, not its square.
- **Decontamination** (`NgramIndex`, `ngram_overlap`): the fraction of an evaluation document's
  n-grams (of characters or words) that occur in the training text. GPT-3's authors flagged a test
  example when one 13-word n-gram occurred in training.

The hash functions are those of `datasketch` 2.0 (its default scheme, "affine32"): shingle → the
first 4 bytes of its SHA-1, mixed by MurmurHash3's 32-bit finalizer, then h → a·h + b mod 2³² with
odd a, the (a, b) drawn by ``numpy.random.RandomState(seed)`` as datasketch draws them. So a
signature computed here equals datasketch's bit for bit (tests/test_dedup.py), while the arithmetic
runs for all shingles and all hash functions at once. ``hash="fast"`` replaces SHA-1 by a polynomial
hash of the code points computed with numpy for every shingle at once: the same estimator, other
random functions, several times faster (bench/bench_dedup.py).

Streaming: `Deduplicator` sees one document at a time and keeps only hashes and signatures (16 bytes
and 4·num_perm bytes per kept document), never the text.
"""

from __future__ import annotations

import functools
import hashlib
import math
import struct
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from lmbook.corpus import normalize

MAX_HASH = np.uint32(2**32 - 1)  # the signature of the empty set: no shingle lowered any position


# ---- exact duplicates ----------------------------------------------------------------------------------


def exact_key(doc: str) -> bytes:
    """16 bytes that stand for the document: the BLAKE2b hash of its normalised text (NFKC, lower case,
    runs of whitespace as one space, no space at the ends). Equal keys mean equal normalised texts
    (up to a collision, probability about 2⁻¹²⁸ per pair).

    >>> exact_key("The  Cat.\\n") == exact_key("the cat.")
    True
    """
    _check_doc(doc, "doc")
    return hashlib.blake2b(normalize(doc, lowercase=True).encode("utf-8"), digest_size=16).digest()


def exact_duplicates(docs: Iterable[str]) -> list[int]:
    """For each document, the index of the first document with the same `exact_key` (itself when it is
    the first): ``[i for i, first in enumerate(result) if first == i]`` keeps one copy of each.

    >>> exact_duplicates(["a b", "c", "A  b", "c"])
    [0, 1, 0, 1]
    """
    first: dict[bytes, int] = {}
    return [first.setdefault(exact_key(doc), i) for i, doc in enumerate(docs)]


# ---- shingles and MinHash ------------------------------------------------------------------------------


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


def sha1_hash32(shingle: str) -> int:
    """datasketch's default hash of a value: the first 4 bytes of the SHA-1 of its UTF-8 bytes, as a
    little-endian unsigned int."""
    return struct.unpack("<I", hashlib.sha1(shingle.encode("utf-8")).digest()[:4])[0]


def shingle_hashes(text: str, k: int = 5, hash: str = "sha1") -> np.ndarray:
    """The distinct 32-bit hashes of the k-shingles of `text` (uint32, sorted). ``hash="sha1"`` is
    datasketch's `sha1_hash32` of each shingle; ``hash="fast"`` a polynomial hash of the shingle's
    code points, computed for all shingles at once, folded to 32 bits."""
    if hash == "sha1":
        return np.unique(np.fromiter((sha1_hash32(s) for s in shingles(text, k)), dtype=np.uint32))
    if hash != "fast":
        raise ValueError(f"hash must be 'sha1' (datasketch's, bit for bit) or 'fast' (numpy), got {hash!r}")
    _check_doc(text, "text")
    _check_k(k)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    if len(codes) == 0:
        return np.zeros(0, dtype=np.uint32)
    return np.unique((_fmix64(polynomial_hashes(codes, min(k, len(codes)))) >> np.uint64(32)).astype(np.uint32))


def polynomial_hashes(codes: np.ndarray, n: int) -> np.ndarray:
    """The hash Σ_j codes[i+j]·P^(n-1-j) mod 2⁶⁴ of every window of n consecutive codes (uint64),
    computed with n vector operations; P is a large odd constant.

    >>> polynomial_hashes(np.array([1, 2, 3], dtype=np.uint64), 2).tolist() == [(c * int(_P) + d) % 2**64 for c, d in [(1, 2), (2, 3)]]
    True
    """
    m = len(codes) - n + 1
    h = np.zeros(m, dtype=np.uint64)
    with np.errstate(over="ignore"):
        for j in range(n):
            h = h * _P + codes[j : j + m]
    return h


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


def jaccard(a: set, b: set) -> float:
    """|A ∩ B| / |A ∪ B|; 1.0 for two empty sets (identical).

    >>> jaccard({1, 2, 3}, {2, 3, 4})
    0.5
    """
    union = len(a | b)
    return len(a & b) / union if union else 1.0


# ---- locality-sensitive hashing ---------------------------------------------------------------------------


def candidate_probability(s, bands: int, rows: int):
    """The probability that two sets of Jaccard similarity s share at least one of b bands of r rows:
    1 - (1 - s^r)^b.

    >>> round(float(candidate_probability(0.8, bands=20, rows=5)), 4)
    0.9996
    """
    return 1 - (1 - np.asarray(s, dtype=float) ** rows) ** bands


def lsh_error_areas(threshold: float, bands: int, rows: int, grid: int = 2001) -> tuple[float, float]:
    """(false-positive area, false-negative area): the integral of the candidate probability below the
    threshold, and of its complement above it (Simpson's rule on `grid` points each)."""
    low, high = np.linspace(0, threshold, grid), np.linspace(threshold, 1, grid)
    return (_simpson(candidate_probability(low, bands, rows), low),
            _simpson(1 - candidate_probability(high, bands, rows), high))


@functools.lru_cache(maxsize=64)
def optimal_bands(threshold: float, num_perm: int, weights: tuple[float, float] = (0.5, 0.5)) -> tuple[int, int]:
    """The (bands, rows), bands·rows ≤ num_perm, that minimise w_fp·(false-positive area) + w_fn·(false-
    negative area): datasketch's choice for ``MinHashLSH(threshold, num_perm, weights)``."""
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie strictly between 0 and 1 (a Jaccard similarity), got {threshold!r}")
    if isinstance(num_perm, bool) or not isinstance(num_perm, int) or num_perm < 1:
        raise ValueError(f"num_perm must be an int >= 1, got {num_perm!r}")
    best, best_error = (1, 1), math.inf
    for b in range(1, num_perm + 1):
        for r in range(1, num_perm // b + 1):
            fp, fn = lsh_error_areas(threshold, b, r)
            error = weights[0] * fp + weights[1] * fn
            if error < best_error:
                best, best_error = (b, r), error
    return best


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


RECALL_FIRST = (0.05, 0.95)  # LSH weights for deduplication: a missed duplicate stays; a false candidate costs one comparison


def near_duplicate_pairs(docs: Sequence[str], threshold: float = 0.8, num_perm: int = 128, k: int = 5,
                         seed: int = 1, hash: str = "sha1", verify: str = "minhash",
                         weights: tuple[float, float] = RECALL_FIRST) -> list[tuple[int, int, float]]:
    """Pairs (i, j, similarity), i < j, of documents whose k-shingle sets are near duplicates.

    Each document (normalised as `exact_key` does) is signed, the signatures are banded by
    `optimal_bands` with `weights` (by default recall first: datasketch's equal weights put the steep
    part of the S-curve at the threshold, so that a pair just above it becomes a candidate less than
    half the time), and every candidate pair is kept when its similarity
    reaches `threshold`: the signatures' estimate (``verify="minhash"``), or the exact Jaccard of the
    two shingle sets (``verify="exact"``, which needs the texts, not only the signatures). Documents
    with no shingles (empty after normalisation) are never near duplicates.
    """
    if verify not in ("minhash", "exact"):
        raise ValueError(f"verify must be 'minhash' or 'exact', got {verify!r}")
    texts = [normalize(_check_doc(d, f"docs[{i}]"), lowercase=True) for i, d in enumerate(docs)]
    hasher = MinHasher(num_perm, seed)
    index, sigs = LSHIndex(*optimal_bands(threshold, num_perm, weights)), []
    for i, text in enumerate(texts):
        sigs.append(hasher.signature(shingle_hashes(text, k, hash)))
        if text:
            index.insert(i, sigs[-1])
    found = []
    for i, j in sorted(index.candidate_pairs()):
        sim = jaccard(shingles(texts[i], k), shingles(texts[j], k)) if verify == "exact" \
            else estimated_jaccard(sigs[i], sigs[j])
        if sim >= threshold:
            found.append((i, j, sim))
    return found


def clusters(n: int, pairs: Iterable[tuple]) -> list[int]:
    """Union-find: for each of n items, the smallest index of its connected component under `pairs`.

    >>> clusters(5, [(0, 3), (3, 4), (1, 2)])
    [0, 1, 1, 0, 0]
    """
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, j, *_ in pairs:
        a, b = root(i), root(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    return [root(i) for i in range(n)]


def all_pairs_jaccard(docs: Sequence[str], threshold: float, k: int = 5) -> list[tuple[int, int, float]]:
    """Every pair (i, j, J), i < j, whose exact Jaccard similarity of normalised k-shingles is at least
    `threshold`: the ground truth for near_duplicate_pairs, without comparing every pair.

    Prefix filtering (Chaudhuri et al. 2006; Bayardo et al. 2007): order the shingles from the rarest
    to the most common. J(A, B) ≥ t implies |A ∩ B| ≥ t·|A|, and then the first |A| − ⌈t·|A|⌉ + 1
    shingles of A and those of B share at least one shingle. So only pairs that share a rare shingle of
    their prefixes are compared, exactly. Documents with no shingles are left out.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold!r}")
    ids: dict[str, int] = {}
    sets = [frozenset(ids.setdefault(sh, len(ids)) for sh in shingles(normalize(_check_doc(d, f"docs[{i}]"),
                                                                             lowercase=True), k))
            for i, d in enumerate(docs)]
    frequency = np.zeros(len(ids), dtype=np.int64)
    for s in sets:
        frequency[list(s)] += 1
    rank = np.empty(len(ids), dtype=np.int64)
    rank[np.argsort(frequency, kind="stable")] = np.arange(len(ids))    # 0: the rarest shingle
    index: dict[int, list[int]] = defaultdict(list)
    found = []
    for i, s in enumerate(sets):
        if not s:
            continue
        prefix = np.sort(rank[list(s)])[: len(s) - math.ceil(threshold * len(s) - 1e-9) + 1]
        candidates = {j for token in prefix.tolist() for j in index[token]
                      if threshold * len(s) <= len(sets[j]) <= len(s) / threshold}   # J ≥ t needs sizes within t
        for token in prefix.tolist():
            index[token].append(i)
        for j in sorted(candidates):
            common = len(s & sets[j])
            J = common / (len(s) + len(sets[j]) - common)
            if J >= threshold:
                found.append((j, i, J))
    return sorted(found)


class Deduplicator:
    """Streaming deduplication: `add(doc)` says whether a document is new, and remembers it if so.

    A document is a duplicate when its `exact_key` was seen, or when a kept document shares an LSH
    band with it (bands chosen by `optimal_bands` with `weights`, recall first by default) and their
    signatures agree on at least `threshold` of their positions. The first copy
    is kept. Memory: per kept document, its 16-byte key, its signature (4·num_perm bytes) and one entry
    per band; the text is never stored. `stats` counts what was dropped and why.
    """

    def __init__(self, threshold: float = 0.8, num_perm: int = 128, k: int = 5, seed: int = 1,
                 hash: str = "fast", near: bool = True, weights: tuple[float, float] = RECALL_FIRST):
        self.threshold, self.k, self.hash, self.near = threshold, k, hash, near
        self.hasher = MinHasher(num_perm, seed)
        self.index = LSHIndex(*optimal_bands(threshold, num_perm, weights))
        self.keys: set[bytes] = set()
        self.signatures: list[np.ndarray] = []
        self.stats = {"kept": 0, "exact": 0, "near": 0}

    def add(self, doc: str) -> bool:
        key = exact_key(doc)
        if key in self.keys:
            self.stats["exact"] += 1
            return False
        if self.near:
            text = normalize(doc, lowercase=True)
            sig = self.hasher.signature(shingle_hashes(text, self.k, self.hash))
            if text and any(estimated_jaccard(sig, self.signatures[j]) >= self.threshold for j in self.index.query(sig)):
                self.stats["near"] += 1
                return False
            if text:
                self.index.insert(len(self.signatures), sig)
            self.signatures.append(sig)
        self.keys.add(key)
        self.stats["kept"] += 1
        return True

    def filter(self, docs: Iterable[str]) -> Iterator[str]:
        """The documents that `add` keeps, lazily."""
        return (doc for doc in docs if self.add(doc))


# ---- decontamination: n-gram overlap -----------------------------------------------------------------------


class NgramIndex:
    """The set of n-grams of a text collection, as sorted 64-bit hashes (8 bytes per distinct n-gram).

    unit="char": n consecutive characters of the normalised text; unit="word": n consecutive words
    (the normalised text split on spaces). `add` can be called document by document (streaming);
    `freeze` sorts the hashes for look-ups (it is called by the first look-up).
    """

    def __init__(self, n: int = 13, unit: str = "word"):
        _check_k(n, "n")
        if unit not in ("char", "word"):
            raise ValueError(f"unit must be 'char' or 'word', got {unit!r}")
        self.n, self.unit = n, unit
        self._parts: list[np.ndarray] = []
        self._table: np.ndarray | None = None

    def hashes(self, doc: str) -> np.ndarray:
        """The hashes of every n-gram of one document, in order (uint64; none if it is shorter than n)."""
        text = normalize(_check_doc(doc, "doc"), lowercase=True)
        if self.unit == "char":
            codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
        else:
            codes = np.array([_word_id(w) for w in text.split(" ") if w], dtype=np.uint64)
        if len(codes) < self.n:
            return np.zeros(0, dtype=np.uint64)
        return polynomial_hashes(codes, self.n)

    def add(self, doc: str) -> None:
        self._parts.append(np.unique(self.hashes(doc)))
        self._table = None

    def freeze(self) -> np.ndarray:
        if self._table is None:
            self._table = np.unique(np.concatenate(self._parts)) if self._parts else np.zeros(0, np.uint64)
            self._parts = [self._table]
        return self._table

    def __len__(self) -> int:
        return len(self.freeze())

    def overlap(self, doc: str) -> float:
        """The fraction of the document's n-grams (with repeats) found in the index; NaN when it has none."""
        h = self.hashes(doc)
        if len(h) == 0:
            return math.nan
        table = self.freeze()
        i = np.searchsorted(table, h).clip(max=max(len(table) - 1, 0))
        return float(np.mean(table[i] == h)) if len(table) else 0.0


def ngram_overlap(train_docs: Iterable[str], eval_docs: Iterable[str], n: int = 13, unit: str = "word") -> list[float]:
    """For each evaluation document, the fraction of its n-grams that occur somewhere in `train_docs`
    (NaN for a document shorter than n). GPT-3's rule calls a document contaminated when this is > 0
    for word 13-grams.

    >>> ngram_overlap(["the cat sat on the mat"], ["the cat sat down", "a dog"], n=3)
    [0.5, nan]
    """
    index = NgramIndex(n, unit)
    for doc in train_docs:
        index.add(doc)
    return [index.overlap(doc) for doc in eval_docs]


# ---- helpers -------------------------------------------------------------------------------------------------

_P = np.uint64(0x9E3779B97F4A7C15)  # odd, 64 bits (the golden ratio × 2⁶⁴): the polynomial hash's base


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer (a bijection that spreads every input bit over every output bit),
    as datasketch applies it before its permutations."""
    h = h.astype(np.uint32, copy=True)
    h ^= h >> np.uint32(16)
    h *= np.uint32(0x85EBCA6B)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0xC2B2AE35)
    h ^= h >> np.uint32(16)
    return h


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finalizer."""
    h = h.astype(np.uint64, copy=True)
    with np.errstate(over="ignore"):
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    return h


def _word_id(word: str) -> int:
    """A stable 64-bit number for a word (the same in every process, unlike Python's hash)."""
    return int.from_bytes(hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest(), "little")


def _simpson(y: np.ndarray, x: np.ndarray) -> float:
    """Simpson's rule on an odd number of equally spaced points."""
    h = (x[-1] - x[0]) / (len(x) - 1)
    return float(h / 3 * (y[0] + y[-1] + 4 * y[1:-1:2].sum() + 2 * y[2:-1:2].sum()))


def _check_doc(doc, name: str) -> str:
    if isinstance(doc, bytes):
        raise TypeError(f"{name} is bytes; decode it first (lmbook.corpus.read_documents reads UTF-8 files and "
                        f"says where a file is not UTF-8)")
    if not isinstance(doc, str):
        raise TypeError(f"{name} must be a str, got {type(doc).__name__}")
    return doc


def _check_k(k, name: str = "k") -> None:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{name} must be an int >= 1 (the length of an n-gram), got {k!r}")
