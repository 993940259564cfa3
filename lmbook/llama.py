"""A Llama-style decoder: what changed in the Transformer block after GPT-2 (chapter 9).

Llama (Touvron et al. 2023), Mistral, Qwen and most open models since keep chapter 5's decoder and
change a handful of pieces, each a few lines here:

- `RMSNorm`: normalise by the root mean square only, x / √(mean(x²) + ε) · g (no mean, no bias);
- `SwiGLU`: a gated MLP, W_down (SiLU(x W_gate) ⊙ x W_up), whose hidden width 8d/3 keeps the
  parameters of chapter 5's 4d GELU MLP (the "2/3 rule");
- rotary position embeddings (`rope_angles`, `apply_rope`): no position vector is added to the
  tokens; each query and key is rotated, pair of dimensions by pair, by an angle proportional to its
  position, so that q·k depends on the positions only through their offset;
- grouped-query attention (`Attention` with ``n_kv_head`` < ``n_head``): groups of query heads share
  one key/value head, which shrinks the KV cache of generation by n_head / n_kv_head;
- no biases, and an output layer of its own (untied) or the token embedding (tied).

`LlamaConfig`'s defaults are Llama's. Its switches `norm`, `mlp`, `positions`, `bias`,
`tie_embeddings` and `n_kv_head` exist for the chapter's ablations, which walk from chapter 5's GPT
to this model one change at a time: ``norm="layer", mlp="gelu", positions="learned", bias=True,
tie_embeddings=True`` is chapter 5's GPT, weight for weight (tests/test_llama.py builds both from
one seed: the same parameter names, the same weights, the same logits). Everything the two models
share is chapter 5's code: the GELU `MLP`, the input checks, `generate`, the initialisation; and
``forward(idx, cache=...)`` reads and fills chapter 8's KV cache as the GPT does, so chapter 8's
generation code (lmbook.generate) runs this model unchanged.

The rotary layout is "rotate-half" (dimension i is paired with i + d_head/2), that of Hugging Face's
``LlamaForCausalLM``, so `to_hf` / `from_hf` copy weights without permuting them; Meta's original
code pairs neighbours (2i, 2i+1), `apply_rope_interleaved`, and `interleaved_to_half` is the
permutation between the two. Also here: `param_count` and `flops_per_token` by formula (equal to
``numel`` and to torch's FLOP counter), `kv_cache_bytes`, and `save_llama` / `load_llama`
(safetensors weights + JSON config).

Bad input is a clear error: n_head not a multiple of n_kv_head, an odd head size (RoPE rotates
pairs), a sequence longer than ``block_size`` (rotary positions have no table, so the message says
how to allow longer ones).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmbook.gpt import GPT, IGNORE_INDEX, MLP, _check_inputs

NORMS, MLPS, POSITIONS = ("rms", "layer"), ("swiglu", "gelu"), ("rope", "learned", "sinusoidal")


@dataclass
class LlamaConfig:
    """The shape of a Llama-style model; the defaults are Llama's choices.

    vocab_size V, block_size (the longest sequence forward accepts), n_layer L, n_head query heads
    of width n_embd / n_head, n_embd d; n_kv_head key/value heads (None: n_head, multi-head
    attention; fewer: grouped-query; 1: multi-query); mlp_hidden (None: 4d for "gelu", round(8d/3)
    for "swiglu"); rope_base θ (the slowest pair turns at θ^(-(d_head-2)/d_head) radians per
    position); norm_eps ε; dropout. The switches for the ablations: norm "rms" | "layer", mlp
    "swiglu" | "gelu", positions "rope" | "learned" | "sinusoidal", bias, tie_embeddings.

    >>> LlamaConfig(vocab_size=65, block_size=64, n_layer=2, n_head=6, n_embd=48, n_kv_head=4)
    Traceback (most recent call last):
    ...
    ValueError: n_head=6 must be a multiple of n_kv_head=4 (each key/value head serves n_head / n_kv_head query heads); try n_kv_head in [1, 2, 3, 6]
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    n_kv_head: int | None = None
    mlp_hidden: int | None = None
    rope_base: float = 10000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    tie_embeddings: bool = False
    norm: str = "rms"
    mlp: str = "swiglu"
    positions: str = "rope"
    bias: bool = False
    attention: str = "sdpa"

    def __post_init__(self):
        _check_config(self)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def hidden_size(self) -> int:
        """The MLP's hidden width: mlp_hidden, or 4d (GELU), or round(8d/3) (SwiGLU: the 2/3 rule)."""
        if self.mlp_hidden is not None:
            return self.mlp_hidden
        return 4 * self.n_embd if self.mlp == "gelu" else round(8 * self.n_embd / 3)

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> LlamaConfig:
        """The inverse of `to_dict`; an unknown or missing key is a ValueError that names it."""
        if not isinstance(d, dict):
            raise TypeError(f"LlamaConfig.from_dict needs a dict, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown LlamaConfig keys {unknown}; allowed: {names}")
        try:
            return cls(**d)
        except TypeError as e:
            if "missing" in str(e):
                raise ValueError(f"LlamaConfig.from_dict: {e}; required: {names[:5]}") from None
            raise


