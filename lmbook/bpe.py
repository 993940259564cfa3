"""Byte-level byte pair encoding (BPE), the tokenizer of GPT-2 and its successors (chapter 6).

Text is turned into UTF-8 bytes, so every string can be encoded and nothing is ever unknown. BPE
then learns *merges*: starting from the 256 byte tokens, it repeatedly replaces the most frequent
adjacent pair of tokens by a new token. Encoding replays the learned merges, lowest rank first.

The module reads top to bottom in the order the chapter builds it:

- the two steps of BPE on a list of ids, `get_stats` and `merge`;
- pre-tokenization: the GPT-2 and GPT-4 split patterns, and special tokens such as
  ``<|endoftext|>`` that are cut out of the text before anything is merged;
- training: `train_merges_naive`, which recounts every pair after each merge, and `train_merges`,
  which keeps the pair counts and updates only what a merge touches, with a heap (lazy deletion)
  to find the most frequent pair. Both run over the *unique* pre-tokenized words, each weighted by
  how often it occurs, and both return the same merges: the most frequent pair wins, and a tie
  goes to the smallest pair of ids (compare the first ids, then the second);
- `Tokenizer`: train / encode / decode / save / load, special tokens, a streaming encoder for
  large files (constant memory), and `from_gpt2_files`, which loads GPT-2's ``encoder.json`` and
  ``vocab.bpe`` and produces exactly GPT-2's token ids.
"""

from __future__ import annotations

import codecs
import heapq
import json
import numbers
import re
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Iterator
from itertools import chain
from pathlib import Path

import regex

# GPT-2's split pattern (openai/gpt-2, src/encoder.py): common English contractions, an optional
# space followed by letters, or by numbers, or by other symbols; whitespace runs (the last space
# before a word is left for the word).
GPT2_SPLIT_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# GPT-4's (tiktoken's cl100k_base): case-insensitive contractions, numbers of at most 3 digits,
# punctuation keeps its trailing newlines, any one non-letter may lead a word.
GPT4_SPLIT_PATTERN = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)
PATTERNS = {"gpt2": GPT2_SPLIT_PATTERN, "gpt4": GPT4_SPLIT_PATTERN}
# The same two patterns for text that is pure ASCII, where \p{L} is [A-Za-z], \p{N} is [0-9] and \s
# is [\t\n\x0b\x0c\r ] (what `regex` puts in them among the ASCII characters). They split ASCII text
# exactly as the originals do (a test checks it) and run in Python's built-in `re`, twice as fast.
_WS = r"\t\n\x0b\x0c\r "
ASCII_PATTERNS = {
    GPT2_SPLIT_PATTERN: rf"""'s|'t|'re|'ve|'m|'ll|'d| ?[A-Za-z]+| ?[0-9]+| ?[^{_WS}A-Za-z0-9]+|[{_WS}]+(?![^{_WS}])"""
                        rf"""|[{_WS}]+""",
    GPT4_SPLIT_PATTERN: rf"""'(?i:[sdmt]|ll|ve|re)|[^\r\nA-Za-z0-9]?+[A-Za-z]++|[0-9]{{1,3}}+"""
                        rf"""| ?[^{_WS}A-Za-z0-9]++[\r\n]*+|[{_WS}]++$|[{_WS}]*[\r\n]|[{_WS}]+(?![^{_WS}])|[{_WS}]""",
}
ENDOFTEXT = "<|endoftext|>"
FORMAT = "lmbook-bpe"  # the "format" field of a saved tokenizer
_CACHE_SIZE = 100_000  # pieces remembered by the encoder (it is cleared when full)


# ---------------------------------------------------------------------------------------------
# The two steps of BPE


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


# ---------------------------------------------------------------------------------------------
# Pre-tokenization and special tokens


