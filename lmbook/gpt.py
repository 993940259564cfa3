"""A GPT, readable top to bottom (chapter 5; chapter 7 trains it on a GPU).

The model of Radford et al. (2018, 2019) as nanoGPT writes it: token and position embeddings, a
stack of pre-norm Transformer blocks with *causal* self-attention, a final LayerNorm, and a
language-model head that shares its weights with the token embedding. One block is

    x = x + attn(ln_1(x))        every position mixes in what the earlier positions carry
    x = x + mlp(ln_2(x))         every position is transformed on its own: d -> 4d -> GELU -> d

The classes come in the order a reader needs them: `GPTConfig` (a dataclass that checks itself),
`CausalSelfAttention`, `MLP`, `Block`, `GPT`. Then the accounting a reader asks about:
`param_count` (the parameter count by formula, equal to ``sum(p.numel())``) and `flops_per_token`
(training FLOPs per token), and `save_gpt` / `load_gpt` (safetensors weights + JSON config).

Attention runs on one of two paths that give the same result (tests/test_gpt.py):

- ``attention="sdpa"``: ``F.scaled_dot_product_attention``, torch's fused kernel (the fast path);
- ``attention="lmbook"``: ``lmbook.attention.scaled_dot_product_attention`` from chapter 4, the
  formula softmax(QKᵀ/√d_head + mask)·V written out (the teaching path).

All heads are computed at once as one batched matrix product, (B, n_head, T, d_head): there is no
Python loop over heads or positions. ``forward(idx, cache=...)`` reads idx as the continuation of
the tokens whose keys and values a KV cache holds (chapter 8, lmbook.generate), so that generating
a token costs one position, not the whole context. The layout and the GELU (tanh approximation) are GPT-2's, so
Hugging Face's ``GPT2LMHeadModel`` weights load into it exactly (lmbook/hf.py).

Bad input is a clear error: a sequence longer than ``block_size``, a token id outside the
vocabulary, a width not divisible by the number of heads.
"""

from __future__ import annotations

import json
import math
import operator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ATTENTION_PATHS = ("sdpa", "lmbook")
IGNORE_INDEX = -100  # a target equal to this is left out of the loss (F.cross_entropy's default)


@dataclass
class GPTConfig:
    """The shape of a GPT. GPT-2 small is ``GPTConfig(50257, 1024, 12, 12, 768)``.

    vocab_size V, block_size T (the longest context), n_layer L blocks, n_head heads of width
    n_embd / n_head, n_embd d (the width of the residual stream); dropout after the embeddings,
    on the attention weights and on each residual branch; bias in the Linear layers and LayerNorms;
    attention "sdpa" (fast) or "lmbook" (chapter 4's code, same numbers).

    >>> GPTConfig(vocab_size=65, block_size=8, n_layer=2, n_head=4, n_embd=30)
    Traceback (most recent call last):
    ...
    ValueError: n_embd=30 must be divisible by n_head=4 (each head gets n_embd / n_head dimensions); try n_embd=32 or n_head=3
    """

    vocab_size: int
    block_size: int
    n_layer: int
    n_head: int
    n_embd: int
    dropout: float = 0.0
    bias: bool = True
    attention: str = "sdpa"

    def __post_init__(self):
        _check_config(self)

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    def to_dict(self) -> dict:
        """The fields as a JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        """The inverse of `to_dict`; an unknown or missing key is a ValueError that names it."""
        if not isinstance(d, dict):
            raise TypeError(f"GPTConfig.from_dict needs a dict, got {type(d).__name__}")
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"unknown GPTConfig keys {unknown}; allowed: {names}")
        try:
            return cls(**d)
        except TypeError as e:
            if "missing" in str(e):
                raise ValueError(f"GPTConfig.from_dict: {e}; required: {names[:5]}") from None
            raise


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions 0..t only.

    One Linear makes the queries, keys and values of all heads at once, (B, T, 3d); a reshape
    splits them into heads, (B, n_head, T, d_head); attention runs on all heads as one batched
    product; the heads are concatenated back to (B, T, d) and mixed by the output projection.
    With ``causal=False`` every position sees every other one (an encoder, as in BERT).
    """

    def __init__(self, config: GPTConfig, causal: bool = True):
        super().__init__()
        self.n_head, self.causal, self.attention = config.n_head, causal, config.attention
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # W_Q, W_K, W_V
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)      # W_O
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache=None) -> Tensor:
        B, T, C = x.shape                                                    # (B, T, d)
        q, k, v = self.c_attn(x).split(C, dim=2)                             # 3 × (B, T, d)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for z in (q, k, v))                                       # 3 × (B, nh, T, hs)
        mask, causal = None, self.causal
        if cache is not None:  # generation (chapter 8): the new tokens also attend to the cached ones
            k, v, mask = cache.update(k, v)                                  # 2 × (B, nh, T_past + T, hs)
            causal = False                                                   # the mask says who sees whom
        dropout_p = self.dropout if self.training else 0.0
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout_p)
        else:
            from lmbook import attention  # chapter 4's code: the same formula, written out
            y = attention.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                       dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                     # concatenate heads: (B, T, d)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    """The position-wise feed-forward network: d -> 4d -> GELU -> d, the same at every position.

    GELU(x) = x·Φ(x), here in GPT-2's tanh approximation ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.gelu = nn.GELU(approximate="tanh")
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.c_proj(self.gelu(self.c_fc(x))))       # (B, T, d) -> (B, T, 4d) -> (B, T, d)


