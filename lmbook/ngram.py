"""N-gram language models: counting, smoothing and perplexity (chapter 1).

An n-gram model of order n predicts each token from the n-1 tokens before it, and nothing else:

    P(w_1 … w_T) = Π_t P(w_t | w_{t-n+1} … w_{t-1})

and it estimates every factor by counting. Each training sequence (a name, a sentence, a line, or
a whole text as one list) is padded with n-1 ``<s>`` on the left, so that the first token has a
full history, and one ``</s>`` on the right, so that the model learns where sequences end. ``<s>``
is context only: it is never predicted. With c(h w) the number of times token w followed the
history h in training, the four estimators are:

- ``mle``: c(h w) / c(h ·). An n-gram never seen in training gets probability 0, so one unseen
  n-gram in the test text makes the perplexity infinite; that is why smoothing exists. A history
  never seen in training has no counts at all: we then use its longest suffix that was seen (down
  to the empty history, the unigram), as a reader finishing a sentence would.
- ``add_k``: (c(h w) + k) / (c(h ·) + k·|V|). An unseen history gets the uniform 1/|V|.
- ``interpolated`` (Jelinek–Mercer): λ_0/|V| + Σ_{j=1..n} λ_j · P_mle(w | the last j-1 tokens),
  a weighted mix of the uniform distribution and the MLEs of every order 1…n. ``lambdas`` holds
  these n+1 weights, uniform first; `NgramLM.tune_lambdas` fits them to held-out text by EM.
- ``kneser_ney`` (interpolated Kneser–Ney, as in Chen & Goodman 1998), recursively:

      P(w | h) = max(c(h w) − d, 0) / c(h ·)  +  d · N1+(h ·) / c(h ·) · P(w | h without its oldest token)

  Every history gives away d of each of its N1+(h ·) distinct continuations, and spends it on the
  shorter history. The highest order uses counts c; every lower order uses *continuation counts*
  N1+(· h w), the number of distinct tokens seen before h w: "Francisco" is frequent but follows
  only "San", so a shorter history should rarely guess it. An unseen history passes its whole mass
  to the shorter one. The recursion ends at the continuation unigram N1+(· w) / N1+(· ·) (raw
  counts when n = 1).

Unknown tokens. The vocabulary is every training token seen at least ``min_count`` times, plus
``</s>`` and ``<unk>``; every other token, in training or later, is read as ``<unk>``. When some
training tokens are rarer than ``min_count``, ``<unk>`` has real counts like any token. When none
is, ``<unk>`` has count 0 and would get probability 0 under Kneser–Ney's base unigram (that is
what NLTK does); we then count it once as a continuation, so an unknown word costs about
log N1+(· ·) nats instead of infinitely many. Only ``<unk>`` can lack a continuation count, so with
``min_count`` > 1 on real text nothing is added and our model equals NLTK's
``KneserNeyInterpolated`` to 1e-9. NLTK's ``padded_everygram_pipeline`` counts differently, though:
it pads n-1 ``</s>`` and also counts the n-grams that end in ``<s>``, so for n ≥ 3 its model also
predicts ``<s>`` after ``<s>`` and ``</s>`` after ``</s>``, and, because its lower-order weight
d·N1+(h ·) comes from raw counts, its distributions after a history ending in n-2 ``<s>`` sum to
more than 1. tests/test_ngram.py shows both, and equality once those n-grams are left out.

Speed. Tokens become integer ids (``<s>`` gets id |V|). A history of length m is numbered
recursively: the key (id of its length m-1 suffix) · (|V|+1) + (its oldest token) identifies it, and
``np.unique`` turns the keys into dense ids. An n-gram is then one integer, history id · |V| + token,
so counting is ``np.unique`` and every look-up at scoring time is ``np.searchsorted``: fitting and
scoring all of tinyshakespeare takes seconds (bench/bench_ngram.py).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from itertools import chain
from typing import NamedTuple

import numpy as np

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
SMOOTHINGS = ("mle", "add_k", "interpolated", "kneser_ney")


def pad(sequence: Sequence[str], order: int) -> list[str]:
    """The sequence as the model sees it: order-1 ``<s>`` in front, one ``</s>`` at the end.

    >>> pad(["a", "b"], 3)
    ['<s>', '<s>', 'a', 'b', '</s>']
    """
    return [BOS] * (order - 1) + list(sequence) + [EOS]


def count_ngrams(sequences: Iterable[Sequence[str]], n: int) -> Counter:
    """Count the n-grams that end in a predicted token (plain Python; `NgramLM` does it in numpy).

    >>> count_ngrams([["a", "b"]], 2)
    Counter({('<s>', 'a'): 1, ('a', 'b'): 1, ('b', '</s>'): 1})
    """
    counts: Counter = Counter()
    for sequence in sequences:
        padded = pad(sequence, n)
        for i in range(n - 1, len(padded)):
            counts[tuple(padded[i - n + 1 : i + 1])] += 1
    return counts


def lookup(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in the sorted array `table`, or -1 where the key is absent.

    >>> lookup(np.array([3, 7, 9]), np.array([7, 4, 9]))
    array([ 1, -1,  2])
    """
    i = np.searchsorted(table, keys).clip(max=len(table) - 1)
    return np.where(table[i] == keys, i, -1)


