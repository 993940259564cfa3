"""Attention, from one decoder looking back at its encoder to multi-head self-attention (chapter 4;
chapter 5's GPT is built on it).

The module reads in the order of the chapter:

- `softmax`: exp(x − max x) / Σ exp(x − max x), finite for logits of any size; a row whose every
  entry is −inf (nothing may be attended to) gives zeros instead of 0/0 = NaN.
- `AdditiveAttention`: Bahdanau et al. (2015)'s score vᵀ tanh(W_q s + W_k h), the attention of the
  chapter's seq2seq decoder (lmbook/seq2seq.py).
- `causal_mask`, `padding_mask`: boolean masks in which True means *may attend*, the convention of
  ``F.scaled_dot_product_attention`` (``nn.MultiheadAttention`` uses the opposite one).
- `scaled_dot_product_attention`: softmax(QKᵀ/√d_k + mask)·V with the signature of
  ``F.scaled_dot_product_attention``, plus ``return_weights`` to look at the weights.
- `MultiHeadAttention`: project, split into heads, attend, concatenate, project.
- `sinusoidal_positions`: the fixed position encodings of Vaswani et al. (2017).

Conventions, those of torch: a boolean mask is True where a query may attend to a key; a float mask
is *added* to the scores (0 = attend, −inf = do not); both broadcast against the scores
(..., T_q, T_k). ``is_causal=True`` lets query i see keys 0..i (top-left aligned when T_q ≠ T_k).
A query that may attend to nothing gets the output 0 and weights 0, never NaN; torch's own
``F.scaled_dot_product_attention`` does the same (tests/test_attention.py checks both).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x − max x) / Σ exp(x − max x) along `dim`; rows that are all −inf give all zeros.

    Subtracting the row's maximum changes nothing mathematically (it cancels between numerator and
    denominator) but keeps exp() ≤ 1, so logits of 1000 do not overflow:
    ``softmax(torch.tensor([1000., 1000., 0.]))`` → ``[0.5, 0.5, 0.0]``.
    """
    x_max = x.amax(dim=dim, keepdim=True)
    x_max = torch.where(x_max == -math.inf, torch.zeros_like(x_max), x_max)  # an all −inf row: subtract 0
    e = torch.exp(x - x_max)
    total = e.sum(dim=dim, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))  # an all −inf row: 0 / 1 = 0


