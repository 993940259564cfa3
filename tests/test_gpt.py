"""lmbook.gpt: the parameter formula equals numel, the FLOP formula equals torch's FLOP counter, the
model is causal, both attention paths agree, the loss is cross-entropy, generation is reproducible,
save/load is exact, it learns, and bad input gets a clear error. (Parity with Hugging Face's
GPT-2: tests/test_hf.py.)"""

import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from lmbook.checkpoint import CheckpointError
from lmbook.data import sha256_of
from lmbook.gpt import GPT, GPTConfig, flops_per_token, load_gpt, param_count, save_gpt

TINY = dict(vocab_size=37, block_size=16, n_layer=2, n_head=4, n_embd=32)


def tiny(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(**(TINY | overrides)))


def ids(B: int, T: int, V: int = TINY["vocab_size"], seed: int = 0) -> torch.Tensor:
    return torch.randint(0, V, (B, T), generator=torch.Generator().manual_seed(seed))


def has_lmbook_attention() -> bool:
    try:
        from lmbook import attention  # noqa: F401
    except ImportError:
        return False
    return True


# ---- the configuration -------------------------------------------------------------------------


def test_config_round_trips_through_json():
    config = GPTConfig(**TINY, dropout=0.1, bias=False, attention="lmbook")
    assert GPTConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.head_size == 8


@pytest.mark.parametrize("kwargs, error, match", [
    (TINY | dict(n_embd=30), ValueError, r"n_embd=30 must be divisible by n_head=4"),
    (TINY | dict(n_layer=0), ValueError, r"n_layer must be >= 1"),
    (TINY | dict(block_size=8.0), TypeError, r"block_size must be an int"),
    (TINY | dict(vocab_size=True), TypeError, r"vocab_size must be an int"),
    (TINY | dict(dropout=1.0), ValueError, r"dropout is a probability in \[0, 1\)"),
    (TINY | dict(bias="yes"), TypeError, r"bias must be True or False"),
    (TINY | dict(attention="flash"), ValueError, r"attention must be one of \('sdpa', 'lmbook'\)"),
])
def test_bad_configs_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        GPTConfig(**kwargs)


def test_from_dict_names_unknown_and_missing_keys():
    with pytest.raises(ValueError, match=r"unknown GPTConfig keys \['n_heads'\]"):
        GPTConfig.from_dict(TINY | {"n_heads": 4})
    with pytest.raises(ValueError, match=r"missing"):
        GPTConfig.from_dict({"vocab_size": 10})


def test_gpt_needs_a_config():
    with pytest.raises(TypeError, match="GPT needs a GPTConfig"):
        GPT(TINY)


# ---- accounting ---------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [
    GPTConfig(**TINY),
    GPTConfig(**TINY, bias=False),
    GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384),
    GPTConfig(vocab_size=5, block_size=1, n_layer=1, n_head=1, n_embd=1, bias=False),
    GPTConfig(vocab_size=1000, block_size=64, n_layer=3, n_head=8, n_embd=64),
])
def test_param_count_formula_equals_numel(config):
    model = GPT(config)
    numel = sum(p.numel() for p in model.parameters())  # parameters() yields the tied matrix once
    assert param_count(config) == numel == model.num_params()
    assert model.num_params(non_embedding=True) == numel - config.block_size * config.n_embd


def test_param_count_of_gpt2_small_is_the_published_124m():
    gpt2 = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    assert param_count(gpt2) == 124_439_808  # what Hugging Face's GPT2LMHeadModel reports for "gpt2"


@pytest.mark.parametrize("overrides, seq_len", [
    ({}, 16), ({}, 5), (dict(n_layer=3, n_head=2, n_embd=24, bias=False), 9), (dict(vocab_size=200), 12),
])
def test_flops_per_token_equals_torch_flop_counter(overrides, seq_len):
    """torch's FlopCounterMode counts every matmul of the forward and backward pass exactly; the math
    SDPA backend spells attention as matmuls (the fused CPU kernel is not counted)."""
    model, B = tiny(**overrides), 3
    x = ids(B, seq_len, model.config.vocab_size)
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        _, loss = model(x, x)
        loss.backward()
    assert counter.get_total_flops() == B * seq_len * flops_per_token(model.config, seq_len)


