"""From raw text to a training corpus: normalisation, mojibake, language ID, quality filters, personal
data (chapter 11).

Each function takes text and returns text, a label or the list of rules a document fails, so that a
pipeline is a chain of generators over `read_documents` and never holds the corpus in memory.

- `normalize`: Unicode normalisation (NFC keeps the text as written; NFKC also folds compatibility
  characters: full-width "，" becomes ","), runs of whitespace as one space, optional lower case.
  For comparing documents (deduplication keys), not for rewriting the text a model learns from.
- `fix_mojibake`: text that was UTF-8, decoded as Windows-1252 ("â€™" for "’"), back to what it was.
  One rule of the damage is used on purpose: Windows-1252 has no character for the byte 0x9D, so the
  closing quote ” (E2 80 9D) often reaches us as "â€" with its last byte lost.
- `LanguageID`: one character n-gram model (chapter 1's `NgramLM`, Kneser–Ney) per language; a line
  belongs to the language whose model gives it the fewest bits per character, or to "other" when even
  the best needs more than a threshold.
- `gopher_quality`, `gopher_repetition`, `c4_clean`: the heuristic filters of Gopher's MassiveText
  (Rae et al. 2021) and of C4 (Raffel et al. 2020), as their papers state them. They were tuned for
  English web pages: applied to verse, to short documents or to Chinese they remove good text, which
  chapter 11 measures.
- `redact_pii`: e-mail addresses and long runs of digits (phone, card and account numbers) replaced
  by a placeholder.
"""

from __future__ import annotations

import codecs
import math
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

# ---- normalisation -------------------------------------------------------------------------------------

FORMS = ("NFC", "NFKC", "NFD", "NFKD")


def normalize(text: str, form: str = "NFKC", lowercase: bool = False, whitespace: bool = True) -> str:
    """`text` in Unicode normal form `form`, with every run of whitespace (newlines included) made one
    space and the ends stripped (``whitespace=True``), lower-cased if asked.

    >>> normalize("Ｈｅｌｌｏ，\\u00a0 world\\n")
    'Hello, world'
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}" +
                        (" (decode bytes first: read_documents reads UTF-8 files)" if isinstance(text, bytes) else ""))
    if form not in FORMS:
        raise ValueError(f"form must be one of {FORMS}, got {form!r}")
    text = unicodedata.normalize(form, text)
    if whitespace:
        text = " ".join(text.split())
    return text.lower() if lowercase else text


# ---- mojibake: UTF-8 read as Windows-1252 ------------------------------------------------------------------


def _cp1252(byte: int) -> str:
    try:
        return bytes([byte]).decode("cp1252")
    except UnicodeDecodeError:
        return ""  # 0x81, 0x8D, 0x8F, 0x90, 0x9D: no character


_CONT = "".join(re.escape(_cp1252(b)) for b in range(0x80, 0xC0))      # what continuation bytes become
_LEAD2, _LEAD3, _LEAD4 = ("".join(re.escape(_cp1252(b)) for b in r)
                          for r in (range(0xC2, 0xE0), range(0xE0, 0xF0), range(0xF0, 0xF5)))
MOJIBAKE = re.compile(f"[{_LEAD2}][{_CONT}]|[{_LEAD3}][{_CONT}]{{1,2}}|[{_LEAD4}][{_CONT}]{{1,3}}")
LOST_BYTES = (0x9D, 0x81, 0x8D, 0x8F, 0x90)  # the bytes Windows-1252 cannot show, most likely first: ” is E2 80 9D


def fix_mojibake(text: str) -> tuple[str, int]:
    """(repaired text, number of sequences repaired). Every match of `MOJIBAKE`, a UTF-8 lead byte and
    its continuation bytes as Windows-1252 shows them, is encoded back to bytes and decoded as UTF-8.
    A sequence one byte short is completed with the first of `LOST_BYTES` that makes it valid: a lost
    0x9D (the closing quote ”) in practice. A match that still does not decode is left as it is.

    >>> fix_mojibake("Iâ€™m here.â€ ok")
    ('I’m here.” ok', 2)
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    fixed = 0

    def repair(match: re.Match) -> str:
        nonlocal fixed
        raw = match.group(0).encode("cp1252")
        need = 2 if raw[0] < 0xE0 else 3 if raw[0] < 0xF0 else 4
        for tail in [b""] if len(raw) == need else [bytes([b]) for b in LOST_BYTES] if len(raw) == need - 1 else []:
            try:
                out = (raw + tail).decode("utf-8")
            except UnicodeDecodeError:
                continue
            fixed += 1
            return out
        return match.group(0)

    return MOJIBAKE.sub(repair, text), fixed