class RMSNorm(nn.Module):
    """x / √(mean(x²) + ε) · g over the last dimension: LayerNorm without subtracting the mean and
    without a bias (Zhang & Sennrich 2019). Computed in at least float32, then cast back to x's dtype."""

    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))                      # the gain g, (d,)

    def forward(self, x: Tensor) -> Tensor:
        xf = x.to(torch.promote_types(x.dtype, torch.float32))          # bf16 -> fp32; fp64 stays
        inv_rms = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + self.eps)  # 1 / rms, (..., 1)
        return (xf * inv_rms).to(x.dtype) * self.weight


class SwiGLU(nn.Module):
    """The gated MLP of Shazeer (2020): W_down (SiLU(x W_gate) ⊙ x W_up), d -> h -> d.

    Three matrices instead of two, so h = 8d/3 (2/3 of the GELU MLP's 4d) keeps the parameter
    count: 3·d·(8d/3) = 8d² = 2·d·4d.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        d, h = config.n_embd, config.hidden_size
        self.c_gate = nn.Linear(d, h, bias=config.bias)                 # W_gate
        self.c_up = nn.Linear(d, h, bias=config.bias)                   # W_up
        self.c_proj = nn.Linear(h, d, bias=config.bias)                 # W_down
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(F.silu(self.c_gate(x)) * self.c_up(x)))  # (B, T, d) -> (B, T, h) -> (B, T, d)


def rope_angles(T: int, head_size: int, base: float = 10000.0, start: int = 0,
                device: torch.device | str | None = None) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotary angles for positions start .. start+T-1: two (T, head_size) float64
    tensors in the rotate-half layout. Pair i (dimensions i and i + head_size/2) turns by
    θ_i = base^(-2i/head_size) radians per position, so position p's angle is p·θ_i.

    >>> cos, sin = rope_angles(3, 4, base=100.0)
    >>> [round(a, 4) for a in torch.atan2(sin, cos)[2].tolist()]  # position 2: 2·θ_i for θ = (1, 0.1)
    [2.0, 0.2, 2.0, 0.2]
    """
    _check_rope_args(T, head_size, base, start)
    return rope_angles_at(torch.arange(start, start + T, device=device), head_size, base)


def rope_angles_at(positions: Tensor, head_size: int, base: float = 10000.0) -> tuple[Tensor, Tensor]:
    """cos and sin of the rotary angles at any positions (..., T) -> two (..., T, head_size) float64
    tensors: `rope_angles` for positions that are not 0..T-1 (a KV cache's next tokens, chapter 8)."""
    theta = base ** (-torch.arange(0, head_size, 2, dtype=torch.float64, device=positions.device) / head_size)
    angles = positions.to(torch.float64)[..., None] * theta              # (..., T, hs/2)
    angles = torch.cat([angles, angles], dim=-1)                         # (..., T, hs): dims i and i + hs/2 share one
    return angles.cos(), angles.sin()


