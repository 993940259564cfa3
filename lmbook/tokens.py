"""Tokens on disk and batches on the device (chapter 7).

A GPU that waits for data is a GPU wasted, so the trainer never tokenizes during training. The text
is encoded once into a flat file of token ids, two bytes per token (``uint16``: any vocabulary up
to 65,536 tokens, which covers characters and GPT-2's 50,257), and the file is *memory-mapped*:
the operating system pages in the few kilobytes each batch touches, so a corpus larger than RAM
costs nothing to open.

A batch is `batch_size` windows of `block_size + 1` consecutive tokens starting at random offsets;
x is each window without its last token and y without its first (the next token at every
position). On CUDA the batch is copied into *pinned* (page-locked) host memory and sent with
``non_blocking=True``: the copy runs by DMA while the CPU goes on queueing the step's kernels.

`BatchSampler` draws the offsets of the whole *global* batch of a step (every micro-batch of
gradient accumulation on every process of a distributed run) from one seeded generator, and each
process takes its own slice. So the examples a step sees do not depend on how they are split: one
process with batch 64 and two processes with 32 each see the same 64 windows.

    >>> ids = encode_chars("hello", ["e", "h", "l", "o"])
    >>> ids.tolist(), decode_chars(ids, ["e", "h", "l", "o"])
    ([1, 0, 2, 2, 3], 'hello')
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from lmbook.checkpoint import read_json, write_atomically

MAX_VOCAB = 2**16  # ids must fit in uint16


def char_vocab(text: str) -> list[str]:
    """The sorted distinct characters of `text`: id i is the i-th character (nanoGPT's shakespeare_char)."""
    if not isinstance(text, str) or not text:
        raise ValueError(f"text must be a non-empty string, got {type(text).__name__} of length {len(text) if hasattr(text, '__len__') else '?'}")
    return sorted(set(text))


def encode_chars(text: str, chars: Sequence[str]) -> np.ndarray:
    """The id of every character of `text` in the vocabulary `chars`, as a uint16 array."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    _check_vocab(chars)
    stoi = {c: i for i, c in enumerate(chars)}
    unknown = sorted(set(text) - stoi.keys())
    if unknown:
        raise ValueError(f"text has {len(unknown)} characters outside the vocabulary, e.g. {unknown[:5]}; "
                         f"build the vocabulary from all the text with char_vocab(text)")
    return np.array([stoi[c] for c in text], dtype=np.uint16)


def decode_chars(ids, chars: Sequence[str]) -> str:
    """The text of a sequence of ids (a list, array or tensor) in 0..len(chars)-1."""
    _check_vocab(chars)
    return "".join(chars[i] for i in _checked_ids(ids, len(chars), "ids").tolist())


def write_tokens(ids, path: str | os.PathLike) -> Path:
    """Write token ids (any integer sequence) to `path` as raw uint16, atomically (a temporary file
    next to it, then a rename), and return the path."""
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.size == 0 or not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"ids must be a non-empty 1-D integer sequence, got dtype {ids.dtype}, shape {ids.shape}")
    if ids.min() < 0 or ids.max() >= MAX_VOCAB:
        raise ValueError(f"token ids must lie in [0, {MAX_VOCAB}) to fit in uint16, got min {ids.min()}, max {ids.max()}")
    return write_atomically(path, ids.astype(np.uint16).tobytes())


def read_tokens(path: str | os.PathLike) -> np.memmap:
    """Memory-map a file written by `write_tokens` (read-only, uint16, shape (n_tokens,))."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no token file at {path}; write one with lmbook.tokens.prepare_chars(...)")
    size = path.stat().st_size
    if size == 0 or size % 2:
        raise ValueError(f"{path} holds {size} bytes: a uint16 token file has an even, non-zero size "
                         f"(the file is empty or truncated)")
    return np.memmap(path, dtype=np.uint16, mode="r")


