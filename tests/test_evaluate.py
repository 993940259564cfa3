"""lmbook.evaluate: each per-token score equals the log-probability computed by brute force from the
context the scorer promises (sliding windows, carried state, n-gram counts, fixed contexts); the
units are the definitions; the block bootstrap is deterministic and its intervals cover what they
should; calibration bins are the formula; multiple-choice questions are well formed and scored by
likelihood, or by the context's pointwise mutual information with a choice; bad input is a clear error."""

import math

import numpy as np
import pytest
import torch

from lmbook import evaluate as E
from lmbook import ngram
from lmbook.gpt import GPT, GPTConfig
from lmbook.mlp import MLPLanguageModel
from lmbook.rnn import CharRNN, evaluate_stream


def randomised(config: GPTConfig, seed: int) -> GPT:
    torch.manual_seed(seed)
    model = GPT(config).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(0.3 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("block_size, stride, N", [(16, 8, 100), (16, 16, 64), (16, 1, 40), (16, 5, 10), (8, 3, 9)])
def test_sliding_windows_score_each_token_from_the_promised_context(block_size, stride, N):
    model = randomised(GPTConfig(vocab_size=20, block_size=block_size, n_layer=2, n_head=2, n_embd=16), 0).double()
    ids = torch.randint(0, 20, (N,), generator=torch.Generator().manual_seed(1))
    scores = E.token_logprobs(model, ids, block_size, stride, batch_size=3)
    assert scores.logprob.shape == (N - 1,)
    ends = [min(block_size, N - 1)]
    while ends[-1] < N - 1:
        ends.append(min(ends[-1] + stride, N - 1))
    for j in range(1, N):                                        # target j, read in the first window that holds it
        end = next(e for e in ends if e >= j)
        context = ids[max(0, end - block_size): j]
        logp = model(context[None])[0][0, -1].log_softmax(-1)
        assert abs(scores.logprob[j - 1].item() - logp[ids[j]].item()) < 1e-10
        assert abs(scores.top_prob[j - 1].item() - logp.max().exp().item()) < 1e-6
        assert scores.hit[j - 1].item() == (logp.argmax() == ids[j]).item()
        if j > block_size:
            assert len(context) >= block_size - stride


def test_stream_scores_equal_chapter_3_evaluate_stream():
    torch.manual_seed(0)
    model = CharRNN(15, emb_dim=8, hidden_size=16, num_layers=2)
    ids = torch.randint(0, 15, (300,))
    scores = E.stream_logprobs(model, ids, chunk=37)
    assert abs(E.nats_per_token(scores.logprob) - evaluate_stream(model, ids, num_streams=1, chunk=64)) < 1e-6


def test_ngram_scores_are_the_models_own_probabilities():
    text = "the cat sat on the mat. the dog sat on the log. " * 5
    model = ngram.NgramLM(3, "kneser_ney").fit([list(text[:150])])
    scores = E.ngram_logprobs(model, text[150:])
    held = text[150:]
    for j in (1, 2, 7, len(held) - 1):
        assert abs(scores.logprob[j - 1].item() - math.log(model.prob(held[j], list(held[:j])[-2:]))) < 1e-12
    assert scores.top_prob is None and len(scores.logprob) == len(held) - 1


def test_fixed_context_is_the_mlp_on_every_window():
    torch.manual_seed(0)
    mlp = MLPLanguageModel(12, block_size=4, emb_dim=3, hidden=8).eval()
    wrapped = E.FixedContext(mlp, 4, pad_id=0)
    x = torch.randint(0, 12, (2, 9))
    out = wrapped(x)
    padded = torch.cat([torch.zeros(2, 3, dtype=torch.long), x], dim=1)
    for t in range(9):
        assert torch.allclose(out[:, t], mlp(padded[:, t:t + 4]), atol=1e-6)


def test_units():
    logp = torch.log(torch.tensor([0.5, 0.25, 0.125], dtype=torch.float64))
    assert abs(E.nats_per_token(logp) - 2 * math.log(2)) < 1e-12
    assert abs(E.bits_per_byte(logp, "abc") - 2.0) < 1e-12                   # 6 bits over 3 ASCII bytes
    assert abs(E.bits_per_byte(logp, "春夜喜") - 2.0 / 3) < 1e-12            # 3 bytes per character
    with pytest.raises(ValueError, match="empty"):
        E.bits_per_byte(logp, "")


def test_block_bootstrap_is_deterministic_and_covers_the_mean_95_times_in_100():
    g = torch.Generator().manual_seed(0)
    values = torch.randn(10_000, generator=g, dtype=torch.float64) + 2.0
    mean, low, high = E.bootstrap_interval(values, segments=100, samples=2000)
    assert (mean, low, high) == E.bootstrap_interval(values, segments=100, samples=2000)
    assert low < mean < high
    half = 1.96 / math.sqrt(10_000)                                          # iid: the usual interval
    assert 0.8 * half < (high - low) / 2 < 1.2 * half
    covered = 0
    for seed in range(300):                                                  # many texts: how often is 2.0 inside?
        sample = torch.randn(2000, generator=g, dtype=torch.float64) + 2.0
        _, low, high = E.bootstrap_interval(sample, segments=50, samples=500, seed=seed)
        covered += low < 2.0 < high
    assert 0.91 <= covered / 300 <= 0.98, covered


def test_the_bootstrap_over_segments_sees_correlation_that_tokens_hide():
    """A slowly varying difficulty (correlated neighbours): resampling tokens one by one would claim an
    interval several times too narrow; segments see the spread."""
    g = torch.Generator().manual_seed(1)
    difficulty = torch.repeat_interleave(torch.randn(50, generator=g, dtype=torch.float64), 200)
    values = difficulty + 0.1 * torch.randn(10_000, generator=g, dtype=torch.float64)
    _, low, high = E.bootstrap_interval(values, segments=50)
    _, low1, high1 = E.bootstrap_interval(values, segments=5000)              # (almost) single tokens
    assert (high - low) > 3 * (high1 - low1)


def test_paired_bootstrap_cancels_the_shared_difficulty():
    g = torch.Generator().manual_seed(2)
    difficulty = torch.repeat_interleave(torch.randn(100, generator=g, dtype=torch.float64), 100)
    a = difficulty + 0.05 * torch.randn(10_000, generator=g, dtype=torch.float64)
    b = difficulty + 0.02 + 0.05 * torch.randn(10_000, generator=g, dtype=torch.float64)
    diff, low, high = E.paired_bootstrap(b, a)
    _, la, ha = E.bootstrap_interval(a)
    _, lb, hb = E.bootstrap_interval(b)
    assert low > 0 and la < hb and lb < ha, "paired: b is worse; separately, the intervals overlap"
    assert abs(diff - 0.02) < 0.005


def test_calibration_bins_are_the_formula():
    top = torch.tensor([0.05, 0.15, 0.15, 0.55, 0.95, 0.95, 0.95, 0.95])
    hit = torch.tensor([False, True, False, True, True, True, True, False])
    c = E.calibration(top, hit, bins=10)
    assert c.count.tolist() == [1, 2, 0, 0, 0, 1, 0, 0, 0, 4]
    assert abs(c.accuracy[9] - 0.75) < 1e-12 and abs(c.confidence[1] - 0.15) < 1e-7
    expected = (1 * 0.05 + 2 * abs(0.5 - 0.15) + 1 * abs(1 - 0.55) + 4 * abs(0.75 - 0.95)) / 8
    assert abs(c.ece - expected) < 1e-6
    g = torch.Generator().manual_seed(3)
    p = torch.rand(50_000, generator=g)
    assert E.calibration(p, torch.rand(50_000, generator=g) < p).ece < 0.01, "calibrated by construction"


def test_distinct_n_and_repetition_rate():
    assert E.distinct_n(["a b c d"], 2) == 1.0 and E.distinct_n(["x x x x x"], 1) == 0.2
    assert E.repetition_rate("one two three four", 2) == 0.0
    assert abs(E.repetition_rate("la la la la la la la la", 3) - 5 / 6) < 1e-12
    assert math.isnan(E.distinct_n(["short"], 2)) and math.isnan(E.repetition_rate("short", 3))
    with pytest.raises(ValueError, match="n must be"):
        E.distinct_n(["a b"], 0)


TEXT = "\n".join(f"SPEAKER {i % 7}:\n" + f"line number {i} of the play, with words {i * 37 % 101}" for i in range(300))


def test_questions_are_well_formed():
    qs = E.multiple_choice_questions(TEXT, 30, context_chars=120, seed=1)
    assert qs == E.multiple_choice_questions(TEXT, 30, context_chars=120, seed=1)
    positions = [q.answer for q in qs]
    assert len(set(positions)) == 4, "the answer's position varies"
    for q in qs:
        assert len(q.choices) == 4 and len(set(q.choices)) == 4
        true = q.choices[q.answer]
        assert (q.context + true) in TEXT + "\n" and q.context.endswith("\n") and len(q.context) <= 120
        assert all(c.endswith("\n") and not c.rstrip().endswith(":") for c in q.choices)


@pytest.mark.parametrize("wrap", [False, True], ids=["gpt with a shared cache", "any causal model"])
def test_causal_scorer_is_the_sum_of_token_logprobs_and_oracles_score_as_expected(wrap):
    chars = sorted(set(TEXT))
    encode = lambda s: [chars.index(c) for c in s]  # noqa: E731
    model = randomised(GPTConfig(vocab_size=len(chars), block_size=64, n_layer=1, n_head=2, n_embd=16), 3).double()
    scored = model if not wrap else torch.nn.Sequential(model)            # not a GPT: one row per choice
    if wrap:
        scored.forward = lambda x: model(x)[0]
    qs = E.multiple_choice_questions(TEXT, 12, context_chars=150, seed=2)
    score = E.causal_scorer(scored, encode, max_len=64)
    for q in qs[:3]:
        got = score(q.context, q.choices)
        longest = max(len(c) for c in q.choices)
        for i, choice in enumerate(q.choices):
            ids = torch.tensor(encode(q.context)[-(64 - longest):] + encode(choice))
            logp = model(ids[None, :-1])[0][0].log_softmax(-1)
            n = len(choice)
            expected = logp[-n:].gather(-1, ids[-n:, None]).sum()
            assert abs(got[i].item() - expected.item()) < 1e-9
    oracle = lambda context, choices: torch.tensor([0.0 if (context + c) in TEXT + "\n" else -1.0 for c in choices])  # noqa: E731
    assert all(h.all() for h in E.multiple_choice_accuracy(oracle, qs))
    first = lambda context, choices: torch.tensor([1.0] + [0.0] * (len(choices) - 1))  # noqa: E731
    assert E.multiple_choice_accuracy(first, qs)[0].float().mean() == np.mean([q.answer == 0 for q in qs])


def test_ngram_scorer_and_per_char_normalisation():
    model = ngram.NgramLM(3, "kneser_ney").fit([list(TEXT[:5000])])
    q = E.Question("abc\n", ["line one\n", "a much longer line two\n"], 0)
    got = E.ngram_scorer(model)(q.context, q.choices)
    for i, c in enumerate(q.choices):
        probs = model.token_probs([list(q.context + c)])
        assert abs(got[i].item() - float(np.log(probs[len(q.context): len(q.context) + len(c)]).sum())) < 1e-9
    total, per_char = E.multiple_choice_accuracy(lambda c, ch: torch.tensor([-9.0, -18.0]), [q])
    assert total.item() and not per_char.item(), "per character, the longer choice (0.78 vs 1.0 nats) wins"


def test_pmi_scorer_subtracts_the_unconditional_score_and_can_change_the_answer():
    model = ngram.NgramLM(3, "kneser_ney").fit([list(TEXT[:5000])])
    score = E.ngram_scorer(model)
    q = E.Question(TEXT[:60], [TEXT[60:90] + "\n", "the the the\n"], 0)
    pmi = E.pmi_scorer(score, "\n")(q.context, q.choices)
    assert torch.allclose(pmi, score(q.context, q.choices) - score("\n", q.choices), atol=1e-12)
    # a choice probable on its own loses its head start: the oracle below prefers choice 1 unconditionally
    fake = lambda context, choices: torch.tensor([-20.0 + 5 * (context == "ctx"), -10.0], dtype=torch.float64)  # noqa: E731
    q = E.Question("ctx", ["a\n", "b\n"], 0)
    assert not E.multiple_choice_accuracy(fake, [q])[0].item()
    assert E.multiple_choice_accuracy(E.pmi_scorer(fake), [q])[0].item()


@pytest.mark.parametrize("call, match", [
    (lambda m: E.pmi_scorer(lambda c, ch: None, ""), "unconditional"),
    (lambda m: E.token_logprobs(m, torch.tensor([1]), 8), "at least 2 tokens"),
    (lambda m: E.token_logprobs(m, torch.zeros(2, 5, dtype=torch.long), 8), "1-D tensor"),
    (lambda m: E.token_logprobs(m, torch.zeros(5), 8), "1-D tensor of token ids"),
    (lambda m: E.token_logprobs(m, torch.zeros(20, dtype=torch.long), 8, stride=9), "stride=9"),
    (lambda m: E.token_logprobs(m, torch.zeros(20, dtype=torch.long), 8, stride=0), "stride must be"),
    (lambda m: E.bootstrap_interval(torch.zeros(10), segments=20), "segments"),
    (lambda m: E.bootstrap_interval(torch.zeros(100), level=95), "level"),
    (lambda m: E.paired_bootstrap(torch.zeros(100), torch.zeros(99)), "same tokens"),
    (lambda m: E.calibration(torch.zeros(3), None), "top_prob and hit"),
    (lambda m: E.multiple_choice_questions(TEXT, 0), "n must be"),
    (lambda m: E.multiple_choice_questions("short\ntext", 3), "too few"),
])
def test_bad_input_is_a_clear_error(call, match):
    model = randomised(GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=1, n_embd=8), 0)
    with pytest.raises(ValueError, match=match):
        call(model)