def rotate_half(x: Tensor) -> Tensor:
    """(x_1, x_2) -> (−x_2, x_1), with x_1 and x_2 the two halves of the last dimension."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([-x2, x1], dim=-1)


def apply_rope(x: Tensor, cos: Tensor, sin: Tensor) -> Tensor:
    """Rotate every pair (x_i, x_{i+hs/2}) of x (..., T, hs) by its position's angle:
    (x_i cos − x_{i+hs/2} sin, x_{i+hs/2} cos + x_i sin), all pairs at once. cos, sin: (T, hs)."""
    return x * cos + rotate_half(x) * sin


def apply_rope_interleaved(x: Tensor, base: float = 10000.0, start: int = 0) -> Tensor:
    """RoPE in the layout of the RoFormer paper and Meta's Llama code: pair i is (x_2i, x_2i+1),
    turning by θ_i = base^(-2i/hs) per position. x (..., T, hs) -> the same shape. Equal to
    `apply_rope` on x[..., interleaved_to_half(hs)], permuted back (tests/test_llama.py)."""
    T, hs = x.shape[-2], x.shape[-1]
    cos, sin = rope_angles(T, hs, base, start, device=x.device)
    cos, sin = cos[:, : hs // 2].to(x.dtype), sin[:, : hs // 2].to(x.dtype)  # (T, hs/2): one angle per pair
    even, odd = x[..., 0::2], x[..., 1::2]                                     # (..., T, hs/2) each
    out = torch.stack([even * cos - odd * sin, odd * cos + even * sin], dim=-1)  # (..., T, hs/2, 2)
    return out.flatten(-2)


def interleaved_to_half(head_size: int) -> Tensor:
    """The permutation that takes the interleaved layout to rotate-half: [0, 2, 4, …, 1, 3, 5, …].
    x[..., perm] puts the pair (2i, 2i+1) at (i, i + hs/2). Applied to the rows of each head of W_Q
    and W_K, it converts Meta's Llama weights to Hugging Face's layout."""
    _check_rope_args(1, head_size, 10000.0, 0)
    return torch.cat([torch.arange(0, head_size, 2), torch.arange(1, head_size, 2)])


class Attention(nn.Module):
    """Causal self-attention with n_head query heads and n_kv_head key/value heads (grouped-query
    attention: query head j reads key/value head j // (n_head / n_kv_head)), rotary positions.

    One Linear makes the queries (n_head · hs), keys and values (n_kv_head · hs each); the keys and
    values are what a generator caches (chapter 8's KV cache, ``cache``), so fewer key/value heads
    means a smaller cache.
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.n_head, self.n_kv_head, self.hs = config.n_head, config.kv_heads, config.head_size
        self.attention, self.dropout = config.attention, config.dropout
        qkv = (self.n_head + 2 * self.n_kv_head) * self.hs                  # query, key and value columns
        self.c_attn = nn.Linear(config.n_embd, qkv, bias=config.bias)         # W_Q, W_K, W_V
        self.c_proj = nn.Linear(self.n_head * self.hs, config.n_embd, bias=config.bias)  # W_O
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None, cache=None) -> Tensor:
        B, T, C = x.shape                                                    # (B, T, d)
        q, k, v = self.c_attn(x).split([self.n_head * self.hs, self.n_kv_head * self.hs,
                                        self.n_kv_head * self.hs], dim=2)
        q = q.view(B, T, self.n_head, self.hs).transpose(1, 2)              # (B, nh, T, hs)
        k = k.view(B, T, self.n_kv_head, self.hs).transpose(1, 2)           # (B, nkv, T, hs)
        v = v.view(B, T, self.n_kv_head, self.hs).transpose(1, 2)           # (B, nkv, T, hs)
        if rope is not None:                                                 # rotate queries and keys
            cos, sin = (t.to(q.dtype) for t in rope)                         # (autocast: q may be bf16)
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        mask, causal = None, True
        if cache is not None:  # generation (chapter 8): the new tokens also attend to the cached ones
            k, v, mask = cache.update(k, v)                                  # 2 × (B, nkv, T_past + T, hs)
            causal = False                                                   # the mask says who sees whom
        dropout_p = self.dropout if self.training else 0.0
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout_p,
                                               enable_gqa=self.n_kv_head != self.n_head)
        else:
            from lmbook import attention  # chapter 4's code, each key/value head repeated for its group
            group = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)  # (B, nh, T, hs)
            y = attention.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                       dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.hs)  # concatenate heads: (B, T, d)
        return self.resid_dropout(self.c_proj(y))


