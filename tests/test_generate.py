"""lmbook.generate against Hugging Face: every logits transform equals its transformers counterpart
(random logits, ties and extreme values, to 1e-6); greedy decoding, sampling with a fixed seed and
beam search (beams, length penalty, early stopping, end-of-sequence) give transformers' own token
ids on the same weights; cached and uncached decoding give the same logits at every step and the
same tokens, inside the context and past it; batched left-padded generation equals one prompt at a
time; speculative decoding returns the target's greedy tokens, and its samples follow the target's
distribution (chi-square at a fixed seed); bad input is a clear error that names the argument."""

import math
import warnings

import pytest
import torch

from lmbook import generate as G
from lmbook import hf
from lmbook.gpt import GPT, GPTConfig

transformers = pytest.importorskip("transformers")
from transformers import (  # noqa: E402
    LogitsProcessorList,
    MinPLogitsWarper,
    RepetitionPenaltyLogitsProcessor,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

ATOL = 1e-6  # the transforms: the same operations, so equal in practice; 1e-6 leaves room for op order


def randomised(config: GPTConfig, seed: int, scale: float = 0.3) -> GPT:
    """A GPT with every weight random (so that no part of the network can hide), in eval mode."""
    torch.manual_seed(seed)
    model = GPT(config).eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(scale * torch.randn(p.shape, generator=g))
    return model


def logits_cases() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    normal = torch.randn(16, 40, generator=g) * 3
    ties = torch.randint(-3, 4, (16, 40), generator=g).float()                     # many equal logits
    extreme = torch.randn(16, 40, generator=g) * 1e4                               # softmax near one-hot
    extreme[:, ::7] = -math.inf                                                     # impossible tokens
    extreme[3] = torch.where(torch.arange(40) % 2 == 0, 1e30, -1e30)
    tiny = torch.randn(16, 40, generator=g) * 1e-4                                  # nearly uniform
    return {"normal": normal, "ties": ties, "extreme": extreme, "tiny": tiny}


def same(ours: torch.Tensor, theirs: torch.Tensor) -> bool:
    """Equal where finite (to ATOL), and -inf/+inf in the same places."""
    finite = torch.isfinite(theirs)
    return torch.equal(finite, torch.isfinite(ours)) and torch.equal(ours[~finite], theirs[~finite]) \
        and torch.allclose(ours[finite], theirs[finite], atol=ATOL, rtol=0)


@pytest.mark.parametrize("case", logits_cases())
@pytest.mark.parametrize("t", [0.25, 1.0, 2.5])
def test_temperature_equals_hf(case, t):
    z = logits_cases()[case]
    assert same(G.apply_temperature(z, t), TemperatureLogitsWarper(t)(None, z.clone()))


@pytest.mark.parametrize("case", logits_cases())
@pytest.mark.parametrize("k", [1, 2, 5, 40, 100])
def test_top_k_equals_hf(case, k):
    z = logits_cases()[case]
    assert same(G.top_k_filter(z, k), TopKLogitsWarper(k)(None, z.clone()))


@pytest.mark.parametrize("case", logits_cases())
@pytest.mark.parametrize("p", [1e-4, 0.3, 0.5, 0.9, 0.999, 1.0])
def test_top_p_equals_hf(case, p):
    z = logits_cases()[case]
    assert same(G.top_p_filter(z, p), TopPLogitsWarper(p)(None, z.clone()))


@pytest.mark.parametrize("case", logits_cases())
@pytest.mark.parametrize("p", [0.0, 0.05, 0.3, 1.0])
def test_min_p_equals_hf(case, p):
    z = logits_cases()[case]
    assert same(G.min_p_filter(z, p), MinPLogitsWarper(p)(None, z.clone()))


@pytest.mark.parametrize("case", logits_cases())
@pytest.mark.parametrize("penalty", [0.5, 1.0, 1.3, 3.0])
def test_repetition_penalty_equals_hf(case, penalty):
    z = logits_cases()[case]
    seen = torch.randint(0, 40, (16, 25), generator=torch.Generator().manual_seed(1))   # repeats included
    assert same(G.repetition_penalty(z, seen, penalty), RepetitionPenaltyLogitsProcessor(penalty)(seen, z.clone()))


def test_frequency_and_presence_penalties_follow_their_formula():
    z = logits_cases()["normal"]
    generated = torch.randint(0, 40, (16, 30), generator=torch.Generator().manual_seed(2))
    out = G.frequency_penalty(z, generated, frequency=0.7, presence=0.4)
    for b in range(16):
        for v in range(40):
            count = int((generated[b] == v).sum())
            assert abs(out[b, v] - (z[b, v] - 0.7 * count - 0.4 * (count > 0))) < ATOL


def test_sampling_applies_the_transforms_in_hf_order():
    z = logits_cases()["normal"]
    seen = torch.randint(0, 40, (16, 12), generator=torch.Generator().manual_seed(3))
    s = G.Sampling(temperature=0.7, top_k=20, top_p=0.8, min_p=0.02, repetition_penalty=1.4)
    theirs = LogitsProcessorList([RepetitionPenaltyLogitsProcessor(1.4), TemperatureLogitsWarper(0.7),
                                  TopKLogitsWarper(20), TopPLogitsWarper(0.8), MinPLogitsWarper(0.02)])
    assert same(s.transform(z, seen), theirs(seen, z.clone()))


# ---- whole generations against transformers' generate ----------------------------------------------------

CONFIGS = [GPTConfig(vocab_size=50, block_size=64, n_layer=2, n_head=2, n_embd=32),
           GPTConfig(vocab_size=23, block_size=40, n_layer=3, n_head=4, n_embd=16)]


def frequent_token(model: GPT, prompt: torch.Tensor) -> int:
    """A token the model often predicts (a good end-of-sequence id: beams finish early and at different times)."""
    out = G.generate(model, prompt, 20, greedy=True)
    return int(torch.mode(out[:, prompt.shape[1]:].flatten()).values)


@pytest.mark.parametrize("config", CONFIGS, ids=str)
def test_greedy_equals_hf_generate(config):
    ours = randomised(config, seed=config.vocab_size)
    theirs = hf.to_hf(ours)
    idx = torch.randint(0, config.vocab_size, (3, 6), generator=torch.Generator().manual_seed(0))
    n = config.block_size - 6
    expected = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=n, do_sample=False,
                               pad_token_id=0)
    assert torch.equal(G.generate(ours, idx, n, greedy=True), expected)