def test_flops_default_sequence_is_block_size_and_bad_seq_len_is_an_error():
    config = GPTConfig(**TINY)
    assert flops_per_token(config) == flops_per_token(config, config.block_size)
    with pytest.raises(ValueError, match="seq_len must be an int >= 1"):
        flops_per_token(config, 0)


# ---- the forward pass ---------------------------------------------------------------------------


def test_weights_are_tied_and_initialised_like_gpt2():
    model = tiny(n_layer=8, n_embd=128, vocab_size=500)
    assert model.lm_head.weight is model.transformer.wte.weight
    std = 0.02 / math.sqrt(2 * 8)
    c_proj = torch.cat([b.attn.c_proj.weight.flatten() for b in model.transformer.h])
    assert abs(c_proj.std().item() - std) < 0.05 * std
    assert abs(model.transformer.h[0].mlp.c_fc.weight.std().item() - 0.02) < 0.001
    assert all((b.attn.c_attn.bias == 0).all() for b in model.transformer.h)


def test_initial_loss_is_near_ln_vocab():
    model = tiny()
    _, loss = model(ids(8, 16), ids(8, 16, seed=1))
    assert abs(loss.item() - math.log(TINY["vocab_size"])) < 0.02


def test_loss_is_cross_entropy_of_the_logits_and_ignores_minus_100():
    model = tiny()
    x, y = ids(4, 10), ids(4, 10, seed=1)
    y[0, :3] = -100
    logits, loss = model(x, y)
    assert logits.shape == (4, 10, TINY["vocab_size"])
    keep = y != -100
    assert torch.allclose(loss, F.cross_entropy(logits[keep], y[keep]), atol=1e-6)


@pytest.mark.parametrize("attention", ["sdpa", "lmbook"])
def test_logits_at_t_do_not_depend_on_later_tokens(attention):
    if attention == "lmbook" and not has_lmbook_attention():
        pytest.skip("lmbook.attention (chapter 4) is not available")
    model = tiny(attention=attention).eval()
    x = ids(2, 16)
    logits, _ = model(x)
    for t in [0, 5, 14]:
        changed = x.clone()
        changed[:, t + 1:] = (changed[:, t + 1:] + 1) % TINY["vocab_size"]
        logits_changed, _ = model(changed)
        assert torch.allclose(logits[:, : t + 1], logits_changed[:, : t + 1], atol=1e-6)
        assert not torch.allclose(logits[:, t + 1:], logits_changed[:, t + 1:], atol=1e-3)


def test_a_prefix_gives_the_same_logits_as_the_whole_sequence():
    model = tiny().eval()
    x = ids(2, 16)
    assert torch.allclose(model(x[:, :7])[0], model(x)[0][:, :7], atol=1e-6)


def test_sdpa_matches_attention_written_out():
    """The fast path against softmax(QKᵀ/√d + causal mask)·V spelled out in float64."""
    model = tiny().double().eval()
    attn, x = model.transformer.h[0].attn, torch.randn(2, 11, 32, dtype=torch.float64)
    q, k, v = attn.c_attn(x).split(32, dim=2)
    q, k, v = (z.view(2, 11, 4, 8).transpose(1, 2) for z in (q, k, v))      # (B, nh, T, hs)
    scores = q @ k.transpose(-2, -1) / math.sqrt(8)
    scores = scores.masked_fill(torch.ones(11, 11, dtype=torch.bool).triu(1), -math.inf)
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(2, 11, 32)
    assert torch.allclose(attn(x), attn.c_proj(y), atol=1e-12)