def split_pattern(pattern: str | None) -> str | None:
    """The regex source of `pattern`: "gpt2", "gpt4", a regex of your own, or None (no split)."""
    if pattern is None:
        return None
    if not isinstance(pattern, str):
        raise TypeError(f"pattern must be 'gpt2', 'gpt4', a regex string or None, got {type(pattern).__name__}")
    source = PATTERNS.get(pattern, pattern)
    try:
        regex.compile(source)
    except regex.error as e:
        raise ValueError(f"pattern {pattern!r} is neither 'gpt2' nor 'gpt4' nor a valid regex ({e})") from None
    return source


def special_splitter(special_tokens: Collection[str]) -> regex.Pattern:
    """A regex whose split() separates the special tokens from the text around them.

    At one position the longest special token wins (the alternatives are tried longest first); of
    two overlapping occurrences, the one that starts first wins.

    >>> special_splitter(["<|a|>", "<|a|><|b|>"]).split("x<|a|><|b|>y<|a|>")
    ['x', '<|a|><|b|>', 'y', '<|a|>', '']
    """
    alternatives = sorted(special_tokens, key=lambda s: (-len(s), s))
    return regex.compile("(" + "|".join(regex.escape(s) for s in alternatives) + ")")


def word_counts(text: str, pattern: str | None = "gpt2",
                special_tokens: Collection[str] = ()) -> Counter[str]:
    """How often each pre-tokenized piece ("word") occurs in `text`. Special tokens are cut out
    first, so that no piece and no merge ever spans one.

    >>> word_counts("the cat, the hat, the end")
    Counter({',': 2, ' the': 2, 'the': 1, ' cat': 1, ' hat': 1, ' end': 1})
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    source = split_pattern(pattern)
    segments = special_splitter(special_tokens).split(text)[::2] if special_tokens else [text]
    counts: Counter[str] = Counter()
    for segment in segments:
        if source is None:
            counts.update([segment] if segment else [])
        elif source in ASCII_PATTERNS and segment.isascii():
            counts.update(re.findall(ASCII_PATTERNS[source], segment))
        else:
            counts.update(regex.findall(source, segment))
    return counts


# ---------------------------------------------------------------------------------------------
# Training


def _as_byte_words(words: dict[str, int] | dict[tuple[int, ...], int]) -> dict[tuple[int, ...], int]:
    return {(tuple(w.encode("utf-8")) if isinstance(w, str) else tuple(w)): n for w, n in words.items()}


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


# ---------------------------------------------------------------------------------------------
# GPT-2's printable stand-ins for bytes (used by its encoder.json and vocab.bpe)


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from each byte to a printable character: printable Latin-1 bytes stand for
    themselves, the other 68 (control characters, space, ...) for characters from U+0100 on.
    So byte 32 (space) is 'Ġ' and byte 10 (newline) is 'Ċ'.

    >>> m = bytes_to_unicode(); m[ord("a")], m[32], m[10]
    ('a', 'Ġ', 'Ċ')
    """
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) \
        + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


# ---------------------------------------------------------------------------------------------
# The tokenizer