class Block(nn.Module):
    """Chapter 5's pre-norm block with the new pieces: x + attn(norm_1(x), rope), x + mlp(norm_2(x))."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = Attention(config)
        self.ln_2 = make_norm(config)
        self.mlp = SwiGLU(config) if config.mlp == "swiglu" else MLP(config)

    def forward(self, x: Tensor, rope: tuple[Tensor, Tensor] | None = None, cache=None) -> Tensor:
        x = x + self.attn(self.ln_1(x), rope, cache)
        x = x + self.mlp(self.ln_2(x))
        return x


def make_norm(config: LlamaConfig) -> nn.Module:
    """RMSNorm (Llama) or chapter 5's LayerNorm, with the model's epsilon."""
    if config.norm == "rms":
        return RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


class Llama(nn.Module):
    """Token embedding, n_layer blocks, a final norm and an output layer; positions by rotation.

        h_0 = wte[idx]                                       (B, T, d)   (+ a position vector for
        h_l = Block_l(h_{l-1}, cos/sin of the positions)     (B, T, d)    "learned"/"sinusoidal")
        logits = norm_f(h_L) @ W_outᵀ                        (B, T, V)   (W_out = wte if tied)

    Initialisation is chapter 5's (N(0, 0.02²), the two projections into the residual stream scaled
    by 1/√(2L)), so the ablations compare architectures, not initialisations.

    >>> model = Llama(LlamaConfig(vocab_size=65, block_size=8, n_layer=2, n_head=4, n_embd=16, n_kv_head=2))
    >>> logits, loss = model(torch.zeros(3, 5, dtype=torch.long))
    >>> logits.shape, loss
    (torch.Size([3, 5, 65]), None)
    """

    def __init__(self, config: LlamaConfig):
        super().__init__()
        if not isinstance(config, LlamaConfig):
            raise TypeError(f"Llama needs a LlamaConfig, got {type(config).__name__}; "
                            f"build one with LlamaConfig(vocab_size=..., block_size=..., ...)")
        self.config = config
        self.check_inputs = True  # as in chapter 5's GPT: a trainer that checked its data switches it off
        self.transformer = nn.ModuleDict(dict(wte=nn.Embedding(config.vocab_size, config.n_embd)))  # (V, d)
        if config.positions == "learned":                             # chapter 5: a table, (T, d)
            self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd)
        elif config.positions == "sinusoidal":                        # chapter 4: fixed, at the embeddings' scale
            from lmbook.attention import sinusoidal_positions
            pe = sinusoidal_positions(config.block_size, config.n_embd)   # rms 1/√2 over a full turn
            self.register_buffer("pe", pe * 0.02 * math.sqrt(2), persistent=False)
        self.transformer.drop = nn.Dropout(config.dropout)
        self.transformer.h = nn.ModuleList([Block(config) for _ in range(config.n_layer)])
        self.transformer.ln_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.transformer.wte.weight         # one (V, d) matrix
        self.apply(GPT._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    def forward(self, idx: Tensor, targets: Tensor | None = None, cache=None) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) token ids, T <= block_size -> (logits (B, T, V), mean cross-entropy or None).
        cache: chapter 8's KV cache (lmbook.generate.KVCache), as for chapter 5's GPT."""
        if self.check_inputs:
            _check_llama_inputs(idx, targets, self.config)
        B, T = idx.shape
        if cache is None:
            pos = torch.arange(T, device=idx.device)                         # (T,) positions 0..T-1
        else:
            pos = cache.next_positions(T, idx.device)                        # after the cached tokens: (T,) or (B, T)
        x = self.transformer.wte(idx)                                        # (B, T, d)
        rope = None
        if self.config.positions == "rope":
            cos, sin = rope_angles_at(pos, self.config.head_size, self.config.rope_base)  # (T, hs) or (B, T, hs)
            if pos.dim() == 2:                                               # per row (padded prompts): a head axis
                cos, sin = cos[:, None], sin[:, None]
            rope = (cos.to(x.dtype), sin.to(x.dtype))                        # for every block
        elif self.config.positions == "learned":
            x = x + self.transformer.wpe(pos)
        else:
            x = x + self.pe[pos].to(x.dtype)
        x = self.transformer.drop(x)
        for i, block in enumerate(self.transformer.h):
            x = block(x, rope, None if cache is None else cache.layers[i])
        logits = self.lm_head(self.transformer.ln_f(x))                      # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        return logits, loss

    generate = GPT.generate  # sampling is chapter 5's, token by token over the last block_size tokens

    def num_params(self) -> int:
        """Number of parameters (a tied matrix counted once)."""
        return sum(p.numel() for p in self.parameters())


def param_count(config: LlamaConfig) -> int:
    """Parameters of Llama(config) by formula, with d = n_embd, hs = head size, kv = n_kv_head,
    h = hidden_size, b = bias:

        token embedding     V·d; the output layer another V·d unless tied; a learned table T·d
        attention           W_Q, W_O: 2d² (+ 2d·b); W_K, W_V: 2·d·kv·hs (+ 2·kv·hs·b)
        MLP                 SwiGLU 3·d·h (+ (2h + d)·b); GELU 2·d·h (+ (h + d)·b)
        norms               RMSNorm d each; LayerNorm d + d·b each; two per block and a final one

    >>> param_count(LlamaConfig(vocab_size=32000, block_size=4096, n_layer=32, n_head=32, n_embd=4096,
    ...                         mlp_hidden=11008))  # Llama 2 7B
    6738415616
    """
    V, T, L, d, h = config.vocab_size, config.block_size, config.n_layer, config.n_embd, config.hidden_size
    kv, hs, b = config.kv_heads, config.head_size, int(config.bias)
    attention = 2 * d * d + 2 * d * kv * hs + (2 * d + 2 * kv * hs) * b
    mlp = 3 * d * h + (2 * h + d) * b if config.mlp == "swiglu" else 2 * d * h + (h + d) * b
    norm = d if config.norm == "rms" else d + d * b
    embeddings = V * d * (1 if config.tie_embeddings else 2) + (T * d if config.positions == "learned" else 0)
    return embeddings + L * (attention + mlp + 2 * norm) + norm


