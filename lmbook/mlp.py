"""Neural language models, from counts to gradients (chapter 2).

Chapter 1 filled a table of probabilities by counting. Here the table becomes a function with
parameters, fitted by gradient descent on the loss chapter 1 used to evaluate it, the mean
cross-entropy of the next token:

    L = -(1/B) Σ_b log softmax(z_b)[y_b],      softmax(z)_j = e^{z_j} / Σ_k e^{z_k}

where z_b are the model's scores (the *logits*) for example b and y_b is the token that came next.

- `softmax_cross_entropy` computes L and its gradient with respect to the logits by hand:
  ∂L/∂z_b = (softmax(z_b) − onehot(y_b)) / B, "what the model predicted minus what happened".
- `NeuralBigram` is the bigram model as a network: one-hot(previous token) @ W, a (V, V) table
  of logits. Trained to convergence, softmax(W) equals the count model's normalised table
  (tests/test_mlp.py), and weight decay on W plays the role of add-k smoothing.
- `MLPLanguageModel` is the model of Bengio et al. (2003): embed each of the last `block_size`
  tokens, concatenate, one tanh hidden layer, one output layer. Its parameters grow linearly
  with the context, where a count table grows exponentially, and tokens that behave alike get
  similar embeddings, so what is learned about one context transfers to similar ones.

Both models check their input: a context of the wrong length, a token id outside the vocabulary
or an empty batch is a ValueError that says what was expected, not a crash inside torch.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NORMS = ("none", "batch", "layer")


def softmax_cross_entropy(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of `targets` under softmax(`logits`), and its gradient w.r.t. the logits.

    logits (B, V) float, targets (B,) integer ids. Returns (loss, a scalar; dlogits, (B, V)), with
    dlogits = (softmax(logits) − onehot(targets)) / B. Subtracting each row's largest logit first
    changes nothing (softmax ignores a constant added to a row) and keeps exp() from overflowing.

    >>> loss, dlogits = softmax_cross_entropy(torch.zeros(1, 4), torch.tensor([2]))  # uniform guess
    >>> round(loss.item(), 4), dlogits  # ln 4; a descent step raises the target's logit
    (1.3863, tensor([[ 0.2500,  0.2500, -0.7500,  0.2500]]))
    """
    targets = _checked_targets(logits, targets)                 # (B,) int64
    B, V = logits.shape
    shifted = logits - logits.max(dim=1, keepdim=True).values   # (B, V), each row's max is 0
    log_sum_exp = shifted.exp().sum(dim=1).log()                 # (B,) log Σ_k e^{z_k} (shifted)
    log_probs = shifted - log_sum_exp[:, None]                   # (B, V) log softmax
    loss = -log_probs[torch.arange(B, device=logits.device), targets].mean()
    dlogits = (log_probs.exp() - F.one_hot(targets, V).to(logits.dtype)) / B  # (B, V)
    return loss, dlogits


class NeuralBigram(nn.Module):
    """The bigram model as a network: one-hot(previous token) @ W gives the logits of the next.

    W is (V, V) and starts at zero, so the first prediction is uniform and the first loss is ln V.
    A one-hot row vector times W selects one row of W, so the forward pass is just ``W[idx]``:
    the network *is* a table of V·V numbers, the size of the count table. Only the way it is
    filled differs: by gradient descent on the cross-entropy instead of by counting.

    >>> model = NeuralBigram(3)
    >>> model(torch.tensor([0, 2]))  # two examples, previous tokens 0 and 2: (B, V) logits
    tensor([[0., 0., 0.],
            [0., 0., 0.]], grad_fn=<IndexBackward0>)
    >>> model.probs()[0]  # uniform before training
    tensor([0.3333, 0.3333, 0.3333])
    """

    block_size = 1  # it reads one previous token

    def __init__(self, vocab_size: int):
        super().__init__()
        self.vocab_size = _check_int("vocab_size", vocab_size, minimum=2)
        self.W = nn.Parameter(torch.zeros(vocab_size, vocab_size))  # (V, V): row = previous token

    def forward(self, idx: Tensor) -> Tensor:
        """idx (B,) or (B, 1) previous-token ids -> logits (B, V)."""
        if isinstance(idx, Tensor) and idx.dim() == 1:
            idx = idx[:, None]                                   # (B,) -> (B, 1)
        idx = check_contexts(idx, self.vocab_size, self.block_size)
        return self.W[idx[:, 0]]                                 # (B, V): one row of W per example

    @torch.no_grad()
    def probs(self) -> Tensor:
        """(V, V) softmax of each row of W: row x is P(next | previous = x), as in the count table."""
        return torch.softmax(self.W, dim=1)

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}"


