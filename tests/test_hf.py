"""lmbook.hf: our GPT and Hugging Face's GPT2LMHeadModel with the same weights give the same logits
and loss for random configurations, conversion round trips are exact, and the pretrained path
fails fast and clearly when offline."""

import pytest
import torch

from lmbook import hf
from lmbook.gpt import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
from transformers import GPT2Config, GPT2LMHeadModel  # noqa: E402

# float32 logits of width ≤ 64 and ≤ 3 layers agree to ~1e-6; 1e-5 leaves room for summation order.
ATOL32, ATOL64 = 1e-5, 1e-10


def random_configs(n: int, seed: int = 0) -> list[GPTConfig]:
    g = torch.Generator().manual_seed(seed)

    def draw(low, high):
        return int(torch.randint(low, high + 1, (1,), generator=g))

    configs = []
    for _ in range(n):
        n_head = draw(1, 4)
        configs.append(GPTConfig(vocab_size=draw(2, 300), block_size=draw(1, 24), n_layer=draw(1, 3),
                                 n_head=n_head, n_embd=n_head * draw(1, 16)))
    return configs


def randomised(model: GPT, seed: int) -> GPT:
    """Every weight random (LayerNorms and biases too), so that no part of the map can hide."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return model


@pytest.mark.parametrize("config", random_configs(8), ids=str)
@pytest.mark.parametrize("dtype, atol", [(torch.float32, ATOL32), (torch.float64, ATOL64)])
def test_ours_and_gpt2lmheadmodel_give_the_same_logits_and_loss(config, dtype, atol):
    ours = randomised(GPT(config), seed=config.vocab_size).to(dtype).eval()
    theirs = hf.to_hf(ours)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, config.vocab_size, (3, config.block_size), generator=g)
    logits, loss = ours(x, x)
    out = theirs(x, labels=x)  # HF shifts labels by one inside; ours takes the shifted targets
    assert out.logits.dtype == dtype
    assert torch.allclose(logits, out.logits, atol=atol, rtol=0)
    if config.block_size > 1:
        _, shifted_loss = ours(x[:, :-1], x[:, 1:])
        # transformers computes its loss in float32 whatever the dtype, hence float32's tolerance
        assert torch.allclose(shifted_loss.float(), out.loss.float(), atol=ATOL32, rtol=0)


@pytest.mark.parametrize("config", random_configs(4, seed=1), ids=str)
def test_gpt2lmheadmodel_imports_into_the_same_function(config):
    torch.manual_seed(0)
    theirs = GPT2LMHeadModel(hf.gpt2_config(config)).eval()
    ours = hf.from_hf(theirs).eval()
    x = torch.randint(0, config.vocab_size, (2, config.block_size))
    assert torch.allclose(ours(x)[0], theirs(x).logits, atol=ATOL32, rtol=0)


def test_round_trips_are_exact():
    config = GPTConfig(vocab_size=50, block_size=12, n_layer=2, n_head=2, n_embd=16)
    ours = randomised(GPT(config), seed=0)
    back = hf.from_hf(hf.to_hf(ours))
    assert back.config == config
    for (name, p), q in zip(ours.state_dict().items(), back.state_dict().values()):
        assert torch.equal(p, q), name
    assert back.lm_head.weight is back.transformer.wte.weight
    torch.manual_seed(0)
    theirs = GPT2LMHeadModel(hf.gpt2_config(config))
    again = hf.to_hf(hf.from_hf(theirs)).state_dict()
    for name, p in theirs.state_dict().items():
        assert torch.equal(p, again[name]), name


def test_greedy_generation_agrees_with_transformers():
    config = GPTConfig(vocab_size=30, block_size=32, n_layer=2, n_head=2, n_embd=16)
    ours = randomised(GPT(config), seed=3).eval()
    theirs = hf.to_hf(ours)
    prompt = torch.tensor([[1, 0, 3]])  # holds id 0 = pad_token_id: transformers needs the explicit mask
    expected = theirs.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=10,
                               do_sample=False, pad_token_id=0)
    assert torch.equal(ours.generate(prompt, 10, top_k=1), expected)


def test_conversion_errors_say_what_is_allowed():
    with pytest.raises(ValueError, match="bias=False has no GPT2LMHeadModel counterpart"):
        hf.to_hf(GPT(GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4, bias=False)))
    with pytest.raises(TypeError, match="converts an lmbook.gpt.GPT"):
        hf.to_hf(torch.nn.Linear(2, 2))
    with pytest.raises(TypeError, match="converts a transformers GPT2LMHeadModel"):
        hf.from_hf(GPT(GPTConfig(vocab_size=10, block_size=4, n_layer=1, n_head=1, n_embd=4)))
    relu = GPT2LMHeadModel(GPT2Config(vocab_size=10, n_positions=4, n_embd=4, n_layer=1, n_head=1,
                                      activation_function="relu"))
    with pytest.raises(ValueError, match="differs from lmbook's GPT in {'activation_function': 'relu'}"):
        hf.from_hf(relu)


def test_from_pretrained_offline_is_a_fast_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # never touch the network from a test
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    monkeypatch.setattr(hf, "_reachable", lambda url, timeout: False)
    with pytest.raises(hf.PretrainedUnavailable, match="not in the Hugging Face cache.*cannot be reached"):
        hf.from_pretrained("gpt2")
    with pytest.raises(ValueError, match="from_pretrained loads one of"):
        hf.from_pretrained("bert-base-uncased")