# ---- reading files in constant memory ---------------------------------------------------------------------


def read_documents(path: str | os.PathLike, separator: str = "\n\n", chunk_size: int = 1 << 16,
                   errors: str = "strict") -> Iterator[str]:
    """The documents of a UTF-8 file, one at a time: the text between `separator`s, stripped, empty
    ones skipped. The file is read `chunk_size` bytes at a time, so memory holds one chunk and one
    document, whatever the file's size. A byte sequence that is not UTF-8 raises ValueError naming
    its offset, unless ``errors="replace"`` (U+FFFD in its place) or ``"ignore"``.
    """
    if not isinstance(separator, str) or not separator:
        raise ValueError(f"separator must be a non-empty str, got {separator!r}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1 (bytes), got {chunk_size!r}")
    if errors not in ("strict", "replace", "ignore"):
        raise ValueError(f"errors must be 'strict', 'replace' or 'ignore', got {errors!r}")
    decoder = codecs.getincrementaldecoder("utf-8")(errors)
    buffer, consumed = "", 0
    with open(path, "rb") as f:
        while True:
            chunk = f.read(chunk_size)
            pending = len(decoder.getstate()[0])
            try:
                buffer += decoder.decode(chunk, final=not chunk)
            except UnicodeDecodeError as err:
                offset = consumed - pending + err.start
                raise ValueError(f"{path} is not UTF-8 at byte {offset} ({err.reason}: "
                                 f"{err.object[err.start:err.end]!r}); read it with errors='replace' to put "
                                 f"U+FFFD in place of the bad bytes, or errors='ignore' to drop them") from None
            consumed += len(chunk)
            *done, buffer = buffer.split(separator)
            for doc in done:
                if doc.strip():
                    yield doc.strip()
            if not chunk:
                break
    if buffer.strip():
        yield buffer.strip()


# ---- language identification --------------------------------------------------------------------------------

UNICODE = 0x110000  # code points: the characters a line could hold


class LanguageID:
    """A character n-gram language model per language (chapter 1's Kneser–Ney `NgramLM`): a line is
    scored in bits per character (its `</s>` included) by each, and labelled with the cheapest
    language, or "other" when that costs more than the language's threshold (`calibrate` sets each
    one to a quantile of the costs of held-out lines of that language; none are set by `fit`).

    A character the model never saw is one `<unk>` to the n-gram model; but `<unk>` stands for every
    character it has not seen, so one particular unseen character costs p(<unk>) divided among them
    all (the Unicode code points outside the model's vocabulary). Without that share, a line of rare
    Chinese characters costs the English model no more than the Chinese one.

    >>> lid = LanguageID(order=2).fit({"en": ["the cat", "the hat"], "zh": ["白日依山盡"]})
    >>> lid.predict(["the mat", "山盡"])
    ['en', 'zh']
    """

    def __init__(self, order: int = 3):
        if isinstance(order, bool) or not isinstance(order, int) or order < 1:
            raise ValueError(f"order must be an int >= 1 (3: character trigrams), got {order!r}")
        self.order = order
        self.models: dict = {}
        self.thresholds: dict[str, float] = {}

    def fit(self, texts: dict[str, Sequence[str]]) -> LanguageID:
        """texts: {language: lines (or documents) of that language}."""
        from lmbook.ngram import NgramLM

        for lang, lines in _checked_languages(texts).items():
            self.models[lang] = NgramLM(self.order, "kneser_ney").fit([list(line) for line in lines if line])
        self.thresholds = {lang: math.inf for lang in self.models}
        return self

    def calibrate(self, texts: dict[str, Sequence[str]], quantile: float = 0.99) -> LanguageID:
        """Set each language's threshold to the `quantile` of the costs its own model gives to held-out
        lines of that language (so about 1 - quantile of them will be called "other")."""
        if not 0 < quantile <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {quantile!r}")
        for lang, lines in _checked_languages(texts).items():
            if lang not in self.models:
                raise ValueError(f"no model for {lang!r}: the languages are {self.languages}")
            cost = self.bits_per_char(lines)[:, self.languages.index(lang)]
            self.thresholds[lang] = float(np.quantile(cost[np.isfinite(cost)], quantile))
        return self

    @property
    def languages(self) -> list[str]:
        return list(self.models)

    def bits_per_char(self, lines: Sequence[str]) -> np.ndarray:
        """(n_lines, n_languages): each language model's cost of each line, in bits per character
        (</s> counted); inf for an empty line."""
        if not self.models:
            raise ValueError("fit the LanguageID first")
        if isinstance(lines, str):
            raise TypeError("lines must be a list of str, not one str")
        lines = list(lines)
        for i, line in enumerate(lines):
            if not isinstance(line, str):
                raise TypeError(f"lines[{i}] must be a str, got {type(line).__name__}")
        kept = [i for i, line in enumerate(lines) if line]
        out = np.full((len(lines), len(self.models)), np.inf)
        if not kept:
            return out
        lengths = np.array([len(lines[i]) + 1 for i in kept])
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        for j, model in enumerate(self.models.values()):
            with np.errstate(divide="ignore"):
                nats = -np.log(model.token_probs([list(lines[i]) for i in kept]))
            unseen = np.array([ch not in model._index for i in kept for ch in lines[i] + "\n"])
            unseen[np.cumsum(lengths) - 1] = False                            # </s> is never unseen
            nats += unseen * math.log(UNICODE - len(model.vocab))             # <unk> is every unseen character
            out[kept, j] = np.add.reduceat(nats, starts) / lengths / math.log(2)
        return out

    def predict(self, lines: Sequence[str]) -> list[str]:
        """The language of each line: the cheapest, or "other" when it costs more than that language's
        threshold (and for an empty line)."""
        bits = self.bits_per_char(lines)
        best = bits.argmin(axis=1)
        langs = self.languages
        return [langs[j] if bits[i, j] <= self.thresholds[langs[j]] else "other" for i, j in enumerate(best)]


