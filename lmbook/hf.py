"""Hugging Face GPT-2 <-> lmbook GPT: the same network, two spellings of its weights (chapter 5).

``transformers``' ``GPT2LMHeadModel`` and `lmbook.gpt.GPT` compute the same function: the module
names match (transformer.wte, transformer.h.0.attn.c_attn, …) and so do the GELU (tanh
approximation), the LayerNorm epsilon (1e-5) and the tied LM head. The one difference is how the
four projections of a block are stored: GPT-2 uses a ``Conv1D`` module whose weight is (in, out)
and computes x @ W + b, where ``nn.Linear`` stores (out, in) and computes x @ Wᵀ + b. So
importing or exporting transposes those four matrices and copies everything else.

- `gpt2_config(config)`: the ``GPT2Config`` of a `GPTConfig`.
- `from_hf(hf_model)`: our `GPT` with the weights of a ``GPT2LMHeadModel``.
- `to_hf(model)`: a ``GPT2LMHeadModel`` with the weights of our `GPT`.
- `from_pretrained(name)`: our `GPT` with the published weights of ``gpt2`` (…-medium, -large,
  -xl), which needs the files in the Hugging Face cache or an internet connection; without
  either it raises `PretrainedUnavailable`, an OSError that says so.

``transformers`` is imported inside the functions, so ``import lmbook.hf`` costs nothing.
"""

from __future__ import annotations

import torch

from lmbook.gpt import GPT, GPTConfig

CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")
PRETRAINED = ("gpt2", "gpt2-medium", "gpt2-large", "gpt2-xl")


class PretrainedUnavailable(OSError):
    """The published weights could not be found locally nor downloaded (typically: offline)."""


def gpt2_config(config: GPTConfig):
    """The ``transformers.GPT2Config`` describing the same network as `config` (bias=True only:
    GPT-2 always has biases)."""
    from transformers import GPT2Config

    if not isinstance(config, GPTConfig):
        raise TypeError(f"gpt2_config needs a GPTConfig, got {type(config).__name__}")
    if not config.bias:
        raise ValueError("GPT-2 has biases in every Linear layer and LayerNorm; a GPTConfig with bias=False "
                         "has no GPT2LMHeadModel counterpart (use bias=True to export)")
    gpt2_eot = 50256 if config.vocab_size == 50257 else None  # <|endoftext|> only in GPT-2's own vocabulary
    return GPT2Config(vocab_size=config.vocab_size, n_positions=config.block_size, n_embd=config.n_embd,
                      n_layer=config.n_layer, n_head=config.n_head, n_inner=None,
                      activation_function="gelu_new", layer_norm_epsilon=1e-5,
                      resid_pdrop=config.dropout, embd_pdrop=config.dropout, attn_pdrop=config.dropout,
                      tie_word_embeddings=True,
                      bos_token_id=gpt2_eot, eos_token_id=gpt2_eot)


def _check_gpt2_config(hf_config) -> GPTConfig:
    """Our GPTConfig for a GPT2Config, after checking it is a variant our GPT computes exactly."""
    expected = {"activation_function": "gelu_new", "layer_norm_epsilon": 1e-5, "scale_attn_weights": True,
                "scale_attn_by_inverse_layer_idx": False, "reorder_and_upcast_attn": False,
                "add_cross_attention": False, "tie_word_embeddings": True}
    different = {k: getattr(hf_config, k) for k, want in expected.items() if getattr(hf_config, k, want) != want}
    if hf_config.n_inner not in (None, 4 * hf_config.n_embd):
        different["n_inner"] = hf_config.n_inner
    if different:
        raise ValueError(f"this GPT-2 variant differs from lmbook's GPT in {different}; only GPT-2's own "
                         f"settings {expected} (and an MLP of width 4·n_embd) convert exactly")
    return GPTConfig(vocab_size=hf_config.vocab_size, block_size=hf_config.n_positions, n_layer=hf_config.n_layer,
                     n_head=hf_config.n_head, n_embd=hf_config.n_embd, dropout=float(hf_config.attn_pdrop),
                     bias=True)


@torch.no_grad()
def from_hf(hf_model) -> GPT:
    """Our GPT with a copy of the weights of a ``GPT2LMHeadModel`` (same dtype, on the CPU)."""
    from transformers import GPT2LMHeadModel

    if not isinstance(hf_model, GPT2LMHeadModel):
        raise TypeError(f"from_hf converts a transformers GPT2LMHeadModel, got {type(hf_model).__name__}")
    config = _check_gpt2_config(hf_model.config)
    theirs = {k: v for k, v in hf_model.state_dict().items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    model = GPT(config)
    ours = model.state_dict()
    if set(theirs) != set(ours):
        raise ValueError(f"unexpected GPT2LMHeadModel weights: missing {sorted(set(ours) - set(theirs))[:5]}, "
                         f"extra {sorted(set(theirs) - set(ours))[:5]}")
    model.to(next(iter(theirs.values())).dtype)
    for k, v in theirs.items():
        ours[k].copy_(v.t() if k.endswith(CONV1D) else v)  # Conv1D (in, out) -> Linear (out, in)
    return model


@torch.no_grad()
def to_hf(model: GPT):
    """A ``GPT2LMHeadModel`` holding a copy of the weights of our GPT (same dtype, on the CPU)."""
    from transformers import GPT2LMHeadModel

    if not isinstance(model, GPT):
        raise TypeError(f"to_hf converts an lmbook.gpt.GPT, got {type(model).__name__}")
    hf_model = GPT2LMHeadModel(gpt2_config(model.config))
    hf_model.to(next(model.parameters()).dtype).eval()
    theirs = hf_model.state_dict()
    for k, v in model.state_dict().items():
        theirs[k].copy_(v.t() if k.endswith(CONV1D) else v)  # Linear (out, in) -> Conv1D (in, out)
    return hf_model


def from_pretrained(name: str = "gpt2", timeout: float = 5.0) -> GPT:
    """Our GPT with OpenAI's published GPT-2 weights (``gpt2`` is the 124M model).

    The weights come from the Hugging Face cache, or are downloaded into it (about 0.5 GB for
    ``gpt2``). Offline and not cached, this raises `PretrainedUnavailable` within about `timeout`
    seconds, saying so (instead of the hub client's minute of retries).
    """
    from transformers import GPT2LMHeadModel

    if name not in PRETRAINED:
        raise ValueError(f"from_pretrained loads one of {PRETRAINED}, got {name!r}")
    try:
        return from_hf(GPT2LMHeadModel.from_pretrained(name, local_files_only=True))  # the cache only
    except OSError:
        pass
    endpoint = _hub_endpoint()
    if not _reachable(endpoint, timeout):
        raise PretrainedUnavailable(
            f"the pretrained weights of {name!r} are not in the Hugging Face cache and {endpoint} cannot be "
            f"reached (no internet connection?). Connect once to download them (about 0.5 GB for 'gpt2'), "
            f"or point HF_HOME at a cache that holds them")
    try:
        hf_model = GPT2LMHeadModel.from_pretrained(name)
    except OSError as e:  # also what huggingface_hub's connection errors are
        raise PretrainedUnavailable(f"downloading the pretrained weights of {name!r} from {endpoint} failed: "
                                    f"{type(e).__name__}: {str(e)[:300]}") from None
    return from_hf(hf_model)


def _hub_endpoint() -> str:
    try:
        from huggingface_hub import constants
        return constants.ENDPOINT
    except (ImportError, AttributeError):
        return "https://huggingface.co"


def _reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to the host of `url` opens within `timeout` seconds."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    try:
        with socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout):
            return True
    except OSError:
        return False