class AdditiveAttention(nn.Module):
    """Bahdanau attention: score(s, h_j) = vᵀ tanh(W_q s + W_k h_j), weights = softmax over j.

    forward(query (B, d_query), keys (B, T, d_key), mask (B, T) bool, True = a real position)
    -> (context (B, d_key), weights (B, T)): the context is Σ_j weight_j · h_j, the keys being also
    the values, as in the paper.
    """

    def __init__(self, d_query: int, d_key: int, d_attn: int):
        super().__init__()
        _check_sizes(d_query=d_query, d_key=d_key, d_attn=d_attn)
        self.W_q = nn.Linear(d_query, d_attn, bias=False)
        self.W_k = nn.Linear(d_key, d_attn, bias=True)
        self.v = nn.Linear(d_attn, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """W_k h_j for every encoder position: (B, T, d_key) -> (B, T, d_attn). It does not depend
        on the decoder step, so the decoder computes it once per sequence and passes it back in."""
        return self.W_k(keys)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor | None = None,
                projected_keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_additive_inputs(self, query, keys, mask, projected_keys)
        pk = self.project_keys(keys) if projected_keys is None else projected_keys  # (B, T, d_attn)
        scores = self.v(torch.tanh(self.W_q(query)[:, None, :] + pk)).squeeze(-1)  # (B, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = softmax(scores, dim=-1)  # (B, T)
        context = torch.bmm(weights[:, None, :], keys).squeeze(1)  # (B, 1, T) @ (B, T, d_key) -> (B, d_key)
        return context, weights


def causal_mask(T: int, device: torch.device | str | None = None) -> Tensor:
    """Bool (T, T), True on and below the diagonal: position i may attend to positions 0..i.

    ``causal_mask(3)`` → ``[[T, F, F], [T, T, F], [T, T, T]]``.
    """
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"T must be an int >= 1, got {T!r}")
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def padding_mask(lengths: Tensor, T: int) -> Tensor:
    """Bool (B, T), True at the first lengths[b] positions of row b (the real tokens), False on
    the padding after them. Broadcast it over the queries as ``mask[:, None, :]`` (B, 1, T).

    ``padding_mask(torch.tensor([2, 3]), 4)`` → ``[[T, T, F, F], [T, T, T, F]]``.
    """
    if not isinstance(lengths, Tensor):
        raise TypeError(f"lengths must be a 1-D integer tensor (B,), got {type(lengths).__name__}")
    _check_sizes(T=T)
    if lengths.dim() != 1 or lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise ValueError(f"lengths must be a 1-D integer tensor (B,), got {lengths.dtype} {tuple(lengths.shape)}")
    if len(lengths) and (lengths.min() < 0 or lengths.max() > T):
        raise ValueError(f"lengths must lie in 0..T={T}, got {lengths.min().item()}..{lengths.max().item()}")
    return torch.arange(T, device=lengths.device)[None, :] < lengths[:, None]


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                                 is_causal: bool = False, dropout_p: float = 0.0, scale: float | None = None,
                                 return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """softmax(q kᵀ · scale + mask) v, with the arguments of ``F.scaled_dot_product_attention``.

    q (..., T_q, d), k (..., T_k, d), v (..., T_k, d_v) -> out (..., T_q, d_v); the leading
    dimensions broadcast. scale defaults to 1/√d. attn_mask broadcasts to (..., T_q, T_k): bool
    (True = may attend) or float (added to the scores). is_causal masks key j > query i; it cannot
    be combined with attn_mask (as in torch): pass ``causal_mask(T) & your_mask`` instead.
    dropout_p drops attention weights (always, as torch does: pass 0.0 in evaluation).
    With return_weights=True, returns (out, weights (..., T_q, T_k)), the weights before dropout.
    A query row that may attend to nothing gets out = 0 and weights = 0.
    """
    _check_attention_inputs(q, k, v, attn_mask, is_causal, dropout_p, scale)
    d, T_q, T_k = q.shape[-1], q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, d) @ (..., d, T_k) -> (..., T_q, T_k)
    if is_causal:
        attn_mask = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril()  # key j <= query i
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        scores = scores + attn_mask
    weights = softmax(scores, dim=-1)  # (..., T_q, T_k), each row sums to 1 (or is all 0)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    out = dropped @ v  # (..., T_q, T_k) @ (..., T_k, d_v) -> (..., T_q, d_v)
    return (out, weights) if return_weights else out