@pytest.mark.parametrize("settings", [dict(temperature=0.8, top_k=10), dict(top_p=0.9, top_k=0),
                                      dict(temperature=1.3, min_p=0.05, top_k=0), dict(repetition_penalty=1.5, top_k=0)],
                         ids=str)
def test_sampling_equals_hf_generate_with_the_same_seed(settings):
    """The same transforms, then one torch.multinomial per step from the global generator: seeded alike,
    both draw the same tokens."""
    config = CONFIGS[0]
    ours = randomised(config, seed=5)
    theirs = hf.to_hf(ours)
    idx = torch.randint(0, config.vocab_size, (2, 4), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(123)
    expected = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=40, do_sample=True,
                               pad_token_id=0, **settings)
    ours_settings = {k: v for k, v in settings.items() if not (k == "top_k" and v == 0)}
    torch.manual_seed(123)
    assert torch.equal(G.generate(ours, idx, 40, **ours_settings), expected)


BEAM_SETTINGS = [dict(num_beams=2, length_penalty=1.0, early_stopping=False),
                 dict(num_beams=4, length_penalty=1.0, early_stopping=True),
                 dict(num_beams=4, length_penalty=0.0, early_stopping="never"),
                 dict(num_beams=3, length_penalty=2.0, early_stopping=False),
                 dict(num_beams=5, length_penalty=-0.5, early_stopping="never"),
                 dict(num_beams=5, length_penalty=1.5, early_stopping="never")]