def flops_per_token(config: LlamaConfig, seq_len: int | None = None) -> int:
    """Training FLOPs (forward + backward) per token for sequences of `seq_len` (default block_size):
    6 per weight of every matrix that multiplies activations (the blocks' attention and MLP matrices
    and the output layer, tied or not), plus attention's QKᵀ and (weights)·V over the full T×T
    scores, 12·L·T·d, as in chapter 5 (`lmbook.gpt.flops_per_token`). Grouped-query attention saves
    weights in W_K and W_V, not products: every query head still attends over T keys.

    >>> flops_per_token(LlamaConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=48))
    424224
    """
    T = config.block_size if seq_len is None else seq_len
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"seq_len must be an int >= 1 (or None for block_size), got {seq_len!r}")
    L, d, V, h = config.n_layer, config.n_embd, config.vocab_size, config.hidden_size
    per_block = 2 * d * d + 2 * d * config.kv_heads * config.head_size + (3 if config.mlp == "swiglu" else 2) * d * h
    return 6 * (L * per_block + V * d) + 12 * L * T * d


def non_embedding_params(config: LlamaConfig) -> int:
    """Parameters outside the token embedding, the output layer and a position table: the blocks and
    the final norm (Kaplan et al. 2020's N, which chapter 9's scaling laws use)."""
    V, d = config.vocab_size, config.n_embd
    embeddings = V * d * (1 if config.tie_embeddings else 2)
    embeddings += config.block_size * d if config.positions == "learned" else 0
    return param_count(config) - embeddings