def add_k(count, total, k: float, vocab_size: int):
    """Add-k estimate (c + k) / (total + k·|V|).

    >>> add_k(np.array([2, 0]), 2, k=1, vocab_size=3)  # counts 2 and 0 of 2, three tokens
    array([0.6, 0.2])
    """
    return (count + k) / (total + k * vocab_size)


def kneser_ney(count, total, types, lower, discount: float):
    """One level of interpolated Kneser–Ney: max(c − d, 0)/total + d·types/total · p_lower.

    `types` is the number of distinct tokens seen after this history, N1+(h ·).

    >>> kneser_ney(np.array([3, 1, 0]), 4, 2, np.array([0.5, 0.3, 0.2]), discount=0.5)
    array([0.75, 0.2 , 0.05])
    """
    return np.maximum(count - discount, 0) / total + discount * types / total * lower


def em_mixture_weights(likelihoods: np.ndarray, max_iter: int = 200, tol: float = 1e-8) -> np.ndarray:
    """Mixture weights λ (summing to 1) that maximise Σ_t log Σ_k λ_k p_k(t), found by EM.

    likelihoods: (K, T), component k's probability of token t. E-step: the share of token t that
    component k explains, r_kt = λ_k p_kt / Σ_j λ_j p_jt. M-step: λ_k = mean over t of r_kt.
    No step lowers the likelihood.

    >>> em_mixture_weights(np.array([[0.5, 0.5, 0.5], [0.9, 0.9, 0.05]])).round(3)
    array([0.676, 0.324])
    """
    likelihoods = _checked_likelihoods(likelihoods, max_iter, tol)  # (K, T) float
    weights = np.full(len(likelihoods), 1 / len(likelihoods))
    for _ in range(max_iter):
        mixed = weights[:, None] * likelihoods                        # (K, T)
        new = (mixed / mixed.sum(axis=0)).mean(axis=1)
        done = np.abs(new - weights).max() < tol
        weights = new
        if done:
            break
    return weights


class Level(NamedTuple):
    """What the model knows about histories of one length m (level 0: the empty history)."""

    history_keys: np.ndarray  # sorted; a history's id is its index here (key: see module docstring)
    ngram_keys: np.ndarray  # sorted; history id · |V| + token, for each n-gram seen
    counts: np.ndarray  # per n-gram: c(h w), or N1+(· h w) at Kneser–Ney's lower orders
    totals: np.ndarray  # per history: the sum of its counts
    types: np.ndarray  # per history: N1+(h ·), the number of distinct tokens seen after it