@pytest.mark.parametrize("config", CONFIGS, ids=str)
@pytest.mark.parametrize("settings", BEAM_SETTINGS, ids=str)
@pytest.mark.parametrize("with_eos", [False, True])
def test_beam_search_equals_hf_generate(config, settings, with_eos):
    ours = randomised(config, seed=config.n_layer)
    theirs = hf.to_hf(ours)
    idx = torch.randint(0, config.vocab_size, (3, 5), generator=torch.Generator().manual_seed(2))
    eos = frequent_token(ours, idx) if with_eos else None
    n = 25
    expected = theirs.generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=n, do_sample=False,
                               eos_token_id=eos, pad_token_id=eos if eos is not None else 0,
                               return_dict_in_generate=True, output_scores=True, **settings)
    seqs, scores = G.beam_search(ours, idx, n, settings["num_beams"], length_penalty=settings["length_penalty"],
                                 early_stopping=settings["early_stopping"], eos_id=eos)
    assert torch.equal(seqs, expected.sequences)
    assert torch.allclose(scores, expected.sequences_scores, atol=1e-5, rtol=1e-5)
    if with_eos:
        assert (seqs[:, 5:] == eos).any(), "the test should exercise finished beams"


def test_beam_search_with_and_without_the_cache_agree():
    ours = randomised(CONFIGS[0], seed=3)
    idx = torch.randint(0, 50, (2, 4), generator=torch.Generator().manual_seed(4))
    a = G.beam_search(ours, idx, 20, 3, eos_id=frequent_token(ours, idx))
    b = G.beam_search(ours, idx, 20, 3, eos_id=frequent_token(ours, idx), use_cache=False)
    assert torch.equal(a[0], b[0]) and torch.allclose(a[1], b[1], atol=1e-5)


# ---- the KV cache ----------------------------------------------------------------------------------------


def test_cached_and_uncached_logits_agree_at_every_step_and_500_greedy_tokens_are_the_same():
    config = GPTConfig(vocab_size=40, block_size=512, n_layer=2, n_head=2, n_embd=32)
    model = randomised(config, seed=7, scale=0.2)
    cached, plain = G.Decoder(model), G.Decoder(model, use_cache=False)
    idx = torch.randint(0, 40, (2, 8), generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        a, b = cached.feed(idx)[:, -1], plain.feed(idx)[:, -1]
        worst = 0.0
        for _ in range(500):
            worst = max(worst, (a - b).abs().max().item())
            assert torch.equal(a.argmax(-1), b.argmax(-1))
            token = a.argmax(-1, keepdim=True)
            a, b = cached.feed(token)[:, -1], plain.feed(token)[:, -1]
    assert worst < 1e-5, f"largest logit difference {worst:.2e}"
    assert cached.tokens.shape[1] == 8 + 500 and cached.cache.length == 508


def test_past_the_context_the_windows_are_the_same_with_and_without_the_cache():
    config = GPTConfig(vocab_size=30, block_size=32, n_layer=2, n_head=2, n_embd=32)
    model = randomised(config, seed=8)
    idx = torch.randint(0, 30, (2, 3), generator=torch.Generator().manual_seed(0))
    for keep in (0, 5, 16, 31):
        a = G.generate(model, idx, 150, greedy=True, keep=keep)
        b = G.generate(model, idx, 150, greedy=True, keep=keep, use_cache=False)
        assert torch.equal(a, b), f"keep={keep}"


def test_feeding_in_chunks_gives_the_logits_of_feeding_token_by_token():
    model = randomised(GPTConfig(vocab_size=30, block_size=24, n_layer=2, n_head=2, n_embd=16), seed=9).double()
    text = torch.randint(0, 30, (1, 100), generator=torch.Generator().manual_seed(1))
    one = G.Decoder(model, use_cache=False)
    with torch.inference_mode():
        reference = torch.cat([one.feed(text[:, i:i + 1]) for i in range(100)], dim=1)
        chunked, start = G.Decoder(model), 0
        pieces = []
        for size in [7, 1, 30, 2, 5, 55]:
            pieces.append(chunked.feed(text[:, start:start + size]))
            start += size
    assert torch.allclose(torch.cat(pieces, dim=1), reference, atol=1e-12)


def test_the_teaching_attention_path_with_a_cache_gives_the_same_logits():
    config = GPTConfig(vocab_size=30, block_size=40, n_layer=2, n_head=2, n_embd=16)
    fast = randomised(config, seed=10).double()
    teaching = GPT(GPTConfig(**(config.to_dict() | {"attention": "lmbook"}))).double().eval()
    teaching.load_state_dict(fast.state_dict())
    idx = torch.randint(0, 30, (2, 9))
    prompts, mask = G.left_pad([[1, 2, 3, 4, 5], [6, 7]])
    for kwargs in ({}, {"attention_mask": mask}):
        x = idx if not kwargs else prompts
        assert torch.equal(G.generate(fast, x, 25, greedy=True, **kwargs), G.generate(teaching, x, 25, greedy=True, **kwargs))


def test_cache_memory_is_the_formula():
    config = GPTConfig(vocab_size=40, block_size=128, n_layer=3, n_head=4, n_embd=32)
    model = randomised(config, seed=11)
    decoder = G.Decoder(model)
    with torch.inference_mode():
        decoder.feed(torch.randint(0, 40, (2, 50)))
        for _ in range(10):
            decoder.feed(torch.randint(0, 40, (2, 1)))
    assert decoder.cache.nbytes() == G.kv_cache_bytes(config, 60, batch=2, bytes_per_value=4)
    assert G.kv_cache_bytes(GPTConfig(50257, 1024, 12, 12, 768), 1024, bytes_per_value=2) == 37_748_736


def test_a_cache_that_would_pass_the_context_is_a_clear_error():
    model = randomised(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8), seed=0)
    cache = G.KVCache(model.config)
    model(torch.zeros(1, 6, dtype=torch.long), cache=cache)
    with pytest.raises(ValueError, match="exceed block_size=8"):
        model(torch.zeros(1, 3, dtype=torch.long), cache=cache)