class Tokenizer:
    """A byte-level BPE tokenizer: `train`, `encode`, `decode`, `save`, `load`, `from_gpt2_files`.

    State: the split `pattern`; `byte_ids[b]`, the id of the token for byte b (0..255 for a
    tokenizer we train; GPT-2 numbers its byte tokens in another order); `merges`, a dict
    (id_a, id_b) -> new id in rank order (the order they were learned, the order encoding applies
    them); and `special_tokens`, a dict str -> id.

    >>> tok = Tokenizer().train("hello hello hello world", 256 + 3)  # 3 merges: "el", "hel", "lo"
    >>> tok.encode("hello"), tok.decode(tok.encode("hello world"))
    ([257, 258], 'hello world')
    """

    def __init__(self, pattern: str | None = "gpt2", merges: dict[tuple[int, int], int] | None = None,
                 special_tokens: dict[str, int] | None = None, byte_ids: list[int] | None = None):
        self.pattern = split_pattern(pattern)
        self.byte_ids = list(range(256)) if byte_ids is None else list(byte_ids)
        self.merges = dict(merges or {})
        self.special_tokens = dict(special_tokens or {})
        self._build()

    def _build(self) -> None:
        """Check the state for consistency and derive the vocabulary and the encoder's tables."""
        if len(self.byte_ids) != 256 or len(set(self.byte_ids)) != 256:
            raise ValueError("byte_ids must give 256 distinct ids, one for each byte value")
        vocab: dict[int, bytes] = {}
        for b, i in enumerate(self.byte_ids):
            _check_id(i, f"the id of byte {b}")
            vocab[i] = bytes([b])
        for rank, ((a, b), new) in enumerate(self.merges.items()):
            _check_id(new, f"merge {rank}'s new id")
            if a not in vocab or b not in vocab:
                raise ValueError(f"merge {rank} ({a}, {b}) uses an id that no byte or earlier merge defines")
            if new in vocab:
                raise ValueError(f"merge {rank} ({a}, {b}) -> {new}: id {new} is already taken")
            vocab[new] = vocab[a] + vocab[b]
        for s, i in self.special_tokens.items():
            if not isinstance(s, str) or not s:
                raise ValueError(f"special tokens must be non-empty strings, got {s!r}")
            _check_id(i, f"the id of special token {s!r}")
            if i in vocab:
                raise ValueError(f"special token {s!r} has id {i}, which is already taken")
            vocab[i] = s.encode("utf-8")
        self.vocab = vocab  # id -> bytes
        self.inverse_special_tokens = {i: s for s, i in self.special_tokens.items()}
        self._ranks = {pair: rank for rank, pair in enumerate(self.merges)}
        self._new_ids = list(self.merges.values())  # by rank
        self._split = regex.compile(self.pattern).findall if self.pattern else (lambda s: [s] if s else [])
        fast = ASCII_PATTERNS.get(self.pattern)
        self._split_ascii = re.compile(fast).findall if fast else self._split
        self._cache: dict[str, list[int]] = {}
        self._specials_re: dict[frozenset, regex.Pattern] = {}

    def __len__(self) -> int:
        """The vocabulary size: bytes + merges + special tokens."""
        return len(self.vocab)

    def __repr__(self) -> str:
        name = next((k for k, v in PATTERNS.items() if v == self.pattern), "custom" if self.pattern else None)
        return (f"Tokenizer(vocab_size={len(self)}, merges={len(self.merges)}, pattern={name!r}, "
                f"special_tokens={list(self.special_tokens)})")

    # -- training ----------------------------------------------------------------------------

    def train(self, text: str, vocab_size: int, special_tokens: Collection[str] = (),
              algorithm: str = "fast") -> Tokenizer:
        """Learn ``vocab_size - 256 - len(special_tokens)`` merges from `text`; returns self.

        The special tokens get the last ids. Occurrences of them in `text` are cut out before
        training, so that nothing is merged across them. `algorithm` is "fast" (`train_merges`)
        or "naive" (`train_merges_naive`); both learn the same merges. Training stops early,
        with a smaller vocabulary, if the text runs out of pairs.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        if isinstance(special_tokens, str):
            raise TypeError("special_tokens must be a collection of strings, e.g. ['<|endoftext|>'], not one string")
        special_tokens = list(special_tokens)
        if any(not isinstance(s, str) or not s for s in special_tokens) or len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special_tokens must be distinct non-empty strings, got {special_tokens!r}")
        smallest = 256 + len(special_tokens)
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < smallest:
            raise ValueError(f"vocab_size must be an int >= 256 (one token per byte) + {len(special_tokens)} "
                             f"special tokens = {smallest}, got {vocab_size!r}")
        trainers = {"fast": train_merges, "naive": train_merges_naive}
        if algorithm not in trainers:
            raise ValueError(f"algorithm must be one of {sorted(trainers)}, got {algorithm!r}")
        words = word_counts(text, self.pattern, special_tokens)
        pairs = trainers[algorithm](words, vocab_size - smallest)
        self.byte_ids = list(range(256))
        self.merges = {pair: 256 + k for k, pair in enumerate(pairs)}
        self.special_tokens = {s: 256 + len(pairs) + k for k, s in enumerate(special_tokens)}
        self._build()
        return self

    # -- encoding ----------------------------------------------------------------------------

    def _encode_piece(self, piece: bytes) -> list[int]:
        """Apply the merges to one pre-tokenized piece: merge the adjacent pair of lowest rank (the
        earliest learned), again and again, until no adjacent pair has a merge.

        Merging one occurrence at a time (the leftmost of the lowest rank) gives the same result as
        `merge` on all of them, because a pair made with the new token always has a higher rank. So
        after each merge only the two ranks next to it change: `ranks[j]` is the rank of the pair
        (ids[j], ids[j + 1]), or `none` when it has no merge.
        """
        ids = [self.byte_ids[b] for b in piece]
        get, none = self._ranks.get, len(self._ranks)
        ranks = [get(p, none) for p in zip(ids, ids[1:])]
        while ranks:
            best = min(ranks)
            if best == none:
                break
            i = ranks.index(best)
            ids[i : i + 2] = [self._new_ids[best]]
            del ranks[i]
            if i > 0:
                ranks[i - 1] = get((ids[i - 1], ids[i]), none)
            if i < len(ranks):
                ranks[i] = get((ids[i], ids[i + 1]), none)
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text`, treating any special-token text in it as ordinary text."""
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        pieces = self._split_ascii(text) if text.isascii() else self._split(text)
        cache = self._cache
        missing = set(pieces).difference(cache)
        if missing and len(cache) + len(missing) > _CACHE_SIZE:
            cache.clear()  # bounded memory: a streaming encoder may meet any number of pieces
            missing = set(pieces)
        for piece in missing:  # each distinct piece is merged once; after that it is a look-up
            try:
                cache[piece] = self._encode_piece(piece.encode("utf-8"))
            except UnicodeEncodeError as e:
                raise ValueError(f"text is not valid Unicode: {e.object[e.start:e.end]!r} is a lone "
                                 f"surrogate, which has no UTF-8 encoding") from None
        return list(chain.from_iterable(map(cache.__getitem__, pieces)))

    def _allowed(self, text: str, allowed_special) -> dict[str, int]:
        """The special tokens to honour in `text` (see `encode`)."""
        if allowed_special == "all":
            return self.special_tokens
        if allowed_special == "none":
            return {}
        if allowed_special == "none_raise":
            found = [s for s in self.special_tokens if s in text]
            if found:
                raise ValueError(f"text contains the special token(s) {found}. Pass allowed_special='all' (or "
                                 f"a set of them) to encode them as special tokens, or allowed_special='none' "
                                 f"to encode them as ordinary text")
            return {}
        if isinstance(allowed_special, str) or not isinstance(allowed_special, Collection):
            raise TypeError(f"allowed_special must be 'all', 'none', 'none_raise' or a set of special tokens, "
                            f"got {allowed_special!r}")
        unknown = [s for s in allowed_special if s not in self.special_tokens]
        if unknown:
            raise ValueError(f"allowed_special names {unknown}, which are not special tokens of this tokenizer "
                             f"({list(self.special_tokens)})")
        return {s: self.special_tokens[s] for s in allowed_special}

    def encode(self, text: str, allowed_special: str | Collection[str] = "none_raise") -> list[int]:
        """Encode `text` to token ids.

        allowed_special: which special tokens in the text are encoded as special tokens:
        "all"; a set of them; "none" (all special-token text is encoded as ordinary text); or
        "none_raise" (the default: a ValueError if the text contains any, as tiktoken does; text
        from users should not be able to inject an <|endoftext|>). Where special tokens overlap,
        the longest one at the leftmost position wins.
        """
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        special = self._allowed(text, allowed_special)
        if not special:
            return self.encode_ordinary(text)
        key = frozenset(special)
        if key not in self._specials_re:
            self._specials_re[key] = special_splitter(special)
        ids: list[int] = []
        for k, part in enumerate(self._specials_re[key].split(text)):
            if k % 2:  # split() puts the captured special tokens at the odd positions
                ids.append(special[part])
            elif part:
                ids.extend(self.encode_ordinary(part))
        return ids

    def encode_stream(self, chunks: Iterable[str],
                      allowed_special: str | Collection[str] = "none_raise") -> Iterator[int]:
        """Encode text that arrives in chunks (e.g. blocks of a file), yielding the same ids as
        `encode` on the whole text, in memory bounded by the chunk and line lengths.

        Pieces may not be split at a chunk boundary, so each chunk is cut after its last newline
        that sits between two non-whitespace characters ("x\\ny"): neither the GPT-2 nor the GPT-4
        pattern ever puts such a newline and the next character in one piece, or lets the pieces
        before it depend on what follows. The rest waits for the next chunk. Needs a split pattern
        with that property and special tokens without newlines.
        """
        if self.pattern is None:
            raise ValueError("streaming needs a split pattern (this tokenizer has pattern=None, one piece per text)")
        if self.pattern not in PATTERNS.values():
            raise ValueError("streaming needs the 'gpt2' or 'gpt4' split pattern: with a pattern of your own, a piece "
                             "may span the cut points and the ids would differ from encode(); encode the whole "
                             "text with encode() instead")
        if allowed_special in ("all", "none_raise"):
            named = list(self.special_tokens)
        elif allowed_special == "none":
            named = []
        else:
            named = list(allowed_special) if isinstance(allowed_special, Collection) else []
        if any("\n" in s for s in named):
            raise ValueError("the streaming encoder cannot handle special tokens that contain a newline")
        tail = ""
        for chunk in chunks:
            if not isinstance(chunk, str):
                raise TypeError(f"chunks must be strings, got {type(chunk).__name__}")
            buffer = tail + chunk
            m = _SAFE_CUT.search(buffer)
            if m is None:
                tail = buffer
                continue
            yield from self.encode(buffer[: m.end()], allowed_special)
            tail = buffer[m.end():]
        if tail:
            yield from self.encode(tail, allowed_special)

    def encode_file(self, path: str | Path, allowed_special: str | Collection[str] = "none_raise",
                    block_chars: int = 1 << 20) -> Iterator[int]:
        """Stream the ids of a UTF-8 text file, reading `block_chars` characters at a time.
        Line endings are kept as they are in the file (no "\\r\\n" -> "\\n" translation). A file that
        is missing or not valid UTF-8 is an error naming it."""
        if isinstance(block_chars, bool) or not isinstance(block_chars, int) or block_chars < 1:
            raise ValueError(f"block_chars must be an int >= 1, got {block_chars!r}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"no file at {path} to encode")

        def blocks() -> Iterator[str]:
            read = 0
            with open(path, encoding="utf-8", newline="") as f:
                while True:
                    try:
                        block = f.read(block_chars)
                    except UnicodeDecodeError as e:
                        raise ValueError(f"{path} is not valid UTF-8 text: {e.reason} at byte {e.start} of a block "
                                         f"read after {read:,} characters; encode_file reads UTF-8 only") from None
                    if not block:
                        return
                    read += len(block)
                    yield block
        return self.encode_stream(blocks(), allowed_special)

    # -- decoding ----------------------------------------------------------------------------

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes the ids stand for. An id that is not an int (a float, a bool) or not in the
        vocabulary raises a ValueError."""
        vocab, ids = self.vocab, list(ids)
        if not set(map(type, ids)) <= {int}:  # 104.0 and True would find a token, silently
            ids = [_as_token_id(i, vocab) for i in ids]
        try:
            return b"".join([vocab[i] for i in ids])
        except KeyError:
            bad = next(i for i in ids if i not in vocab)
            raise ValueError(f"cannot decode {bad!r}: token ids are ints from this tokenizer's vocabulary "
                             f"({len(vocab)} ids, 0..{max(vocab)})") from None

    def decode(self, ids: Iterable[int], errors: str = "replace") -> str:
        """The text the ids stand for. A sequence of tokens need not end on a character boundary
        (a token can hold half of a character's UTF-8 bytes): with errors="replace" (the default,
        as in tiktoken and Hugging Face), each invalid UTF-8 sequence becomes U+FFFD '�';
        errors="strict" raises UnicodeDecodeError (a ValueError) instead; any error handler of
        Python's codecs ("ignore", "backslashreplace", ...) works too."""
        try:
            codecs.lookup_error(errors)
        except (LookupError, TypeError):
            raise ValueError(f"errors must be 'replace', 'strict', 'ignore' or another codecs error handler, "
                             f"got {errors!r}") from None
        return self.decode_bytes(ids).decode("utf-8", errors=errors)

    # -- saving and loading ------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": FORMAT, "version": 1, "pattern": self.pattern, "byte_ids": self.byte_ids,
                "merges": [[a, b, new] for (a, b), new in self.merges.items()],
                "special_tokens": self.special_tokens}

    @classmethod
    def from_dict(cls, d: dict) -> Tokenizer:
        if not isinstance(d, dict) or d.get("format") != FORMAT or d.get("version") != 1:
            raise ValueError(f"not a saved lmbook tokenizer: expected a JSON object with format={FORMAT!r} and version 1")
        fields = {"format", "version", "pattern", "byte_ids", "merges", "special_tokens"}
        missing, unknown = fields - set(d), set(d) - fields
        if missing:
            raise ValueError(f"saved tokenizer lacks the field(s) {sorted(missing)}")
        if unknown:
            raise ValueError(f"saved tokenizer has unknown field(s) {sorted(unknown)}; a file written by "
                             f"Tokenizer.save holds exactly {sorted(fields)}")
        if not isinstance(d["merges"], list):
            raise ValueError(f"merges must be a list of [id_a, id_b, new_id], got {type(d['merges']).__name__}")
        merges = {}
        for k, m in enumerate(d["merges"]):
            if not (isinstance(m, list) and len(m) == 3 and all(isinstance(x, int) and not isinstance(x, bool) for x in m)):
                raise ValueError(f"merge {k} must be a list [id_a, id_b, new_id] of ints, got {m!r}")
            if (m[0], m[1]) in merges:
                raise ValueError(f"merge {k} repeats the pair {m[:2]}")
            merges[(m[0], m[1])] = m[2]
        if not isinstance(d["special_tokens"], dict) or not isinstance(d["byte_ids"], list):
            raise ValueError("special_tokens must be an object {token: id} and byte_ids a list of 256 ids")
        return cls(d["pattern"], merges, d["special_tokens"], d["byte_ids"])

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON (pattern, byte ids, merges in rank order, special tokens)."""
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Read a tokenizer written by `save`; a corrupt or foreign file raises a ValueError."""
        if not Path(path).is_file():
            raise FileNotFoundError(f"no saved tokenizer at {path}")
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{path} is not a JSON file written by Tokenizer.save ({e})") from None
        try:
            return cls.from_dict(d)
        except (ValueError, TypeError) as e:
            raise ValueError(f"{path}: {e}") from None

    @classmethod
    def from_gpt2_files(cls, encoder_json: str | Path, vocab_bpe: str | Path,
                        special_tokens: Collection[str] = (ENDOFTEXT,)) -> Tokenizer:
        """GPT-2's tokenizer from its two files: ``encoder.json`` (token string -> id, the tokens
        written with `bytes_to_unicode`'s stand-ins) and ``vocab.bpe`` (a "#version" line, then one
        merge per line in rank order: two token strings separated by a space).

        Every line and every token is checked; a truncated or corrupt file raises a ValueError that
        says where. Tokens of encoder.json that are neither a byte, nor made by a merge, nor named in
        `special_tokens` are an error too (a vocab.bpe cut short leaves such tokens behind).
        """
        try:
            encoder = json.loads(Path(encoder_json).read_text(encoding="utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{encoder_json} is not a valid encoder.json ({e})") from None
        if not isinstance(encoder, dict) or not all(isinstance(i, int) and not isinstance(i, bool) for i in encoder.values()):
            raise ValueError(f"{encoder_json}: encoder.json must be a JSON object {{token: integer id}}")
        try:
            lines = Path(vocab_bpe).read_text(encoding="utf-8").split("\n")
        except UnicodeDecodeError as e:
            raise ValueError(f"{vocab_bpe} is not valid UTF-8 ({e})") from None
        byte_char = bytes_to_unicode()
        missing = [c for c in byte_char.values() if c not in encoder]
        if missing:
            raise ValueError(f"{encoder_json} lacks the byte token(s) {missing[:5]}: it is not a GPT-2 style encoder.json")
        byte_ids = [encoder[byte_char[b]] for b in range(256)]
        merges, made = {}, set(byte_char.values())
        start = 1 if lines and lines[0].startswith("#version") else 0
        for lineno, line in enumerate(lines[start:], start + 1):
            if not line:
                if lineno == len(lines):  # the final newline
                    continue
                raise ValueError(f"{vocab_bpe}, line {lineno}: empty line in the middle of the merges")
            parts = line.split(" ")
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"{vocab_bpe}, line {lineno}: expected two tokens separated by one space, got {line!r}")
            for p in (*parts, parts[0] + parts[1]):
                if p not in encoder:
                    raise ValueError(f"{vocab_bpe}, line {lineno}: token {p!r} is not in {Path(encoder_json).name}")
            for p in parts:
                if p not in made:
                    raise ValueError(f"{vocab_bpe}, line {lineno}: token {p!r} is used before a merge makes it")
            pair = (encoder[parts[0]], encoder[parts[1]])
            if pair in merges:
                raise ValueError(f"{vocab_bpe}, line {lineno}: the merge {line!r} appears twice")
            merges[pair] = encoder[parts[0] + parts[1]]
            made.add(parts[0] + parts[1])
        special = {s: encoder[s] for s in special_tokens if s in encoder}
        unexplained = [t for t in encoder if t not in made and t not in special]
        if unexplained:
            raise ValueError(f"{len(unexplained)} token(s) of {Path(encoder_json).name} (e.g. {unexplained[:3]}) are "
                             f"made by no merge of {Path(vocab_bpe).name} and are not special tokens: is "
                             f"{Path(vocab_bpe).name} truncated, or from another model?")
        try:
            return cls("gpt2", merges, special, byte_ids)
        except ValueError as e:
            raise ValueError(f"{encoder_json} and {vocab_bpe} do not form a consistent tokenizer: {e}") from None


