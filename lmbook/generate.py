"""Generating text: decoding rules, the KV cache, beam search and speculative decoding (chapter 8).

A language model gives a distribution over the next token; *decoding* decides what to do with it,
one token at a time. This module keeps the two halves apart:

- the logits transforms, each ``(B, V) -> (B, V)`` and each equal to its Hugging Face counterpart
  (tests/test_generate.py): `apply_temperature`, `top_k_filter`, `top_p_filter`, `min_p_filter`,
  `repetition_penalty`, `frequency_penalty`; `Sampling` is one choice of them, `next_token` draws;
- `KVCache`: the keys and values a GPT has computed, kept for the next step (``GPT.forward(idx,
  cache=...)``), and `Decoder`: a model reading a growing text, with or without the cache. Past
  ``block_size`` tokens the context is restarted at the last `keep` tokens (learned positions cannot
  slide), by the same rule with and without the cache, so the two give the same tokens;
- `generate` (batched: prompts of different lengths are padded on the left and masked), `stream`
  (one token per step), `generate_text` (stop strings), `beam_search` (Hugging Face's algorithm:
  same beams, length penalty and early stopping) and `speculative_generate` (Leviathan et al. 2023;
  Chen et al. 2023) with its acceptance rule `speculative_accept`;
- `kv_cache_bytes`, the cache's memory by formula.

Bad input is a clear error that names the argument: top_p outside (0, 1], top_k < 1, a temperature
<= 0 (greedy decoding is its own setting, ``greedy=True``), an empty prompt, a stop string the
vocabulary cannot spell. A prompt longer than the context is read from its last ``block_size``
tokens, with a warning that says so.
"""

from __future__ import annotations

import math
import operator
import warnings
from contextlib import closing
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import Tensor

# ---- logits transforms: (B, V) -> (B, V) ----------------------------------------------------------------


def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """softmax(z / τ): τ < 1 sharpens the distribution, τ > 1 flattens it (Hugging Face's
    ``TemperatureLogitsWarper``)."""
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row (all those tied with the k-th), set the rest to -inf
    (``TopKLogitsWarper``)."""
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]                      # (B, 1) the k-th largest
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus sampling (Holtzman et al. 2020): keep the most probable tokens whose probabilities add
    up to at least p, that is, drop the least probable tokens whose total is at most 1 - p; the most
    probable token always stays (``TopPLogitsWarper``, the same sort and the same ties).

    >>> top_p_filter(torch.log(torch.tensor([[0.5, 0.3, 0.2]])), 0.7)
    tensor([[-0.6931, -1.2040,    -inf]])
    """
    sorted_logits, order = torch.sort(logits, dim=-1)                         # ascending: least probable first
    tail_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)                  # this token and all below it
    drop_sorted = tail_mass <= 1 - p
    drop_sorted[..., -1] = False                                              # keep the most probable token
    drop = drop_sorted.scatter(-1, order, drop_sorted)                        # back to vocabulary order
    return logits.masked_fill(drop, -math.inf)


def min_p_filter(logits: Tensor, p: float) -> Tensor:
    """Keep the tokens at least p times as probable as the most probable one (Nguyen et al. 2024):
    the cut follows the model's confidence (``MinPLogitsWarper``)."""
    probs = logits.softmax(dim=-1)
    drop = probs < p * probs.amax(dim=-1, keepdim=True)
    drop.scatter_(-1, torch.topk(probs, 1, dim=-1).indices, False)           # the top token stays, even in a tie
    return logits.masked_fill(drop, -math.inf)


def repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's penalty (Keskar et al. 2019) on every token id in `seen` (B, t): a positive logit is
    divided by `penalty`, a negative one multiplied, so that penalty > 1 always makes a token that
    already occurred less likely, however often (``RepetitionPenaltyLogitsProcessor``)."""
    z = torch.gather(logits, -1, seen)                                        # (B, t) logits of the seen tokens
    z = torch.where(z < 0, z * penalty, z / penalty)
    return logits.scatter(-1, seen, z)


def frequency_penalty(logits: Tensor, generated: Tensor, frequency: float = 0.0, presence: float = 0.0) -> Tensor:
    """OpenAI's penalties: subtract ``frequency × count + presence × [count > 0]`` from the logit of
    each token, counting its occurrences in `generated` (B, n), the tokens generated so far (the prompt
    is not counted). Unlike the repetition penalty, a token's logit falls further each time it recurs."""
    counts = torch.zeros_like(logits).scatter_add_(-1, generated, torch.ones_like(generated, dtype=logits.dtype))
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