# ---- batches of prompts of different lengths -------------------------------------------------------------------


@pytest.mark.parametrize("use_cache", [True, False])
def test_batched_left_padded_generation_equals_one_prompt_at_a_time(use_cache):
    model = randomised(CONFIGS[0], seed=12)
    prompts = [[1, 2, 3, 4, 5, 6, 7], [8, 9], [10, 11, 12, 13], [14]]
    idx, mask = G.left_pad(prompts, pad_id=49)
    batched = G.generate(model, idx, 30, greedy=True, attention_mask=mask, use_cache=use_cache,
                         repetition_penalty=1.3)
    for row, prompt in zip(batched, prompts):
        alone = G.generate(model, torch.tensor([prompt]), 30, greedy=True, repetition_penalty=1.3)
        assert torch.equal(row[-30:], alone[0, -30:])
    with torch.inference_mode():
        padded = G.Decoder(model, pad=mask == 0).feed(idx)[:, -1]
        for row, prompt in enumerate(prompts):
            alone = G.Decoder(model).feed(torch.tensor([prompt]))[:, -1]
            assert torch.allclose(padded[row], alone[0], atol=1e-5)


def test_eos_finishes_a_row_and_the_rest_is_padding():
    model = randomised(CONFIGS[0], seed=13)
    idx = torch.randint(0, 50, (4, 3), generator=torch.Generator().manual_seed(3))
    eos = frequent_token(model, idx)
    out = G.generate(model, idx, 30, greedy=True, eos_id=eos, pad_id=0)
    expected = hf.to_hf(model).generate(idx, attention_mask=torch.ones_like(idx), max_new_tokens=30, do_sample=False,
                                        eos_token_id=eos, pad_token_id=0)
    assert torch.equal(out, expected)


# ---- speculative decoding ------------------------------------------------------------------------------------


