"""Adapting a pretrained language model: classification, instruction tuning, LoRA and DPO (chapter 10).

A pretrained GPT (chapter 7's runs, `lmbook.models`) already holds what its text taught it. This
module holds the few pieces that turn it into something else, in the order the chapter builds them:

- classification: `GPTClassifier` puts a linear head on one position's final state (for a causal
  model, the *last* real token: the only one that has read the whole input), with `pad_right`,
  `epoch_batches` and the metrics `accuracy`, `macro_f1`, `confusion_matrix` and
  `bootstrap_metric`; `NgramNaiveBayes` is the baseline without any neural network;
- instruction tuning: `CharTokenizer` (characters plus special tokens), `resize_embeddings` (new
  tokens get the mean of the old embeddings), `ChatTemplate` (where the prompt and the answer go)
  and `sft_tensors`, whose targets leave the prompt out of the loss (``mask_prompt=True``);
- LoRA (Hu et al. 2021): `LoRALinear`, a frozen Linear plus a trainable low-rank update
  (α/r)·B·A, `inject_lora` / `merge_lora`, and `count_parameters`, `optimizer_state_bytes`;
- preference tuning: `sequence_logprobs` and `dpo_loss` (Rafailov et al. 2023), `train_dpo`.

Training itself is chapter 2's loop, `lmbook.train.train`, unchanged: every model here maps a
batch of ids to logits, and ``-100`` marks a target the loss leaves out. `Autocast` runs a model
in bfloat16 on CPUs that compute in it natively (chapter 7).

The from-scratch pieces are tested against the implementations people use (tests/test_finetune.py):
`LoRALinear` against peft's ``lora.Linear`` and a LoRA GPT against peft on Hugging Face's
``GPT2LMHeadModel``, `dpo_loss` against trl's DPO trainer, `NgramNaiveBayes` and `macro_f1` against
scikit-learn. Bad input is a clear error: a class with no examples, a template without its answer
marker, a LoRA target that names no layer, a rank below 1.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmbook.gpt import GPT, IGNORE_INDEX

PAD = -1  # pads a row of token ids on the right for a classifier: no token has this id

# ---- classification --------------------------------------------------------------------------------------


class GPTClassifier(nn.Module):
    """A GPT without its LM head, and a linear head on one position's final state.

        h = ln_f(Block_L(... Block_1(wte[idx] + wpe)))     (B, T, d)
        z = pool(h)                                        (B, d)
        logits = z W_cᵀ + b_c                              (B, C)

    idx is padded on the right with PAD (-1). In a causal model position t has read tokens 0..t
    only, so only the last real token's state has read the whole text: ``pool="last"`` (the
    default) classifies from it, ``"mean"`` averages the real positions, ``"first"`` reads the first
    token's state (which has seen one token: a baseline that shows why position matters).
    """

    POOLS = ("last", "mean", "first")

    def __init__(self, gpt: GPT, n_classes: int, pool: str = "last"):
        super().__init__()
        _check_classifier_args(gpt, n_classes, pool, self.POOLS)
        self.gpt, self.pool = gpt, pool
        self.head = nn.Linear(gpt.config.n_embd, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def features(self, idx: Tensor) -> Tensor:
        """The pooled final states (B, d) of idx (B, T), padded on the right with PAD."""
        real = idx != PAD                                                    # (B, T)
        lengths = real.sum(1)                                                # (B,)
        if bool((lengths == 0).any()):
            raise ValueError("a row of idx holds no token (only PAD): every text needs at least one")
        h = final_states(self.gpt, idx.clamp(min=0))                         # (B, T, d)
        if self.pool == "last":
            return h[torch.arange(len(h), device=h.device), lengths - 1]    # (B, d)
        if self.pool == "mean":
            return (h * real[..., None]).sum(1) / lengths[:, None]
        return h[:, 0]

    def forward(self, idx: Tensor) -> Tensor:
        return self.head(self.features(idx))                                 # (B, C)


def final_states(gpt: GPT, idx: Tensor) -> Tensor:
    """The GPT's final hidden states ln_f(h_L), (B, T, d): its forward pass without the LM head."""
    t = gpt.transformer
    pos = torch.arange(idx.shape[1], device=idx.device)
    x = t.drop(t.wte(idx) + t.wpe(pos))                                      # (B, T, d)
    for block in t.h:
        x = block(x)
    return t.ln_f(x)