def kv_cache_bytes(n_layer: int, n_kv_head: int, head_size: int, seq_len: int, batch: int = 1,
                   bytes_per_value: int = 2) -> int:
    """Memory of the keys and values a generator keeps: 2 (K and V) · L · n_kv_head · hs · T · B
    values, each `bytes_per_value` bytes (2 for bf16/fp16).

    >>> kv_cache_bytes(32, 32, 128, 4096) / 2**30  # Llama 2 7B, one sequence of 4,096 tokens, bf16: GiB
    2.0
    """
    for name, value in (("n_layer", n_layer), ("n_kv_head", n_kv_head), ("head_size", head_size),
                        ("seq_len", seq_len), ("batch", batch), ("bytes_per_value", bytes_per_value)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return 2 * n_layer * n_kv_head * head_size * seq_len * batch * bytes_per_value


def ablation_ladder(vocab_size: int, block_size: int, n_layer: int, n_head: int, n_embd: int,
                    n_kv_head: int) -> list[tuple[str, LlamaConfig]]:
    """Chapter 5's GPT, then Llama's changes one at a time, each row keeping the ones before it:
    no biases, RMSNorm, SwiGLU (2/3 rule), rotary positions, grouped-query attention (n_kv_head
    key/value heads, the SwiGLU widened by what the smaller W_K and W_V save), an untied output
    layer. The parameters in the blocks stay equal when n_embd is a multiple of 3 (the SwiGLU) and
    the saving divides by 3·n_embd (the widening); the last row is Llama(LlamaConfig(...)) with
    these sizes.

    >>> [name for name, _ in ablation_ladder(65, 128, 2, 4, 48, 2)]
    ['GPT (chapter 5)', 'no biases', 'RMSNorm', 'SwiGLU', 'rotary positions', 'grouped-query attention', 'untied output layer']
    """
    base = LlamaConfig(vocab_size, block_size, n_layer, n_head, n_embd, norm="layer", mlp="gelu",
                       positions="learned", bias=True, tie_embeddings=True)
    saved = 2 * n_embd * (n_head - n_kv_head) * base.head_size            # fewer rows in W_K and W_V
    widened = round(8 * n_embd / 3) + round(saved / (3 * n_embd))           # the SwiGLU gets them back
    changes = [("GPT (chapter 5)", {}), ("no biases", {"bias": False}), ("RMSNorm", {"norm": "rms"}),
               ("SwiGLU", {"mlp": "swiglu"}), ("rotary positions", {"positions": "rope"}),
               ("grouped-query attention", {"n_kv_head": n_kv_head, "mlp_hidden": widened}),
               ("untied output layer", {"tie_embeddings": False})]
    ladder, settings = [], {}
    for name, change in changes:
        settings |= change
        ladder.append((name, LlamaConfig(**(base.to_dict() | settings))))
    return ladder


def save_llama(model: Llama, directory: str | Path) -> Path:
    """Write model.safetensors (the weights, a tied matrix once) and config.json (the LlamaConfig
    and the weights' sha256, which `load_llama` verifies) into `directory`."""
    from safetensors.torch import save_model

    from lmbook.checkpoint import write_atomically
    from lmbook.data import sha256_of

    if not isinstance(model, Llama):
        raise TypeError(f"save_llama saves an lmbook.llama.Llama, got {type(model).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "model.safetensors"
    write_atomically(weights, lambda tmp: save_model(model, str(tmp)))
    info = {"architecture": "llama"} | model.config.to_dict() | {"weights_sha256": sha256_of(weights)}
    write_atomically(directory / "config.json", json.dumps(info, indent=2) + "\n")
    return directory


def load_llama(directory: str | Path, device: str | torch.device = "cpu", verify: bool = True) -> Llama:
    """The model `save_llama` wrote into `directory` (safetensors: no code runs on loading); the
    weights must match the sha256 in config.json (verify=False skips the check)."""
    from safetensors.torch import load_model

    from lmbook.checkpoint import CheckpointError, read_json, verify_weights

    directory = Path(directory)
    missing = [n for n in ("config.json", "model.safetensors") if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} is not a saved Llama: {' and '.join(missing)} missing "
                                f"(save_llama writes config.json and model.safetensors)")
    info = read_json(directory / "config.json")
    if not isinstance(info, dict) or info.pop("architecture", None) != "llama":
        raise CheckpointError(f"{directory / 'config.json'} does not describe an lmbook Llama "
                              f"(no \"architecture\": \"llama\"); a GPT folder loads with lmbook.gpt.load_gpt")
    recorded = info.pop("weights_sha256", None)
    weights = directory / "model.safetensors"
    if verify:
        verify_weights(weights, recorded, fix=f"if you trust the file, load it with load_llama({str(directory)!r}, "
                                              f"verify=False) and save it again with save_llama(model, folder)")
    try:
        config = LlamaConfig.from_dict(info)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / 'config.json'} does not describe a Llama: {e}") from None
    model = Llama(config)
    try:
        load_model(model, str(weights), device=str(device))
    except Exception as e:  # safetensors' own error types, or torch's RuntimeError for missing/extra keys
        raise CheckpointError(f"{weights} cannot be loaded into the Llama its config.json describes "
                              f"({type(e).__name__}: {str(e)[:300]})") from None
    return model.to(device)


# ---- Hugging Face's LlamaForCausalLM: the same network, other names ----------------------------------

def hf_config(config: LlamaConfig):
    """The ``transformers.LlamaConfig`` of the same network (Llama's own switches only: RMSNorm,
    SwiGLU, rotary positions)."""
    from transformers import LlamaConfig as HFLlamaConfig

    if not isinstance(config, LlamaConfig):
        raise TypeError(f"hf_config needs an lmbook.llama.LlamaConfig, got {type(config).__name__}")
    other = {k: getattr(config, k) for k, want in (("norm", "rms"), ("mlp", "swiglu"), ("positions", "rope"))
             if getattr(config, k) != want}
    if other:
        raise ValueError(f"LlamaForCausalLM has RMSNorm, SwiGLU and rotary positions; this config has {other}, "
                         f"which it cannot express")
    return HFLlamaConfig(vocab_size=config.vocab_size, hidden_size=config.n_embd, intermediate_size=config.hidden_size,
                         num_hidden_layers=config.n_layer, num_attention_heads=config.n_head,
                         num_key_value_heads=config.kv_heads, head_dim=config.head_size,
                         max_position_embeddings=config.block_size, rms_norm_eps=config.norm_eps,
                         rope_parameters={"rope_type": "default", "rope_theta": float(config.rope_base)},
                         attention_bias=config.bias, mlp_bias=config.bias, attention_dropout=config.dropout,
                         tie_word_embeddings=config.tie_embeddings, hidden_act="silu",
                         bos_token_id=None, eos_token_id=None, pad_token_id=None)