_SAFE_CUT = regex.compile(r"(?r)(?<=\S\n)(?=\S)")  # the rightmost "x\n|y" position (see encode_stream)


def _check_training_args(words, num_merges, first_id) -> None:
    """The arguments of `train_merges` and `train_merges_naive`, or an error naming the wrong one."""
    if not isinstance(words, dict):
        raise TypeError(f"words must be a dict {{word: count}} (see word_counts), got {type(words).__name__}")
    if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in words.values()):
        raise ValueError("words must map each word to its count, an int >= 1")
    if isinstance(num_merges, bool) or not isinstance(num_merges, int) or num_merges < 0:
        raise ValueError(f"num_merges must be an int >= 0, got {num_merges!r}")
    if isinstance(first_id, bool) or not isinstance(first_id, int) or first_id < 256:
        raise ValueError(f"first_id must be an int >= 256 (ids 0..255 are the bytes), got {first_id!r}")


def _as_token_id(i, vocab: dict[int, bytes]) -> int:
    if isinstance(i, bool) or not isinstance(i, numbers.Integral):
        raise ValueError(f"cannot decode {i!r} ({type(i).__name__}): token ids are ints from this tokenizer's "
                         f"vocabulary ({len(vocab)} ids, 0..{max(vocab)})")
    return int(i)


def _check_id(i, what: str) -> None:
    if isinstance(i, bool) or not isinstance(i, int) or i < 0:
        raise ValueError(f"{what} must be a non-negative int, got {i!r}")