class Block(nn.Module):
    """A pre-norm Transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config: GPTConfig, causal: bool = True):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, causal=causal)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x: Tensor, cache=None) -> Tensor:
        x = x + self.attn(self.ln_1(x), cache)
        x = x + self.mlp(self.ln_2(x))
        return x


class GPT(nn.Module):
    """Token + position embeddings, n_layer causal blocks, a final LayerNorm, a tied LM head.

        h_0 = wte[idx] + wpe[0..T-1]                 (B, T, d)
        h_l = Block_l(h_{l-1}),  l = 1..L            (B, T, d)
        logits = ln_f(h_L) @ wteᵀ                    (B, T, V)

    Initialisation (GPT-2's, as in nanoGPT): every weight matrix and embedding ~ N(0, 0.02²),
    biases 0, LayerNorms 1 and 0; the two projections that write into the residual stream
    (attn.c_proj, mlp.c_proj) ~ N(0, (0.02/√(2L))²), so that the sum of 2L residual branches keeps
    the stream's variance roughly constant with depth.

    >>> model = GPT(GPTConfig(vocab_size=65, block_size=8, n_layer=2, n_head=2, n_embd=16))
    >>> logits, loss = model(torch.zeros(3, 5, dtype=torch.long))
    >>> logits.shape, loss
    (torch.Size([3, 5, 65]), None)
    """

    def __init__(self, config: GPTConfig):
        super().__init__()
        if not isinstance(config, GPTConfig):
            raise TypeError(f"GPT needs a GPTConfig, got {type(config).__name__}; "
                            f"build one with GPTConfig(vocab_size=..., block_size=..., ...)")
        self.config = config
        # forward validates its inputs (shapes, id ranges) unless told not to: the range check waits
        # for the GPU, so a trainer that checked its token file once switches it off (chapter 7)
        self.check_inputs = True
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),     # token embedding (V, d)
            wpe=nn.Embedding(config.block_size, config.n_embd),     # position embedding (T, d)
            drop=nn.Dropout(config.dropout),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight           # weight tying: one (V, d) matrix
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: Tensor, targets: Tensor | None = None, cache=None) -> tuple[Tensor, Tensor | None]:
        """idx (B, T) token ids, T <= block_size -> (logits (B, T, V), mean cross-entropy or None).

        targets (B, T): the next token at every position; IGNORE_INDEX (-100) leaves one out.
        cache: a KV cache (chapter 8, lmbook.generate.KVCache) that holds the keys and values of the
        tokens before idx; idx continues them, and the cache keeps the new keys and values too.
        """
        if self.check_inputs:
            _check_inputs(idx, targets, self.config)
        B, T = idx.shape
        if cache is None:
            pos = torch.arange(T, device=idx.device)                         # (T,) positions 0..T-1
        else:
            pos = cache.next_positions(T, idx.device)                        # the positions after the cached tokens
        x = self.transformer.drop(self.transformer.wte(idx) + self.transformer.wpe(pos))  # (B, T, d)
        for i, block in enumerate(self.transformer.h):
            x = block(x) if cache is None else block(x, cache.layers[i])
        logits = self.lm_head(self.transformer.ln_f(x))                      # (B, T, V)
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE_INDEX)
        return logits, loss

    def num_params(self, non_embedding: bool = False) -> int:
        """Number of parameters (the tied embedding counted once). non_embedding=True leaves out the
        position embedding (nanoGPT's convention: the token embedding does work as the LM head)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.transformer.wpe.weight.numel()
        return n

    @torch.no_grad()
    def generate(self, idx: Tensor, max_new_tokens: int, temperature: float = 1.0, top_k: int | None = None,
                 generator: torch.Generator | None = None) -> Tensor:
        """Extend each row of idx (B, T) by `max_new_tokens` sampled tokens -> (B, T + max_new_tokens).

        Each step reads the last block_size tokens, divides the last position's logits by
        `temperature` (< 1 greedier, > 1 more random), keeps only the `top_k` largest if given,
        and samples. The model is in eval mode while sampling and back in its old mode after.
        """
        top_k = _checked_generate_args(idx, max_new_tokens, temperature, top_k, self.config)
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                logits, _ = self(idx[:, -self.config.block_size:])            # (B, T', V)
                logits = logits[:, -1, :].float() / temperature                 # (B, V), the last position
                if top_k is not None:
                    kth = torch.topk(logits, top_k).values[:, -1:]              # (B, 1)
                    logits = logits.masked_fill(logits < kth, -math.inf)
                probs = torch.softmax(logits, dim=-1)
                if generator is not None:
                    probs = probs.to(generator.device)
                nxt = torch.multinomial(probs, 1, generator=generator).to(idx.device)  # (B, 1)
                idx = torch.cat([idx, nxt], dim=1)
        finally:
            self.train(was_training)
        return idx


def param_count(config: GPTConfig) -> int:
    """Parameters of GPT(config) by formula (the tied LM head adds none), with d = n_embd, b = bias:

        embeddings       V·d + T·d
        each block       12d² + 2d + 11d·b     (c_attn 3d²+3db, c_proj d²+db, c_fc 4d²+4db,
                                                mlp c_proj 4d²+db, two LayerNorms 2d+2db)
        final LayerNorm  d + d·b

    >>> param_count(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))
    124439808
    """
    d, b = config.n_embd, int(config.bias)
    per_block = 12 * d * d + 2 * d + 11 * d * b
    return config.vocab_size * d + config.block_size * d + config.n_layer * per_block + d + d * b


def flops_per_token(config: GPTConfig, seq_len: int | None = None) -> int:
    """Training FLOPs (forward + backward) per token for sequences of `seq_len` (default block_size).

    The 6N + attention convention (Kaplan et al. 2020; nanoGPT's estimate_mfu): a matrix product
    with N weights costs 2N FLOPs per token forward (a multiply and an add per weight) and 4N
    backward (gradients of the input and of the weights), so 6N; N = 12·L·d² + V·d counts every
    weight matrix that multiplies activations: the blocks and the (tied) LM head, not the
    embedding look-ups, biases or LayerNorms. Attention adds products that have no weights: QKᵀ
    and (weights)·V cost 2·T·d each per token and layer forward, so 3 · 4·T·d = 12·L·T·d for
    training. This counts the full T×T score matrix, as a dense kernel computes it (and as torch's
    FLOP counter counts it); a causal kernel that skips the masked half does less.

    >>> flops_per_token(GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768))
    854438400
    """
    T = config.block_size if seq_len is None else seq_len
    if isinstance(T, bool) or not isinstance(T, int) or T < 1:
        raise ValueError(f"seq_len must be an int >= 1 (or None for block_size), got {seq_len!r}")
    L, d, V = config.n_layer, config.n_embd, config.vocab_size
    N = 12 * L * d * d + V * d
    return 6 * N + 12 * L * T * d


def save_gpt(model: GPT, directory: str | Path) -> Path:
    """Write model.safetensors (the weights, tied ones once) and config.json (the GPTConfig and the
    weights' sha256, which `load_gpt` verifies) into `directory`."""
    from safetensors.torch import save_model

    from lmbook.checkpoint import write_atomically
    from lmbook.data import sha256_of

    if not isinstance(model, GPT):
        raise TypeError(f"save_gpt saves an lmbook.gpt.GPT, got {type(model).__name__}")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    weights = directory / "model.safetensors"
    write_atomically(weights, lambda tmp: save_model(model, str(tmp)))
    info = model.config.to_dict() | {"weights_sha256": sha256_of(weights)}
    write_atomically(directory / "config.json", json.dumps(info, indent=2) + "\n")
    return directory


def load_gpt(directory: str | Path, device: str | torch.device = "cpu", verify: bool = True) -> GPT:
    """The GPT saved by `save_gpt` in `directory` (safetensors: no code runs on loading). The
    weights must match the sha256 recorded in config.json; verify=False skips that check (only for
    a folder saved before the hash was recorded: load it, then save it again with `save_gpt`)."""
    from safetensors.torch import load_model

    from lmbook.checkpoint import CheckpointError, read_json, verify_weights

    directory = Path(directory)
    missing = [n for n in ("config.json", "model.safetensors") if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} is not a saved GPT: {' and '.join(missing)} missing "
                                f"(save_gpt writes config.json and model.safetensors)")
    info = read_json(directory / "config.json")
    if not isinstance(info, dict):
        raise CheckpointError(f"{directory / 'config.json'} must hold a JSON object (a GPTConfig), "
                              f"got {type(info).__name__}")
    recorded = info.pop("weights_sha256", None)
    weights = directory / "model.safetensors"
    if verify:
        verify_weights(weights, recorded, fix=f"if you trust the file, load it with load_gpt({str(directory)!r}, "
                                              f"verify=False) and save it again with save_gpt(model, folder)")
    try:
        config = GPTConfig.from_dict(info)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{directory / 'config.json'} does not describe a GPT: {e}") from None
    model = GPT(config)
    try:
        load_model(model, str(weights), device=str(device))
    except Exception as e:  # safetensors' own error types, or torch's RuntimeError for missing/extra keys
        raise CheckpointError(f"{weights} cannot be loaded into the GPT its config.json describes "
                              f"({type(e).__name__}: {str(e)[:300]})") from None
    return model.to(device)


# ---- input checks: clear errors instead of failures deep inside torch ---------------------------------

def _check_config(config: GPTConfig) -> None:
    """The fields of a GPTConfig, or an error that names the wrong one and what is allowed."""
    for name in ("vocab_size", "block_size", "n_layer", "n_head", "n_embd"):
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"GPTConfig.{name} must be an int >= 1, got {type(value).__name__} {value!r}")
        if value < 1:
            raise ValueError(f"GPTConfig.{name} must be >= 1, got {value}")
    if config.n_embd % config.n_head:
        near = [h for h in range(config.n_head - 1, 0, -1) if config.n_embd % h == 0][0]
        raise ValueError(f"n_embd={config.n_embd} must be divisible by n_head={config.n_head} (each head gets "
                         f"n_embd / n_head dimensions); try n_embd="
                         f"{config.n_head * math.ceil(config.n_embd / config.n_head)} or n_head={near}")
    if isinstance(config.dropout, bool) or not isinstance(config.dropout, (int, float)) \
            or not 0 <= config.dropout < 1:
        raise ValueError(f"GPTConfig.dropout is a probability in [0, 1), got {config.dropout!r}")
    if not isinstance(config.bias, bool):
        raise TypeError(f"GPTConfig.bias must be True or False, got {config.bias!r}")
    if config.attention not in ATTENTION_PATHS:
        raise ValueError(f"GPTConfig.attention must be one of {ATTENTION_PATHS} ('sdpa': torch's fused "
                         f"kernel, 'lmbook': chapter 4's code), got {config.attention!r}")