def test_greedy_speculative_decoding_returns_the_target_greedy_tokens():
    target = randomised(GPTConfig(vocab_size=30, block_size=48, n_layer=2, n_head=2, n_embd=32), seed=14).double()
    draft = randomised(GPTConfig(vocab_size=30, block_size=20, n_layer=1, n_head=2, n_embd=16), seed=15).double()
    idx = torch.randint(0, 30, (1, 5), generator=torch.Generator().manual_seed(0))
    expected = G.generate(target, idx, 120, greedy=True)                   # past both contexts
    for k in (1, 3, 8):
        out, stats = G.speculative_generate(target, draft, idx, 120, k, greedy=True)
        assert torch.equal(out, expected), f"k={k}"
        assert stats.emitted == 120 and 0 <= stats.accepted <= stats.proposed
    out, stats = G.speculative_generate(target, target, idx, 60, 4, greedy=True)
    assert torch.equal(out, expected[:, :65]) and stats.acceptance_rate == 1.0


def chi_square_p_value(counts: torch.Tensor, probs: torch.Tensor) -> float:
    expected = counts.sum() * probs.double()
    chi2 = ((counts.double() - expected) ** 2 / expected).sum()
    df = len(counts) - 1
    return torch.special.gammaincc(torch.tensor(df / 2, dtype=torch.float64), chi2 / 2).item()


def test_speculative_sampling_follows_the_target_distribution():
    """Tiny vocabulary, draft and target that disagree: the first emitted token of many runs is
    distributed as the target's next-token distribution (chi-square, fixed seed)."""
    V = 5
    target = randomised(GPTConfig(vocab_size=V, block_size=16, n_layer=1, n_head=1, n_embd=8), seed=3, scale=1.0)
    draft = randomised(GPTConfig(vocab_size=V, block_size=16, n_layer=1, n_head=1, n_embd=8), seed=4, scale=1.0)
    idx = torch.tensor([[1, 2]])
    with torch.no_grad():
        p = target(idx)[0][0, -1].softmax(-1)
        q = draft(idx)[0][0, -1].softmax(-1)
    assert (p - q).abs().sum() > 0.5, "the draft should disagree with the target, or the test shows nothing"
    g = torch.Generator().manual_seed(0)
    counts = torch.zeros(V)
    runs = 1500
    for _ in range(runs):
        out, _ = G.speculative_generate(target, draft, idx, 2, 3, generator=g)
        counts[out[0, 2]] += 1
    assert chi_square_p_value(counts, p) > 0.001, (counts / runs, p)
    naive = torch.zeros(V)  # the check has power: the draft's own samples fail it
    for _ in range(runs):
        naive[torch.multinomial(q, 1, generator=g)] += 1
    assert chi_square_p_value(naive, p) < 1e-6


def test_the_acceptance_rule_emits_the_target_distribution():
    """speculative_accept alone, many draws: accepted draft or residual sample, the token is ~ p."""
    g = torch.Generator().manual_seed(1)
    V = 6
    p = torch.softmax(torch.randn(2, V, generator=g) * 2, -1)
    q = torch.softmax(torch.randn(1, V, generator=g) * 2, -1)
    counts = torch.zeros(V)
    accepted = 0
    for _ in range(20000):
        x = torch.multinomial(q[0], 1, generator=g)
        n, token = G.speculative_accept(p, q, x, generator=g)
        accepted += n
        counts[x[0] if n == 1 else token] += 1
    assert chi_square_p_value(counts, p[0]) > 0.001
    expected_rate = torch.minimum(p[0], q[0]).sum().item()          # P(accept) = Σ min(p, q)
    assert abs(accepted / 20000 - expected_rate) < 0.015


def test_a_draft_token_the_target_rules_out_is_never_accepted(monkeypatch):
    """u is drawn from [0, 1): accepting when u * q < p gives probability exactly p/q, and a token with
    p = 0 is refused even when u is 0 (u * q <= p would accept it then)."""
    p = torch.tensor([[0.0, 0.5, 0.5], [1 / 3, 1 / 3, 1 / 3]])
    q = torch.tensor([[1.0, 0.0, 0.0]])
    monkeypatch.setattr(G.torch, "rand", lambda *args, **kwargs: torch.tensor(0.0))
    n, token = G.speculative_accept(p, q, torch.tensor([0]))
    assert n == 0 and token in (1, 2)


