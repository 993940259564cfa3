"""From text to (context, target) batches (chapter 2; `stream_batches` serves chapters 3 on).

A neural language model learns from examples "these `block_size` tokens, then this one". Getting
there takes three steps:

1. `Vocab` numbers the tokens: ids 0 … |V|-1, special symbols first.
2. `context_windows` (many short sequences, such as names) and `stream_windows` (one long text,
   such as all of tinyshakespeare) turn the ids into a matrix of contexts X (N, block_size) and a
   vector of targets Y (N,), one row per token to predict.
3. `random_batches` draws minibatches of rows, uniformly with replacement, forever: the
   stochastic part of stochastic gradient descent. `stream_batches` is its counterpart for models
   that predict at every position of a window (chapter 3's attention, chapter 4's GPT).

Every function checks its input and says what was wrong and what is allowed.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Iterator, Sequence

import torch
from torch import Tensor


class Vocab:
    """A fixed token <-> id mapping. ids 0..len-1; `specials` come first in the given order, then the
    sorted distinct tokens.

    >>> vocab = Vocab("emma", specials=["."])  # a string is a sequence of character tokens
    >>> vocab.itos
    ['.', 'a', 'e', 'm']
    >>> vocab.encode("mae"), "".join(vocab.decode([3, 1, 0]))
    ([3, 1, 2], 'ma.')
    """

    def __init__(self, tokens: Iterable[str], specials: Sequence[str] = ()):
        if isinstance(specials, str):
            raise TypeError(f"specials must be a list of tokens, e.g. [{specials!r}], not the string {specials!r}")
        if isinstance(tokens, bytes) or not isinstance(tokens, Iterable):
            raise TypeError(f"tokens must be an iterable of str tokens (a str is one of characters), "
                            f"got {type(tokens).__name__}")
        specials = list(specials)
        if len(set(specials)) != len(specials):
            raise ValueError(f"specials must be distinct, got {specials}")
        distinct = set(tokens)
        not_str = [t for t in [*specials, *distinct] if not isinstance(t, str)]
        if not_str:
            raise TypeError(f"tokens must be strings, got {type(not_str[0]).__name__} {not_str[0]!r}")
        self.itos: list[str] = specials + sorted(distinct - set(specials))
        self.stoi: dict[str, int] = {t: i for i, t in enumerate(self.itos)}

    def __len__(self) -> int:
        return len(self.itos)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} tokens: {self._examples()})"

    def _examples(self, k: int = 10) -> str:
        return ", ".join(map(repr, self.itos[:k])) + (", …" if len(self) > k else "")

    def encode(self, tokens: Iterable[str]) -> list[int]:
        """The id of each token; a token outside the vocabulary is a ValueError naming it."""
        tokens = tokens if isinstance(tokens, (str, list, tuple)) else list(tokens)  # read twice on error
        try:
            return [self.stoi[t] for t in tokens]
        except KeyError as e:
            raise ValueError(f"token {e.args[0]!r} is not in the vocabulary ({len(self)} tokens: "
                             f"{self._examples()}); build the Vocab from text that contains it, or "
                             f"map it to a special token first") from None
        except TypeError:  # an unhashable token, e.g. a list
            bad = next(t for t in tokens if not isinstance(t, str))
            raise TypeError(f"tokens must be strings, got {type(bad).__name__} {bad!r:.60}") from None

    def decode(self, ids: Iterable[int]) -> list[str]:
        """The token of each id (ints or 0-d integer tensors) in 0..len-1."""
        out = []
        for i in ids:
            i = _as_id(i, "decode")
            if not 0 <= i < len(self):
                raise ValueError(f"id {i} is out of range for a vocabulary of {len(self)} tokens (ids 0..{len(self) - 1})")
            out.append(self.itos[i])
        return out


def context_windows(sequences: Sequence[Sequence[int]], block_size: int, boundary_id: int) -> tuple[Tensor, Tensor]:
    """makemore's dataset: every sequence is left-padded with block_size copies of boundary_id and ends
    with boundary_id as the target; returns X (N, block_size) int64 and Y (N,) int64, one row per
    predicted token (each token of each sequence, plus the final boundary).

    >>> X, Y = context_windows([[1, 2]], block_size=2, boundary_id=0)
    >>> X.tolist(), Y.tolist()
    ([[0, 0], [0, 1], [1, 2]], [1, 2, 0])
    """
    _check_positive("block_size", block_size)
    boundary_id = _as_id(boundary_id, "boundary_id")
    if isinstance(sequences, (str, Tensor)) or not isinstance(sequences, Sequence):
        raise TypeError(f"sequences must be a list of sequences of token ids, e.g. [[1, 2], [3]], "
                        f"got {type(sequences).__name__}")
    if len(sequences) == 0:
        raise ValueError("sequences is empty: pass at least one sequence of token ids")
    contexts, targets = [], []
    for n, sequence in enumerate(sequences):
        if isinstance(sequence, str):
            raise TypeError(f"sequence {n} is the string {sequence!r:.40}: encode it first, e.g. vocab.encode(name)")
        padded = [boundary_id] * block_size + [_as_id(t, f"sequence {n}") for t in sequence] + [boundary_id]
        for i in range(len(padded) - block_size):  # the target padded[i + block_size] and its context
            contexts.append(padded[i : i + block_size])
            targets.append(padded[i + block_size])
    return torch.tensor(contexts, dtype=torch.int64), torch.tensor(targets, dtype=torch.int64)


def stream_windows(ids: Sequence[int] | Tensor, block_size: int) -> tuple[Tensor, Tensor]:
    """Every window of a single long stream (e.g. all of tinyshakespeare as character ids): X (N, block_size)
    = ids[i:i+block_size], Y (N,) = ids[i+block_size], N = len(ids) - block_size.

    X is a view made by ``unfold``: its N rows overlap in memory, so it costs no more than the stream
    itself (a copy would be block_size times larger). Indexing it, X[rows], makes a small copy.

    >>> X, Y = stream_windows([5, 6, 7, 8], block_size=2)
    >>> X.tolist(), Y.tolist()
    ([[5, 6], [6, 7]], [7, 8])
    """
    _check_positive("block_size", block_size)
    ids = _as_stream(ids, block_size)
    X = ids.unfold(0, block_size, 1)[:-1]  # (N + 1, block_size) windows, the last has no target -> (N, block_size)
    return X, ids[block_size:]


def random_batches(X: Tensor, Y: Tensor, batch_size: int,
                   generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """An endless iterator of minibatches (X[rows], Y[rows]), rows drawn uniformly with replacement.

    The rows come from ``torch.randint(len(X), (batch_size,), generator=generator)``, so the batches
    are the same on every run with the same seeded generator (and the global RNG's without one).

    >>> batches = random_batches(torch.arange(10)[:, None], torch.arange(10), 4, torch.Generator().manual_seed(0))
    >>> x, y = next(batches)
    >>> x.shape, y.shape, torch.equal(x[:, 0], y)
    (torch.Size([4, 1]), torch.Size([4]), True)
    """
    _check_positive("batch_size", batch_size)
    for name, t in [("X", X), ("Y", Y)]:
        if not isinstance(t, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if t.dim() == 0:
            raise ValueError(f"{name} must have one row per example, got a 0-d tensor")
    if len(X) != len(Y):
        raise ValueError(f"X and Y must have one row per example each, got {len(X)} rows in X and {len(Y)} in Y")
    if len(X) == 0:
        raise ValueError("X and Y are empty: there is nothing to draw batches from")

    def batches():  # a generator inside, so that the checks above run when random_batches is called
        while True:
            rows = _randint(len(X), batch_size, generator).to(X.device)
            yield X[rows], Y[rows]

    return batches()


def stream_batches(ids: Tensor, block_size: int, batch_size: int,
                   generator: torch.Generator | None = None) -> Iterator[tuple[Tensor, Tensor]]:
    """nanoGPT's get_batch for sequence models (chapters 3+): endless (x, y) with x (B, T) = ids[i:i+T]
    and y (B, T) = ids[i+1:i+T+1] for random starts i, so y[b, t] is the token after x[b, :t+1].

    >>> x, y = next(stream_batches(torch.arange(100), block_size=4, batch_size=2))
    >>> x.shape, torch.equal(y, x + 1)
    (torch.Size([2, 4]), True)
    """
    _check_positive("block_size", block_size)
    _check_positive("batch_size", batch_size)
    ids = _as_stream(ids, block_size)

    def batches():
        offsets = torch.arange(block_size, device=ids.device)                           # (T,)
        while True:
            starts = _randint(len(ids) - block_size, batch_size, generator).to(ids.device)  # (B,)
            positions = starts[:, None] + offsets                                           # (B, T)
            yield ids[positions], ids[positions + 1]

    return batches()


def _randint(high: int, size: int, generator: torch.Generator | None) -> Tensor:
    """`size` ints in [0, high), drawn on the generator's own device."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(high, (size,), generator=generator, device=device)


def _as_stream(ids, block_size: int) -> Tensor:
    """`ids` as a 1-D int64 tensor long enough for one window and its target, or a clear error."""
    if not isinstance(ids, Tensor):
        if isinstance(ids, str):
            raise TypeError("ids is a string: encode it to token ids first, e.g. vocab.encode(text)")
        ids = torch.tensor([_as_id(t, "ids") for t in ids], dtype=torch.int64)
    if ids.dtype.is_floating_point or ids.dtype.is_complex or ids.dtype == torch.bool:
        raise TypeError(f"ids must hold integer token ids, got dtype {ids.dtype}")
    if ids.dim() != 1:
        raise ValueError(f"ids must be one 1-D stream of token ids, got shape {tuple(ids.shape)}; "
                         f"join the pieces first (torch.cat) or flatten it")
    if len(ids) < block_size + 1:
        raise ValueError(f"the stream has {len(ids)} tokens; windows of block_size={block_size} "
                         f"need at least {block_size + 1}")
    if int(ids.min()) < 0:
        raise ValueError(f"ids holds the negative token id {int(ids.min())}; token ids are >= 0")
    return ids.long()


def _as_id(value, where: str) -> int:
    """A token id >= 0 (Python int, NumPy int or 0-d integer tensor), or an error naming `where`."""
    try:
        i = operator.index(value)
    except TypeError:
        hint = " (encode tokens with a Vocab first)" if isinstance(value, str) else ""
        raise TypeError(f"{where}: token ids must be ints, got {type(value).__name__} {value!r:.40}{hint}") from None
    if isinstance(value, bool):
        raise TypeError(f"{where}: token ids must be ints, got the bool {value}")
    if i < 0:
        raise ValueError(f"{where}: token id {i} is out of range: token ids are >= 0")
    return i


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= 1, got {type(value).__name__} {value!r}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value
