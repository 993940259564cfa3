"""Memorisation: what a trained model gives back of its training data (chapter 11).

Two measures.

- **Exposure** (Carlini et al. 2019, "The Secret Sharer"). Plant a *canary*, a prefix and a random
  secret drawn from a space R (say five digits: |R| = 10⁵), in the training data. After training,
  rank every candidate secret r ∈ R by the model's probability of prefix + r; with rank(s) = 1 + the
  number of candidates more probable than the secret s,

      exposure(s) = log₂ |R| − log₂ rank(s).

  A secret the model has not learnt ranks somewhere in the middle (exposure about 1 bit, whatever
  |R| is); one it can reproduce ranks first (exposure log₂ |R|, the most there is). `candidate_logprobs`
  scores all |R| candidates exactly, by walking the tree of their characters with a KV cache: the
  prefix is read once, and each level of the tree adds one token to every open branch.
- **Verbatim regurgitation** (`regurgitation`): prompt the model with the start of a training
  passage and decode greedily; the passage counts as regurgitated when the continuation equals it,
  character for character.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn


def candidate_logprobs(model: nn.Module, prefix: Tensor, alphabet: Tensor, length: int,
                       use_cache: bool = True, batch_size: int = 4096) -> Tensor:
    """The log-probability (nats) of every string of `length` tokens over `alphabet` after `prefix`:
    a tensor of |alphabet|^length values, the string whose tokens are alphabet[i_1], …, alphabet[i_n]
    at index Σ_k i_k·|alphabet|^(n−k) (the order of the numbers they spell when the alphabet is the
    digits 0–9 in order).

    model(idx) returns logits (B, T, V), or (logits, loss) as lmbook's GPT does; with ``use_cache``
    the model must take ``cache=lmbook.generate.KVCache`` (lmbook's GPT); without it, every branch is
    read in full at every level (any model). prefix (P,) and alphabet (A,) are token ids.
    """
    _check_args(model, prefix, alphabet, length, batch_size)
    block_size = getattr(getattr(model, "config", None), "block_size", None)
    if block_size is not None and len(prefix) + length - 1 > block_size:
        raise ValueError(f"the prefix ({len(prefix)} tokens) and the secret ({length}) do not fit the model's "
                         f"context of {block_size} tokens: shorten the prefix")
    device = next(model.parameters()).device
    prefix, alphabet = prefix.to(device), alphabet.to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            if use_cache:
                from lmbook.generate import KVCache

                cache = KVCache(model.config)
                logits = _logits(model(prefix[None], cache=cache))[:, -1]        # (1, V): the prefix, read once
                return _tree(model, cache, logits, alphabet, length, batch_size).cpu()
            totals = torch.zeros(1, dtype=torch.float64)
            branches = torch.zeros(1, 0, dtype=torch.long, device=device)        # (branches, level)
            for level in range(length):
                rows = []
                for i in range(0, len(branches), batch_size):
                    part = branches[i : i + batch_size]
                    idx = torch.cat([prefix.expand(len(part), -1), part], dim=1)
                    rows.append(_logits(model(idx))[:, -1].double().log_softmax(-1)[:, alphabet].cpu())
                totals = (totals[:, None] + torch.cat(rows)).reshape(-1)
                if level + 1 < length:
                    branches = torch.cat([branches.repeat_interleave(len(alphabet), dim=0),
                                          alphabet.repeat(len(branches))[:, None]], dim=1)
            return totals
    finally:
        model.train(was_training)


def _tree(model: nn.Module, cache, logits: Tensor, alphabet: Tensor, length: int, batch_size: int) -> Tensor:
    """Log-probabilities of the `length`-token strings below each of the cache's rows (its branches),
    given each branch's next-token logits (branches, V): (branches · A^length,), branch-major. A level
    with more than `batch_size` rows is split into groups of branches, depth first, so memory holds
    at most `batch_size` rows of keys and values."""
    from lmbook.generate import KVCache

    A = len(alphabet)
    here = logits.double().log_softmax(-1)[:, alphabet]                     # (branches, A)
    if length == 1:
        return here.reshape(-1)
    out = []
    group = max(1, batch_size // A)
    for start in range(0, len(logits), group):
        rows = torch.arange(start, min(start + group, len(logits)), device=logits.device).repeat_interleave(A)
        sub = KVCache(model.config)                                          # the group's branches, each A times
        for mine, theirs in zip(sub.layers, cache.layers):
            mine.k, mine.v = theirs.k[rows], theirs.v[rows]
        sub.length = cache.length
        tokens = alphabet.repeat(len(rows) // A)[:, None]                    # (rows, 1): one more token each
        below = _tree(model, sub, _logits(model(tokens, cache=sub))[:, -1], alphabet, length - 1, batch_size)
        out.append((here[start : start + group, :, None] + below.view(-1, A, A ** (length - 1))).reshape(-1))
    return torch.cat(out)


def rank(logprobs: Tensor, index: int) -> int:
    """1 + the number of candidates strictly more probable than candidate `index` (ties rank alike)."""
    if not 0 <= index < len(logprobs):
        raise IndexError(f"index {index} is not a candidate (there are {len(logprobs)})")
    return 1 + int((logprobs > logprobs[index]).sum())


def exposure(logprobs: Tensor, index: int) -> float:
    """log₂ |R| − log₂ rank: 0 for the least probable candidate, log₂ |R| for the most probable.

    >>> exposure(torch.tensor([-1.0, -2.0, -3.0, -4.0]), 1)   # second of four: log2(4) - log2(2)
    1.0
    """
    return math.log2(len(logprobs)) - math.log2(rank(logprobs, index))


def secret_index(secret: str, alphabet: str) -> int:
    """The index of `secret` among the candidates of `candidate_logprobs` (base-|alphabet| number).

    >>> secret_index("042", "0123456789")
    42
    """
    index = 0
    for ch in secret:
        if ch not in alphabet:
            raise ValueError(f"{ch!r} of the secret {secret!r} is not in the alphabet {alphabet!r}")
        index = index * len(alphabet) + alphabet.index(ch)
    return index


@torch.no_grad()
def regurgitation(model: nn.Module, prompts: Tensor, continuations: Tensor, use_cache: bool = True) -> Tensor:
    """For each row, the fraction of the continuation's tokens that greedy decoding from the prompt
    reproduces before its first mistake (1.0: the passage comes back verbatim). prompts (B, P) and
    continuations (B, C) are token ids; the model is a GPT that lmbook.generate can decode (with
    ``use_cache=False``, any model with a ``config.block_size`` that maps ids to logits)."""
    from lmbook.generate import generate

    if prompts.dim() != 2 or continuations.dim() != 2 or len(prompts) != len(continuations):
        raise ValueError(f"prompts (B, P) and continuations (B, C) need the same B; got {tuple(prompts.shape)} "
                         f"and {tuple(continuations.shape)}")
    device = next(model.parameters()).device
    out = generate(model, prompts.to(device), continuations.shape[1], greedy=True,
                   use_cache=use_cache)[:, prompts.shape[1]:].cpu()
    wrong = out != continuations
    first_wrong = torch.where(wrong.any(1), wrong.float().argmax(1), torch.full((len(out),), continuations.shape[1]))
    return first_wrong.float() / continuations.shape[1]


def _logits(output) -> Tensor:
    return output[0] if isinstance(output, tuple) else output


def _check_args(model, prefix, alphabet, length, batch_size) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, t in (("prefix", prefix), ("alphabet", alphabet)):
        if not isinstance(t, Tensor) or t.dim() != 1 or t.dtype not in (torch.int64, torch.int32) or len(t) == 0:
            raise TypeError(f"{name} must be a non-empty 1-D tensor of token ids, got {t!r:.80}")
    if len(set(alphabet.tolist())) != len(alphabet):
        raise ValueError("the alphabet repeats a token: every candidate would be counted twice")
    for name, value in (("length", length), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if len(alphabet) ** length > 10**7:
        raise ValueError(f"{len(alphabet)}^{length} candidates is too many to score exactly; Carlini et al. "
                         f"estimate the rank from a sample instead (chapter 11, exercise 2)")