def pad_right(rows: Sequence[Sequence[int]], pad: int = PAD, max_len: int | None = None) -> Tensor:
    """Rows of token ids -> (B, T) long, each row cut to `max_len` tokens and padded on the right.

    >>> pad_right([[5, 6, 7], [8]])
    tensor([[ 5,  6,  7],
            [ 8, -1, -1]])
    """
    rows = [list(r)[:max_len] if max_len is not None else list(r) for r in rows]
    if not rows or any(len(r) == 0 for r in rows):
        raise ValueError("pad_right needs at least one row, and every row at least one token")
    T = max(len(r) for r in rows)
    return torch.tensor([r + [pad] * (T - len(r)) for r in rows], dtype=torch.long)


def epoch_batches(X: Tensor, Y: Tensor, batch_size: int, generator: torch.Generator | None = None,
                  pad: int | None = PAD) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless minibatches that visit every row once per epoch (a new shuffle each epoch), each
    batch cut to its longest row: columns where every row of X is `pad` are dropped (pad=None
    keeps every column, for rows of features rather than of token ids)."""
    if len(X) != len(Y) or len(X) == 0:
        raise ValueError(f"X and Y must have the same number of rows, at least 1; got {len(X)} and {len(Y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")

    def batches():
        while True:
            order = torch.randperm(len(X), generator=generator)
            for i in range(0, len(X), batch_size):
                rows = order[i: i + batch_size]
                x, y = X[rows], Y[rows]
                if pad is not None:
                    keep = int((x != pad).any(0).nonzero().max()) + 1        # the longest row's length
                    x, y = x[:, :keep], (y[:, :keep] if y.dim() == 2 else y)
                yield x, y
    return batches()


def steps_per_epoch(n_rows: int, batch_size: int) -> int:
    """Minibatches in one pass over n_rows rows: ceil(n_rows / batch_size)."""
    return -(-n_rows // batch_size)


def set_dropout(model: nn.Module, p: float) -> nn.Module:
    """Set every dropout probability of `model` to p (in place; returns it): pretraining settings
    (0.2 or 0.3 for a small model on a small text) are rarely the right ones for fine-tuning."""
    if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 <= p < 1:
        raise ValueError(f"dropout is a probability in [0, 1), got {p!r}")
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = p
        elif hasattr(m, "dropout") and isinstance(m.dropout, float):             # attention's dropout_p
            m.dropout = float(p)
    return model


class Autocast(nn.Module):
    """Runs `model` under ``torch.autocast`` in `dtype` (bfloat16 on a CPU that computes in it,
    chapter 7) and returns float32 logits; its parameters are the model's, in float32."""

    def __init__(self, model: nn.Module, dtype: torch.dtype = torch.bfloat16, enabled: bool = True):
        super().__init__()
        self.model, self.dtype, self.enabled = model, dtype, enabled

    def forward(self, *args, **kwargs):
        device = next(self.model.parameters()).device.type
        with torch.autocast(device, dtype=self.dtype, enabled=self.enabled):
            out = self.model(*args, **kwargs)
        return tuple(o.float() if isinstance(o, Tensor) else o for o in out) if isinstance(out, tuple) else out.float()