# ---- text, stop strings and bad input -------------------------------------------------------------------------

CHARS = list("\nabcdefgh ")


def encode(s: str) -> list[int]:
    return [CHARS.index(c) if c in CHARS else _unknown(c) for c in s]


def _unknown(c):
    raise KeyError(f"character {c!r} is not in the vocabulary")


def decode(ids) -> str:
    return "".join(CHARS[i] for i in ids)


def test_stop_strings_cut_the_text_and_one_that_never_occurs_leaves_it_whole():
    model = randomised(GPTConfig(vocab_size=len(CHARS), block_size=64, n_layer=1, n_head=2, n_embd=16), seed=16)
    full = G.generate_text(model, encode, decode, "ab", 40, greedy=True)
    assert len(full) == 40
    stop = full[10:12]
    cut = G.generate_text(model, encode, decode, "ab", 40, greedy=True, stop=[stop, "hhhhhhhhh"])
    assert cut == full[: full.find(stop)]
    with pytest.raises(ValueError, match="can never occur"):
        G.generate_text(model, encode, decode, "ab", 40, stop=["xyz"])
    with pytest.raises(ValueError, match="non-empty str"):
        G.generate_text(model, encode, decode, "ab", 40, stop=[""])
    with pytest.raises(ValueError, match="prompt must be a non-empty str"):
        G.generate_text(model, encode, decode, "", 40)


SMALL = GPTConfig(vocab_size=10, block_size=16, n_layer=1, n_head=1, n_embd=8)


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(top_p=0.0), ValueError, r"top_p must be a number in \(0, 1\]"),
    (dict(top_p=1.5), ValueError, r"top_p must be a number in \(0, 1\]"),
    (dict(top_p=float("nan")), ValueError, "top_p"),
    (dict(top_k=0), ValueError, "top_k must be an int >= 1"),
    (dict(top_k=2.5), TypeError, "top_k must be an int >= 1"),
    (dict(temperature=0), ValueError, "greedy=True"),
    (dict(temperature=-1.0), ValueError, "temperature must be a number > 0"),
    (dict(temperature=float("inf")), ValueError, "temperature"),
    (dict(min_p=-0.1), ValueError, "min_p"),
    (dict(repetition_penalty=0), ValueError, "repetition_penalty"),
    (dict(frequency_penalty=float("nan")), ValueError, "frequency_penalty"),
    (dict(greedy="yes"), TypeError, "greedy"),
    (dict(top_n=3), TypeError, "unknown decoding settings"),
    (dict(keep=16), ValueError, "keep"),
])
def test_bad_settings_are_clear_errors(kwargs, error, match):
    model = randomised(SMALL, seed=0)
    with pytest.raises(error, match=match):
        G.generate(model, torch.zeros(1, 2, dtype=torch.long), 3, **kwargs)


@pytest.mark.parametrize("idx, n, error, match", [
    (torch.zeros(1, 0, dtype=torch.long), 3, ValueError, "empty"),
    (torch.zeros(0, 4, dtype=torch.long), 3, ValueError, "empty"),
    (torch.zeros(4, dtype=torch.long), 3, ValueError, r"idx\[None\]"),
    (torch.zeros(1, 4), 3, TypeError, "integer token ids"),
    (torch.full((1, 4), 10), 3, ValueError, "outside the vocabulary"),
    (torch.zeros(1, 4, dtype=torch.long), 0, ValueError, "max_new_tokens"),
    ([[1, 2]], 3, TypeError, "torch.Tensor"),
])
def test_bad_prompts_are_clear_errors(idx, n, error, match):
    with pytest.raises(error, match=match):
        G.generate(randomised(SMALL, seed=0), idx, n)