class MLPLanguageModel(nn.Module):
    """Bengio et al. (2003): predict the next token from the embeddings of the last `block_size`.

        x = [C[w_1]; …; C[w_T]]                      (B, T·emb_dim)  concatenated embeddings
        h = dropout(tanh(norm(W_1 x + b_1)))         (B, hidden)
        z = W_2 h + b_2                              (B, V)          logits

    `norm` is ``"none"``, ``"batch"`` (nn.BatchNorm1d) or ``"layer"`` (nn.LayerNorm) over the hidden
    units; with a norm, W_1 has no bias (the norm's own shift replaces it).

    The initialisation is chosen so that training starts well (chapter 2, section 2.3):

    - C ~ N(0, 1); W_1 ~ N(0, (5/3)² / fan_in) (Kaiming initialisation with tanh's gain 5/3),
      fan_in = block_size·emb_dim; b_1 = 0. The pre-activations then have a standard deviation
      of about 5/3 whatever the context length (with W_1 ~ N(0, 1) it would be √fan_in, ≈ 14 for
      8 × 24, and nearly every tanh unit would sit at ±1, saturated, with zero gradient).
    - W_2 ~ N(0, 0.1² / hidden), b_2 = 0. Because |tanh| ≤ 1, every initial logit has standard
      deviation at most 0.1 whatever the width, so the initial prediction is nearly uniform and
      the step-0 loss is ln V plus about 0.1²/2 = 0.005 nats at most (0.15% of ln 27).

    >>> model = MLPLanguageModel(27, block_size=3, emb_dim=2, hidden=8)
    >>> model(torch.tensor([[0, 0, 5], [0, 5, 13]])).shape  # two contexts of 3 tokens
    torch.Size([2, 27])
    """

    def __init__(self, vocab_size: int, block_size: int, emb_dim: int = 24, hidden: int = 256,
                 norm: str = "layer", dropout: float = 0.0):
        super().__init__()
        _check_model_args(vocab_size, block_size, emb_dim, hidden, norm, dropout)
        self.vocab_size, self.block_size, self.norm_name = vocab_size, block_size, norm
        self.embedding = nn.Embedding(vocab_size, emb_dim)                       # C: (V, emb_dim)
        self.hidden_layer = nn.Linear(block_size * emb_dim, hidden, bias=norm == "none")
        self.norm = {"none": nn.Identity, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}[norm](hidden)
        self.dropout = nn.Dropout(dropout)
        self.output_layer = nn.Linear(hidden, vocab_size)
        with torch.no_grad():
            nn.init.normal_(self.embedding.weight, 0.0, 1.0)
            nn.init.normal_(self.hidden_layer.weight, 0.0, (5 / 3) / math.sqrt(block_size * emb_dim))
            if self.hidden_layer.bias is not None:
                nn.init.zeros_(self.hidden_layer.bias)
            nn.init.normal_(self.output_layer.weight, 0.0, 0.1 / math.sqrt(hidden))
            nn.init.zeros_(self.output_layer.bias)

    def forward(self, idx: Tensor) -> Tensor:
        """idx (B, block_size) token ids -> logits (B, V) for the token that follows each context."""
        return self.output_layer(self.dropout(self.hidden_activations(idx)))

    def hidden_activations(self, idx: Tensor) -> Tensor:
        """The tanh outputs (B, hidden), before dropout: near ±1 means saturated (no gradient)."""
        idx = _checked_batch(self, idx)                          # (B, block_size) int64
        emb = self.embedding(idx)                                # (B, block_size, emb_dim)
        x = emb.view(len(idx), -1)                               # (B, block_size * emb_dim)
        return torch.tanh(self.norm(self.hidden_layer(x)))       # (B, hidden)

    @torch.no_grad()
    def generate(self, context: list[int], max_new_tokens: int, *, stop_id: int | None = None,
                 temperature: float = 1.0, generator: torch.Generator | None = None) -> list[int]:
        """Sample up to `max_new_tokens` tokens, one at a time, each from the last `block_size`.

        `context` needs at least `block_size` ids (left-pad with the boundary id). Sampling stops
        early when `stop_id` is drawn; the stop token is not returned. `temperature` divides the
        logits: below 1 is greedier, above 1 more random. The model is in eval mode while sampling
        (dropout off, BatchNorm's running statistics) and back in its previous mode afterwards.

        >>> model = MLPLanguageModel(27, block_size=3)
        >>> out = model.generate([0, 0, 0], 5, generator=torch.Generator().manual_seed(0))
        >>> len(out), all(0 <= t < 27 for t in out)
        (5, True)
        """
        window = _checked_context(self, context, max_new_tokens, stop_id, temperature)  # the last block_size ids
        device = self.output_layer.weight.device
        was_training = self.training
        self.eval()
        new: list[int] = []
        try:
            for _ in range(max_new_tokens):
                logits = self(torch.tensor([window], device=device))[0]   # (V,)
                probs = torch.softmax(logits.float() / temperature, dim=0)
                if generator is not None:
                    probs = probs.to(generator.device)
                token = int(torch.multinomial(probs, 1, generator=generator))
                if token == stop_id:
                    break
                new.append(token)
                window = window[1:] + [token]                      # slide: drop the oldest token
        finally:
            self.train(was_training)
        return new

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, block_size={self.block_size}"