@torch.no_grad()
def predict(model: nn.Module, X: Tensor, batch_size: int = 256, pad: int | None = PAD) -> Tensor:
    """The logits of a classifier for every row of X, in eval mode (restored after): (N, C). Rows
    of token ids are cut to the batch's longest row (pad=None: rows of features, kept whole)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = []
        for i in range(0, len(X), batch_size):
            x = X[i: i + batch_size]
            if pad is not None:
                x = x[:, : int((x != pad).any(0).nonzero().max()) + 1]
            out.append(model(x.to(device)).float().cpu())
        return torch.cat(out)
    finally:
        model.train(was_training)


def stratified_subset(labels: Sequence[int], fraction: float, seed: int = 0) -> list[int]:
    """Indices of about `fraction` of the examples of every class (at least one each), chosen at
    random with `seed`: a smaller labelled set with the same class proportions."""
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction <= 1:
        raise ValueError(f"fraction must lie in (0, 1], got {fraction!r}")
    g = torch.Generator().manual_seed(seed)
    by_class: dict[int, list[int]] = {}
    for i, c in enumerate(labels):
        by_class.setdefault(int(c), []).append(i)
    chosen = []
    for c in sorted(by_class):
        rows = by_class[c]
        k = max(1, round(fraction * len(rows)))
        chosen += [rows[j] for j in torch.randperm(len(rows), generator=g)[:k].tolist()]
    return sorted(chosen)


def label_ids(labels: Sequence[str], classes: Sequence[str]) -> Tensor:
    """Class names -> class ids (N,), in the order of `classes`; every class needs an example, and
    every label must be one of the classes."""
    index = {c: i for i, c in enumerate(classes)}
    unknown = sorted(set(labels) - set(index))
    if unknown:
        raise ValueError(f"labels {unknown[:5]} are not among the classes {list(classes)}")
    counts = Counter(labels)
    empty = [c for c in classes if counts[c] == 0]
    if empty:
        raise ValueError(f"class {empty[0]!r} has no examples (classes without examples: {empty}); "
                         f"drop it from `classes` or add examples of it")
    return torch.tensor([index[label] for label in labels])


# ---- classification metrics --------------------------------------------------------------------------------


def confusion_matrix(y_true: Tensor, y_pred: Tensor, n_classes: int) -> Tensor:
    """(C, C) counts: row = the true class, column = the predicted class."""
    y_true, y_pred = _checked_labels(y_true, y_pred)
    return torch.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes).view(n_classes, n_classes)


def accuracy(y_true: Tensor, y_pred: Tensor) -> float:
    """The fraction of examples whose predicted class is the true one."""
    y_true, y_pred = _checked_labels(y_true, y_pred)
    return (y_true == y_pred).double().mean().item()


def macro_f1(y_true: Tensor, y_pred: Tensor, n_classes: int) -> float:
    """The mean over classes of F1 = 2·precision·recall / (precision + recall), each class counting
    the same however many examples it has (a class never predicted and never true is left out;
    a precision or recall of 0/0 counts as 0, as scikit-learn does)."""
    cm = confusion_matrix(y_true, y_pred, n_classes).double()
    tp, predicted, true = cm.diag(), cm.sum(0), cm.sum(1)
    f1 = torch.where(predicted + true > 0, 2 * tp / (predicted + true).clamp(min=1), torch.zeros_like(tp))
    return f1[(predicted + true) > 0].mean().item()


def bootstrap_metric(metric: Callable[[Tensor, Tensor], float], y_true: Tensor, y_pred: Tensor,
                     samples: int = 2000, level: float = 0.95, seed: int = 0,
                     baseline: Tensor | None = None) -> tuple[float, float, float]:
    """(value, low, high): `metric(y_true, y_pred)` and a percentile interval from resampling the
    test examples with replacement. With `baseline` (another model's predictions on the same
    examples) it is the paired interval of metric(pred) - metric(baseline): the same resampled
    examples for both, so the examples' own difficulty cancels."""
    y_true, y_pred = _checked_labels(y_true, y_pred)
    if baseline is not None:
        _checked_labels(y_true, baseline)

    def stat(rows):
        value = metric(y_true[rows], y_pred[rows])
        return value - metric(y_true[rows], baseline[rows]) if baseline is not None else value

    n = len(y_true)
    g = torch.Generator().manual_seed(seed)
    stats = torch.tensor([stat(torch.randint(0, n, (n,), generator=g)) for _ in range(samples)])
    alpha = (1 - level) / 2
    return stat(torch.arange(n)), torch.quantile(stats, alpha).item(), torch.quantile(stats, 1 - alpha).item()


class NgramNaiveBayes:
    """Multinomial naive Bayes on character n-grams, the classic text classifier without a network.

    Each text is a bag of its character n-grams for every n in `orders`; a class c has a prior π_c
    (its share of the training texts) and a distribution θ_c over n-grams, the n-gram counts of its
    training texts with `alpha` added to every count (Laplace smoothing, over the n-grams seen in
    training). A text is assigned argmax_c log π_c + Σ_g count(g)·log θ_c(g); n-grams never seen in
    training are ignored.
    """

    def __init__(self, orders: Sequence[int] = (1, 2), alpha: float = 1.0):
        if not orders or any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in orders):
            raise ValueError(f"orders must be n-gram lengths >= 1, like (1, 2), got {orders!r}")
        if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
            raise ValueError(f"alpha is the count added to every n-gram, a number > 0; got {alpha!r}")
        self.orders, self.alpha = tuple(orders), float(alpha)

    def ngrams(self, text: str) -> Counter:
        return Counter(text[i: i + n] for n in self.orders for i in range(len(text) - n + 1))

    def fit(self, texts: Sequence[str], labels: Sequence[int]) -> NgramNaiveBayes:
        labels = torch.as_tensor(labels)
        self.n_classes = int(labels.max()) + 1
        counts = [Counter() for _ in range(self.n_classes)]
        for text, c in zip(texts, labels.tolist()):
            counts[c].update(self.ngrams(text))
        self.vocab = {g: i for i, g in enumerate(sorted(set().union(*counts)))}
        table = torch.zeros(self.n_classes, len(self.vocab), dtype=torch.float64)
        for c, cnt in enumerate(counts):
            for g, k in cnt.items():
                table[c, self.vocab[g]] = k
        table += self.alpha
        self.log_theta = table.log() - table.sum(1, keepdim=True).log()       # (C, G)
        prior = torch.bincount(labels, minlength=self.n_classes).double()
        self.log_prior = prior.log() - prior.sum().log()                    # (C,)
        return self

    def log_scores(self, texts: Sequence[str]) -> Tensor:
        """(N, C): log π_c + Σ_g count(g)·log θ_c(g) for every text and class."""
        scores = self.log_prior.repeat(len(texts), 1)                          # (N, C)
        for i, text in enumerate(texts):
            seen = [(self.vocab[g], k) for g, k in self.ngrams(text).items() if g in self.vocab]
            if seen:
                columns, counts = zip(*seen)
                scores[i] += self.log_theta[:, list(columns)] @ torch.tensor(counts, dtype=torch.float64)
        return scores

    def predict(self, texts: Sequence[str]) -> Tensor:
        return self.log_scores(texts).argmax(1)


