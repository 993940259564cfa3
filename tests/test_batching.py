"""lmbook.batching: the vocabulary, both kinds of windows against naive loops, batches, clear errors."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lmbook.batching import Vocab, context_windows, random_batches, stream_batches, stream_windows

sequences_strategy = st.lists(st.lists(st.integers(1, 9), max_size=6), min_size=1, max_size=5)


# ---- Vocab ------------------------------------------------------------------------------------

def test_vocab_specials_first_then_sorted_tokens():
    vocab = Vocab("hello world", specials=["<eos>", "."])
    assert vocab.itos == ["<eos>", ".", " ", "d", "e", "h", "l", "o", "r", "w"]
    assert len(vocab) == 10
    assert all(vocab.stoi[t] == i for i, t in enumerate(vocab.itos))


def test_vocab_special_that_is_also_a_token_appears_once():
    vocab = Vocab("a.b.", specials=["."])
    assert vocab.itos == [".", "a", "b"]


def test_vocab_round_trip():
    vocab = Vocab(["the", "cat", "sat", "the"], specials=["<s>"])
    ids = vocab.encode(["the", "cat", "<s>"])
    assert ids == [3, 1, 0]
    assert vocab.decode(ids) == ["the", "cat", "<s>"]
    assert vocab.decode(torch.tensor(ids)) == ["the", "cat", "<s>"]  # 0-d tensors are ids too


def test_vocab_encode_accepts_an_iterator():
    vocab = Vocab("abc")
    assert vocab.encode(iter("cab")) == [2, 0, 1]


def test_vocab_unknown_token_names_it_and_the_vocabulary():
    vocab = Vocab("abc", specials=["."])
    with pytest.raises(ValueError, match=r"token 'z' is not in the vocabulary \(4 tokens: '\.', 'a', 'b', 'c'\)"):
        vocab.encode("abz")
    with pytest.raises(ValueError, match="token 'z'"):
        vocab.encode(iter("abz"))  # a consumed iterator still gets the same message


def test_vocab_errors():
    vocab = Vocab("abc")
    with pytest.raises(ValueError, match=r"id 3 is out of range for a vocabulary of 3 tokens \(ids 0..2\)"):
        vocab.decode([0, 3])
    with pytest.raises(ValueError, match="id -1 is out of range"):
        vocab.decode([-1])
    with pytest.raises(TypeError, match="token ids must be ints, got float"):
        vocab.decode([1.0])
    with pytest.raises(TypeError, match="tokens must be strings, got list"):
        vocab.encode([["a"]])
    with pytest.raises(TypeError, match="tokens must be strings, got int"):
        Vocab([1, 2])
    with pytest.raises(TypeError, match=r"specials must be a list of tokens, e.g. \['\.'\]"):
        Vocab("abc", specials=".")
    with pytest.raises(ValueError, match="specials must be distinct"):
        Vocab("abc", specials=[".", "."])


# ---- context_windows ----------------------------------------------------------------------------

def test_context_windows_worked_example():
    X, Y = context_windows([[1, 2]], block_size=2, boundary_id=0)
    assert X.dtype == Y.dtype == torch.int64
    assert X.tolist() == [[0, 0], [0, 1], [1, 2]]
    assert Y.tolist() == [1, 2, 0]


def test_context_windows_empty_sequence_predicts_the_boundary():
    X, Y = context_windows([[], [5]], block_size=3, boundary_id=0)
    assert X.tolist() == [[0, 0, 0], [0, 0, 0], [0, 0, 5]]
    assert Y.tolist() == [0, 5, 0]


@settings(max_examples=50, deadline=None)
@given(sequences=sequences_strategy, block_size=st.integers(1, 4))
def test_context_windows_equals_the_naive_definition(sequences, block_size):
    X, Y = context_windows(sequences, block_size=block_size, boundary_id=0)
    assert X.shape == (sum(map(len, sequences)) + len(sequences), block_size)  # tokens + one boundary each
    rows = []
    for seq in sequences:
        context = [0] * block_size
        for token in seq + [0]:
            rows.append((context, token))
            context = context[1:] + [token]
    assert X.tolist() == [c for c, _ in rows]
    assert Y.tolist() == [t for _, t in rows]


def test_context_windows_errors():
    with pytest.raises(ValueError, match="block_size must be >= 1, got 0"):
        context_windows([[1]], block_size=0, boundary_id=0)
    with pytest.raises(TypeError, match="block_size must be an int"):
        context_windows([[1]], block_size=2.0, boundary_id=0)
    with pytest.raises(ValueError, match="sequences is empty"):
        context_windows([], block_size=2, boundary_id=0)
    with pytest.raises(TypeError, match=r"sequence 1: token ids must be ints, got float 2.5"):
        context_windows([[1], [2.5]], block_size=2, boundary_id=0)
    with pytest.raises(TypeError, match="encode it first"):
        context_windows(["emma"], block_size=2, boundary_id=0)
    with pytest.raises(TypeError, match="boundary_id: token ids must be ints"):
        context_windows([[1]], block_size=2, boundary_id=".")
    with pytest.raises(TypeError, match="sequences must be a list of sequences"):
        context_windows(torch.tensor([[1, 2]]), block_size=2, boundary_id=0)


# ---- stream_windows -----------------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(ids=st.lists(st.integers(0, 50), min_size=2, max_size=40), block_size=st.integers(1, 6))
def test_stream_windows_equals_a_python_loop(ids, block_size):
    if len(ids) < block_size + 1:
        return
    X, Y = stream_windows(torch.tensor(ids), block_size)
    N = len(ids) - block_size
    assert X.tolist() == [ids[i : i + block_size] for i in range(N)]
    assert Y.tolist() == [ids[i + block_size] for i in range(N)]
    assert stream_windows(ids, block_size)[0].tolist() == X.tolist()  # a list works too


def test_stream_windows_is_a_view_of_the_stream():
    ids = torch.arange(1000)
    X, Y = stream_windows(ids, 8)
    assert X.shape == (992, 8) and X.dtype == torch.int64
    assert X.untyped_storage().data_ptr() == ids.untyped_storage().data_ptr()  # no copy of 992 × 8


def test_stream_windows_errors():
    with pytest.raises(ValueError, match=r"the stream has 5 tokens; windows of block_size=8 need at least 9"):
        stream_windows(torch.arange(5), 8)
    with pytest.raises(ValueError, match="block_size must be >= 1"):
        stream_windows(torch.arange(5), 0)
    with pytest.raises(TypeError, match="integer token ids, got dtype torch.float32"):
        stream_windows(torch.rand(10), 2)
    with pytest.raises(ValueError, match=r"1-D stream of token ids, got shape \(2, 5\)"):
        stream_windows(torch.zeros(2, 5, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="encode it to token ids first"):
        stream_windows("to be or not to be", 2)


# ---- random_batches ----------------------------------------------------------------------------

def test_random_batches_are_deterministic_given_the_generator():
    X, Y = stream_windows(torch.arange(500) % 37, 4)
    first = random_batches(X, Y, 16, torch.Generator().manual_seed(7))
    second = random_batches(X, Y, 16, torch.Generator().manual_seed(7))
    other = random_batches(X, Y, 16, torch.Generator().manual_seed(8))
    for _ in range(5):
        (x1, y1), (x2, y2), (x3, _) = next(first), next(second), next(other)
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)


def test_random_batches_keep_rows_together_and_cover_the_data():
    X = torch.arange(50)[:, None].repeat(1, 3)  # row i is [i, i, i]
    Y = torch.arange(50)
    batches = random_batches(X, Y, 32, torch.Generator().manual_seed(0))
    seen = set()
    for _ in range(20):  # 640 draws with replacement from 50 rows: P(some row never drawn) < 1e-5
        x, y = next(batches)
        assert x.shape == (32, 3) and y.shape == (32,)
        assert torch.equal(x[:, 0], y)
        seen |= set(y.tolist())
    assert seen == set(range(50))


def test_random_batches_check_their_arguments_when_called():
    X, Y = torch.zeros(10, 2, dtype=torch.long), torch.zeros(10, dtype=torch.long)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        random_batches(X, Y, 0)  # no next() needed: the error comes at once
    with pytest.raises(ValueError, match="got 10 rows in X and 9 in Y"):
        random_batches(X, Y[:9], 4)
    with pytest.raises(ValueError, match="X and Y are empty"):
        random_batches(X[:0], Y[:0], 4)
    with pytest.raises(TypeError, match="X must be a torch.Tensor, got list"):
        random_batches([[1]], Y, 4)


# ---- stream_batches ----------------------------------------------------------------------------

def test_stream_batches_targets_are_inputs_shifted_by_one():
    ids = torch.randint(0, 65, (300,), generator=torch.Generator().manual_seed(0))
    batches = stream_batches(ids, block_size=8, batch_size=4, generator=torch.Generator().manual_seed(1))
    windows = ids.unfold(0, 9, 1)  # every slice of 9 consecutive ids
    for _ in range(10):
        x, y = next(batches)
        assert x.shape == y.shape == (4, 8) and x.dtype == torch.int64
        assert torch.equal(x[:, 1:], y[:, :-1])
        for row_x, row_y in zip(x, y):  # each (x, y) row is one slice of the stream
            assert (windows == torch.cat([row_x, row_y[-1:]])).all(dim=1).any()


def test_stream_batches_deterministic_and_errors():
    ids = torch.arange(100)
    a = next(stream_batches(ids, 5, 3, torch.Generator().manual_seed(3)))
    b = next(stream_batches(ids, 5, 3, torch.Generator().manual_seed(3)))
    assert torch.equal(a[0], b[0])
    with pytest.raises(ValueError, match=r"the stream has 5 tokens; windows of block_size=8 need at least 9"):
        stream_batches(torch.arange(5), 8, 2)
    with pytest.raises(ValueError, match="batch_size must be >= 1"):
        stream_batches(ids, 8, 0)