@dataclass(frozen=True)
class Sampling:
    """One decoding rule: the transforms applied to the next-token logits, in Hugging Face's order
    (penalties, then temperature, top-k, top-p, min-p), and greedy or random choice.

    ``greedy=True`` takes the most probable token after the penalties (temperature and the filters
    cannot change which token that is). None or the neutral value switches a transform off.
    """

    greedy: bool = False
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0

    def __post_init__(self):
        _check_sampling(self)

    def transform(self, logits: Tensor, seen: Tensor | None = None, generated: Tensor | None = None) -> Tensor:
        """logits (B, V) of the next token -> the logits it is drawn from; `seen` (B, t) is the text so
        far (for the repetition penalty), `generated` (B, n) its generated part (frequency, presence)."""
        logits = logits.float()
        if self.repetition_penalty is not None and seen is not None and seen.numel():
            logits = repetition_penalty(logits, seen, self.repetition_penalty)
        if (self.frequency_penalty or self.presence_penalty) and generated is not None and generated.numel():
            logits = frequency_penalty(logits, generated, self.frequency_penalty, self.presence_penalty)
        if self.greedy:
            return logits
        if self.temperature != 1.0:
            logits = apply_temperature(logits, self.temperature)
        if self.top_k is not None:
            logits = top_k_filter(logits, self.top_k)
        if self.top_p is not None and self.top_p < 1.0:
            logits = top_p_filter(logits, self.top_p)
        if self.min_p is not None:
            logits = min_p_filter(logits, self.min_p)
        return logits


def next_token(logits: Tensor, sampling: Sampling, generator: torch.Generator | None = None) -> Tensor:
    """(B, V) transformed logits -> (B,) token ids: the most probable, or a draw from the softmax."""
    if sampling.greedy:
        return logits.argmax(dim=-1)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


# ---- the KV cache ----------------------------------------------------------------------------------------


def kv_cache_bytes(config, seq_len: int, batch: int = 1, bytes_per_value: int = 4) -> int:
    """Memory of a GPT's KV cache: for each of the L layers, a key and a value vector of n_embd =
    n_head × d_head numbers per token, so ``L · 2 · n_head · d_head · T · B · bytes``.

    >>> from lmbook.gpt import GPTConfig
    >>> kv_cache_bytes(GPTConfig(50257, 1024, 12, 12, 768), 1024) / 2**20   # GPT-2 small, float32: MiB
    72.0
    """
    _check_positive_int("seq_len", seq_len)
    _check_positive_int("batch", batch)
    _check_positive_int("bytes_per_value", bytes_per_value)
    return config.n_layer * 2 * config.n_head * config.head_size * seq_len * batch * bytes_per_value


class KVCache:
    """What a GPT keeps between generation steps: each layer's keys and values of the tokens read so far.

    ``model(idx, cache=cache)`` reads idx as the continuation of the cached tokens: its positions
    come after theirs, its queries attend to the cached keys, and its own keys and values are
    appended, one (k, v) pair per layer, each (B, n_head, T_past, d_head).

    `pad` (B, P) marks left padding in the first P tokens (batched prompts of different lengths):
    no token attends to a padding token, and positions count real tokens only, so each row computes
    what it would alone. `crop` forgets the last tokens (speculative decoding), `reorder` picks rows
    (beam search).
    """

    def __init__(self, config, pad: Tensor | None = None):
        self.block_size = config.block_size
        self.layers = [_LayerCache(self) for _ in range(config.n_layer)]
        self.length = 0                       # tokens cached
        self.pad = pad                        # (B, P) bool, True where the prompt is padding; or None
        self.mask = None                      # the attention mask of the current step (None: see everything)

    def next_positions(self, T: int, device: torch.device) -> Tensor:
        """Begin a step of T new tokens: their positions, (T,), or (B, T) with padding; and the mask."""
        start, end = self.length, self.length + T
        if end > self.block_size:
            raise ValueError(f"the cache holds {start} tokens and {T} more would exceed block_size={self.block_size}, "
                             f"the longest context this model has positions for; start a new cache from the "
                             f"last tokens (lmbook.generate.Decoder does this)")
        self.length = end
        query = torch.arange(start, end, device=device)[:, None]             # (T, 1) absolute index of each query
        key = torch.arange(end, device=device)[None, :]                       # (1, end) of each key
        if self.pad is None:
            self.mask = None if T == 1 else key <= query                     # (T, end) causal
            return query[:, 0]
        real = torch.ones(self.pad.shape[0], end, dtype=torch.bool, device=device)   # (B, end)
        real[:, : self.pad.shape[1]] = ~self.pad[:, :end]
        self.mask = ((key <= query) & real[:, None, :]) | (key == query)     # (B, T, end); padding sees itself
        self.mask = self.mask[:, None]                                        # (B, 1, T, end): every head alike
        return (real.cumsum(1) - 1).clamp(min=0)[:, start:end]               # (B, T) real tokens before each

    def crop(self, length: int) -> None:
        """Forget every token after the first `length`."""
        for layer in self.layers:
            layer.k, layer.v = layer.k[:, :, :length], layer.v[:, :, :length]
        self.length = length

    def reorder(self, rows: Tensor) -> None:
        """Keep rows `rows` of the batch, in that order (rows may repeat)."""
        for layer in self.layers:
            layer.k, layer.v = layer.k[rows], layer.v[rows]
        if self.pad is not None:
            self.pad = self.pad[rows]

    def nbytes(self) -> int:
        """Bytes held by the cached keys and values."""
        return sum(t.untyped_storage().nbytes() for layer in self.layers for t in (layer.k, layer.v) if t is not None)