# ---- instruction tuning: tokens, template, masked targets -----------------------------------------------------


class CharTokenizer:
    """Characters, plus special tokens that are one token each however many characters they spell.

    ids 0..len(chars)-1 are the characters, the special tokens come after them, in order.

    >>> tok = CharTokenizer(list("ab"), ["<|end|>"])
    >>> tok.encode("ab<|end|>a"), tok.decode([1, 2])
    ([0, 1, 2, 0], 'b<|end|>')
    """

    def __init__(self, chars: Sequence[str], special_tokens: Sequence[str] = ()):
        chars, special_tokens = list(chars), list(special_tokens)
        if any(not isinstance(c, str) or len(c) != 1 for c in chars) or len(set(chars)) != len(chars):
            raise ValueError("chars must be distinct single characters")
        if any(not isinstance(s, str) or len(s) < 2 for s in special_tokens) or len(set(special_tokens)) != len(special_tokens):
            raise ValueError(f"special tokens must be distinct strings of 2 or more characters, got {special_tokens!r}")
        self.chars, self.special_tokens = chars, special_tokens
        self.stoi = {c: i for i, c in enumerate(chars)} | {s: len(chars) + j for j, s in enumerate(special_tokens)}
        self.itos = chars + special_tokens
        self._split = (re.compile("(" + "|".join(map(re.escape, sorted(special_tokens, key=len, reverse=True))) + ")")
                       if special_tokens else None)

    @property
    def vocab_size(self) -> int:
        return len(self.itos)

    def encode(self, text: str) -> list[int]:
        pieces = self._split.split(text) if self._split else [text]
        ids = []
        for k, piece in enumerate(pieces):
            if k % 2 == 1:                                                      # a special token
                ids.append(self.stoi[piece])
                continue
            for ch in piece:
                if ch not in self.stoi:
                    raise ValueError(f"character {ch!r} is not in the vocabulary; add it with "
                                     f"CharTokenizer(chars + [{ch!r}], ...) and resize_embeddings")
                ids.append(self.stoi[ch])
        return ids

    def decode(self, ids) -> str:
        return "".join(self.itos[int(i)] for i in ids)


def resize_embeddings(gpt: GPT, vocab_size: int) -> GPT:
    """Give `gpt` room for vocab_size tokens (in place; returns it). The new rows of the (tied)
    token embedding are the mean of the old rows: a new token then starts as an average token, so
    its logit is the mean logit and adding it barely changes the model's predictions (Hewitt 2021)."""
    old = gpt.transformer.wte.weight
    V, d = old.shape
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < V:
        raise ValueError(f"vocab_size must be an int >= the current {V} (tokens are only added), got {vocab_size!r}")
    if vocab_size == V:
        return gpt
    wte = nn.Embedding(vocab_size, d, device=old.device, dtype=old.dtype)
    with torch.no_grad():
        wte.weight[:V] = old
        wte.weight[V:] = old.mean(0)
    gpt.transformer.wte = wte
    gpt.lm_head = nn.Linear(d, vocab_size, bias=False, device=old.device, dtype=old.dtype)
    gpt.lm_head.weight = wte.weight                                            # still tied
    from dataclasses import replace
    gpt.config = replace(gpt.config, vocab_size=vocab_size)
    return gpt