def test_teaching_path_gives_the_same_logits_and_gradients_as_sdpa():
    if not has_lmbook_attention():
        pytest.skip("lmbook.attention (chapter 4) is not available")
    fast, teaching = tiny(), tiny(attention="lmbook")
    teaching.load_state_dict(fast.state_dict())
    x, y = ids(3, 16), ids(3, 16, seed=1)
    (logits_f, loss_f), (logits_t, loss_t) = fast(x, y), teaching(x, y)
    assert torch.allclose(logits_f, logits_t, atol=1e-5)
    loss_f.backward()
    loss_t.backward()
    for (name, p), q in zip(fast.named_parameters(), teaching.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-5), name


def test_dropout_only_in_training_mode():
    model = tiny(dropout=0.2)
    x = ids(2, 16)
    model.eval()
    assert torch.equal(model(x)[0], model(x)[0])
    model.train()
    assert not torch.equal(model(x)[0], model(x)[0])


# ---- bad input ----------------------------------------------------------------------------------


def test_sequence_longer_than_block_size_is_a_clear_error():
    with pytest.raises(ValueError, match=r"sequence of length 17 is longer than block_size=16.*idx\[:, -16:\]"):
        tiny()(ids(1, 17))


@pytest.mark.parametrize("bad_id", [37, 1000, -1])
def test_token_ids_outside_the_vocabulary_are_a_clear_error(bad_id):
    x = ids(2, 8)
    x[1, 3] = bad_id
    with pytest.raises(ValueError, match=rf"token id {bad_id} is out of range for a vocabulary of 37 \(ids 0..36\)"):
        tiny()(x)


@pytest.mark.parametrize("idx, error, match", [
    (torch.zeros(2, 4), TypeError, "integer token ids"),
    ([[1, 2, 3]], TypeError, "must be a torch.Tensor"),
    (torch.zeros(4, dtype=torch.long), ValueError, r"2-D \(B, T\).*idx\[None\]"),
    (torch.zeros(2, 0, dtype=torch.long), ValueError, "empty"),
])
def test_malformed_idx_is_a_clear_error(idx, error, match):
    with pytest.raises(error, match=match):
        tiny()(idx)


def test_bad_targets_are_a_clear_error():
    model, x = tiny(), ids(2, 8)
    with pytest.raises(ValueError, match="targets must have the shape of idx"):
        model(x, x[:, :4])
    y = x.clone()
    y[0, 0] = 37
    with pytest.raises(ValueError, match=r"target 37 is out of range.*-100"):
        model(x, y)


def test_check_inputs_off_skips_validation_with_the_same_logits():
    model, x = tiny(), ids(2, 8)
    checked, _ = model(x)
    model.check_inputs = False  # what a trainer does after checking its token files once
    unchecked, _ = model(x)
    assert torch.equal(checked, unchecked)
    bad = x.clone()
    bad[0, 0] = 37
    with pytest.raises(IndexError):  # torch's own error: the clear message needs check_inputs=True
        model(bad)


# ---- generation ---------------------------------------------------------------------------------


def test_generate_is_reproducible_and_crops_to_block_size():
    model = tiny()
    start = ids(2, 3)
    out = model.generate(start, 30, generator=torch.Generator().manual_seed(1))  # 33 > block_size 16
    again = model.generate(start, 30, generator=torch.Generator().manual_seed(1))
    assert out.shape == (2, 33) and torch.equal(out[:, :3], start) and torch.equal(out, again)
    assert model.training  # the mode is restored
    long_prompt = model.generate(ids(1, 40), 2, generator=torch.Generator().manual_seed(0))
    assert long_prompt.shape == (1, 42)