def prepare_chars(text: str, out_dir: str | os.PathLike, train_fraction: float = 0.9) -> dict:
    """Encode `text` character by character into out_dir/train.bin and out_dir/val.bin (the first
    `train_fraction` of the characters, then the rest: nanoGPT's split) and write out_dir/meta.json
    with the vocabulary. Returns the meta dict."""
    if isinstance(train_fraction, bool) or not isinstance(train_fraction, (int, float)) or not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction!r}")
    chars = char_vocab(text)  # also: text must be a non-empty string
    n = int(train_fraction * len(text))
    if n < 2 or len(text) - n < 2:
        raise ValueError(f"text of {len(text)} characters is too short to split {train_fraction}/{1 - train_fraction:.2g}")
    return prepare_char_split(text[:n], text[n:], out_dir, vocab_text="".join(chars))


def prepare_char_split(train_text: str, val_text: str, out_dir: str | os.PathLike, vocab_text: str | None = None) -> dict:
    """Encode a training and a validation text character by character into out_dir/train.bin and
    out_dir/val.bin, with the vocabulary of `vocab_text` (default: both texts; pass the whole corpus
    so that every character of it has an id), and write out_dir/meta.json. Returns the meta dict."""
    for name, t in (("train_text", train_text), ("val_text", val_text)):
        if not isinstance(t, str) or len(t) < 2:
            raise ValueError(f"{name} must be a string of at least 2 characters, got "
                             f"{type(t).__name__} of length {len(t) if hasattr(t, '__len__') else '?'}")
    chars = char_vocab(train_text + val_text if vocab_text is None else vocab_text)
    if len(chars) > MAX_VOCAB:
        raise ValueError(f"text holds {len(chars):,} distinct characters, more than the {MAX_VOCAB:,} ids a uint16 "
                         f"token file can hold; use a subword tokenizer (lmbook.bpe) for such text")
    out_dir = Path(out_dir)
    write_tokens(encode_chars(train_text, chars), out_dir / "train.bin")
    write_tokens(encode_chars(val_text, chars), out_dir / "val.bin")
    meta = {"tokenizer": "char", "vocab_size": len(chars), "chars": chars,
            "train_tokens": len(train_text), "val_tokens": len(val_text)}
    write_atomically(out_dir / "meta.json", json.dumps(meta, ensure_ascii=False, indent=1))
    return meta


def read_meta(data_dir: str | os.PathLike) -> dict:
    """The meta.json that `prepare_chars` wrote next to the token files."""
    file = Path(data_dir) / "meta.json"
    if not file.is_file():
        raise FileNotFoundError(f"no meta.json in {data_dir}; prepare the data with lmbook.tokens.prepare_chars")
    meta = read_json(file)
    vocab_size = meta.get("vocab_size") if isinstance(meta, dict) else None
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or not 1 <= vocab_size <= MAX_VOCAB:
        raise ValueError(f"{file} must be a JSON object whose vocab_size is an int in 1..{MAX_VOCAB}, got "
                         f"{vocab_size!r}: prepare the data again with lmbook.tokens.prepare_chars")
    return meta


def to_device(x: Tensor, device: torch.device) -> Tensor:
    """Move a CPU tensor to `device`; to CUDA through pinned memory without blocking the CPU."""
    if device.type == "cuda":
        return x.pin_memory().to(device, non_blocking=True)
    return x.to(device)