@dataclass(frozen=True)
class ChatTemplate:
    """How an instruction and its answer are laid out for the model, with special tokens that no
    text contains. `text` holds ``{prompt}`` and, after it, ``{answer}``; what follows ``{answer}``
    (the end marker) tells the model that the answer is over.

    >>> ChatTemplate().render("Add 2 and 3.", "5")
    '<|user|>Add 2 and 3.<|assistant|>5<|end|>'
    """

    text: str = "<|user|>{prompt}<|assistant|>{answer}<|end|>"
    special_tokens: tuple[str, ...] = ("<|user|>", "<|assistant|>", "<|end|>")

    def __post_init__(self):
        _check_template(self.text, self.special_tokens)

    def prompt_part(self, prompt: str) -> str:
        """Everything up to where the answer starts, with the prompt filled in: what the model reads."""
        return self.text.split("{answer}")[0].replace("{prompt}", prompt)

    def answer_part(self, answer: str) -> str:
        """The answer and the end marker: what the model learns to write."""
        return answer + self.end

    @property
    def end(self) -> str:
        return self.text.split("{answer}")[1]

    def render(self, prompt: str, answer: str) -> str:
        return self.prompt_part(prompt) + self.answer_part(answer)


def sft_tensors(pairs: Sequence[tuple[str, str]], tokenizer: CharTokenizer, template: ChatTemplate,
                mask_prompt: bool = True, pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """(X, Y), each (N, T): the inputs and next-token targets of rendered (prompt, answer) pairs,
    padded on the right (X with pad_id, Y with -100). With mask_prompt the targets of the prompt's
    tokens are -100, so the loss counts the answer and its end marker only:

        tokens   <u> A d d   2 … <a> 5 <e>
        x        <u> A d d   2 … <a> 5          (the last token is never an input)
        y         -100 … -100   5 <e>           (the prompt is read, not learned)
    """
    rows_x, rows_y = [], []
    for prompt, answer in pairs:
        p, a = tokenizer.encode(template.prompt_part(prompt)), tokenizer.encode(template.answer_part(answer))
        ids = p + a
        y = ids[1:]
        if mask_prompt:
            y = [IGNORE_INDEX] * (len(p) - 1) + y[len(p) - 1:]
        rows_x.append(ids[:-1])
        rows_y.append(y)
    if not rows_x:
        raise ValueError("pairs is empty: sft_tensors needs at least one (prompt, answer) pair")
    T = max(len(r) for r in rows_x)
    X = torch.tensor([r + [pad_id] * (T - len(r)) for r in rows_x])
    Y = torch.tensor([r + [IGNORE_INDEX] * (T - len(r)) for r in rows_y])
    return X, Y


def sft_batches(X: Tensor, Y: Tensor, batch_size: int, generator: torch.Generator | None = None,
                replay: Tensor | None = None, replay_rows: int = 0, block_size: int = 64) -> Iterator[tuple[Tensor, Tensor]]:
    """Endless minibatches of (X, Y) rows, every row once per epoch, each batch cut to its longest
    row. Rows of similar length share a batch (shuffled within groups of 16 batches, sorted by
    length, and the batches shuffled again), so that little of a batch is padding. With `replay`
    (a 1-D tensor of pretraining token ids), `replay_rows` windows of `block_size` tokens of it are
    added to every batch, every token a target: a small replay of the pretraining text."""
    if len(X) != len(Y) or len(X) == 0:
        raise ValueError(f"X and Y must have the same number of rows, at least 1; got {len(X)} and {len(Y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if isinstance(replay_rows, bool) or not isinstance(replay_rows, int) or replay_rows < 0:
        raise ValueError(f"replay_rows must be an int >= 0, got {replay_rows!r}")
    if replay_rows and replay is None:
        raise ValueError("replay_rows > 0 needs the pretraining tokens to replay: pass replay=...")
    if replay_rows and len(replay) <= block_size:
        raise ValueError(f"replay holds {len(replay)} tokens, fewer than block_size + 1 = {block_size + 1}")

    lengths = (Y != IGNORE_INDEX).cumsum(1).argmax(1)                           # index of each row's last target

    def batches():
        while True:
            for rows in _length_grouped(lengths, batch_size, generator):
                y = Y[rows]
                keep = int((y != IGNORE_INDEX).any(0).nonzero().max()) + 1   # the longest row's targets
                x, y = X[rows][:, :keep], y[:, :keep]
                if replay_rows:
                    starts = torch.randint(0, len(replay) - block_size, (replay_rows,), generator=generator)
                    windows = torch.stack([replay[s: s + block_size + 1] for s in starts.tolist()])  # (r, block_size + 1)
                    T = max(keep, block_size)
                    x = torch.cat([F.pad(x, (0, T - keep)), F.pad(windows[:, :-1], (0, T - block_size))])
                    y = torch.cat([F.pad(y, (0, T - keep), value=IGNORE_INDEX),
                                   F.pad(windows[:, 1:], (0, T - block_size), value=IGNORE_INDEX)])
                yield x, y
    return batches()


@torch.no_grad()
def generate_answers(model: GPT, tokenizer: CharTokenizer, template: ChatTemplate, prompts: Sequence[str],
                     max_new_tokens: int = 64, batch_size: int = 64) -> list[str]:
    """The model's greedy answer to each prompt, rendered with the template: the text it writes
    after the prompt part, up to its end marker (left out) or `max_new_tokens` tokens. Prompts are
    batched with left padding (chapter 8's `generate`)."""
    from lmbook.generate import generate, left_pad

    end_id = tokenizer.stoi.get(template.end)
    if end_id is None:
        raise ValueError(f"the template's end marker {template.end!r} must be one special token of the tokenizer")
    device = next(model.parameters()).device
    answers = []
    for i in range(0, len(prompts), batch_size):
        rows = [tokenizer.encode(template.prompt_part(p)) for p in prompts[i: i + batch_size]]
        idx, mask = left_pad(rows, pad_id=end_id)
        out = generate(model, idx.to(device), max_new_tokens, greedy=True, attention_mask=mask.to(device),
                       eos_id=end_id)
        for row in out[:, idx.shape[1]:].tolist():
            answers.append(tokenizer.decode(row[: row.index(end_id)] if end_id in row else row))
    return answers


def _length_grouped(lengths: Tensor, batch_size: int, generator) -> list[Tensor]:
    """One epoch of batches of row indices: shuffled, then sorted by length within groups of 16
    batches, cut into batches, and the batches shuffled (Hugging Face's group_by_length, in short)."""
    order = torch.randperm(len(lengths), generator=generator)
    group = 16 * batch_size
    batches = []
    for i in range(0, len(order), group):
        chunk = order[i: i + group]
        chunk = chunk[torch.argsort(lengths[chunk], stable=True)]
        batches += list(chunk.split(batch_size))
    return [batches[j] for j in torch.randperm(len(batches), generator=generator).tolist()]


# ---- LoRA ---------------------------------------------------------------------------------------------------


class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable low-rank update (Hu et al. 2021):

        y = x Wᵀ + b + (α/r) · x Aᵀ Bᵀ,     A (r, d_in), B (d_out, r)

    so the weight the layer uses is W + ΔW with ΔW = (α/r)·B·A, of rank at most r. A starts random
    (peft's Kaiming-uniform), B at zero: at the start the layer is exactly the pretrained one.
    Training updates r·(d_in + d_out) numbers instead of d_in·d_out. `merge` adds ΔW into W, so
    that generating costs no more than with the plain Linear; `unmerge` takes it out again.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0):
        super().__init__()
        alpha = float(rank) if alpha is None else alpha
        _check_lora_args(base, rank, alpha, dropout)
        self.base, self.rank, self.alpha, self.scaling = base, rank, alpha, alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)
        self.merged = False
        for p in base.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling   # (…, d_in) -> (…, r) -> (…, d_out)

    def delta_weight(self) -> Tensor:
        """ΔW = (α/r)·B·A, (d_out, d_in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False


LORA_TARGETS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")  # every projection of a GPT block


def inject_lora(model: nn.Module, rank: int, alpha: float | None = None,
                targets: Sequence[str] = LORA_TARGETS, dropout: float = 0.0) -> list[str]:
    """Freeze every parameter of `model` and wrap each Linear whose name ends with one of `targets`
    in a `LoRALinear` (in place). Returns the names of the wrapped layers. A target that names no
    Linear of the model is an error that lists the ones it has."""
    if isinstance(targets, str) or not targets:
        raise ValueError(f"targets must be a non-empty list of layer names, like {list(LORA_TARGETS)}; got {targets!r}")
    linears = {name: m for name, m in model.named_modules() if isinstance(m, nn.Linear)}
    chosen = {name for name in linears for t in targets if name == t or name.endswith("." + t)}
    for t in targets:
        if not any(name == t or name.endswith("." + t) for name in linears):
            suffixes = sorted({".".join(n.split(".")[-2:]) for n in linears})
            raise ValueError(f"LoRA target {t!r} names no Linear layer of this model; its Linear layers end with "
                             f"{suffixes}")
    for name in sorted(chosen):                                                # check before changing anything
        _check_lora_args(linears[name], rank, float(rank) if alpha is None else alpha, dropout)
    for p in model.parameters():
        p.requires_grad_(False)
    for name in sorted(chosen):
        parent, _, child = name.rpartition(".")
        owner = model.get_submodule(parent) if parent else model
        setattr(owner, child, LoRALinear(linears[name], rank, alpha, dropout))
    return sorted(chosen)


def merge_lora(model: nn.Module) -> nn.Module:
    """Merge every LoRA update into its layer's weight and put the plain Linear back (in place;
    returns the model): the same function, with no adapter left to compute."""
    for name, m in list(model.named_modules()):
        if isinstance(m, LoRALinear):
            m.merge()
            parent, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent) if parent else model, child, m.base)
    return model


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameters, tied parameters counted once."""
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes of the optimizer's state tensors (AdamW: the two moments of every trainable parameter),
    measured from the state itself after at least one step."""
    return sum(v.numel() * v.element_size() for state in optimizer.state.values() for v in state.values()
               if isinstance(v, Tensor) and v.dim() > 0)


# ---- preference tuning: DPO ------------------------------------------------------------------------------------


def sequence_logprobs(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """log p(targets | inputs) of each row (B,): the sum of log-probabilities of the targets y (B, T)
    that are not -100, given the inputs x (B, T), as `sft_tensors` lays them out."""
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out                      # (B, T, V)
    logp = logits.float().log_softmax(-1)
    keep = y != IGNORE_INDEX
    token_logp = logp.gather(-1, y.clamp(min=0)[..., None])[..., 0]          # (B, T)
    return (token_logp * keep).sum(1)


class DPOOutput(NamedTuple):
    loss: Tensor              # the mean over pairs
    chosen_rewards: Tensor    # β·(log π(y_w|x) - log π_ref(y_w|x)), (B,), detached
    rejected_rewards: Tensor  # β·(log π(y_l|x) - log π_ref(y_l|x)), (B,), detached


def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float = 0.1) -> DPOOutput:
    """The DPO loss (Rafailov et al. 2023) of a batch of preference pairs, from sequence
    log-probabilities under the policy π and the frozen reference π_ref:

        r(x, y) = β·log(π(y|x) / π_ref(y|x))           the implicit reward
        loss    = -log σ(r(x, y_w) - r(x, y_l))        y_w preferred to y_l

    It is the reward model's Bradley-Terry loss with the reward written in terms of the policy. At
    the start (π = π_ref) every reward is 0 and the loss is log 2.
    """
    _check_dpo_args(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen - rejected).mean()
    return DPOOutput(loss, chosen.detach(), rejected.detach())


@dataclass
class DPOHistory:
    loss: list[float]
    margin: list[float]       # mean chosen - rejected reward of each batch
    accuracy: list[float]     # fraction of the batch's pairs with chosen reward > rejected reward


def train_dpo(policy: nn.Module, chosen: tuple[Tensor, Tensor], rejected: tuple[Tensor, Tensor],
              ref_logps: tuple[Tensor, Tensor], *, beta: float, steps: int, batch_size: int = 32,
              lr: float = 1e-5, generator: torch.Generator | None = None) -> DPOHistory:
    """Train `policy` on preference pairs with the DPO loss: chosen = (X, Y) and rejected = (X, Y)
    as `sft_tensors` makes them (row i of each is the same prompt), and ref_logps = the reference
    model's sequence log-probabilities of both, computed once before training (`sequence_logprobs`
    under torch.no_grad). AdamW on the trainable parameters, every pair once per epoch."""
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an int >= 1, got {steps!r}")
    (Xc, Yc), (Xr, Yr) = chosen, rejected
    if not len(Xc) == len(Xr) == len(ref_logps[0]) == len(ref_logps[1]):
        raise ValueError("chosen, rejected and ref_logps must hold the same pairs, one row each")
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=lr, weight_decay=0.0)
    history = DPOHistory([], [], [])
    was_training = policy.training
    policy.train()
    device = next(policy.parameters()).device
    try:
        step = 0
        while step < steps:
            order = torch.randperm(len(Xc), generator=generator)
            for i in range(0, len(order), batch_size):
                if step == steps:
                    break
                rows = order[i: i + batch_size]
                logps = []
                for X, Y in ((Xc, Yc), (Xr, Yr)):
                    y = Y[rows]
                    keep = int((y != IGNORE_INDEX).any(0).nonzero().max()) + 1
                    logps.append(sequence_logprobs(policy, X[rows][:, :keep].to(device), y[:, :keep].to(device)))
                out = dpo_loss(logps[0], logps[1], ref_logps[0][rows].to(device), ref_logps[1][rows].to(device), beta)
                optimizer.zero_grad(set_to_none=True)
                out.loss.backward()
                optimizer.step()
                margin = out.chosen_rewards - out.rejected_rewards
                history.loss.append(out.loss.item())
                history.margin.append(margin.mean().item())
                history.accuracy.append((margin > 0).float().mean().item())
                step += 1
    finally:
        policy.train(was_training)
    return history


@torch.no_grad()
def batched_sequence_logprobs(model: nn.Module, X: Tensor, Y: Tensor, batch_size: int = 128) -> Tensor:
    """`sequence_logprobs` of every row of (X, Y), in eval mode, `batch_size` rows at a time: (N,)."""
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
        out = []
        for i in range(0, len(X), batch_size):
            y = Y[i: i + batch_size]
            keep = int((y != IGNORE_INDEX).any(0).nonzero().max()) + 1
            out.append(sequence_logprobs(model, X[i: i + batch_size, :keep].to(device), y[:, :keep].to(device)).cpu())
        return torch.cat(out)
    finally:
        model.train(was_training)


# ---- input checks ----------------------------------------------------------------------------------------------


def _check_classifier_args(gpt, n_classes, pool, pools) -> None:
    if not isinstance(gpt, GPT):
        raise TypeError(f"GPTClassifier needs an lmbook.gpt.GPT, got {type(gpt).__name__}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
        raise ValueError(f"n_classes must be an int >= 2, got {n_classes!r}")
    if pool not in pools:
        raise ValueError(f"pool must be one of {pools}, got {pool!r}")


def _checked_labels(y_true, y_pred) -> tuple[Tensor, Tensor]:
    y_true, y_pred = torch.as_tensor(y_true), torch.as_tensor(y_pred)
    if y_true.shape != y_pred.shape or y_true.dim() != 1 or len(y_true) == 0:
        raise ValueError(f"y_true and y_pred must be 1-D and of the same non-zero length, got shapes "
                         f"{tuple(y_true.shape)} and {tuple(y_pred.shape)}")
    return y_true.long(), y_pred.long()


def _check_template(text, special_tokens) -> None:
    if not isinstance(text, str):
        raise TypeError(f"the template must be a str, got {type(text).__name__}")
    for marker in ("{prompt}", "{answer}"):
        if text.count(marker) != 1:
            raise ValueError(f"the template must contain {marker} exactly once (where the "
                             f"{marker[1:-1]} goes), found {text.count(marker)} in {text!r}")
    if text.index("{answer}") < text.index("{prompt}"):
        raise ValueError(f"{{answer}} must come after {{prompt}} in the template, got {text!r}")
    if not text.split("{answer}")[1]:
        raise ValueError(f"the template needs an end marker after {{answer}} (such as <|end|>), or the model "
                         f"cannot say that its answer is over; got {text!r}")
    if re.search(r"\{(?!prompt\}|answer\})", text):
        raise ValueError(f"the template may hold only the fields {{prompt}} and {{answer}}, got {text!r}")
    if isinstance(special_tokens, str) or any(s not in text for s in special_tokens):
        raise ValueError(f"every special token must occur in the template; missing "
                         f"{[s for s in special_tokens if s not in text] if not isinstance(special_tokens, str) else special_tokens!r}")


def _check_lora_args(base, rank, alpha, dropout) -> None:
    if not isinstance(base, nn.Linear):
        raise TypeError(f"LoRALinear wraps an nn.Linear, got {type(base).__name__}")
    if isinstance(rank, bool) or not isinstance(rank, int) or rank < 1:
        raise ValueError(f"rank must be an int >= 1 (the rank of the update B·A), got {rank!r}")
    if rank > min(base.in_features, base.out_features):
        raise ValueError(f"rank={rank} exceeds min(d_in, d_out) = {min(base.in_features, base.out_features)}: "
                         f"a full-rank update is plain fine-tuning")
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not math.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"alpha must be a finite number > 0 (the update is scaled by alpha / rank), got {alpha!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout is a probability in [0, 1), got {dropout!r}")


def _check_dpo_args(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta) -> None:
    shapes = {tuple(t.shape) for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)}
    if len(shapes) != 1 or len(next(iter(shapes))) != 1:
        raise ValueError(f"the four log-probabilities must be 1-D tensors of the same length (one per pair), "
                         f"got shapes {[tuple(t.shape) for t in (policy_chosen, policy_rejected, ref_chosen, ref_rejected)]}")
    if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not math.isfinite(beta) or beta <= 0:
        raise ValueError(f"beta must be a finite number > 0 (how far the policy may move from the reference), "
                         f"got {beta!r}")