def _check_attention_inputs(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None, is_causal: bool,
                            dropout_p: float, scale: float | None = None) -> None:
    """Clear errors for the mistakes torch would report deep inside a matmul, or not at all."""
    for name, t in {"q": q, "k": k, "v": v}.items():
        if not isinstance(t, Tensor) or not t.is_floating_point():
            raise TypeError(f"{name} must be a float tensor, got {getattr(t, 'dtype', type(t).__name__)}")
        if t.dim() < 2:
            raise ValueError(f"{name} must have at least 2 dimensions (..., T, d), got shape {tuple(t.shape)}")
    if not q.dtype == k.dtype == v.dtype:
        raise TypeError(f"q, k, v must have one dtype, got {q.dtype}, {k.dtype}, {v.dtype}")
    if q.shape[-1] != k.shape[-1]:
        raise ValueError(f"q and k must have the same head dimension (last axis) to be compared: "
                         f"q {tuple(q.shape)} has {q.shape[-1]}, k {tuple(k.shape)} has {k.shape[-1]}")
    if k.shape[-2] != v.shape[-2]:
        raise ValueError(f"k and v must have one row per key (same T_k, second-to-last axis): "
                         f"k {tuple(k.shape)}, v {tuple(v.shape)}")
    try:
        batch = torch.broadcast_shapes(q.shape[:-2], k.shape[:-2], v.shape[:-2])
    except RuntimeError:
        raise ValueError(f"the leading (batch, head) dimensions of q {tuple(q.shape)}, k {tuple(k.shape)} and "
                         f"v {tuple(v.shape)} do not broadcast") from None
    if isinstance(dropout_p, bool) or not isinstance(dropout_p, (int, float)) or not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must lie in [0, 1), got {dropout_p!r}")
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal must be True or False, got {is_causal!r}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, (int, float))
                              or not math.isfinite(scale)):
        raise ValueError(f"scale must be a finite number or None (1/√d), got {scale!r}")
    if attn_mask is None:
        return
    if is_causal:
        raise ValueError("pass either attn_mask or is_causal=True, not both (as in torch); to combine a "
                         "causal mask with another mask, pass attn_mask=causal_mask(T) & other_mask")
    if not isinstance(attn_mask, Tensor) or not (attn_mask.dtype == torch.bool or attn_mask.is_floating_point()):
        raise TypeError(f"attn_mask must be a bool tensor (True = attend) or a float tensor added to the "
                        f"scores, got {getattr(attn_mask, 'dtype', type(attn_mask).__name__)}")
    scores_shape = (*batch, q.shape[-2], k.shape[-2])
    try:
        ok = torch.broadcast_shapes(attn_mask.shape, scores_shape) == scores_shape
    except RuntimeError:
        ok = False
    if not ok:
        raise ValueError(f"attn_mask of shape {tuple(attn_mask.shape)} does not broadcast to the scores "
                         f"(..., T_q, T_k) = {scores_shape}; e.g. use (T_q, T_k) = {scores_shape[-2:]} "
                         f"for every sequence, or (B, 1, T_q, T_k) per sequence")


class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch first: query (B, T_q, d_model), key and value (B, T_k, d_model).

    Project q, k, v with three Linear layers, split d_model into n_heads heads of d_head =
    d_model / n_heads, run scaled dot-product attention on every head at once, concatenate the
    heads and project with out_proj. attn_mask (bool, True = attend; or float, added) is (T_q, T_k),
    (B, T_q, T_k) or (B, n_heads, T_q, T_k). Self-attention is ``mha(x, x, x)``.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        _check_mha_args(d_model, n_heads, dropout)
        self.d_model, self.n_heads, self.d_head, self.dropout = d_model, n_heads, d_model // n_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, n_heads, T, d_head)."""
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                is_causal: bool = False, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        _check_mha_inputs(self, query, key, value)
        if attn_mask is not None and attn_mask.dim() == 3:
            attn_mask = attn_mask[:, None]  # (B, T_q, T_k) -> (B, 1, T_q, T_k): the same for every head
        q = self.split_heads(self.q_proj(query))  # (B, n_heads, T_q, d_head)
        k = self.split_heads(self.k_proj(key))  # (B, n_heads, T_k, d_head)
        v = self.split_heads(self.v_proj(value))  # (B, n_heads, T_k, d_head)
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                                    dropout_p=self.dropout if self.training else 0.0,
                                                    return_weights=True)  # (B, n_heads, T_q, d_head)
        B, _, T_q, _ = out.shape
        out = out.transpose(1, 2).reshape(B, T_q, self.d_model)  # concatenate the heads: (B, T_q, d_model)
        out = self.out_proj(out)
        return (out, weights) if return_weights else out


