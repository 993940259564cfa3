"""The book's trained models: committed run folders, found and loaded by name (chapters 7, 8 and 10).

A chapter that builds on a trained model loads it instead of training it for minutes::

    model, meta = models.load("shakespeare_char")          # a GPT (float32, eval mode) and its tokenizer

Each model is a folder ``runs/<name>/`` written by one command, ``python -m lmbook.trainer --config
configs/<name>.json`` (``make models`` re-makes them all):

    model.safetensors   the weights (bf16 or fp32; safetensors: loading runs no code)
    config.json         the model, the tokenizer, every training setting, the weights' sha256, and a
                        check value: the model's loss on a fixed slice of the validation text
    metrics.json        the loss curve, tokens seen, wall time, device, torch version, the command
    samples.txt         a few samples

`load` verifies the weights against the recorded sha256; `check` recomputes the loss on the fixed
slice, which must equal the recorded one (a test does this for every committed model).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from lmbook import tokens

MODELS = {  # name: what it is
    "shakespeare_char": "a character-level GPT on tinyshakespeare, trained on a 2-core CPU",
    "shakespeare_char_gpu": "nanoGPT's shakespeare-char shape (6 x 384, context 256), trained on one GPU",
    "tang_poems_char": "a character-level GPT on the Tang poems (split by poem), trained on a 2-core CPU",
}
CHECK_WINDOWS = 16  # the check value: mean loss over the first 16 non-overlapping windows of the validation tokens


def runs_dir() -> Path:
    """Where the run folders live: ``$LMBOOK_RUNS_DIR``, else ``runs/`` of the checkout lmbook is installed from."""
    chosen = os.environ.get("LMBOOK_RUNS_DIR")
    return Path(chosen) if chosen else Path(__file__).resolve().parent.parent / "runs"


def path(name: str) -> Path:
    """The folder of a committed model, or an error that says how to make it."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; the book's models are: {', '.join(MODELS)}")
    folder = runs_dir() / name
    if not (folder / "config.json").is_file() or not (folder / "model.safetensors").is_file():
        raise FileNotFoundError(f"the model {name!r} is not in {folder}: train it with "
                                f"`python -m lmbook.trainer --config configs/{name}.json` (or `make models`), "
                                f"or set LMBOOK_RUNS_DIR to the folder that holds {name}/")
    return folder


def load(name: str, device: str | torch.device = "cpu"):
    """(model, meta): the trained GPT in float32 and eval mode, and its tokenizer meta (``meta['chars']``)."""
    from lmbook.trainer import load_run

    return load_run(path(name), device=str(device))


def metrics(name: str) -> dict:
    """The run's metrics.json: loss curves, tokens per step, training time, device, command."""
    return json.loads((path(name) / "metrics.json").read_text(encoding="utf-8"))


@torch.no_grad()
def check_loss(model: torch.nn.Module, val_tokens: np.ndarray, block_size: int, windows: int = CHECK_WINDOWS) -> float:
    """Mean cross-entropy (nats per token) of `model` on the first `windows` non-overlapping windows of
    `val_tokens`, in float32 on the model's device: the check value recorded beside the weights."""
    offsets = np.arange(windows) * block_size
    if offsets[-1] + block_size + 1 > len(val_tokens):
        raise ValueError(f"{len(val_tokens)} validation tokens hold fewer than {windows} windows of {block_size} + 1")
    x, y = tokens.windows(val_tokens, offsets, block_size)
    device = next(model.parameters()).device
    logits, _ = model(x.to(device))
    return F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten()).item()


def check(name: str) -> tuple[float, float]:
    """(recorded, recomputed) check loss of a committed model on its validation slice (CPU, float32)."""
    from lmbook.data import lm_split

    info = json.loads((path(name) / "config.json").read_text(encoding="utf-8"))
    model, meta = load(name)
    val = tokens.encode_chars(lm_split(info["train"]["dataset"])[1], meta["chars"])
    return info["check"]["loss"], check_loss(model, val, info["model"]["block_size"], info["check"]["windows"])
