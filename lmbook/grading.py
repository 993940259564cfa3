"""Autograded exercises (the last section of every chapter; book/instructors.md): while a hidden test
runs, the reference implementations can be taken away, so that a solution which merely calls them
(the package's function, or the chapter's printed copy of it) fails, and one that computes the
answer itself passes.

    with grading.without("lmbook.bpe.merge", "merge"):   # inside a hidden test cell
        assert merge_all([5, 5, 5], (5, 5), 6) == [6, 5]

A dotted name (``"lmbook.bpe.merge"``, ``"torch.nn.functional.layer_norm"``,
``"lmbook.bpe.Tokenizer.encode"``) is replaced where it lives, so every module and alias that looks
it up there sees the replacement; a plain name (``"merge"``) is replaced in the calling notebook's
global namespace. Any other global name bound to the same object (``sdpa = F.scaled_dot_product_attention``)
is replaced too. Calling a replaced object raises AssertionError with a message a student can act
on; everything is put back when the block ends, even after a failure.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


class without:  # noqa: N801 (used as a context manager, like contextlib's lower-case helpers)
    """Context manager: inside the block, calling any of `names` raises AssertionError."""

    def __init__(self, *names: str, namespace: dict[str, Any] | None = None):
        if not names or not all(isinstance(n, str) and n for n in names):
            raise ValueError(f"without() needs one or more names, like 'lmbook.bpe.merge' or 'merge'; got {names!r}")
        self.names = names
        self.namespace = namespace if namespace is not None else sys._getframe(1).f_globals
        self._saved: list[tuple[Any, str, Any]] = []  # (owner: module, class or namespace dict, name, original)

    def __enter__(self) -> without:
        found = []  # resolve every name before replacing any ("lmbook.bpe.Tokenizer" and its methods)
        for name in self.names:
            owner, attr = self._owner(name)
            if owner is not None:  # a plain name the notebook does not define: nothing to take away
                found.append((owner, attr, owner[attr] if isinstance(owner, dict) else getattr(owner, attr), name))
        originals = []
        for owner, attr, original, name in found:
            self._replace(owner, attr, original, name)
            originals.append((original, name))
        for key, value in list(self.namespace.items()):  # aliases of what was taken away
            for original, name in originals:
                if value is original:
                    self._replace(self.namespace, key, original, name)
        return self

    def __exit__(self, *exc) -> None:
        for owner, attr, original in reversed(self._saved):
            if isinstance(owner, dict):
                owner[attr] = original
            else:
                setattr(owner, attr, original)
        self._saved.clear()

    def _owner(self, name: str):
        """(module, class or namespace dict; attribute) where `name` lives; (None, name) if nowhere."""
        if "." not in name:
            return (self.namespace, name) if name in self.namespace else (None, name)
        parts = name.split(".")
        for cut in range(len(parts) - 1, 0, -1):  # the longest importable module prefix
            try:
                owner = importlib.import_module(".".join(parts[:cut]))
            except ImportError:
                continue
            for part in parts[cut:-1]:
                owner = getattr(owner, part)
            if not hasattr(owner, parts[-1]):
                raise ValueError(f"without({name!r}): {'.'.join(parts[:-1])} has no attribute {parts[-1]!r}")
            return owner, parts[-1]
        raise ValueError(f"without({name!r}): no module named {parts[0]!r}")

    def _replace(self, owner, attr: str, original, name: str) -> None:
        def unavailable(*args, **kwargs):
            raise AssertionError(f"{name} is not available in this test: the exercise asks you to write "
                                 "the computation yourself, not to call the chapter's or the library's version")

        self._saved.append((owner, attr, original))
        if isinstance(owner, dict):
            owner[attr] = unavailable
        else:
            setattr(owner, attr, unavailable)
