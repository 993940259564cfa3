"""Datasets: where the book's text comes from, verified by checksum (chapter 1).

Every dataset the book uses has a name, a canonical download address and a sha256. `path(name)`
finds the file in this order:

1. the folder named by the environment variable ``LMBOOK_DATA_DIR`` (an offline mirror),
2. the cache folder (``$LMBOOK_CACHE_DIR``, default ``~/.cache/lmbook``),
3. the canonical address, downloaded into the cache with a progress bar and verified.

A file whose sha256 differs from the registry is never used: the error says which file and
where it was found. With no network and no local copy the error says what to do.

The standard splits make our numbers comparable with published ones:
``names`` is shuffled with ``random.seed(42)`` and cut 80/10/10 (makemore's split);
``tinyshakespeare`` is cut into the first 90% for training and the last 10% for validation
(nanoGPT's split).
"""

from __future__ import annotations

import hashlib
import os
import random
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Dataset:
    name: str
    filename: str
    url: str
    sha256: str
    size: int  # bytes
    description: str


_RAW = "https://raw.githubusercontent.com"
REGISTRY: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "tinyshakespeare", "tinyshakespeare.txt",
            f"{_RAW}/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
            "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed", 1115394,
            "40,000 lines of Shakespeare's plays (Karpathy's char-rnn), public domain",
        ),
        Dataset(
            "names", "names.txt",
            f"{_RAW}/karpathy/makemore/master/names.txt",
            "0a30b5557f192f32ab962680889aac5f6fda0f4cecf40a6d0b5694f58ea8cc4d", 228145,
            "32,033 US first names, lowercase a-z, one per line (makemore)",
        ),
        Dataset(
            "gpt2_encoder", "gpt2_encoder.json",
            "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
            "196139668be63f3b5d6574427317ae82f612a97c5d1cdaf36ed2256dbf636783", 1042301,
            "GPT-2's encoder.json: 50,257 tokens to ids",
        ),
        Dataset(
            "gpt2_vocab", "gpt2_vocab.bpe",
            "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
            "1ce1664773c50f3e0cc8842619a93edc4624525b728b188a9e0be33b7726adc5", 456318,
            "GPT-2's vocab.bpe: 50,000 merges",
        ),
        Dataset(
            "tang_poems", "tang_poems.txt",
            "",  # built from chinese-poetry/chinese-poetry; no single file to download
            "1ad855ce0bfe1c3dcd60eb220f97bd962e10be5fb82c40ff7488b4afc94b882f", 2384562,
            "10,008 Tang-dynasty poems (chinese-poetry), traditional characters",
        ),
        Dataset(
            "tinystories_valid_sample", "tinystories_valid_sample.txt",
            f"{_RAW}/yuninxia/moe-routing-bench/6877be50c1c389c73047d7f27104bee6a995efd6/data/tinystories_val.txt",
            "5fc1fb0113df62b567fb271806cd645ce8d75f59c58ca0b764c03d3b6ff34ca6", 794375,
            "the first ~1,000 stories of TinyStories' validation split",
        ),
    ]
}


class DatasetError(RuntimeError):
    """A dataset is missing, unknown, or fails its checksum."""


def cache_dir() -> Path:
    return Path(os.environ.get("LMBOOK_CACHE_DIR", Path.home() / ".cache" / "lmbook"))


def sha256_of(file: str | os.PathLike) -> str:
    """The sha256 of a file's bytes, as hex."""
    h = hashlib.sha256()
    with open(file, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _verified(file: Path, ds: Dataset) -> Path:
    digest = sha256_of(file)
    if digest != ds.sha256:
        raise DatasetError(
            f"{file} does not match the registered sha256 of '{ds.name}' "
            f"(expected {ds.sha256}, found {digest}). The file is corrupt or a different "
            f"version; it was not used. Delete it or replace it with the original."
        )
    return file


def _download(ds: Dataset, dest: Path) -> Path:
    from tqdm.auto import tqdm

    dest.parent.mkdir(parents=True, exist_ok=True)
    # Download to a temporary file next to the destination, verify, then rename: an interrupted
    # or corrupt download never leaves a file that looks finished.
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(ds.url, timeout=30) as resp:
            total = int(resp.headers.get("Content-Length") or ds.size)
            with tqdm(total=total, unit="B", unit_scale=True, desc=ds.filename) as bar:
                for block in iter(lambda: resp.read(1 << 16), b""):
                    out.write(block)
                    bar.update(len(block))
        _verified(Path(tmp), ds)
        umask = os.umask(0o022)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private (0600)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def path(name: str, download: bool = True) -> Path:
    """Return the local path of dataset `name`, verified against its sha256.

    >>> path("names").name
    'names.txt'
    """
    if not isinstance(name, str) or name not in REGISTRY:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}")
    ds = REGISTRY[name]
    mirror = os.environ.get("LMBOOK_DATA_DIR")
    if mirror and (Path(mirror) / ds.filename).is_file():
        return _verified(Path(mirror) / ds.filename, ds)
    cached = cache_dir() / ds.filename
    if cached.is_file():
        return _verified(cached, ds)
    looked = ([f"$LMBOOK_DATA_DIR ({mirror})"] if mirror else []) + [f"the cache ({cache_dir()})"]
    if download and ds.url:
        try:
            return _download(ds, cached)
        except OSError as e:  # URLError and socket errors are OSErrors
            raise DatasetError(
                f"dataset '{name}' ({ds.filename}) was not found in {' or '.join(looked)}, and "
                f"downloading it from {ds.url} failed ({e}). Set LMBOOK_DATA_DIR to a folder "
                f"that holds {ds.filename}, or connect to the internet and try again."
            ) from None  # the message names the cause; urllib's own traceback only buries it
    raise DatasetError(
        f"dataset '{name}' ({ds.filename}) was not found in {' or '.join(looked)}"
        + ("" if ds.url else ", and it has no single download address")
        + f". Set LMBOOK_DATA_DIR to a folder that holds {ds.filename}."
    )


