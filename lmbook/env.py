"""The reader's machine: profiles, seeding and device choice (used from chapter 1 on).

Every chapter sizes its experiments from one setting, the *profile*:

- ``test``: the smallest run that still exercises every cell (what CI runs: ≤ 3 minutes a chapter),
- ``cpu``: what a reader on a 2-core laptop gets (≤ 15 minutes a chapter, results worth reading),
- ``gpu``: full size, chosen automatically when CUDA is present.

The environment variable ``LMBOOK_PROFILE`` overrides the automatic choice.
"""

from __future__ import annotations

import os
import random

import numpy as np

PROFILES = ("test", "cpu", "gpu")


def profile() -> str:
    """The active profile: ``$LMBOOK_PROFILE`` if set, else ``gpu`` with CUDA, else ``cpu``."""
    chosen = os.environ.get("LMBOOK_PROFILE", "").strip().lower()
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(f"LMBOOK_PROFILE={chosen!r} is not a profile; choose one of {PROFILES}")
        return chosen
    return "gpu" if _cuda_available() else "cpu"


def pick(**sizes):
    """Pick the value for the active profile: ``pick(test=2_000, cpu=50_000, gpu=None)``."""
    missing = [p for p in PROFILES if p not in sizes]
    if missing:
        raise ValueError(f"pick() needs a value for every profile; missing {missing}")
    return sizes[profile()]


def seed_everything(seed: int = 1337) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) so that a re-run gives the same numbers."""
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in 0..2**32-1 (NumPy's range), got {seed!r}")
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch
    except ImportError:
        return
    torch.manual_seed(seed)  # also seeds every CUDA device


def device() -> str:
    """``'cuda'`` when a GPU is present, else ``'cpu'``."""
    return "cuda" if _cuda_available() else "cpu"


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def describe() -> str:
    """One line naming the profile and the hardware, printed at the top of every chapter."""
    import platform

    line = f"profile: {profile()} | python {platform.python_version()} | {os.cpu_count()} CPU cores"
    try:
        import torch

        line += f" | torch {torch.__version__}"
        if torch.cuda.is_available():
            line += f" | GPU: {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return line