class NgramLM:
    """An n-gram language model of any order with one of `SMOOTHINGS`.

    >>> lm = NgramLM(2, "add_k").fit([["a", "b"], ["a"]])
    >>> lm.vocab
    ['</s>', '<unk>', 'a', 'b']
    >>> lm.prob("b", ["a"])  # (1 + 1) / (2 + 4): 'a' was followed by 'b' once, by '</s>' once
    0.3333333333333333
    """

    def __init__(self, order: int, smoothing: str = "kneser_ney", *, k: float = 1.0,
                 discount: float = 0.75, lambdas: Sequence[float] | None = None, min_count: int = 1):
        if not isinstance(order, int) or isinstance(order, bool) or order < 1:
            error = ValueError if isinstance(order, int) else TypeError
            raise error(f"order must be an int >= 1 (2 for a bigram model), got {order!r}")
        if not isinstance(smoothing, str) or smoothing not in SMOOTHINGS:
            raise ValueError(f"unknown smoothing {smoothing!r}; allowed: {', '.join(map(repr, SMOOTHINGS))}")
        if isinstance(k, bool) or not isinstance(k, (int, float)) or not 0 < k < math.inf:
            raise ValueError(f"k must be > 0 and finite (add-k adds k to every count; k=0 is 'mle'), got {k!r}")
        if isinstance(discount, bool) or not isinstance(discount, (int, float)) or not 0 < discount < 1:
            raise ValueError(f"discount must be in the open interval (0, 1), got {discount!r}")
        if isinstance(min_count, bool) or not isinstance(min_count, int) or min_count < 1:
            raise ValueError(f"min_count must be an int >= 1, got {min_count!r}")
        if lambdas is not None and smoothing != "interpolated":
            raise ValueError(f"lambdas are only used by smoothing='interpolated', not {smoothing!r}")
        self.order, self.smoothing, self.k, self.discount, self.min_count = order, smoothing, k, discount, min_count
        self.lambdas = None  # interpolated: equal weights until given or tuned
        if smoothing == "interpolated":
            self.lambdas = self._checked_lambdas([1 / (order + 1)] * (order + 1) if lambdas is None else lambdas)
        self.vocab: list[str] = []

    def _checked_lambdas(self, lambdas: Sequence[float]) -> tuple[float, ...]:
        try:
            lambdas = tuple(float(x) for x in lambdas)
        except (TypeError, ValueError):
            raise TypeError(f"lambdas must be a sequence of {self.order + 1} numbers, got {lambdas!r:.80}") from None
        if len(lambdas) != self.order + 1 or not all(map(math.isfinite, lambdas)) or min(lambdas) < 0 \
                or abs(sum(lambdas) - 1) > 1e-9 or lambdas[0] <= 0:
            raise ValueError(f"lambdas must be {self.order + 1} weights >= 0 summing to 1 (uniform, unigram, "
                             f"…, {self.order}-gram), the uniform one > 0; got {lambdas}")
        return lambdas

    # ---- fitting ----------------------------------------------------------------------------

    def fit(self, sequences: Iterable[Sequence[str]]) -> NgramLM:
        """Count every n-gram of the padded sequences, of every order 1…n."""
        sequences = _checked_sequences(sequences, "fit")
        frequency = Counter(chain.from_iterable(sequences))
        if not frequency:
            raise ValueError(f"cannot fit on an empty corpus: got {len(sequences)} sequences and no tokens")
        kept = sorted(t for t, c in frequency.items() if c >= self.min_count and t not in (EOS, UNK))
        self.vocab = [EOS, UNK] + kept
        self._index = {t: i for i, t in enumerate(self.vocab)}
        V, A = len(self.vocab), len(self.vocab) + 1  # A: the alphabet of histories, with <s> = V
        ids = self._padded_ids(sequences)
        pos = np.flatnonzero(ids != V)  # the predicted positions: every token but <s>
        w = ids[pos]
        h, history_keys, levels = np.zeros(len(pos), np.int64), np.zeros(1, np.int64), []
        for m in range(self.order):  # history length m: n-grams of order m + 1
            if m > 0:
                history_keys, h = np.unique(h * A + ids[pos - m], return_inverse=True)
            ngram_keys, counts = np.unique(h * V + w, return_counts=True)
            levels.append([history_keys, ngram_keys, counts])
        if self.smoothing == "kneser_ney":  # lower orders: N1+(· h w), one per distinct (v h w)
            for m in range(self.order - 2, -1, -1):
                history_keys, ngram_keys, _ = levels[m + 1]
                shorter = history_keys[ngram_keys // V] // A  # drop the oldest token of the history
                levels[m][1:] = np.unique(shorter * V + ngram_keys % V, return_counts=True)
        self._levels = []
        for history_keys, ngram_keys, counts in levels:
            h = ngram_keys // V
            self._levels.append(Level(history_keys, ngram_keys, counts,
                                      np.bincount(h, counts, minlength=len(history_keys)),
                                      np.bincount(h, minlength=len(history_keys))))
        unigram = np.bincount(self._levels[0].ngram_keys, self._levels[0].counts, minlength=V)
        self._base = np.maximum(unigram, 1) / np.maximum(unigram, 1).sum()  # only <unk> can be 0
        return self

    def _padded_ids(self, sequences: list[list[str]]) -> np.ndarray:
        padding, get, ids = [len(self.vocab)] * (self.order - 1), self._index.get, []
        for sequence in sequences:
            ids += padding
            ids += [get(t, 1) for t in sequence]  # 1 = <unk>
            ids.append(0)  # 0 = </s>
        return np.array(ids, dtype=np.int64)

    # ---- scoring ----------------------------------------------------------------------------

    def _histories(self, ids: np.ndarray, pos: np.ndarray) -> list[np.ndarray]:
        """The history id of the tokens at `pos`, at every length 0…n-1 (-1: never seen)."""
        h, A = np.zeros(len(pos), np.int64), len(self.vocab) + 1
        histories = [h]
        for m in range(1, self.order):
            h = np.where(h >= 0, lookup(self._levels[m].history_keys, h * A + ids[pos - m]), -1)
            histories.append(h)
        return histories

    def _counts(self, m: int, h: np.ndarray, w: np.ndarray):
        """c(h w), c(h ·) and N1+(h ·) at history length m; all 0 where h was never seen."""
        level, seen = self._levels[m], h >= 0
        h = np.where(seen, h, 0)
        j = lookup(level.ngram_keys, h * len(self.vocab) + w)
        count = np.where(seen & (j >= 0), level.counts[j], 0)
        return count, np.where(seen, level.totals[h], 0), np.where(seen, level.types[h], 0)

    def _mle_estimates(self, histories: list[np.ndarray], w: np.ndarray) -> list[np.ndarray]:
        """P_mle(w | last j-1 tokens) for j = 1…n; an unseen history uses the order below."""
        estimates = []
        for m in range(self.order):
            count, total, _ = self._counts(m, histories[m], w)
            mle = count / np.maximum(total, 1)
            estimates.append(mle if m == 0 else np.where(total > 0, mle, estimates[-1]))
        return estimates

    def _probs(self, histories: list[np.ndarray], w: np.ndarray) -> np.ndarray:
        """P(w | history) for token ids `w`, with the histories `_histories` returned."""
        if self.smoothing == "kneser_ney":
            p = self._base[w]
            for m in range(1, self.order):
                count, total, types = self._counts(m, histories[m], w)
                p = np.where(total > 0, kneser_ney(count, np.maximum(total, 1), types, p, self.discount), p)
            return p
        if self.smoothing == "add_k":
            count, total, _ = self._counts(self.order - 1, histories[-1], w)
            return add_k(count, total, self.k, len(self.vocab))
        estimates = self._mle_estimates(histories, w)
        if self.smoothing == "mle":
            return estimates[-1]
        return self.lambdas[0] / len(self.vocab) + sum(lam * e for lam, e in zip(self.lambdas[1:], estimates))

    def _context_histories(self, context: Sequence[str]) -> list[np.ndarray]:
        self._check_fitted()
        if isinstance(context, (str, bytes)) or not isinstance(context, Iterable):
            raise TypeError(f"context must be a list of str tokens, got {type(context).__name__} {context!r}")
        context = list(context)
        for t in context:
            if not isinstance(t, str):
                raise TypeError(f"context token {t!r} is a {type(t).__name__}; tokens must be str")
        padded = ([BOS] * (self.order - 1) + context)[len(context):]  # the last n-1, <s> in front
        ids = np.array([len(self.vocab) if t == BOS else self._index.get(t, 1) for t in padded], np.int64)
        return self._histories(ids, np.array([self.order - 1]))

    def probs(self, context: Sequence[str]) -> np.ndarray:
        """The next-token distribution over `self.vocab` after `context` (its last n-1 tokens,
        left-padded with ``<s>``); tokens outside the vocabulary are read as ``<unk>``."""
        return self._probs(self._context_histories(context), np.arange(len(self.vocab)))

    def prob(self, token: str, context: Sequence[str]) -> float:
        """P(token | context): ``probs(context)[vocab.index(token)]``; an unknown token is scored as
        ``<unk>``, and ``<s>``, never predicted, gets 0."""
        histories = self._context_histories(context)
        if not isinstance(token, str):
            raise TypeError(f"token must be a str, got {token!r} ({type(token).__name__})")
        if token == BOS:
            return 0.0
        return float(self._probs(histories, np.array([self._index.get(token, 1)]))[0])

    def token_probs(self, sequences: Iterable[Sequence[str]]) -> np.ndarray:
        """P(token | history) for every predicted token of the padded sequences, in order
        (each sequence's tokens, then its ``</s>``)."""
        self._check_fitted()
        sequences = _checked_sequences(sequences, "scoring")
        if not sequences:
            raise ValueError("cannot score an empty corpus: got no sequences")
        ids = self._padded_ids(sequences)
        pos = np.flatnonzero(ids != len(self.vocab))
        return self._probs(self._histories(ids, pos), ids[pos])

    def logprob(self, sequence: Sequence[str]) -> float:
        """Natural log-probability of the padded sequence, ``</s>`` included."""
        with np.errstate(divide="ignore"):
            return float(np.log(self.token_probs([sequence])).sum())

    def cross_entropy(self, sequences: Iterable[Sequence[str]]) -> float:
        """Mean nats per predicted token (``</s>`` counted, ``<s>`` not); inf if any gets 0."""
        with np.errstate(divide="ignore"):
            return float(-np.log(self.token_probs(sequences)).mean())

    def perplexity(self, sequences: Iterable[Sequence[str]]) -> float:
        """exp(cross-entropy): the number of equally likely tokens the model hesitates between."""
        return float(np.exp(self.cross_entropy(sequences)))

    # ---- using the model ----------------------------------------------------------------------

    def sample(self, n: int = 1, *, seed: int | None = None, max_len: int = 100) -> list[list[str]]:
        """`n` sequences drawn token by token until ``</s>`` (not included) or `max_len` tokens;
        n=0 gives an empty list."""
        self._check_fitted()
        _check_int("n", n, minimum=0)
        _check_int("max_len", max_len, minimum=1)
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
            raise ValueError(f"seed must be None or an int >= 0, got {seed!r}")
        rng, samples = np.random.default_rng(seed), []
        for _ in range(n):
            sequence: list[str] = []
            while len(sequence) < max_len:
                i = rng.choice(len(self.vocab), p=self.probs(sequence))
                if i == 0:  # </s>
                    break
                sequence.append(self.vocab[i])
            samples.append(sequence)
        return samples

    def tune_lambdas(self, dev_sequences: Iterable[Sequence[str]], max_iter: int = 200) -> tuple[float, ...]:
        """For ``interpolated``: the n+1 weights (uniform, unigram, …, n-gram) that maximise the
        likelihood of held-out `dev_sequences`, by EM; stored in ``self.lambdas`` and returned.
        Tune on text the model was not fitted on: on its own training text, the n-gram MLE
        explains everything and would take all the weight."""
        if self.smoothing != "interpolated":
            raise ValueError(f"tune_lambdas is for smoothing='interpolated', this model uses {self.smoothing!r}")
        self._check_fitted()
        _check_int("max_iter", max_iter, minimum=1)
        sequences = _checked_sequences(dev_sequences, "tune_lambdas")
        if not sequences:
            raise ValueError("cannot tune on an empty corpus: got no sequences")
        ids = self._padded_ids(sequences)
        pos = np.flatnonzero(ids != len(self.vocab))
        estimates = self._mle_estimates(self._histories(ids, pos), ids[pos])
        likelihoods = np.stack([np.full(len(pos), 1 / len(self.vocab)), *estimates])  # (n+1, T)
        self.lambdas = tuple(float(x) for x in em_mixture_weights(likelihoods, max_iter))
        return self.lambdas

    def _check_fitted(self) -> None:
        if not self.vocab:
            raise ValueError("this NgramLM is not fitted yet: call .fit(sequences) before scoring or sampling")


def _checked_sequences(sequences, what: str) -> list[list[str]]:
    """`sequences` as a list of lists of str, or an error that says what is wrong."""
    if isinstance(sequences, (str, bytes)) or not isinstance(sequences, Iterable):
        raise TypeError(f"{what} expects an iterable of token sequences such as [['to', 'be'], ['or']], got "
                        f"{type(sequences).__name__} {sequences!r:.50}; for characters pass [list(line) for line "
                        f"in lines], for words [line.split() for line in lines]")
    sequences = list(sequences)
    for i, sequence in enumerate(sequences):
        if isinstance(sequence, (str, bytes)) or not isinstance(sequence, Iterable):
            raise TypeError(f"sequence {i} is {type(sequence).__name__} {sequence!r:.50}; each sequence must be "
                            f"a list of str tokens, e.g. list('emma') or 'to be'.split()")
    sequences = [list(s) for s in sequences]
    if any(not issubclass(t, str) for t in set(map(type, chain.from_iterable(sequences)))):
        i, j, t = next((i, j, t) for i, s in enumerate(sequences) for j, t in enumerate(s) if not isinstance(t, str))
        raise TypeError(f"token {j} of sequence {i} is {t!r} ({type(t).__name__}); tokens must be str")
    for i, sequence in enumerate(sequences):
        for marker in (BOS, EOS):
            if marker in sequence:
                raise ValueError(f"sequence {i} contains {marker!r}, the padding the model adds itself "
                                 f"(the {'start' if marker == BOS else 'end'} of every sequence); remove it")
    return sequences


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def _checked_likelihoods(likelihoods, max_iter, tol) -> np.ndarray:
    """The arguments of `em_mixture_weights`: likelihoods a (K, T) array of finite probabilities >= 0
    in which every token has some component that gives it a probability > 0."""
    _check_int("max_iter", max_iter, minimum=1)
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 < tol < math.inf:
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    try:
        likelihoods = np.asarray(likelihoods, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"likelihoods must be a (K, T) array of probabilities, got {type(likelihoods).__name__}") from None
    if likelihoods.ndim != 2 or 0 in likelihoods.shape:
        raise ValueError(f"likelihoods must be a non-empty 2-D array (K components, T tokens), got shape "
                         f"{likelihoods.shape}")
    if not np.isfinite(likelihoods).all() or (likelihoods < 0).any():
        raise ValueError("likelihoods must be finite probabilities >= 0")
    if (likelihoods.sum(axis=0) == 0).any():
        t = int(np.flatnonzero(likelihoods.sum(axis=0) == 0)[0])
        raise ValueError(f"token {t} has probability 0 under every component: no mixture can explain it "
                         f"(add a component that gives every token some probability, such as the uniform one)")
    return likelihoods