class _LayerCache:
    """One layer's keys and values: `update` appends the new ones and returns all of them with the mask."""

    def __init__(self, cache: KVCache):
        self.cache, self.k, self.v = cache, None, None

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        if self.k is None:
            k, v = k.contiguous(), v.contiguous()  # their own memory: k and v are views of the qkv product
        else:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)  # (B, nh, T_past + T, hs)
        self.k, self.v = k, v
        return k, v, self.cache.mask


class Decoder:
    """A model reading a growing text, B rows at once, with or without a KV cache.

    ``feed(new)`` appends new tokens (B, n) and returns the next-token logits after each of them,
    (B, n, V). The model reads at most ``block_size`` tokens, and learned positions cannot slide, so
    the context is cut into windows: the text's windows start at 0, S, 2S, ... with a stride
    S = block_size - keep, and the logits after token j come from the window that starts at the
    first of those with room for j. With the cache, moving to the next window costs one forward pass
    over its first `keep` + 1 tokens (keep defaults to half the context). The windows depend on the
    positions only, so every way of feeding the text, token by token or in chunks, with the cache
    or without (``use_cache=False`` recomputes the window at every step: the reference, and the
    baseline for timing), gives the same logits.

    `pad` (B, P): left padding of the first tokens fed (True = padding); then the text must fit in
    one window. `rollback` forgets tokens (speculative decoding), `reorder` picks rows (beam search).
    """

    def __init__(self, model, use_cache: bool = True, keep: int | None = None, pad: Tensor | None = None):
        self.model, self.use_cache, self.pad = model, use_cache, pad
        self.block_size = model.config.block_size
        self.keep = self.block_size // 2 if keep is None else keep
        _check_keep(self.keep, self.block_size)
        self.stride = self.block_size - self.keep
        self.tokens = None                    # (B, t): the whole text fed so far
        self.cache = None                     # a KVCache of tokens[:, cache_start:], or None
        self.cache_start = 0

    def window_start(self, j: int) -> int:
        """Where the window that predicts the token after token j starts: the first multiple of the
        stride that leaves room for j."""
        return self.stride * max(0, -(-(j + 1 - self.block_size) // self.stride))

    def feed(self, new: Tensor, last_only: bool = False) -> Tensor:
        """new (B, n) -> logits (B, n, V) after each new token (B, n', V for the last window's n' with last_only)."""
        t, n = (0 if self.tokens is None else self.tokens.shape[1]), new.shape[1]
        self.tokens = new if self.tokens is None else torch.cat([self.tokens, new], dim=1)
        out, j = [], t
        while j < t + n:                                 # the new tokens, one window at a time
            s = self.window_start(j)
            end = min(t + n, s + self.block_size)        # tokens j..end-1 are read in the window from s
            if not last_only or end == t + n:
                out.append(self._logits(s, j, end))
            j = end
        return torch.cat(out, dim=1) if len(out) > 1 else out[0]

    def _logits(self, s: int, j: int, end: int) -> Tensor:
        """Logits after tokens j..end-1, reading tokens[s:end]."""
        if s > 0 and self.pad is not None:
            raise ValueError(f"padded prompts and their continuations must fit in block_size={self.block_size}; "
                             f"this text reaches {end} tokens")
        if not self.use_cache:                                       # recompute the whole window
            cache = None if self.pad is None else KVCache(self.model.config, self.pad)  # (for the padding mask)
            return self.model(self.tokens[:, s:end], cache=cache)[0][:, j - s:]
        if self.cache is None or self.cache_start != s or self.cache.length != j - s:   # a new window: read it
            self.cache, self.cache_start = KVCache(self.model.config, self.pad), s
            return self.model(self.tokens[:, s:end], cache=self.cache)[0][:, j - s:]
        return self.model(self.tokens[:, j:end], cache=self.cache)[0]          # only the new tokens

    def rollback(self, n: int) -> None:
        """Forget the last n tokens fed."""
        if n:
            self.tokens = self.tokens[:, :-n]
            if self.cache is not None and self.tokens.shape[1] > self.cache_start:
                self.cache.crop(self.tokens.shape[1] - self.cache_start)
            else:
                self.cache = None

    def reorder(self, rows: Tensor) -> None:
        """Keep rows `rows` of the batch, in that order."""
        self.tokens = self.tokens[rows]
        if self.pad is not None:
            self.pad = self.pad[rows]
        if self.cache is not None:
            self.cache.reorder(rows)


# ---- generation --------------------------------------------------------------------------------------------


def left_pad(prompts: list[list[int]], pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """Prompts of different lengths -> (idx (B, T), attention_mask (B, T)): each row padded on the left
    with pad_id, the mask 1 on real tokens and 0 on padding (Hugging Face's convention).

    >>> left_pad([[5, 6, 7], [8]])
    (tensor([[5, 6, 7],
            [0, 0, 8]]), tensor([[1, 1, 1],
            [0, 0, 1]]))
    """
    _check_prompts(prompts)
    T = max(len(p) for p in prompts)
    idx = torch.tensor([[pad_id] * (T - len(p)) + list(p) for p in prompts])
    mask = torch.tensor([[0] * (T - len(p)) + [1] * len(p) for p in prompts])
    return idx, mask


def stream(model, idx: Tensor, max_new_tokens: int, sampling: Sampling | None = None, *,
           attention_mask: Tensor | None = None, use_cache: bool = True, keep: int | None = None,
           generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Yield the next token of each row of idx (B, T), (B,), `max_new_tokens` times.

    The model reads the prompt in one pass (the *prefill*), then one token per step (the *decode*
    steps), each step only the new token when the KV cache is on. `attention_mask` (B, T), 1 on real
    tokens and 0 on left padding, lets prompts of different lengths share a batch.
    """
    sampling = Sampling() if sampling is None else sampling
    pad = _checked_generate_args(model, idx, max_new_tokens, attention_mask)
    was_training, checking = model.training, getattr(model, "check_inputs", False)
    model.eval()
    decoder = Decoder(model, use_cache=use_cache, keep=keep, pad=pad)
    _warn_if_truncated(decoder, idx.shape[1])
    try:
        with torch.inference_mode():
            logits = decoder.feed(idx, last_only=True)[:, -1]                  # prefill: (B, V)
            model.check_inputs = False                                         # the ids it makes are in range
            for i in range(max_new_tokens):
                z = sampling.transform(logits, _real_tokens(decoder, pad), decoder.tokens[:, idx.shape[1]:])
                token = next_token(z, sampling, generator)                      # (B,)
                yield token
                if i + 1 < max_new_tokens:
                    logits = decoder.feed(token[:, None])[:, -1]               # decode step: (B, V)
    finally:
        model.train(was_training)
        model.check_inputs = checking


def generate(model, idx: Tensor, max_new_tokens: int, sampling: Sampling | None = None, *,
             attention_mask: Tensor | None = None, eos_id: int | None = None, pad_id: int | None = None,
             use_cache: bool = True, keep: int | None = None, generator: torch.Generator | None = None,
             **settings) -> Tensor:
    """idx (B, T) -> (B, T + n): each row extended by up to `max_new_tokens` tokens.

    The decoding rule is `sampling`, or the `Sampling` fields given as keywords (``greedy=True``,
    ``temperature=0.8``, ``top_k=...``, ``top_p=...``, ``min_p=...``, penalties). A row that emits
    `eos_id` is finished: it is filled with `pad_id` (default eos_id) until every row is, or the
    budget is spent. Prompts of different lengths: pad them on the left (`left_pad`) and pass the mask.
    """
    sampling = _sampling_from(sampling, settings)
    _check_ids(model, idx)
    _check_eos(eos_id, pad_id, model)
    pad_id = eos_id if pad_id is None else pad_id
    out, done = [], torch.zeros(idx.shape[0], dtype=torch.bool, device=idx.device)
    with closing(stream(model, idx, max_new_tokens, sampling, attention_mask=attention_mask,
                        use_cache=use_cache, keep=keep, generator=generator)) as tokens:
        for token in tokens:
            out.append(token.masked_fill(done, pad_id) if eos_id is not None else token)
            if eos_id is not None:
                done |= token == eos_id
                if done.all():
                    break
    return torch.cat([idx, torch.stack(out, dim=1)], dim=1) if out else idx.clone()


def generate_text(model, encode: Callable[[str], list[int]], decode: Callable[[list[int]], str], prompt: str,
                  max_new_tokens: int, *, stop: list[str] | tuple[str, ...] = (), generator: torch.Generator | None = None,
                  **settings) -> str:
    """The continuation of `prompt` (the prompt itself is not repeated): up to `max_new_tokens` tokens,
    cut before the first stop string when one occurs (a stop string that does not occur leaves the
    whole continuation). A stop string the vocabulary cannot spell could never occur: an error."""
    stop = _checked_stop(stop, encode)
    if not isinstance(prompt, str) or not prompt:
        raise ValueError(f"prompt must be a non-empty str (the model needs at least one token to condition on; "
                         f"start from a newline), got {prompt!r}")
    ids = torch.tensor([encode(prompt)])
    device = next(model.parameters()).device
    new: list[int] = []
    text = ""
    with closing(stream(model, ids.to(device), max_new_tokens, _sampling_from(None, settings), generator=generator)) as tokens:
        for token in tokens:
            new.append(token.item())
            text = decode(new)
            hits = [text.find(s) for s in stop if s in text]
            if hits:
                return text[: min(hits)]
    return text


# ---- beam search ----------------------------------------------------------------------------------------------


def beam_search(model, idx: Tensor, max_new_tokens: int, num_beams: int = 4, *, length_penalty: float = 1.0,
                early_stopping: bool | str = False, eos_id: int | None = None, pad_id: int | None = None,
                use_cache: bool = True) -> tuple[Tensor, Tensor]:
    """The `num_beams` most probable continuations kept at each step; returns (sequences (B, T + n), scores (B,)).

    Hugging Face's algorithm, so that both give the same tokens (tests/test_generate.py). At each step
    every beam's log-probability is extended by each next token, and the 2·num_beams best
    continuations of all beams are ranked. Those ending in `eos_id` among the first num_beams are
    *finished*: scored by sum of log-probabilities / (generated length ** length_penalty) and kept
    if among the num_beams best finished. The best num_beams that did not end become the new beams.
    At the last step every beam is finished. The search stops early when all num_beams finished
    slots are full and ``early_stopping=True``, or (False, "never") when no beam can beat the worst
    finished one any more, estimated with the current length (False) or with the longest possible
    one when length_penalty > 0 ("never"). length_penalty > 0 favours longer sequences.
    """
    _check_beam_args(model, idx, max_new_tokens, num_beams, length_penalty, early_stopping, eos_id)
    pad_id = pad_id if pad_id is not None else (eos_id if eos_id is not None else 0)
    B, P = idx.shape
    K = 2 * num_beams                                           # candidates ranked per step
    V = model.config.vocab_size
    NEG = -1.0e9                                                # Hugging Face's "impossible" score
    was_training, checking = model.training, getattr(model, "check_inputs", False)
    model.eval()
    decoder = Decoder(model, use_cache=use_cache)
    running = torch.full((B, num_beams, P + max_new_tokens), pad_id, dtype=torch.long, device=idx.device)
    running[:, :, :P] = idx[:, None, :]
    running_scores = torch.zeros(B, num_beams, device=idx.device)
    running_scores[:, 1:] = NEG                                 # at first only beam 0 is real (the rest are copies)
    finished = running.clone()
    finished_scores = torch.full((B, num_beams), NEG, device=idx.device)
    finished_full = torch.zeros(B, num_beams, dtype=torch.bool, device=idx.device)
    finished_len = torch.zeros(B, num_beams, dtype=torch.long, device=idx.device)
    can_improve = torch.ones(B, 1, dtype=torch.bool, device=idx.device)
    try:
        with torch.inference_mode():
            logits = decoder.feed(running[:, :, :P].flatten(0, 1), last_only=True)[:, -1]  # the prompt, nb copies
            model.check_inputs = False
            for step in range(max_new_tokens):
                t = P + step                                                      # where the new token goes
                logp = logits.float().log_softmax(-1).view(B, num_beams, V) + running_scores[:, :, None]
                top_scores, top = torch.topk(logp.view(B, num_beams * V), K)    # (B, K) best continuations
                beam, token = top // V, top % V
                candidates = torch.take_along_dim(running, beam[:, :, None], dim=1)   # (B, K, P + n)
                candidates[:, :, t] = token
                ends = token == eos_id if eos_id is not None else torch.zeros_like(token, dtype=torch.bool)
                if step == max_new_tokens - 1:
                    ends = torch.ones_like(ends)                                  # the budget ends every beam
                # the new beams: the best num_beams continuations that did not end
                keep = torch.topk(top_scores + ends.float() * NEG, num_beams).indices        # (B, nb)
                running = torch.take_along_dim(candidates, keep[:, :, None], dim=1)
                running_scores = torch.take_along_dim(top_scores + ends.float() * NEG, keep, dim=1)
                source_beam = torch.take_along_dim(beam, keep, dim=1)                       # (B, nb)
                # the finished: ended among the first num_beams, scored with the length penalty
                new_finished = ends & (torch.arange(K, device=idx.device) < num_beams)
                score = top_scores / (step + 1) ** length_penalty
                score = score + (finished_full.all(-1, keepdim=True) & (early_stopping is True)).float() * NEG
                score = score + (~can_improve).float() * NEG + (~new_finished).float() * NEG
                merged = torch.topk(torch.cat([finished_scores, score], dim=1), num_beams).indices
                finished = torch.take_along_dim(torch.cat([finished, candidates], 1), merged[:, :, None], dim=1)
                finished_scores = torch.take_along_dim(torch.cat([finished_scores, score], 1), merged, dim=1)
                finished_full = torch.take_along_dim(torch.cat([finished_full, new_finished], 1), merged, dim=1)
                finished_len = torch.take_along_dim(
                    torch.cat([finished_len, torch.full_like(token, step + 1)], 1), merged, dim=1)
                # stop when no running beam can beat the worst finished one
                length = (max_new_tokens if early_stopping == "never" and length_penalty > 0 else step + 1)
                best_possible = running_scores[:, :1] / length ** length_penalty
                worst = torch.where(finished_full, finished_scores.min(dim=1, keepdim=True).values, NEG)
                can_improve = can_improve & (best_possible > worst).any(dim=-1, keepdim=True)
                if not can_improve.any() or (finished_full.all() and early_stopping is True) or ends.all():
                    break
                rows = (source_beam + torch.arange(B, device=idx.device)[:, None] * num_beams).flatten()
                decoder.reorder(rows)
                logits = decoder.feed(running[:, :, t].reshape(-1, 1))[:, -1]
    finally:
        model.train(was_training)
        model.check_inputs = checking
    longest = int(finished_len[:, 0].max())
    return finished[:, 0, : P + longest], finished_scores[:, 0]


# ---- speculative decoding ------------------------------------------------------------------------------------


def speculative_accept(p: Tensor, q: Tensor, drafts: Tensor, greedy: bool = False,
                       generator: torch.Generator | None = None) -> tuple[int, int]:
    """The acceptance rule of speculative sampling: (number of draft tokens accepted, the next token).

    p (k + 1, V): the target's distributions after the prefix and after each draft token; q (k, V):
    the draft's, from which drafts (k,) were drawn. Draft token i is accepted with probability
    min(1, p_i(x) / q_i(x)); at the first rejection the next token is drawn from the residual
    max(0, p_i - q_i), renormalised; if all k are accepted, a bonus token is drawn from p_k. Every
    emitted token is then distributed exactly as the target's own sample (Leviathan et al. 2023).
    greedy: accept a draft token if it is the target's most probable one, else emit that one.
    """
    k = drafts.shape[0]
    for i in range(k):
        x = drafts[i]
        if greedy:
            accepted = bool(p[i].argmax() == x)
        else:
            u = torch.rand((), generator=generator, device=p.device)
            accepted = bool(u * q[i, x] < p[i, x])                           # u < p/q, without dividing by 0
        if not accepted:
            if greedy:
                return i, int(p[i].argmax())
            residual = (p[i] - q[i]).clamp(min=0)
            residual = residual / residual.sum() if residual.sum() > 0 else p[i]
            return i, int(torch.multinomial(residual, 1, generator=generator))
    if greedy:
        return k, int(p[k].argmax())
    return k, int(torch.multinomial(p[k], 1, generator=generator))


@dataclass
class SpeculativeStats:
    """What a speculative run did: draft tokens proposed, accepted and rejected (a round ends at its
    first rejection: the drafts after it are never checked), forward passes of each model."""

    proposed: int = 0
    accepted: int = 0
    rejected: int = 0
    target_calls: int = 0
    draft_calls: int = 0
    emitted: int = 0

    @property
    def acceptance_rate(self) -> float:
        """α: the fraction of the draft tokens checked that were accepted (E[Σ min(p, q)] per token)."""
        checked = self.accepted + self.rejected
        return self.accepted / checked if checked else math.nan

    @property
    def tokens_per_target_call(self) -> float:
        return self.emitted / self.target_calls if self.target_calls else math.nan


def speculative_generate(target, draft, idx: Tensor, max_new_tokens: int, k: int = 4, *, greedy: bool = False,
                         temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                         keep: int | None = None, generator: torch.Generator | None = None) -> tuple[Tensor, SpeculativeStats]:
    """Speculative decoding: `draft` proposes k tokens one by one, `target` scores all of them in one
    forward pass, and `speculative_accept` keeps a prefix, so that each target pass emits between 1
    and k + 1 tokens, distributed exactly as the target's own samples (the same tokens with greedy=True).

    idx (1, T) -> ((1, T + max_new_tokens), SpeculativeStats). The two models must share the vocabulary;
    temperature, top_k and top_p transform both distributions alike.
    """
    sampling = Sampling(greedy=greedy, temperature=temperature, top_k=top_k, top_p=top_p)
    _check_speculative_args(target, draft, idx, max_new_tokens, k)
    stats = SpeculativeStats()
    models = (target, draft)
    saved = [(m.training, getattr(m, "check_inputs", False)) for m in models]
    for m in models:
        m.eval()
    t_dec, d_dec = Decoder(target, keep=keep), Decoder(draft, keep=keep)
    t_pending, d_pending = idx, idx                                      # tokens each model has yet to read
    out: list[int] = []

    def dist(logits: Tensor) -> Tensor:                                  # (n, V) -> the distribution drawn from
        z = sampling.transform(logits)
        return F.one_hot(z.argmax(-1), z.shape[-1]).float() if greedy else z.softmax(-1)

    try:
        with torch.inference_mode():
            while len(out) < max_new_tokens:
                n_draft = min(k, max_new_tokens - len(out) - 1)           # the last token needs no draft
                drafts, q = [], []
                q_logits = d_dec.feed(d_pending, last_only=True)[:, -1] if n_draft else None
                for i in range(n_draft):                                  # the draft proposes, one token at a time
                    q.append(dist(q_logits)[0])
                    x = int(next_token(sampling.transform(q_logits), sampling, generator))
                    drafts.append(x)
                    if i + 1 < n_draft:
                        q_logits = d_dec.feed(torch.tensor([[x]], device=idx.device))[:, -1]
                    stats.draft_calls += 1
                target.check_inputs = draft.check_inputs = False          # after the prompt: ids in range
                fed = torch.cat([t_pending, torch.tensor([drafts], dtype=torch.long, device=idx.device)], dim=1)
                p = dist(t_dec.feed(fed)[0, -(n_draft + 1):])             # (n_draft + 1, V) in one pass
                stats.target_calls += 1
                n, nxt = speculative_accept(p, torch.stack(q) if q else p[:0], torch.tensor(drafts, dtype=torch.long),
                                            greedy=greedy, generator=generator)
                stats.proposed += n_draft
                stats.accepted += n
                stats.rejected += n < n_draft
                out += drafts[:n] + [nxt]
                t_dec.rollback(n_draft - n)                               # forget the rejected drafts
                t_pending = torch.tensor([[nxt]], device=idx.device)
                if n_draft:
                    d_dec.rollback(max(0, n_draft - 1 - n))               # the draft read all but its last proposal
                    d_pending = torch.tensor([drafts[n_draft - 1:n] + [nxt] if n == n_draft else [nxt]],
                                             device=idx.device)
                else:
                    d_pending = torch.cat([d_pending, torch.tensor([[nxt]], device=idx.device)], dim=1)
    finally:
        for m, (training, checking) in zip(models, saved):
            m.train(training)
            m.check_inputs = checking
    stats.emitted = len(out)
    return torch.cat([idx, torch.tensor([out], dtype=torch.long, device=idx.device)], dim=1), stats


# ---- a bias-free GPT as GPT-2 ----------------------------------------------------------------------------------


def with_biases(model):
    """The same function as a bias-free GPT (``bias=False``), as a GPT with biases, all zero: GPT-2's
    layout, so that it can be exported to Hugging Face (`lmbook.hf.to_hf`)."""
    from dataclasses import replace

    from lmbook.gpt import GPT

    if model.config.bias:
        return model
    copy = GPT(replace(model.config, bias=True)).to(next(model.parameters()).dtype)
    ours = dict(model.named_parameters())
    with torch.no_grad():
        for name, p in copy.named_parameters():
            p.copy_(ours[name] if name in ours else torch.zeros_like(p))
    return copy.eval()


# ---- input checks: clear errors that name the argument -------------------------------------------------------


def _check_positive_int(name: str, value) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{name} must be an int >= 1, got {value!r}")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}") from None
    if value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value}")
    return value


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _check_sampling(s: Sampling) -> None:
    if not isinstance(s.greedy, bool):
        raise TypeError(f"greedy must be True or False, got {s.greedy!r}")
    if not _is_number(s.temperature) or not 0 < s.temperature < math.inf:
        hint = " (for the most probable token at every step, use greedy=True)" if _is_number(s.temperature) \
            and s.temperature == 0 else ""
        raise ValueError(f"temperature must be a number > 0 (1.0 samples the model's own distribution), "
                         f"got {s.temperature!r}{hint}")
    if s.top_k is not None:
        _check_positive_int("top_k", s.top_k)
    if s.top_p is not None and (not _is_number(s.top_p) or not 0 < s.top_p <= 1):
        raise ValueError(f"top_p must be a number in (0, 1] (1.0 keeps every token), got {s.top_p!r}")
    if s.min_p is not None and (not _is_number(s.min_p) or not 0 <= s.min_p <= 1):
        raise ValueError(f"min_p must be a number in [0, 1], got {s.min_p!r}")
    if s.repetition_penalty is not None and (not _is_number(s.repetition_penalty)
                                             or not 0 < s.repetition_penalty < math.inf):
        raise ValueError(f"repetition_penalty must be a number > 0 (1.0 changes nothing, > 1 penalises), "
                         f"got {s.repetition_penalty!r}")
    for name in ("frequency_penalty", "presence_penalty"):
        value = getattr(s, name)
        if not _is_number(value) or not math.isfinite(value):
            raise ValueError(f"{name} must be a finite number (0 changes nothing), got {value!r}")


def _sampling_from(sampling: Sampling | None, settings: dict) -> Sampling:
    if sampling is not None and settings:
        raise TypeError(f"pass either sampling=Sampling(...) or its fields as keywords, not both "
                        f"(got sampling and {sorted(settings)})")
    if sampling is not None and not isinstance(sampling, Sampling):
        raise TypeError(f"sampling must be an lmbook.generate.Sampling, got {type(sampling).__name__}")
    if sampling is not None:
        return sampling
    fields = set(Sampling.__dataclass_fields__)
    unknown = sorted(set(settings) - fields)
    if unknown:
        raise TypeError(f"unknown decoding settings {unknown}; allowed: {sorted(fields)}")
    return Sampling(**settings)


def _check_keep(keep, block_size: int) -> None:
    if isinstance(keep, bool) or not isinstance(keep, int) or not 0 <= keep < block_size:
        raise ValueError(f"keep (the tokens kept when the context is full) must be an int in [0, block_size) = "
                         f"[0, {block_size}), got {keep!r}")


def _check_ids(model, idx, name: str = "idx") -> None:
    if not isinstance(idx, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids (B, T), got {type(idx).__name__}")
    if idx.dtype not in (torch.int64, torch.int32):
        raise TypeError(f"{name} must hold integer token ids (torch.long), got dtype {idx.dtype}")
    if idx.dim() != 2:
        raise ValueError(f"{name} must be 2-D (B, T), got shape {tuple(idx.shape)}"
                         + ("; add a batch dimension with idx[None]" if idx.dim() == 1 else ""))
    if idx.shape[0] == 0 or idx.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {tuple(idx.shape)}): the model needs at least one token to "
                         f"condition on (start from a newline, or the tokenizer's beginning-of-text token)")
    V = model.config.vocab_size
    low, high = int(idx.min()), int(idx.max())
    if low < 0 or high >= V:
        raise ValueError(f"{name} holds token id {low if low < 0 else high}, outside the vocabulary (ids 0..{V - 1})")


def _warn_if_truncated(decoder: Decoder, T: int) -> None:
    if T > decoder.block_size:
        warnings.warn(f"the prompt has {T} tokens, more than block_size={decoder.block_size}: the model reads "
                      f"only its last {T - decoder.window_start(T - 1)} (the window of the last token; the output "
                      f"keeps the whole prompt)", stacklevel=4)


def _checked_generate_args(model, idx, max_new_tokens, attention_mask) -> Tensor | None:
    """Check the arguments of `stream`/`generate`; returns the padding (B, T) bool, or None."""
    _check_positive_int("max_new_tokens", max_new_tokens)
    _check_ids(model, idx)
    if attention_mask is None:
        return None
    if not isinstance(attention_mask, Tensor) or attention_mask.shape != idx.shape:
        raise ValueError(f"attention_mask must be a tensor of the shape of idx, {tuple(idx.shape)}: 1 on real tokens, "
                         f"0 on left padding; got {getattr(attention_mask, 'shape', type(attention_mask).__name__)}")
    real = attention_mask.bool()
    if not torch.equal(attention_mask.long(), real.long()):
        raise ValueError("attention_mask must hold 0 and 1 only (1 = real token, 0 = padding)")
    if not real[:, -1].all() or (real[:, 1:].long() < real[:, :-1].long()).any():
        raise ValueError("attention_mask must pad on the left (0s, then 1s, in every row): generation appends "
                         "tokens at the right end; lmbook.generate.left_pad builds such a batch")
    return None if real.all() else ~real


def _real_tokens(decoder: Decoder, pad: Tensor | None) -> Tensor:
    """The text so far (B, t) for the repetition penalty, each padding token replaced by the row's last
    token (the penalty counts a token once, however often it occurs, so the replacement adds nothing)."""
    tokens = decoder.tokens
    if pad is None:
        return tokens
    pad = torch.cat([pad, pad.new_zeros(pad.shape[0], tokens.shape[1] - pad.shape[1])], dim=1)
    return torch.where(pad, tokens[:, -1:], tokens)


def _check_eos(eos_id, pad_id, model) -> None:
    for name, value in (("eos_id", eos_id), ("pad_id", pad_id)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or not 0 <= value < model.config.vocab_size):
            raise ValueError(f"{name} must be None or a token id in 0..{model.config.vocab_size - 1}, got {value!r}")


def _check_prompts(prompts) -> None:
    if not isinstance(prompts, (list, tuple)) or not prompts:
        raise ValueError(f"prompts must be a non-empty list of lists of token ids, got {prompts!r}")
    for i, p in enumerate(prompts):
        if not isinstance(p, (list, tuple)) or not p:
            raise ValueError(f"prompts[{i}] must be a non-empty list of token ids, got {p!r}")


def _checked_stop(stop, encode) -> list[str]:
    if isinstance(stop, str):
        stop = [stop]
    stop = list(stop)
    for s in stop:
        if not isinstance(s, str) or not s:
            raise ValueError(f"each stop string must be a non-empty str, got {s!r}")
        try:
            encode(s)
        except (KeyError, ValueError) as e:
            raise ValueError(f"stop string {s!r} can never occur: the vocabulary cannot spell it ({e})") from None
    return stop


def _check_beam_args(model, idx, max_new_tokens, num_beams, length_penalty, early_stopping, eos_id) -> None:
    _check_positive_int("max_new_tokens", max_new_tokens)
    _check_positive_int("num_beams", num_beams)
    _check_ids(model, idx)
    if idx.shape[1] + max_new_tokens > model.config.block_size:
        raise ValueError(f"beam search keeps its beams inside the context: prompt ({idx.shape[1]}) + max_new_tokens "
                         f"({max_new_tokens}) must be <= block_size={model.config.block_size}")
    if 2 * num_beams > model.config.vocab_size:
        raise ValueError(f"num_beams must be at most vocab_size / 2 = {model.config.vocab_size // 2} "
                         f"(2·num_beams candidates are ranked at every step), got {num_beams}")
    if not _is_number(length_penalty) or not math.isfinite(length_penalty):
        raise ValueError(f"length_penalty must be a finite number, got {length_penalty!r}")
    if early_stopping not in (True, False, "never"):
        raise ValueError(f"early_stopping must be True, False or 'never', got {early_stopping!r}")
    _check_eos(eos_id, None, model)


def _check_speculative_args(target, draft, idx, max_new_tokens, k) -> None:
    _check_positive_int("max_new_tokens", max_new_tokens)
    _check_positive_int("k", k)
    _check_ids(target, idx)
    if idx.shape[0] != 1:
        raise ValueError(f"speculative decoding runs one sequence at a time: idx must be (1, T), got {tuple(idx.shape)}")
    if draft.config.vocab_size != target.config.vocab_size:
        raise ValueError(f"the draft and the target must share the vocabulary: vocab_size {draft.config.vocab_size} "
                         f"vs {target.config.vocab_size}")
    for name, m in (("target", target), ("draft", draft)):
        if k >= m.config.block_size:
            raise ValueError(f"k={k} draft tokens do not fit in the {name}'s context of {m.config.block_size}: "
                             f"k must be less than block_size")