def _hf_names(config: LlamaConfig) -> dict[str, str]:
    """Our parameter name -> LlamaForCausalLM's, for every weight but W_Q/W_K/W_V (split below)."""
    names = {"transformer.wte.weight": "model.embed_tokens.weight", "transformer.ln_f.weight": "model.norm.weight",
             "lm_head.weight": "lm_head.weight"}
    for i in range(config.n_layer):
        ours, theirs = f"transformer.h.{i}.", f"model.layers.{i}."
        pairs = {"ln_1.weight": "input_layernorm.weight", "ln_2.weight": "post_attention_layernorm.weight",
                 "attn.c_proj": "self_attn.o_proj", "mlp.c_gate": "mlp.gate_proj", "mlp.c_up": "mlp.up_proj",
                 "mlp.c_proj": "mlp.down_proj"}
        for a, b in pairs.items():
            suffixes = [""] if a.endswith(".weight") else [".weight"] + ([".bias"] if config.bias else [])
            names |= {ours + a + s: theirs + b + s for s in suffixes}
    return names


@torch.no_grad()
def to_hf(model: Llama):
    """A ``LlamaForCausalLM`` holding a copy of our model's weights (same dtype, on the CPU)."""
    from transformers import LlamaForCausalLM

    if not isinstance(model, Llama):
        raise TypeError(f"to_hf converts an lmbook.llama.Llama, got {type(model).__name__}")
    c = model.config
    hf_model = LlamaForCausalLM(hf_config(c)).to(next(model.parameters()).dtype).eval()
    ours, theirs = model.state_dict(), hf_model.state_dict()
    for a, b in _hf_names(c).items():
        theirs[b].copy_(ours[a])
    sizes = [c.n_head * c.head_size, c.kv_heads * c.head_size, c.kv_heads * c.head_size]
    for i in range(c.n_layer):
        for kind in ("weight", "bias") if c.bias else ("weight",):
            for part, name in zip(ours[f"transformer.h.{i}.attn.c_attn.{kind}"].split(sizes), "qkv"):
                theirs[f"model.layers.{i}.self_attn.{name}_proj.{kind}"].copy_(part)
    return hf_model


@torch.no_grad()
def from_hf(hf_model) -> Llama:
    """Our Llama with a copy of the weights of a ``LlamaForCausalLM`` (same dtype, on the CPU)."""
    from transformers import LlamaForCausalLM

    if not isinstance(hf_model, LlamaForCausalLM):
        raise TypeError(f"from_hf converts a transformers LlamaForCausalLM, got {type(hf_model).__name__}")
    config = _from_hf_config(hf_model.config)
    model = Llama(config).to(next(hf_model.parameters()).dtype)
    ours, theirs = model.state_dict(), hf_model.state_dict()
    for a, b in _hf_names(config).items():
        ours[a].copy_(theirs[b])
    for i in range(config.n_layer):
        for kind in ("weight", "bias") if config.bias else ("weight",):
            ours[f"transformer.h.{i}.attn.c_attn.{kind}"].copy_(torch.cat(
                [theirs[f"model.layers.{i}.self_attn.{name}_proj.{kind}"] for name in "qkv"]))
    return model


def _from_hf_config(hf) -> LlamaConfig:
    """Our LlamaConfig for a transformers LlamaConfig, after checking it is a variant we compute exactly."""
    rope = getattr(hf, "rope_parameters", None) or {"rope_type": "default",
                                                    "rope_theta": getattr(hf, "rope_theta", 10000.0)}
    different = {}
    if rope.get("rope_type", "default") != "default":
        different["rope_type"] = rope["rope_type"]
    if hf.hidden_act != "silu":
        different["hidden_act"] = hf.hidden_act
    if hf.attention_bias != hf.mlp_bias:
        different["attention_bias/mlp_bias"] = (hf.attention_bias, hf.mlp_bias)
    head_dim = getattr(hf, "head_dim", None) or hf.hidden_size // hf.num_attention_heads
    if head_dim * hf.num_attention_heads != hf.hidden_size:
        different["head_dim"] = head_dim
    if different:
        raise ValueError(f"this LlamaForCausalLM differs from lmbook's Llama in {different}: only default "
                         f"rotary positions, SiLU, one bias setting and head_dim = hidden_size / heads convert")
    return LlamaConfig(vocab_size=hf.vocab_size, block_size=hf.max_position_embeddings, n_layer=hf.num_hidden_layers,
                       n_head=hf.num_attention_heads, n_embd=hf.hidden_size, n_kv_head=hf.num_key_value_heads,
                       mlp_hidden=hf.intermediate_size, rope_base=float(rope["rope_theta"]), norm_eps=hf.rms_norm_eps,
                       dropout=float(hf.attention_dropout), tie_embeddings=bool(hf.tie_word_embeddings),
                       bias=bool(hf.attention_bias))