def _checked_languages(texts) -> dict:
    if not isinstance(texts, dict) or not texts:
        raise ValueError("texts must be a dict {language: list of lines}, with at least one language")
    for lang, lines in texts.items():
        if lang == "other":
            raise ValueError("'other' is the label for lines no language claims; name the languages otherwise")
        if isinstance(lines, str) or not all(isinstance(line, str) for line in lines):
            raise TypeError(f"texts[{lang!r}] must be a list of str lines")
        if not any(lines):
            raise ValueError(f"no non-empty lines for language {lang!r}")
    return texts


# ---- quality filters ------------------------------------------------------------------------------------------

STOP_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")  # Gopher's: at least 2 must occur
BULLETS = ("•", "-", "*", "●", "▪", "‣")


def gopher_quality(doc: str) -> list[str]:
    """The names of Gopher's quality rules that `doc` fails (none: keep it). Words are the
    whitespace-separated pieces of the text; lines the non-empty lines.

    >>> gopher_quality("far too short")
    ['50 to 100,000 words', 'at least 2 stop words']
    """
    _check_doc(doc)
    words = doc.split()
    lines = [line.strip() for line in doc.splitlines() if line.strip()]
    failed = []
    if not 50 <= len(words) <= 100_000:
        failed.append("50 to 100,000 words")
    if not words or not 3 <= sum(map(len, words)) / len(words) <= 10:
        failed.append("mean word length 3 to 10")
    if words and max(doc.count("#"), doc.count("...") + doc.count("…")) / len(words) > 0.1:
        failed.append("# or ... per word at most 0.1")
    if lines and sum(line.startswith(BULLETS) for line in lines) / len(lines) > 0.9:
        failed.append("at most 90% of lines start with a bullet")
    if lines and sum(line.endswith(("...", "…")) for line in lines) / len(lines) > 0.3:
        failed.append("at most 30% of lines end with an ellipsis")
    if not words or sum(any(c.isalpha() for c in w) for w in words) / len(words) < 0.8:
        failed.append("80% of words have a letter")
    if len({w.lower().strip(".,;:!?\"'()") for w in words} & set(STOP_WORDS)) < 2:
        failed.append("at least 2 stop words")
    return failed


