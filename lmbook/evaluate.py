"""Measuring language models: held-out likelihood with intervals, calibration, multiple choice (chapter 8).

A language model is measured by how probable it finds text it has not seen. Everything here starts
from the log-probability of each token of a held-out text given the tokens before it:

- `token_logprobs` (any model that maps (B, T) ids to (B, T, V) logits, read in sliding windows:
  every token after the first window keeps at least ``block_size - stride`` tokens of context),
  `stream_logprobs` (a recurrent model that carries its state through the whole text),
  `ngram_logprobs` (chapter 1's `NgramLM`), and `FixedContext` (chapter 2's MLP, which predicts
  one token from a fixed context, as a model of every position);
- `nats_per_token`, `bits_per_byte` (the unit that compares models with different tokenizers),
  `bootstrap_interval` and `paired_bootstrap` (intervals over held-out *segments*: neighbouring
  tokens are not independent, so resampling single tokens would claim too much precision);
- `calibration`: the reliability of the top-token probabilities (Guo et al. 2017);
- `distinct_n` and `repetition_rate`: how varied generated text is, and how much it repeats itself;
- `multiple_choice_questions` and `multiple_choice_accuracy`: a test in the style of HellaSwag
  (Zellers et al. 2019) scored by likelihood: which of four next lines does the model find most
  probable after a passage? `pmi_scorer` ranks them instead by how much the passage raises their
  probability.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn


class TokenScores(NamedTuple):
    """Per-token scores of a text: log p(x_i | x_<i) for i = 1..N-1, and the model's most probable
    token's probability and whether it was right (None where a model gives no full distribution)."""

    logprob: Tensor                      # (N-1,) float64, nats
    top_prob: Tensor | None = None       # (N-1,) probability of the argmax token
    hit: Tensor | None = None            # (N-1,) bool: argmax == the actual token


def _logits(model: nn.Module, x: Tensor) -> Tensor:
    out = model(x)
    return out[0] if isinstance(out, tuple) else out                         # a GPT returns (logits, loss)


def _at_least_float32(x: Tensor) -> Tensor:
    return x.to(torch.promote_types(x.dtype, torch.float32))  # bf16 logits in float32; float64 stays