def sinusoidal_positions(T: int, d: int) -> Tensor:
    """The encodings of Vaswani et al. (2017), (T, d) float32: for position p and i = 0, 1, …,
    PE[p, 2i] = sin(p / 10000^(2i/d)) and PE[p, 2i+1] = cos(p / 10000^(2i/d)).

    Each pair of columns is a clock turning at its own speed, from one radian per position down to
    one turn in 2π·10000 positions, so nearby positions get similar vectors and PE[p + k] is a fixed
    rotation of PE[p] for every p.
    """
    _check_sizes(T=T, d=d)
    position = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1)
    frequency = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (ceil(d/2),)
    angle = position * frequency  # (T, ceil(d/2))
    pe = torch.zeros(T, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d // 2])
    return pe.float()


# ---- input checks (clear errors instead of failures deep inside torch) ----------------------------------

def _check_sizes(**sizes) -> None:
    """Every size must be an int >= 1."""
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


def _check_float_tensor(name: str, t, dims: int, layout: str) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{name} must be a float torch.Tensor {layout}, got {type(t).__name__}")
    if not t.is_floating_point():
        raise TypeError(f"{name} must be a float tensor {layout} (embeddings or hidden states), got dtype "
                        f"{t.dtype}; token ids go through an nn.Embedding first")
    if t.dim() != dims:
        raise ValueError(f"{name} must be {dims}-D, {layout}, got shape {tuple(t.shape)}")


def _check_additive_inputs(attn: AdditiveAttention, query, keys, mask, projected_keys) -> None:
    """The arguments of `AdditiveAttention.forward`, or an error that names the wrong one."""
    _check_float_tensor("query", query, 2, "(B, d_query)")
    _check_float_tensor("keys", keys, 3, "(B, T, d_key)")
    if query.shape[0] != keys.shape[0] or query.shape[1] != attn.W_q.in_features \
            or keys.shape[2] != attn.W_k.in_features:
        raise ValueError(f"AdditiveAttention expects query (B, d_query={attn.W_q.in_features}) and keys "
                         f"(B, T, d_key={attn.W_k.in_features}); got {tuple(query.shape)} and {tuple(keys.shape)}")
    for name, t in (("query", query), ("keys", keys)):
        if t.dtype != attn.W_q.weight.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but the layer's weights are {attn.W_q.weight.dtype}; "
                            f"convert one of them")
    if keys.shape[1] == 0:
        raise ValueError(f"keys is empty (shape {tuple(keys.shape)}): there is nothing to attend to")
    if mask is not None and (not isinstance(mask, Tensor) or mask.dtype != torch.bool or mask.shape != keys.shape[:2]):
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
        raise ValueError(f"mask must be a bool tensor (B, T) = {tuple(keys.shape[:2])}, True at real "
                         f"positions; got {got}")
    if projected_keys is not None:
        expected = (*keys.shape[:2], attn.W_k.out_features)
        if not isinstance(projected_keys, Tensor) or tuple(projected_keys.shape) != expected:
            got = tuple(projected_keys.shape) if isinstance(projected_keys, Tensor) else type(projected_keys).__name__
            raise ValueError(f"projected_keys must be project_keys(keys), of shape {expected}, got {got}")


def _check_mha_args(d_model, n_heads, dropout) -> None:
    """The arguments of `MultiHeadAttention`, or an error that names the wrong one."""
    if isinstance(n_heads, bool) or not isinstance(n_heads, int) or n_heads < 1:
        raise ValueError(f"n_heads must be an int >= 1, got {n_heads!r}")
    if isinstance(d_model, bool) or not isinstance(d_model, int) or d_model < 1 or d_model % n_heads:
        raise ValueError(f"d_model must be a positive multiple of n_heads={n_heads} (each head gets "
                         f"d_model / n_heads dimensions), got d_model={d_model!r}")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must lie in [0, 1), got {dropout!r}")


def _check_mha_inputs(mha: MultiHeadAttention, query, key, value) -> None:
    """query (B, T_q, d_model), key and value (B, T_k, d_model), float, or an error naming the wrong one."""
    for name, t in {"query": query, "key": key, "value": value}.items():
        _check_float_tensor(name, t, 3, f"(B, T, d_model={mha.d_model})")
        if t.shape[-1] != mha.d_model:
            raise ValueError(f"{name} must be (B, T, d_model={mha.d_model}), got {tuple(t.shape)}")
        if t.dtype != mha.q_proj.weight.dtype:
            raise TypeError(f"{name} has dtype {t.dtype} but the layer's weights are {mha.q_proj.weight.dtype}; "
                            f"convert one of them")
    if key.shape[:2] != value.shape[:2] or query.shape[0] != key.shape[0]:
        raise ValueError(f"query (B, T_q, d), key and value (B, T_k, d) must share B, and key and value "
                         f"T_k; got {tuple(query.shape)}, {tuple(key.shape)}, {tuple(value.shape)}")