# ---- input checks: clear errors instead of failures deep inside torch ---------------------------------

def _check_config(config: LlamaConfig) -> None:
    """The fields of a LlamaConfig, or an error that names the wrong one and what is allowed."""
    for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"LlamaConfig.{name} must be an int >= 1, got {value!r}")
    for name in ("n_kv_head", "mlp_hidden"):
        value = getattr(config, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"LlamaConfig.{name} must be None or an int >= 1, got {value!r}")
    if config.n_embd % config.n_head:
        raise ValueError(f"n_embd={config.n_embd} must be divisible by n_head={config.n_head} (each head gets "
                         f"n_embd / n_head dimensions)")
    if config.n_kv_head is not None and config.n_head % config.n_kv_head:
        divisors = [k for k in range(1, config.n_head + 1) if config.n_head % k == 0]
        raise ValueError(f"n_head={config.n_head} must be a multiple of n_kv_head={config.n_kv_head} (each key/value "
                         f"head serves n_head / n_kv_head query heads); try n_kv_head in {divisors}")
    if config.mlp == "gelu" and config.mlp_hidden is not None:
        raise ValueError(f"mlp_hidden={config.mlp_hidden} sets the SwiGLU's width; the GELU MLP is chapter 5's, "
                         f"4 * n_embd wide: leave mlp_hidden None with mlp='gelu'")
    for name, allowed in (("norm", NORMS), ("mlp", MLPS), ("positions", POSITIONS), ("attention", ("sdpa", "lmbook"))):
        if getattr(config, name) not in allowed:
            raise ValueError(f"LlamaConfig.{name} must be one of {allowed}, got {getattr(config, name)!r}")
    if config.positions == "rope" and config.head_size % 2:
        raise ValueError(f"rotary positions rotate pairs of dimensions, so the head size n_embd / n_head must be "
                         f"even; got {config.n_embd} / {config.n_head} = {config.head_size}")
    if config.positions == "sinusoidal" and config.n_embd % 2:
        raise ValueError(f"sinusoidal positions come in sin/cos pairs: n_embd must be even, got {config.n_embd}")
    for name, low in (("rope_base", 1.0), ("norm_eps", 0.0)):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not low < value < math.inf:
            raise ValueError(f"LlamaConfig.{name} must be a finite number > {low:g}, got {value!r}")
    if isinstance(config.dropout, bool) or not isinstance(config.dropout, (int, float)) or not 0 <= config.dropout < 1:
        raise ValueError(f"LlamaConfig.dropout is a probability in [0, 1), got {config.dropout!r}")
    for name in ("bias", "tie_embeddings"):
        if not isinstance(getattr(config, name), bool):
            raise TypeError(f"LlamaConfig.{name} must be True or False, got {getattr(config, name)!r}")


def _check_rope_args(T, head_size, base, start) -> None:
    for name, value, low in (("T", T, 1), ("head_size", head_size, 2), ("start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if head_size % 2:
        raise ValueError(f"rotary positions rotate pairs of dimensions: head_size must be even, got {head_size}")
    if isinstance(base, bool) or not isinstance(base, (int, float)) or not 1 < base < math.inf:
        raise ValueError(f"base must be a finite number > 1, got {base!r}")


@torch.compiler.disable  # one eager check; torch.compile compiles the rest of forward
def _check_llama_inputs(idx: Tensor, targets: Tensor | None, config: LlamaConfig) -> None:
    """Chapter 5's checks, with a message for long sequences that fits rotary positions."""
    if isinstance(idx, Tensor) and idx.dim() == 2 and idx.shape[1] > config.block_size:
        T, T_max = idx.shape[1], config.block_size
        if config.positions == "rope":
            raise ValueError(f"sequence of length {T} is longer than block_size={T_max}. Rotary positions have no "
                             f"table and are defined at every position, but positions beyond those trained on are "
                             f"an extrapolation: to run on {T} tokens, build the model with a larger block_size "
                             f"(Llama(dataclasses.replace(config, block_size={T})) and load_state_dict: the weights "
                             f"do not change); to generate, keep the last {T_max} tokens (idx[:, -{T_max}:])")
        raise ValueError(f"sequence of length {T} is longer than block_size={T_max}: {config.positions} positions "
                         f"are a table of {T_max} rows; keep the last {T_max} tokens (idx[:, -{T_max}:])")
    _check_inputs(idx, targets, config)