def check_contexts(idx: Tensor, vocab_size: int, block_size: int) -> Tensor:
    """`idx` as a (B, block_size) int64 tensor of ids in 0..vocab_size-1, or a clear error.

    One min/max over the batch checks the range (a single device sync on a GPU), instead of letting
    an out-of-range id fail inside the embedding look-up.

    >>> check_contexts(torch.tensor([[1, 2]], dtype=torch.int32), vocab_size=3, block_size=2)
    tensor([[1, 2]])
    >>> check_contexts(torch.tensor([[1, 3]]), vocab_size=3, block_size=2)
    Traceback (most recent call last):
    ...
    ValueError: token id 3 is out of range for a vocabulary of 3 (ids 0..2)
    """
    if not isinstance(idx, Tensor):
        raise TypeError(f"idx must be a torch.Tensor of token ids with shape (B, {block_size}), got "
                        f"{type(idx).__name__}; build one with torch.tensor(contexts)")
    if idx.dtype.is_floating_point or idx.dtype.is_complex or idx.dtype == torch.bool:
        raise TypeError(f"idx must hold integer token ids (torch.long), got dtype {idx.dtype}; "
                        f"pass token ids, not embeddings or probabilities")
    if idx.dim() != 2:
        raise ValueError(f"idx must be 2-D, (B, block_size={block_size}): one row of token ids per context, "
                         f"got shape {tuple(idx.shape)}")
    if idx.shape[1] != block_size:
        raise ValueError(f"got contexts of length {idx.shape[1]}, but this model reads exactly "
                         f"block_size={block_size} tokens; pad shorter contexts on the left with the "
                         f"boundary id, or keep the last {block_size}")
    if idx.shape[0] == 0:
        raise ValueError("idx is an empty batch (0 contexts); pass at least one context")
    low, high = torch.stack(torch.aminmax(idx)).tolist()
    if low < 0 or high >= vocab_size:
        raise ValueError(f"token id {low if low < 0 else high} is out of range for a vocabulary of "
                         f"{vocab_size} (ids 0..{vocab_size - 1})")
    return idx.long()