@torch.compiler.disable  # one eager check; torch.compile compiles the rest of forward
def _check_inputs(idx: Tensor, targets: Tensor | None, config: GPTConfig) -> None:
    """Shapes, dtypes and ranges of idx and targets, or an error that says what is allowed."""
    V, T_max = config.vocab_size, config.block_size
    for name, t in (("idx", idx), ("targets", targets)):
        if t is None:
            continue
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor of token ids with shape (B, T), got "
                            f"{type(t).__name__}")
        allowed = (torch.int64, torch.int32) if name == "idx" else (torch.int64,)
        if t.dtype not in allowed:
            raise TypeError(f"{name} must hold integer token ids as torch.long"
                            + (" (or torch.int32)" if name == "idx" else "")
                            + f", got dtype {t.dtype}; convert with {name}.long()")
        if t.dim() != 2:
            raise ValueError(f"{name} must be 2-D (B, T): one row of token ids per sequence, got shape "
                             f"{tuple(t.shape)}" + ("; add a batch dimension with idx[None]"
                                                    if t.dim() == 1 else ""))
    B, T = idx.shape
    if T > T_max:
        raise ValueError(f"sequence of length {T} is longer than block_size={T_max}, the longest "
                         f"context this model has position embeddings for; keep the last {T_max} "
                         f"tokens (idx[:, -{T_max}:])")
    if B == 0 or T == 0:
        raise ValueError(f"idx is empty (shape {tuple(idx.shape)}); pass at least one token")
    low, high = torch.stack(torch.aminmax(idx)).tolist()
    if low < 0 or high >= V:
        raise ValueError(f"token id {low if low < 0 else high} is out of range for a vocabulary of {V} "
                         f"(ids 0..{V - 1})")
    if targets is not None:
        if targets.shape != idx.shape:
            raise ValueError(f"targets must have the shape of idx, {tuple(idx.shape)}, got "
                             f"{tuple(targets.shape)}")
        bad = (targets >= V) | ((targets < 0) & (targets != IGNORE_INDEX))
        any_bad, all_ignored = torch.stack([bad.any(), (targets == IGNORE_INDEX).all()]).tolist()  # one sync
        if any_bad:
            raise ValueError(f"target {targets[bad][0].item()} is out of range: targets are token ids "
                             f"0..{V - 1}, or {IGNORE_INDEX} to leave a position out of the loss")
        if all_ignored:
            raise ValueError(f"every target is {IGNORE_INDEX} (left out): the mean loss would be 0/0 = NaN; "
                             f"targets need at least one token id")


def _checked_generate_args(idx, max_new_tokens, temperature, top_k, config: GPTConfig) -> int | None:
    """Check the arguments of `GPT.generate`; returns top_k, capped at the vocabulary size."""
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be an int >= 0, got {max_new_tokens!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) \
            or not 0 < temperature < math.inf:
        raise ValueError(f"temperature must be a number > 0 (1.0 samples the model's distribution), "
                         f"got {temperature!r}")
    if top_k is not None:
        try:
            top_k = operator.index(top_k)
        except TypeError:
            raise TypeError(f"top_k must be None or an int >= 1, got {type(top_k).__name__} {top_k!r}") from None
        if not 1 <= top_k:
            raise ValueError(f"top_k must be None or an int >= 1, got {top_k}")
        top_k = min(top_k, config.vocab_size)
    if isinstance(idx, Tensor) and idx.dim() == 2 and idx.shape[1] > config.block_size:
        _check_inputs(idx[:, -config.block_size:], None, config)  # only the last block_size tokens are read
    else:
        _check_inputs(idx, None, config)
    return top_k