def load_text(name: str) -> str:
    """The whole dataset as one string (UTF-8)."""
    return path(name).read_text(encoding="utf-8")


def names_split(seed: int = 42) -> tuple[list[str], list[str], list[str]]:
    """makemore's split of `names`: shuffle with ``random.seed(seed)``, then 80/10/10.

    Returns (train, dev, test) lists of names.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int (42: makemore's split), got {type(seed).__name__} {seed!r}")
    words = load_text("names").splitlines()
    random.Random(seed).shuffle(words)  # the same order as random.seed(seed); random.shuffle(words)
    n1, n2 = int(0.8 * len(words)), int(0.9 * len(words))
    return words[:n1], words[n1:n2], words[n2:]


def shakespeare_split(train_fraction: float = 0.9) -> tuple[str, str]:
    """nanoGPT's split of `tinyshakespeare`: the first 90% of characters, then the last 10%
    (`train_fraction` lies strictly between 0 and 1)."""
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) or not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1 (0.9: nanoGPT's split), "
                         f"got {train_fraction!r}")
    text = load_text("tinyshakespeare")
    n = int(train_fraction * len(text))
    return text[:n], text[n:]


@dataclass(frozen=True)
class Poem:
    title: str
    author: str
    text: str  # the poem's lines, joined by newlines

    def __str__(self) -> str:
        """The poem as the file writes it: title, author, then the lines."""
        return f"{self.title}\n{self.author}\n{self.text}"


def tang_poems() -> list[Poem]:
    """The 10,008 poems of `tang_poems`, in file order (blocks of title, author and lines, separated
    by one blank line; one poem has an empty title)."""
    poems = []
    for block in load_text("tang_poems").rstrip("\n").split("\n\n"):
        title, author, *lines = block.split("\n")
        poems.append(Poem(title, author, "\n".join(lines)))
    return poems


def tang_poems_split(seed: int = 0) -> tuple[list[Poem], list[Poem], list[Poem]]:
    """The book's split of `tang_poems` by poem: about 80/10/10 (train, val, test) *for every poet*.

    Each poet's poems are shuffled with a generator seeded by `seed` and dealt in turn to the ten
    parts starting at a random part, parts 0 to 7 for training, 8 for validation, 9 for test; so a
    poet with 1,148 poems has 115 in validation and 115 in test. The language model of chapter 7
    trains on the training poems only, and chapter 10 evaluates its classifiers on validation and test
    poems only: no test poem was ever seen by the pretrained model.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int (0: the book's split), got {type(seed).__name__} {seed!r}")
    rng = random.Random(seed)
    by_author: dict[str, list[int]] = {}
    poems = tang_poems()
    for i, poem in enumerate(poems):
        by_author.setdefault(poem.author, []).append(i)
    part = [0] * len(poems)
    for author in sorted(by_author):
        order = by_author[author][:]
        rng.shuffle(order)
        start = rng.randrange(10)
        for k, i in enumerate(order):
            part[i] = (start + k) % 10
    splits: tuple[list[Poem], list[Poem], list[Poem]] = ([], [], [])
    for poem, p in zip(poems, part):  # each split keeps the file's order
        splits[0 if p < 8 else 1 if p == 8 else 2].append(poem)
    return splits


def lm_split(name: str) -> tuple[str, str]:
    """(train, validation) text of a dataset for a character-level language model, in the book's
    standard split: nanoGPT's 90/10 for tinyshakespeare, `tang_poems_split` for tang_poems (poems
    separated by a blank line), makemore's for names (one name a line), 90/10 for the others."""
    if name == "tinyshakespeare":
        return shakespeare_split()
    if name == "tang_poems":
        train, val, _ = tang_poems_split()
        return "\n\n".join(map(str, train)) + "\n\n", "\n\n".join(map(str, val)) + "\n\n"
    if name == "names":
        train, dev, _ = names_split()
        return "\n".join(train) + "\n", "\n".join(dev) + "\n"
    text = load_text(name)  # any other dataset: the first 90% of its characters, then the rest
    return text[: int(0.9 * len(text))], text[int(0.9 * len(text)):]