def test_a_prompt_longer_than_the_context_is_read_from_its_end_with_a_warning():
    model = randomised(SMALL, seed=0)
    idx = torch.randint(0, 10, (1, 40), generator=torch.Generator().manual_seed(0))
    with pytest.warns(UserWarning, match="reads only its last 16"):
        out = G.generate(model, idx, 5, greedy=True)
    assert torch.equal(out[:, :40], idx)
    window = G.Decoder(model).window_start(39)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert torch.equal(out[:, 40:], G.generate(model, idx[:, window:], 5, greedy=True)[:, -5:])


def test_bad_masks_beams_and_speculative_arguments_are_clear_errors():
    model = randomised(SMALL, seed=0)
    idx = torch.zeros(2, 3, dtype=torch.long)
    with pytest.raises(ValueError, match="pad on the left"):
        G.generate(model, idx, 2, attention_mask=torch.tensor([[1, 1, 0], [1, 1, 1]]))
    with pytest.raises(ValueError, match="0 and 1 only"):
        G.generate(model, idx, 2, attention_mask=torch.tensor([[2, 1, 1], [1, 1, 1]]))
    with pytest.raises(ValueError, match="must fit in block_size"):
        G.generate(model, idx, 20, attention_mask=torch.tensor([[0, 1, 1], [1, 1, 1]]))
    with pytest.raises(ValueError, match="num_beams must be at most"):
        G.beam_search(model, idx, 3, num_beams=6)
    with pytest.raises(ValueError, match="block_size=16"):
        G.beam_search(model, idx, 14, num_beams=2)
    with pytest.raises(ValueError, match="early_stopping"):
        G.beam_search(model, idx, 3, num_beams=2, early_stopping="sometimes")
    with pytest.raises(ValueError, match="one sequence at a time"):
        G.speculative_generate(model, model, idx, 3)
    other = randomised(GPTConfig(vocab_size=11, block_size=16, n_layer=1, n_head=1, n_embd=8), seed=0)
    with pytest.raises(ValueError, match="share the vocabulary"):
        G.speculative_generate(model, other, idx[:1], 3)
    with pytest.raises(ValueError, match="k must be less than block_size"):
        G.speculative_generate(model, model, idx[:1], 3, k=16)
    with pytest.raises(ValueError, match="eos_id"):
        G.generate(model, idx, 3, eos_id=10)
    with pytest.raises(TypeError, match="either sampling"):
        G.generate(model, idx, 3, G.Sampling(), top_k=3)
    with pytest.raises(ValueError, match="prompts"):
        G.left_pad([[1], []])


def test_generation_leaves_the_model_as_it_was():
    model = randomised(SMALL, seed=0).train()
    G.generate(model, torch.zeros(1, 2, dtype=torch.long), 3)
    assert model.training and model.check_inputs


def test_generation_that_stops_early_leaves_the_model_as_it_was():
    model = randomised(GPTConfig(vocab_size=len(CHARS), block_size=64, n_layer=1, n_head=2, n_embd=16), seed=16).train()
    idx = torch.tensor([encode("ab")])
    first = int(G.generate(model, idx, 1, greedy=True)[0, -1])
    out = G.generate(model, idx, 30, greedy=True, eos_id=first)                # every row ends at its first token
    assert out.shape[1] == idx.shape[1] + 1 and model.training and model.check_inputs
    text = G.generate_text(model, encode, decode, "ab", 40, greedy=True)
    assert G.generate_text(model, encode, decode, "ab", 40, greedy=True, stop=[text[:2]]) == ""
    assert model.training and model.check_inputs


def test_with_biases_computes_the_same_function():
    model = randomised(GPTConfig(vocab_size=20, block_size=16, n_layer=2, n_head=2, n_embd=16, bias=False), seed=1)
    biased = G.with_biases(model)
    x = torch.randint(0, 20, (2, 16))
    assert biased.config.bias and torch.allclose(biased(x)[0], model(x)[0], atol=1e-6)
    assert torch.allclose(hf.to_hf(biased)(x).logits, model(x)[0], atol=1e-5)