def _check_model_args(vocab_size, block_size, emb_dim, hidden, norm, dropout) -> None:
    """The arguments of `MLPLanguageModel`, or an error that names the wrong one."""
    _check_int("vocab_size", vocab_size, minimum=2)
    _check_int("block_size", block_size, minimum=1)
    _check_int("emb_dim", emb_dim, minimum=1)
    _check_int("hidden", hidden, minimum=1)
    if not isinstance(norm, str) or norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout is the probability of zeroing a hidden unit and must be in [0, 1), "
                         f"got {dropout!r}")


def _checked_batch(model: MLPLanguageModel, idx) -> Tensor:
    """`idx` as (B, block_size) int64 ids for `model`; BatchNorm in training also needs B >= 2."""
    idx = check_contexts(idx, model.vocab_size, model.block_size)
    if model.training and model.norm_name == "batch" and len(idx) == 1:
        raise ValueError("norm='batch' in training mode needs at least 2 contexts per batch to estimate "
                         "a variance, got 1; call model.eval() to use the running statistics instead")
    return idx


def _checked_context(model: MLPLanguageModel, context, max_new_tokens, stop_id, temperature) -> list[int]:
    """The last block_size ids of `context`, after checking every argument of `generate`."""
    if isinstance(context, (str, bytes)):
        raise TypeError(f"context must be a list of int token ids, got the {type(context).__name__} "
                        f"{context!r:.40}; encode it first")
    try:
        context = [operator.index(t) for t in context]
    except TypeError:
        raise TypeError(f"context must be a list of int token ids, got {context!r:.80}") from None
    T, V = model.block_size, model.vocab_size
    if len(context) < T:
        raise ValueError(f"generate needs at least block_size={T} context tokens, got {len(context)}; "
                         f"pad on the left with the boundary id, e.g. [0] * {T - len(context)} + context")
    bad = [t for t in context if not 0 <= t < V]
    if bad:
        raise ValueError(f"context: token id {bad[0]} is out of range for a vocabulary of {V} (ids 0..{V - 1})")
    _check_int("max_new_tokens", max_new_tokens, minimum=0)
    if stop_id is not None and (isinstance(stop_id, bool) or not isinstance(stop_id, int)
                                or not 0 <= stop_id < V):
        raise ValueError(f"stop_id must be None or a token id in 0..{V - 1}, got {stop_id!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a number > 0 (1.0 samples the model's own distribution, "
                         f"smaller is greedier), got {temperature!r}")
    return context[-T:]


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _checked_targets(logits: Tensor, targets: Tensor) -> Tensor:
    """`targets` as int64 after checking them and `logits` (finite scores, one row per target);
    errors say what was expected."""
    if not isinstance(logits, Tensor) or not logits.dtype.is_floating_point:
        got = f"dtype {logits.dtype}" if isinstance(logits, Tensor) else type(logits).__name__
        raise TypeError(f"logits must be a float tensor (B, V), got {got}")
    if logits.dim() != 2:
        raise ValueError(f"logits must be 2-D, (B, V): one row of scores per example, "
                         f"got shape {tuple(logits.shape)}")
    if logits.numel() and not torch.isfinite(logits).all():
        bad = logits[~torch.isfinite(logits)][0].item()
        raise ValueError(f"logits must be finite numbers, got {bad} (the loss and its gradient would be NaN); "
                         f"look for an overflow or a division by zero upstream")
    if not isinstance(targets, Tensor) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor of token ids (B,), got "
                        f"{targets.dtype if isinstance(targets, Tensor) else type(targets).__name__}")
    if targets.shape != logits.shape[:1]:
        raise ValueError(f"targets must have shape (B,) = ({logits.shape[0]},) to match logits "
                         f"{tuple(logits.shape)}, got {tuple(targets.shape)}")
    if len(targets) == 0:
        raise ValueError("logits and targets hold an empty batch (0 examples)")
    low, high = torch.stack(torch.aminmax(targets)).tolist()
    if low < 0 or high >= logits.shape[1]:
        raise ValueError(f"target {low if low < 0 else high} is out of range for {logits.shape[1]} logits "
                         f"(ids 0..{logits.shape[1] - 1})")
    return targets.long()