def _scores(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    logp = _at_least_float32(logits).log_softmax(-1)                         # (..., V)
    top_logp, top = logp.max(-1)
    return logp.gather(-1, targets[..., None])[..., 0].double(), top_logp.exp(), top == targets


@torch.no_grad()
def token_logprobs(model: nn.Module, ids: Tensor, block_size: int, stride: int | None = None,
                   batch_size: int = 16) -> TokenScores:
    """Score ids[1:] given what precedes each token, reading windows of `block_size` tokens.

    The first window scores its every position; each next window moves `stride` tokens on (default
    block_size / 2) and scores only its last `stride` positions, which have at least
    ``block_size - stride`` tokens of context. stride = block_size scores non-overlapping windows
    (fastest, least context); smaller strides cost more and give every token more context.
    """
    ids = _checked_stream(ids)
    stride = block_size // 2 if stride is None else stride
    _check_window(block_size, stride)
    N = len(ids)
    device = next(model.parameters()).device
    ends = [min(block_size, N - 1)]                                         # each window reads ids[end - T:end]
    while ends[-1] < N - 1:
        ends.append(min(ends[-1] + stride, N - 1))
    was_training = model.training
    model.eval()
    pieces = []
    try:
        first = ids[None, : ends[0] + 1].to(device)                         # the first window: every position
        pieces.append(_scores(_logits(model, first[:, :-1]), first[:, 1:]))
        later = [(end, end - prev) for prev, end in zip(ends, ends[1:])]    # (window end, new targets)
        for b in range(0, len(later), batch_size):
            chunk = later[b: b + batch_size]
            rows = torch.stack([ids[end - block_size: end + 1] for end, _ in chunk]).to(device)  # (b, T + 1)
            logp, top_p, hit = _scores(_logits(model, rows[:, :-1]), rows[:, 1:])           # (b, T)
            for i, (_, new) in enumerate(chunk):                            # score only the new targets
                pieces.append((logp[i, -new:], top_p[i, -new:], hit[i, -new:]))
    finally:
        model.train(was_training)
    return TokenScores(*(torch.cat([p[k].flatten().cpu() for p in pieces]) for k in range(3)))


@torch.no_grad()
def stream_logprobs(model: nn.Module, ids: Tensor, chunk: int = 512) -> TokenScores:
    """Score ids[1:] with a recurrent model (``model(x, state, return_state=True)``) that reads the
    whole text in order, `chunk` tokens at a time, carrying its state: every token sees all before it."""
    ids = _checked_stream(ids)
    device = next(model.parameters()).device
    was_training, state, pieces = model.training, None, []
    model.eval()
    try:
        for start in range(0, len(ids) - 1, chunk):
            x = ids[start: min(start + chunk, len(ids) - 1)][None].to(device)
            y = ids[start + 1: start + 1 + x.shape[1]][None].to(device)
            logits, state = model(x, state, return_state=True)
            pieces.append(_scores(logits, y))
    finally:
        model.train(was_training)
    return TokenScores(*(torch.cat([p[k].flatten().cpu() for p in pieces]) for k in range(3)))


def ngram_logprobs(model, text: str) -> TokenScores:
    """Score text[1:] with a fitted `lmbook.ngram.NgramLM` of characters, the text read as one sequence
    (its first characters are conditioned on the start padding, as the model was trained)."""
    probs = np.asarray(model.token_probs([list(text)]), dtype=np.float64)[1: len(text)]  # drop x_0 and </s>
    return TokenScores(torch.from_numpy(np.log(probs)))


class FixedContext(nn.Module):
    """A model that predicts the next token from exactly `context` tokens (chapter 2's MLP:
    (B, context) -> (B, V)) as a model of every position, (B, T) -> (B, T, V): position t reads the
    `context` tokens ending at t, the text's start padded with `pad_id`."""

    def __init__(self, model: nn.Module, context: int, pad_id: int):
        super().__init__()
        self.model, self.context, self.pad_id = model, context, pad_id

    def forward(self, idx: Tensor) -> Tensor:
        B, T = idx.shape
        padded = F.pad(idx, (self.context - 1, 0), value=self.pad_id)         # (B, context - 1 + T)
        windows = padded.unfold(1, self.context, 1)                           # (B, T, context)
        return self.model(windows.reshape(B * T, self.context)).view(B, T, -1)


# ---- summaries: units and intervals --------------------------------------------------------------------------


def nats_per_token(logprob: Tensor) -> float:
    """The mean negative log-likelihood (cross-entropy), in nats; perplexity is its exponential."""
    return -logprob.double().mean().item()


def bits_per_byte(logprob: Tensor, text: str) -> float:
    """Total negative log-likelihood of the scored `text` in bits, per byte of its UTF-8 encoding:
    a unit that does not depend on the tokenizer (a character of Chinese is 3 bytes, of ASCII 1)."""
    n_bytes = len(text.encode("utf-8"))
    if n_bytes == 0:
        raise ValueError("text is empty: bits per byte needs the text that was scored")
    return -logprob.double().sum().item() / math.log(2) / n_bytes


def _segment_means(values: Tensor, segments: int) -> Tensor:
    n = len(values) // segments
    if n < 1:
        raise ValueError(f"{len(values)} values cannot be cut into segments={segments} segments")
    return values[: n * segments].double().view(segments, n).mean(1)           # (segments,)


def bootstrap_interval(values: Tensor, segments: int = 100, samples: int = 2000, level: float = 0.95,
                       seed: int = 0) -> tuple[float, float, float]:
    """(mean, low, high): the mean of `values` (say, per-token nats) and a `level` percentile interval,
    resampling `segments` contiguous, equal segments of the text with replacement (a block bootstrap:
    neighbouring tokens are correlated, segments much less). Up to segments - 1 values at the end
    are left out to make the segments equal."""
    _check_bootstrap(segments, samples, level)
    means = _segment_means(values, segments)
    g = torch.Generator().manual_seed(seed)
    picks = torch.randint(0, segments, (samples, segments), generator=g)
    stats = means[picks].mean(1)
    alpha = (1 - level) / 2
    return means.mean().item(), torch.quantile(stats, alpha).item(), torch.quantile(stats, 1 - alpha).item()


def paired_bootstrap(a: Tensor, b: Tensor, segments: int = 100, samples: int = 2000, level: float = 0.95,
                     seed: int = 0) -> tuple[float, float, float]:
    """(mean of a - b, low, high) for two models scored on the same tokens: the same segments are
    resampled for both, so the text's own difficulty cancels and the interval is much narrower
    than the two models' separate intervals suggest."""
    if a.shape != b.shape:
        raise ValueError(f"a and b must score the same tokens, got shapes {tuple(a.shape)} and {tuple(b.shape)}")
    return bootstrap_interval(a.double() - b.double(), segments, samples, level, seed)


@dataclass
class Calibration:
    """A reliability diagram's numbers: per bin of predicted top-token probability, the mean
    prediction, the observed accuracy and the count; `ece` is their count-weighted mean |gap|."""

    confidence: Tensor
    accuracy: Tensor
    count: Tensor
    ece: float


def calibration(top_prob: Tensor, hit: Tensor, bins: int = 10) -> Calibration:
    """Bin the top-token probabilities into `bins` equal-width bins of [0, 1] and compare each bin's
    mean probability with how often the top token was right. A calibrated model lies on the
    diagonal; ECE (expected calibration error) = Σ (n_b / n) |accuracy_b - confidence_b|."""
    if top_prob is None or hit is None or top_prob.shape != hit.shape:
        raise ValueError("calibration needs top_prob and hit of the same shape (token_logprobs gives them)")
    which = (top_prob.double() * bins).long().clamp(max=bins - 1)                      # bin of each token
    count = torch.bincount(which, minlength=bins).double()
    conf = torch.bincount(which, weights=top_prob.double(), minlength=bins) / count.clamp(min=1)
    acc = torch.bincount(which, weights=hit.double(), minlength=bins) / count.clamp(min=1)
    ece = ((count / count.sum()) * (acc - conf).abs()).sum().item()
    return Calibration(conf, acc, count.long(), ece)


# ---- what generated text looks like: diversity and repetition --------------------------------------------------


def _word_ngrams(text: str, n: int) -> list[tuple[str, ...]]:
    words = text.split()
    return [tuple(words[i: i + n]) for i in range(len(words) - n + 1)]


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Distinct-n (Li et al. 2016): the distinct word n-grams of a set of texts over all their word
    n-grams, 1.0 when nothing repeats, near 0 when every text says the same thing.

    >>> distinct_n(["a b a b", "a b c"], 2)   # bigrams ab ba ab ab bc: 3 distinct of 5
    0.6
    """
    _check_n(n)
    grams = [g for t in texts for g in _word_ngrams(t, n)]
    return len(set(grams)) / len(grams) if grams else math.nan


def repetition_rate(text: str, n: int = 3) -> float:
    """The fraction of the word n-grams of a text that already occurred earlier in it (Welleck et al.
    2020's seq-rep-n): 0 for text that never repeats itself, near 1 for a loop.

    >>> repetition_rate("to be or not to be or not", 2)   # 7 bigrams, the last 3 repeat earlier ones
    0.42857142857142855
    """
    _check_n(n)
    grams = _word_ngrams(text, n)
    return (len(grams) - len(set(grams))) / len(grams) if grams else math.nan


# ---- multiple choice, scored by likelihood ------------------------------------------------------------------


@dataclass
class Question:
    """A passage, the candidate next lines (each ending with a newline), and the index of the true one."""

    context: str
    choices: list[str]
    answer: int


def multiple_choice_questions(text: str, n: int, n_choices: int = 4, context_chars: int = 200,
                              min_chars: int = 20, is_candidate: Callable[[str], bool] | None = None,
                              seed: int = 0) -> list[Question]:
    """`n` questions from a held-out text: the passage before a line (up to `context_chars` characters,
    whole lines), the line itself as the answer, and n_choices - 1 distractors, lines drawn at random
    from elsewhere in the text (more than 20 lines away). Candidate lines have at least `min_chars`
    characters and pass `is_candidate` (by default: not a speaker's name, which ends with ':').
    The answer's position among the choices is random."""
    _check_questions_args(n, n_choices, context_chars, min_chars)
    is_candidate = is_candidate or (lambda line: not line.rstrip().endswith(":"))
    lines = text.split("\n")
    starts = np.cumsum([0] + [len(line) + 1 for line in lines])               # character offset of each line
    good = [i for i, line in enumerate(lines) if len(line) >= min_chars and is_candidate(line)
            and starts[i] >= context_chars]
    if len(good) < n + n_choices:
        raise ValueError(f"the text has {len(good)} candidate lines, too few for n={n} questions")
    rng = random.Random(seed)
    questions = []
    for i in rng.sample(good, n):
        context = text[starts[i] - context_chars: starts[i]]
        context = context[context.find("\n") + 1:] if "\n" in context[:-1] else context   # whole lines
        pool = [j for j in good if abs(j - i) > 20 and lines[j] != lines[i]]
        distractors = [lines[j] + "\n" for j in rng.sample(pool, n_choices - 1)]
        answer = rng.randrange(n_choices)
        choices = distractors[:answer] + [lines[i] + "\n"] + distractors[answer:]
        questions.append(Question(context, choices, answer))
    return questions


def causal_scorer(model: nn.Module, encode: Callable[[str], Sequence[int]], max_len: int | None = None):
    """A scorer for `multiple_choice_accuracy`: (context, choices) -> the log-probability (float64) of each
    choice given the context, from any model that maps (B, T) ids to (B, T, V) logits causally (a GPT,
    an RNN, a `FixedContext` MLP). The context is cut from the left so that it and the longest choice
    fit in `max_len` tokens (a GPT's block_size). A GPT reads the context once, into a KV cache that the
    choices share; other models read context + choice in one row per choice. Rows are padded on the
    right, which a causal model never reads."""
    from lmbook.generate import KVCache
    from lmbook.gpt import GPT

    @torch.no_grad()
    def score(context: str, choices: list[str]) -> Tensor:
        device = next(model.parameters()).device
        conts = [list(encode(c)) for c in choices]
        longest = max(len(c) for c in conts)
        ctx = list(encode(context))
        if max_len is not None:
            if max_len - longest < 1:
                raise ValueError(f"a choice of {longest} tokens leaves no room for context in max_len={max_len}")
            ctx = ctx[-(max_len - longest):]
        n = len(choices)
        conts_x = torch.tensor([c + [c[-1]] * (longest - len(c)) for c in conts], device=device)  # (n, longest)
        was_training = model.training
        model.eval()
        try:
            if isinstance(model, GPT):                                    # the context once, shared by the choices
                cache = KVCache(model.config)
                first = model(torch.tensor([ctx], device=device), cache=cache)[0][:, -1:]   # (1, 1, V)
                cache.reorder(torch.zeros(n, dtype=torch.long, device=device))
                rest = model(conts_x[:, :-1], cache=cache)[0] if longest > 1 else first[:, :0].expand(n, 0, -1)
                logits = torch.cat([first.expand(n, 1, -1), rest], dim=1)                   # (n, longest, V)
            else:
                x = torch.cat([torch.tensor([ctx] * n, device=device), conts_x], dim=1)     # (n, len(ctx) + longest)
                logits = _logits(model, x[:, :-1])[:, len(ctx) - 1:]                       # (n, longest, V)
        finally:
            model.train(was_training)
        logp = _at_least_float32(logits).log_softmax(-1).gather(-1, conts_x[..., None])[..., 0].double()  # (n, longest)
        return torch.stack([logp[i, : len(c)].sum() for i, c in enumerate(conts)]).cpu()
    return score


def ngram_scorer(model):
    """A scorer for `multiple_choice_accuracy` from a fitted character `NgramLM`."""

    def score(context: str, choices: list[str]) -> Tensor:
        return torch.tensor([float(np.log(np.asarray(model.token_probs([list(context + c)]))[len(context): -1]).sum())
                             for c in choices], dtype=torch.float64)
    return score


def pmi_scorer(score, unconditional: str = "\n"):
    """A scorer that ranks choices by how much the context raises their log-probability:
    log p(choice | context) - log p(choice | `unconditional`), a pointwise mutual information
    (Holtzman et al. 2021's "domain-conditional PMI"). A line that is probable on its own (short,
    common words) gains nothing from this, only a line that fits the context does.

    >>> fake = lambda context, choices: torch.tensor([len(context) - len(c) for c in choices], dtype=torch.float64)
    >>> pmi_scorer(fake)("abcd", ["x", "yy"])          # (4 - 1) - (1 - 1), (4 - 2) - (1 - 2)
    tensor([3., 3.], dtype=torch.float64)
    """
    if not isinstance(unconditional, str) or not unconditional:
        raise ValueError(f"unconditional must be a non-empty str (a neutral context, such as a newline), got {unconditional!r}")

    def pmi(context: str, choices: list[str]) -> Tensor:
        return score(context, choices) - score(unconditional, choices)
    return pmi


def multiple_choice_accuracy(score, questions: list[Question]) -> tuple[Tensor, Tensor]:
    """For each question, whether the most probable choice is the true one: (hits (n,) ranking the
    choices by total log-probability, hits (n,) ranking them by log-probability per character,
    HellaSwag's "acc_norm"); the total favours short choices. `score` is a scorer (`causal_scorer`,
    `ngram_scorer`), called once per question."""
    total, per_char = [], []
    for q in questions:
        logp = score(q.context, q.choices)
        total.append(int(logp.argmax()) == q.answer)
        per_char.append(int((logp / torch.tensor([len(c) for c in q.choices], dtype=torch.float64)).argmax()) == q.answer)
    return torch.tensor(total), torch.tensor(per_char)


# ---- input checks ----------------------------------------------------------------------------------------------


def _checked_stream(ids) -> Tensor:
    if isinstance(ids, np.ndarray):
        ids = torch.from_numpy(ids.astype(np.int64))
    if not isinstance(ids, Tensor) or ids.dim() != 1 or ids.is_floating_point():
        raise ValueError(f"ids must be a 1-D tensor of token ids (the held-out text), got "
                         f"{getattr(ids, 'shape', type(ids).__name__)}")
    if len(ids) < 2:
        raise ValueError(f"ids must hold at least 2 tokens (one to condition on, one to score), got {len(ids)}")
    return ids.long()


def _check_window(block_size, stride) -> None:
    for name, value in (("block_size", block_size), ("stride", stride)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if stride > block_size:
        raise ValueError(f"stride={stride} must be at most block_size={block_size}, or tokens would be skipped")


def _check_bootstrap(segments, samples, level) -> None:
    for name, value in (("segments", segments), ("samples", samples)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 2:
            raise ValueError(f"{name} must be an int >= 2, got {value!r}")
    if not isinstance(level, float) or not 0 < level < 1:
        raise ValueError(f"level must be a float in (0, 1), like 0.95, got {level!r}")


def _check_n(n) -> None:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1 (the n-gram length, in words), got {n!r}")


def _check_questions_args(n, n_choices, context_chars, min_chars) -> None:
    for name, value, low in (("n", n, 1), ("n_choices", n_choices, 2), ("context_chars", context_chars, 1),
                             ("min_chars", min_chars, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
