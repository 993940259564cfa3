"""lmbook.memorization: the canary's candidate log-probabilities and exposure against a hand calculation
on a toy model whose probabilities are known, the KV-cache tree against reading every candidate in
full, regurgitation on a model that copies, and bad input."""

import doctest
import itertools
import math

import pytest
import torch
from torch import nn

from lmbook import memorization
from lmbook.gpt import GPT, GPTConfig


class Bigram(nn.Module):
    """logits[b, t] = table[idx[b, t]]: the next token depends on the last one only, so every
    candidate's probability is a product of table entries, computable by hand."""

    def __init__(self, table: torch.Tensor):
        super().__init__()
        self.table = nn.Parameter(table)

    def forward(self, idx):
        return self.table[idx]


def test_docstring_examples():
    assert doctest.testmod(memorization).failed == 0


def test_candidate_logprobs_and_exposure_by_hand():
    torch.manual_seed(0)
    V = 6
    model = Bigram(torch.randn(V, V, dtype=torch.float64))
    logp = model.table.detach().log_softmax(-1)
    prefix, alphabet = torch.tensor([5, 4]), torch.tensor([1, 2, 3])
    got = memorization.candidate_logprobs(model, prefix, alphabet, length=3, use_cache=False)
    assert got.shape == (27,)
    for n, (a, b, c) in enumerate(itertools.product(range(3), repeat=3)):   # index = 9a + 3b + c
        x, y, z = alphabet[a].item(), alphabet[b].item(), alphabet[c].item()
        by_hand = logp[4, x] + logp[x, y] + logp[y, z]                       # the prefix's last token is 4
        assert math.isclose(got[n].item(), by_hand.item(), rel_tol=1e-12)
    secret = memorization.secret_index("213", "123")                          # tokens 2, 1, 3
    assert secret == 1 * 9 + 0 * 3 + 2
    rank = 1 + sum(v > got[secret].item() for v in got.tolist())
    assert memorization.rank(got, secret) == rank
    assert memorization.exposure(got, secret) == pytest.approx(math.log2(27) - math.log2(rank))
    assert memorization.exposure(got, int(got.argmax())) == pytest.approx(math.log2(27)), "the most probable: log2 |R|"
    assert memorization.exposure(got, int(got.argmin())) == pytest.approx(0.0), "the least probable: 0"


@pytest.mark.parametrize("batch_size", [4096, 7, 1])
def test_cached_tree_equals_reading_every_candidate(batch_size):
    torch.manual_seed(1)
    model = GPT(GPTConfig(vocab_size=13, block_size=16, n_layer=2, n_head=2, n_embd=16, dropout=0.0)).double()
    prefix, alphabet = torch.tensor([3, 1, 4, 1, 5]), torch.tensor([0, 2, 7, 9])
    full = memorization.candidate_logprobs(model, prefix, alphabet, 3, use_cache=False)
    cached = memorization.candidate_logprobs(model, prefix, alphabet, 3, use_cache=True, batch_size=batch_size)
    assert torch.allclose(full, cached, atol=1e-10)
    assert torch.allclose(torch.logsumexp(memorization.candidate_logprobs(model, prefix, torch.arange(13), 2), 0),
                          torch.zeros((), dtype=torch.float64), atol=1e-10), \
        "over the whole vocabulary, the candidates' probabilities sum to 1"


class Successor(nn.Module):
    """Always predicts token + 1 (mod V), surely: from a prompt ending in 2 it writes 3, 4, 5, ..."""

    def __init__(self, V: int = 10):
        super().__init__()
        self.config = GPTConfig(vocab_size=V, block_size=32, n_layer=1, n_head=1, n_embd=4)
        self.dummy = nn.Parameter(torch.zeros(()))
        self.table = torch.full((V, V), -1e4)
        self.table[torch.arange(V), (torch.arange(V) + 1) % V] = 0.0

    def forward(self, idx, targets=None, cache=None):  # generate passes cache=None without a cache
        return self.table[idx] + self.dummy, None


def test_regurgitation_on_a_model_that_copies():
    prompts = torch.tensor([[0, 1, 2], [5, 6, 7]])
    continuations = torch.tensor([[3, 4, 5, 6], [8, 9, 1, 1]])
    got = memorization.regurgitation(Successor(), prompts, continuations, use_cache=False)
    assert got.tolist() == [1.0, 0.5], "row 1 comes back whole; row 2 breaks at its third token (0, not 1)"


def test_bad_input():
    model = Bigram(torch.zeros(4, 4))
    ok = dict(prefix=torch.tensor([1]), alphabet=torch.tensor([0, 1]), length=2)
    with pytest.raises(TypeError, match="model must be a torch.nn.Module"):
        memorization.candidate_logprobs(lambda x: x, **ok)
    with pytest.raises(TypeError, match="prefix must be a non-empty 1-D tensor"):
        memorization.candidate_logprobs(model, **(ok | {"prefix": torch.tensor([], dtype=torch.long)}))
    with pytest.raises(TypeError, match="alphabet must be a non-empty 1-D tensor"):
        memorization.candidate_logprobs(model, **(ok | {"alphabet": torch.tensor([0.5])}))
    with pytest.raises(ValueError, match="repeats a token"):
        memorization.candidate_logprobs(model, **(ok | {"alphabet": torch.tensor([1, 1])}))
    with pytest.raises(ValueError, match="length must be an int >= 1"):
        memorization.candidate_logprobs(model, **(ok | {"length": 0}))
    with pytest.raises(ValueError, match="too many to score exactly"):
        memorization.candidate_logprobs(model, **(ok | {"alphabet": torch.arange(4), "length": 12}))
    gpt = GPT(GPTConfig(vocab_size=8, block_size=4, n_layer=1, n_head=1, n_embd=8))
    with pytest.raises(ValueError, match="do not fit the model's context"):
        memorization.candidate_logprobs(gpt, torch.tensor([1, 2, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(IndexError, match="is not a candidate"):
        memorization.exposure(torch.zeros(4), 4)
    with pytest.raises(ValueError, match="is not in the alphabet"):
        memorization.secret_index("12a", "0123456789")
    with pytest.raises(ValueError, match="need the same B"):
        memorization.regurgitation(gpt, torch.zeros(2, 3, dtype=torch.long), torch.zeros(3, 2, dtype=torch.long))