def test_top_k_1_is_greedy_decoding():
    model = tiny().eval()
    x = ids(1, 4)
    out = model.generate(x, 5, top_k=1)
    for _ in range(5):
        x = torch.cat([x, model(x)[0][:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, x)


@pytest.mark.parametrize("kwargs, match", [
    (dict(max_new_tokens=-1), "max_new_tokens must be an int >= 0"),
    (dict(max_new_tokens=3, temperature=0), "temperature must be a number > 0"),
    (dict(max_new_tokens=3, top_k=0), "top_k must be None or an int >= 1"),
])
def test_generate_argument_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        tiny().generate(ids(1, 3), **kwargs)


# ---- saving and learning ------------------------------------------------------------------------


def test_save_and_load_round_trip_is_exact(tmp_path):
    model = tiny(bias=False, dropout=0.1)
    save_gpt(model, tmp_path / "m")
    loaded = load_gpt(tmp_path / "m")
    assert loaded.config == model.config
    assert loaded.lm_head.weight is loaded.transformer.wte.weight
    for (name, p), q in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(p, q), name
    saved = json.loads((tmp_path / "m" / "config.json").read_text())
    assert saved.pop("weights_sha256") == sha256_of(tmp_path / "m" / "model.safetensors")
    assert saved == model.config.to_dict()


@pytest.mark.parametrize("damage", ["flip", "truncate", "no hash", "other weights"])
def test_load_refuses_weights_that_do_not_match_their_recorded_hash(tmp_path, damage):
    save_gpt(tiny(), tmp_path / "m")
    weights, config = tmp_path / "m" / "model.safetensors", tmp_path / "m" / "config.json"
    data = bytearray(weights.read_bytes())
    if damage == "flip":  # 100 bytes inside the tensors: safetensors alone would load them
        for i in range(len(data) - 100, len(data)):
            data[i] ^= 0x55
        weights.write_bytes(bytes(data))
        match = r"model\.safetensors does not match the sha256 recorded .* not loaded"
    elif damage == "truncate":
        weights.write_bytes(bytes(data[: len(data) // 2]))
        match = "does not match the sha256 recorded"
    elif damage == "no hash":
        info = json.loads(config.read_text())
        del info["weights_sha256"]
        config.write_text(json.dumps(info))
        match = r"no sha256 is recorded .* verify=False\) and save it again with save_gpt"
    else:
        with torch.no_grad():
            other = tiny()
            other.transformer.wte.weight += 1  # the same shapes, other numbers
        save_gpt(other, tmp_path / "other")
        weights.write_bytes((tmp_path / "other" / "model.safetensors").read_bytes())
        match = "does not match the sha256 recorded"
    with pytest.raises(CheckpointError, match=match):
        load_gpt(tmp_path / "m")
    if damage == "no hash":  # the documented way out for a folder saved before hashes were recorded
        save_gpt(load_gpt(tmp_path / "m", verify=False), tmp_path / "m")
        load_gpt(tmp_path / "m")


def test_load_names_a_corrupt_config_file(tmp_path):
    save_gpt(tiny(), tmp_path / "m")
    (tmp_path / "m" / "config.json").write_bytes(b"{not json")
    with pytest.raises(CheckpointError, match=r"m/config\.json cannot be read as JSON"):
        load_gpt(tmp_path / "m")
    (tmp_path / "m" / "config.json").write_text("[1, 2]")
    with pytest.raises(CheckpointError, match=r"config\.json must hold a JSON object"):
        load_gpt(tmp_path / "m")


def test_load_from_a_folder_without_a_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="model.safetensors missing"):
        save_gpt(tiny(), tmp_path)
        (tmp_path / "model.safetensors").unlink()
        load_gpt(tmp_path)


def test_it_learns_a_repeating_text():
    torch.manual_seed(0)
    model = tiny()
    stream = torch.arange(17).repeat(40) % TINY["vocab_size"]       # 0, 1, …, 16, 0, 1, …
    x = stream[: 16 * 40].view(40, 16)[:, :15]
    y = stream[1: 16 * 40 + 1].view(40, 16)[:, :15]
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(100):
        _, loss = model(x, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.1