def top_ngram_char_fraction(words: Sequence[str], n: int) -> float:
    """The fraction of the characters of `words` that lie in the most frequent word n-gram, counted
    once per occurrence (Gopher's repetition measure for n = 2, 3, 4); 0 when no n-gram occurs twice
    (one occurrence is not a repetition, and would fail every short document).

    >>> top_ngram_char_fraction("a b a b a b".split(), 2)   # (a b) 3 times, 2 characters each, of 6
    1.0
    """
    total = sum(map(len, words))
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    if not grams or total == 0:
        return 0.0
    gram, count = grams.most_common(1)[0]
    return count * sum(map(len, gram)) / total if count > 1 else 0.0


GOPHER_TOP_NGRAM = {2: 0.20, 3: 0.18, 4: 0.16}


def gopher_repetition(doc: str) -> list[str]:
    """The names of Gopher's repetition rules that `doc` fails: duplicate lines (more than 30% of the
    lines, or 20% of the characters, are copies of an earlier line) and the most frequent 2-, 3- and
    4-gram of words (more than 20%, 18%, 16% of the characters). (Gopher also bounds the characters
    in duplicated 5- to 10-grams: chapter 11, exercise 1.)"""
    _check_doc(doc)
    lines = [line.strip() for line in doc.splitlines() if line.strip()]
    failed = []
    if lines:
        seen: set[str] = set()
        dup_lines = dup_chars = 0
        for line in lines:
            if line in seen:
                dup_lines += 1
                dup_chars += len(line)
            seen.add(line)
        if dup_lines / len(lines) > 0.3:
            failed.append("duplicate lines at most 30%")
        if dup_chars / sum(map(len, lines)) > 0.2:
            failed.append("characters in duplicate lines at most 20%")
    words = doc.split()
    for n, limit in GOPHER_TOP_NGRAM.items():
        if top_ngram_char_fraction(words, n) > limit:
            failed.append(f"top {n}-gram at most {limit:.0%} of characters")
    return failed


C4_END = (".", "!", "?", '"', "”")
C4_POLICY = ("terms of use", "privacy policy", "cookie policy", "uses cookies", "use of cookies", "use cookies")


def c4_clean(doc: str) -> tuple[str, list[str]]:
    """C4's rules: (the kept text, the reasons the page was dropped). Lines are kept that end in
    terminal punctuation, have at least 5 words and mention neither "javascript" nor a cookie or
    policy notice; the page is dropped (kept text "") when it holds "lorem ipsum" or a curly bracket,
    or when fewer than 3 sentences are left. (C4's list of bad words is left out.)"""
    _check_doc(doc)
    low = doc.lower()
    reasons = [r for r, hit in (("lorem ipsum", "lorem ipsum" in low), ("curly bracket", "{" in doc)) if hit]
    kept = []
    for line in doc.splitlines():
        s, l = line.strip(), line.lower()
        if s.endswith(C4_END) and len(s.split()) >= 5 and "javascript" not in l and not any(p in l for p in C4_POLICY):
            kept.append(s)
    text = "\n".join(kept)
    if len(re.findall(r"[.!?]+(?:[\"”]?)(?=\s|$)", text)) < 3:
        reasons.append("fewer than 3 sentences")
    return ("" if reasons else text), reasons


# ---- personal data -----------------------------------------------------------------------------------------------

EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b")
DIGITS = re.compile(r"(?<![\d(])\(?\d(?:[ ().-]{0,2}\d){4,}(?!\d)")  # 5+ digits, perhaps separated


def redact_pii(text: str) -> tuple[str, int]:
    """(text with every e-mail address replaced by <EMAIL> and every run of 5 or more digits, which may
    be separated by up to two spaces, dots, dashes or brackets (on one line), by <NUMBER>; the number of replacements).

    >>> redact_pii("Mail ann@example.org or call 555-0142 today.")
    ('Mail <EMAIL> or call <NUMBER> today.', 2)
    """
    _check_doc(text)
    text, n_email = EMAIL.subn("<EMAIL>", text)
    text, n_digits = DIGITS.subn("<NUMBER>", text)
    return text, n_email + n_digits


def _check_doc(doc) -> None:
    if not isinstance(doc, str):
        raise TypeError(f"the document must be a str, got {type(doc).__name__}"
                        + (" (decode bytes first: read_documents reads UTF-8 files)" if isinstance(doc, bytes) else ""))


def iter_lines(docs: Iterable[str]) -> Iterator[str]:
    """The non-empty, stripped lines of the documents, in order."""
    for doc in docs:
        for line in doc.splitlines():
            if line.strip():
                yield line.strip()