def windows(tokens: np.ndarray, offsets: np.ndarray | Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """x[i] = tokens[o_i : o_i + block_size], y[i] = tokens[o_i + 1 : o_i + block_size + 1]; both (B, block_size) int64.
    Every offset must leave room for a whole window: 0 <= o_i <= len(tokens) - block_size - 1."""
    if isinstance(block_size, bool) or not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be an int >= 1, got {block_size!r}")
    if np.ndim(tokens) != 1:
        raise ValueError(f"tokens must be a 1-D array of token ids, got shape {np.shape(tokens)}")
    offsets = _checked_ids(offsets, len(tokens) - block_size, "offsets")
    if len(offsets) == 0:
        raise ValueError("offsets is empty: pass at least one window start")
    rows = np.stack([np.asarray(tokens[o : o + block_size + 1], dtype=np.int64) for o in np.asarray(offsets)])  # (B, T+1)
    rows = torch.from_numpy(rows)
    return rows[:, :-1], rows[:, 1:]


class BatchSampler:
    """Random (x, y) micro-batches of one split for one process of a (possibly distributed) run.

    Every step draws ``grad_accum · world_size · batch_size`` offsets from one generator seeded with
    `seed` (the same on every process); micro-batch k of process r is the slice
    ``[(k · world_size + r) · batch_size, … + batch_size)``. `state_dict()` / `load_state_dict()`
    save and restore the generator, so a resumed run draws the batches the uninterrupted one would.
    """

    def __init__(self, tokens: np.ndarray, block_size: int, batch_size: int, *, grad_accum: int = 1,
                 rank: int = 0, world_size: int = 1, seed: int = 0, device: str | torch.device = "cpu"):
        for name, value in {"block_size": block_size, "batch_size": batch_size, "grad_accum": grad_accum,
                            "world_size": world_size}.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be an int >= 1, got {value!r}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must lie in [0, world_size={world_size}), got {rank}")
        if len(tokens) < block_size + 1:
            raise ValueError(f"the token file holds {len(tokens)} tokens, fewer than block_size + 1 = {block_size + 1}: "
                             f"lower block_size or use more text")
        self.tokens, self.block_size, self.batch_size = tokens, block_size, batch_size
        self.grad_accum, self.rank, self.world_size = grad_accum, rank, world_size
        self.device = torch.device(device)
        self.generator = torch.Generator().manual_seed(seed)

    def next_step(self) -> list[tuple[Tensor, Tensor]]:
        """This process's `grad_accum` micro-batches of the next step, each (x, y) of shape (batch_size, block_size) on the device."""
        global_batch = self.grad_accum * self.world_size * self.batch_size
        offsets = torch.randint(len(self.tokens) - self.block_size, (global_batch,), generator=self.generator)
        batches = []
        for k in range(self.grad_accum):
            start = (k * self.world_size + self.rank) * self.batch_size
            x, y = windows(self.tokens, offsets[start : start + self.batch_size].numpy(), self.block_size)
            batches.append((to_device(x, self.device), to_device(y, self.device)))
        return batches

    def state_dict(self) -> dict[str, Tensor]:
        return {"generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Tensor]) -> None:
        self.generator.set_state(state["generator"])


def _check_vocab(chars) -> None:
    if isinstance(chars, str) or not isinstance(chars, Sequence) or not chars:
        raise TypeError(f"chars must be a non-empty list of characters (the vocabulary), got {type(chars).__name__}")
    if len(chars) > MAX_VOCAB:
        raise ValueError(f"a vocabulary of {len(chars):,} characters does not fit in uint16 token ids "
                         f"(at most {MAX_VOCAB:,})")


def _checked_ids(ids, high: int, name: str) -> np.ndarray:
    """`ids` (a list, array or tensor) as a 1-D int64 array of values in 0..high-1, or a clear error."""
    if isinstance(ids, Tensor):
        ids = ids.detach().cpu().numpy()
    if isinstance(ids, (str, bytes)):
        raise TypeError(f"{name} must be integers, got the {type(ids).__name__} {ids!r:.40}")
    array = np.asarray(ids)
    if array.size and not (np.issubdtype(array.dtype, np.integer) and array.dtype != np.bool_):
        raise TypeError(f"{name} must be integers, got dtype {array.dtype}; convert with .astype(int) only if "
                        f"the values are whole numbers")
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}")
    if array.size and (array.min() < 0 or array.max() >= high):
        bad = array.min() if array.min() < 0 else array.max()
        raise ValueError(f"{name} holds {bad}, outside 0..{high - 1}" + (" (negative values would index from the end)"
                                                                       if bad < 0 else ""))
    return array.astype(np.int64)
