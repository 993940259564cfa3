"""lmbook.ngram: proper distributions, hand-computed estimates, NLTK's Kneser–Ney, clear errors."""

import itertools
import math
import re

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nltk.lm import KneserNeyInterpolated, Vocabulary
from nltk.lm.preprocessing import padded_everygram_pipeline

from lmbook import data
from lmbook.ngram import BOS, EOS, SMOOTHINGS, UNK, NgramLM, count_ngrams, pad

# A hand-made corpus: repeated words, words seen once (they become <unk> with min_count=2), an
# empty sequence, and a sequence that is one token long.
HANDMADE = [s.split() for s in """\
the cat sat on the mat .
the dog sat on the log .
a cat saw a dog .
the dog saw the cat on the mat .
a bird sang .
the cat chased the bird off the mat .
the bird flew over the dog .
a dog sat .
the mat was red .

the cat sat .
a cat sat on a log .
the dog ran to the cat .
cat
the bird sat on the red mat .""".split("\n")]


def random_corpus(seed: int, n: int = 200) -> list[list[str]]:
    """`n` sentences over 14 Zipf-distributed words, then one with a word seen once (<unk> at
    min_count=2); some sentences are empty."""
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(14)]
    p = 1 / np.arange(1, 15)
    sentences = [list(map(str, rng.choice(words, size=rng.integers(0, 7), p=p / p.sum()))) for _ in range(n)]
    return sentences + [["w0", "once", "w1"]]


def contexts_to_check(lm: NgramLM, corpus, seed: int = 0, n_random: int = 40) -> list[tuple[str, ...]]:
    """Every history seen in training, plus random ones mixing <s>, </s>, <unk> and unknown words."""
    n = lm.order - 1
    seen = {tuple(pad(s, lm.order)[i - n : i]) for s in corpus for i in range(n, len(s) + n + 1)}
    rng = np.random.default_rng(seed)
    alphabet = lm.vocab + [BOS, "never-seen"]
    unseen = {tuple(map(str, rng.choice(alphabet, size=n))) for _ in range(n_random)}
    return sorted(seen | unseen) + [(), ("the",) * (n + 2)]  # shorter and longer than n


def real_sequences(limit: int | None = None) -> list[list[str]]:
    try:
        text = data.load_text("tinyshakespeare")
    except data.DatasetError:
        pytest.skip("tinyshakespeare is not available offline here (set LMBOOK_DATA_DIR)")
    lines = [line for line in text.splitlines() if line.strip()][:limit]
    return [re.findall(r"[A-Za-z']+|[^\sA-Za-z']", line) for line in lines]


# ---- every model is a probability distribution ---------------------------------------------


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("order", [1, 2, 3, 4])
@pytest.mark.parametrize("min_count", [1, 2])
def test_probs_sum_to_one_and_agree_with_prob(smoothing, order, min_count):
    """mle included: a history never seen backs off to its longest seen suffix, so it sums to 1 too."""
    lm = NgramLM(order, smoothing, min_count=min_count).fit(HANDMADE)
    for context in contexts_to_check(lm, HANDMADE):
        p = lm.probs(list(context))
        assert p.shape == (len(lm.vocab),) and (p >= 0).all()
        assert abs(p.sum() - 1) < 1e-9, context
        for token in lm.vocab:
            assert lm.prob(token, context) == p[lm.vocab.index(token)]
        assert lm.prob("never-seen", context) == p[lm.vocab.index(UNK)]
        assert lm.prob(BOS, context) == 0.0
        if smoothing != "mle":
            assert p[lm.vocab.index(UNK)] > 0, "every smoothing but mle gives <unk> some probability"


@settings(max_examples=40, deadline=None)
@given(corpus=st.lists(st.lists(st.sampled_from("abcde"), max_size=6), min_size=1, max_size=8),
       order=st.integers(1, 4), smoothing=st.sampled_from(SMOOTHINGS), min_count=st.integers(1, 3),
       context=st.lists(st.sampled_from(["a", "b", "c", "d", "e", "z", BOS, EOS, UNK]), max_size=4))
def test_any_corpus_gives_a_distribution(corpus, order, smoothing, min_count, context):
    if not any(corpus):
        corpus = corpus + [["a"]]
    lm = NgramLM(order, smoothing, min_count=min_count).fit(corpus)
    assert abs(lm.probs(context).sum() - 1) < 1e-9


@pytest.mark.parametrize("smoothing", SMOOTHINGS)
@pytest.mark.parametrize("order", [1, 2, 3])
def test_vectorised_scoring_equals_one_token_at_a_time(smoothing, order):
    train, held_out = random_corpus(1), random_corpus(2, 60) + [["w1", "unknown", "w2"]]
    lm = NgramLM(order, smoothing, min_count=2).fit(train)
    scored = train[:60] if smoothing == "mle" else held_out  # mle: held-out text has zeros
    per_sequence = [[-math.log(lm.prob(t, ended[:i])) for i, t in enumerate(ended)]
                    for ended in (list(seq) + [EOS] for seq in scored)]
    nats = np.concatenate(per_sequence)
    assert lm.cross_entropy(scored) == pytest.approx(nats.mean(), rel=1e-12)
    assert lm.perplexity(scored) == pytest.approx(math.exp(nats.mean()), rel=1e-12)
    np.testing.assert_allclose(lm.token_probs(scored), np.exp(-nats), rtol=1e-12)
    for seq, seq_nats in zip(scored[:10], per_sequence):
        assert lm.logprob(seq) == pytest.approx(-sum(seq_nats), rel=1e-12, abs=1e-12)


# ---- hand-computed estimates ---------------------------------------------------------------


def test_mle_is_counts_over_totals():
    lm = NgramLM(3, "mle").fit(HANDMADE)
    trigrams = count_ngrams(HANDMADE, 3)
    for (a, b, c), n in trigrams.items():
        total = sum(m for (x, y, _), m in trigrams.items() if (x, y) == (a, b))
        assert lm.prob(c, [a, b]) == pytest.approx(n / total, rel=1e-15)
    assert lm.prob("dog", ["the", "cat"]) == 0.0
    assert lm.perplexity([["the", "cat", "saw", "the", "log"]]) == math.inf  # 'cat saw' is unseen
    # An unseen history backs off to its longest seen suffix: ('red', 'cat') -> ('cat',).
    bigrams = count_ngrams(HANDMADE, 2)
    after_cat = sum(n for (x, _), n in bigrams.items() if x == "cat")
    assert lm.prob("sat", ["red", "cat"]) == pytest.approx(bigrams["cat", "sat"] / after_cat)


def test_add_one_bigram_by_hand():
    corpus = [["a", "b"], ["b", "b"], ["a"]]
    lm = NgramLM(2, "add_k", k=1).fit(corpus)
    assert lm.vocab == [EOS, UNK, "a", "b"]
    # After 'b': b -> </s> twice, b -> b once. After <s>: a twice, b once. 'a' -> b, </s>.
    V = 4
    assert lm.prob(EOS, ["b"]) == pytest.approx((2 + 1) / (3 + V))
    assert lm.prob("b", ["b"]) == pytest.approx((1 + 1) / (3 + V))
    assert lm.prob("a", ["b"]) == pytest.approx((0 + 1) / (3 + V))
    assert lm.prob("a", []) == pytest.approx((2 + 1) / (3 + V))
    assert lm.prob("zebra", ["a"]) == pytest.approx((0 + 1) / (2 + V))  # unknown -> <unk>
    assert lm.prob("b", ["zebra"]) == pytest.approx(1 / V)  # unseen history: uniform
    k = NgramLM(2, "add_k", k=0.5).fit(corpus)
    assert k.prob(EOS, ["b"]) == pytest.approx((2 + 0.5) / (3 + 0.5 * V))


# ---- Kneser–Ney against NLTK ---------------------------------------------------------------


def nltk_kneser_ney(order, corpus, discount, min_count, drop_what_we_never_count=True):
    """NLTK's KneserNeyInterpolated, fitted through padded_everygram_pipeline."""
    train, vocabulary_text = padded_everygram_pipeline(order, corpus)
    if drop_what_we_never_count:
        train = ([g for g in grams if g[-1] != BOS and EOS not in g[:-1]] for grams in train)
    lm = KneserNeyInterpolated(order, discount=discount,
                               vocabulary=Vocabulary(unk_cutoff=min_count, unk_label=UNK))
    lm.fit(train, vocabulary_text)
    return lm


CORPORA = {"handmade": HANDMADE, "random": random_corpus(0, 120)}


@pytest.mark.parametrize("corpus", CORPORA)
@pytest.mark.parametrize("order,discount", [(2, 0.75), (3, 0.75), (4, 0.75), (3, 0.3)])
def test_kneser_ney_equals_nltk(corpus, order, discount):
    """Equal to NLTK to 1e-9 for every word of our vocabulary after every history we try.

    What NLTK is fitted on: padded_everygram_pipeline's n-grams minus those we never count,
    (1) n-grams that end in <s> (we never predict <s>) and (2) n-grams that run past the first </s>
    (the pipeline pads n-1 </s>; we predict one and stop). For n = 2 neither exists beyond the
    unigram '<s>', which Kneser–Ney does not use, so the pipeline is used as is. With those left
    out NLTK's quirk disappears: its lower-order weight d·N1+(h ·) counts raw followers where the
    textbook counts followers that have a left neighbour, and the two differ only for the n-gram
    of n-1 <s> at position 0, which ends in <s>. So no history is excluded: seen, unseen,
    with <s> anywhere, with <unk>, shorter or longer than n-1.

    min_count=2 gives <unk> real counts (the corpora have words seen once); otherwise NLTK gives
    <unk> probability 0 (see test_unknown_words_without_counts).
    """
    words = CORPORA[corpus]
    ours = NgramLM(order, "kneser_ney", discount=discount, min_count=2).fit(words)
    theirs = nltk_kneser_ney(order, words, discount, min_count=2)
    assert sorted(ours.vocab) == sorted(set(theirs.vocab) - {BOS})
    assert ours.vocab.count(UNK) == 1 and UNK in {w for s in words for w in theirs.vocab.lookup(s)}
    contexts = contexts_to_check(ours, words)
    assert len(contexts) > 20
    for context in contexts:
        full = tuple(pad(context, order)[:-1][-(order - 1):]) if order > 1 else ()  # NLTK does not pad
        nltk_probs = np.array([theirs.score(w, full) for w in ours.vocab])
        np.testing.assert_allclose(ours.probs(context), nltk_probs, rtol=0, atol=1e-9, err_msg=str(context))


@pytest.mark.parametrize("order", [3, 4])
def test_nltk_pipeline_is_not_a_distribution_after_padding(order):
    """With the raw pipeline (n >= 3) NLTK also counts the n-grams that end in <s>, among them
    <s>^(n-1) at position 0, which has no left neighbour. Its lower-order history <s>^(n-2) then
    has one more follower in raw counts (<s> itself) than in continuation counts, so its weight
    d·N1+(h ·)/N1+(· h ·) is too large: NLTK's probabilities sum to more than 1 after exactly the
    histories ending in n-2 <s>, and to 1 after every other. Ours sum to 1 after all of them.
    (Everywhere else the raw pipeline differs from us by design, not by error: it also predicts <s>
    after <s> and </s> after </s>, which moves a little mass in every distribution.)"""
    words = CORPORA["handmade"]
    ours = NgramLM(order, "kneser_ney", min_count=2).fit(words)
    theirs = nltk_kneser_ney(order, words, 0.75, min_count=2, drop_what_we_never_count=False)
    alphabet = [BOS, EOS, UNK, "the", "cat", "."]
    for context in itertools.product(alphabet, repeat=order - 1):
        nltk_sum = math.fsum(theirs.score(w, context) for w in theirs.vocab)
        if context[1:] == (BOS,) * (order - 2):
            assert nltk_sum > 1 + 1e-3, context
        else:
            assert nltk_sum == pytest.approx(1, abs=1e-9), context
        assert abs(ours.probs(context).sum() - 1) < 1e-12
    assert theirs.score(BOS, ("the", "cat")) > 0 and ours.prob(BOS, ["the", "cat"]) == 0


def test_nltk_pipeline_equals_ours_for_bigrams():
    words = CORPORA["random"]
    ours = NgramLM(2, min_count=2).fit(words)
    theirs = nltk_kneser_ney(2, words, 0.75, min_count=2, drop_what_we_never_count=False)
    for context in contexts_to_check(ours, words):
        full = tuple(pad(context, 2)[-2:-1])
        assert np.abs(ours.probs(context) - [theirs.score(w, full) for w in ours.vocab]).max() < 1e-9


def test_unknown_words_without_counts():
    """min_count=1 and no rare word: <unk> never occurs in training. NLTK gives it 0 (so one unknown
    word makes perplexity infinite); we count it once as a continuation, and still sum to 1."""
    words = HANDMADE
    ours = NgramLM(3, min_count=1).fit(words)
    theirs = nltk_kneser_ney(3, words, 0.75, min_count=1)
    assert theirs.score(UNK, ("the", "cat")) == 0.0
    assert ours.prob(UNK, ["the", "cat"]) > 0 and ours.prob("zebra", ["the", "cat"]) > 0
    assert abs(ours.probs(["the", "cat"]).sum() - 1) < 1e-12
    assert math.isfinite(ours.perplexity([["the", "zebra", "sat"]]))
    continuation = {}  # base unigram: N1+(· w) / N1+(· ·), <unk> counted once
    for _, w in count_ngrams(words, 2):
        continuation[w] = continuation.get(w, 0) + 1
    total = sum(continuation.values()) + 1
    unigram = NgramLM(1, "kneser_ney").fit(words)  # order 1: raw counts, the same floor
    assert ours._base[ours.vocab.index(UNK)] == pytest.approx(1 / total)
    assert ours._base[ours.vocab.index("cat")] == pytest.approx(continuation["cat"] / total)
    assert unigram.prob(UNK, []) == pytest.approx(1 / (sum(map(len, words)) + len(words) + 1))


# ---- interpolation, sampling, real data ----------------------------------------------------


def test_tuned_lambdas_beat_uniform_ones():
    lines = real_sequences(4000)
    train, dev = lines[:3000], lines[3000:]
    lm = NgramLM(3, "interpolated", min_count=2).fit(train)
    assert lm.lambdas == (0.25,) * 4
    uniform = lm.perplexity(dev)
    lambdas = lm.tune_lambdas(dev)
    assert lm.lambdas == lambdas and len(lambdas) == 4 and abs(sum(lambdas) - 1) < 1e-9
    assert min(lambdas) > 0
    assert lm.perplexity(dev) < uniform - 1
    fixed = NgramLM(3, "interpolated", lambdas=lambdas, min_count=2).fit(train)
    assert fixed.perplexity(dev) == pytest.approx(lm.perplexity(dev))


def test_sample_is_deterministic_and_stops_at_eos():
    lm = NgramLM(3, min_count=1).fit(HANDMADE)
    a, b = lm.sample(20, seed=1), lm.sample(20, seed=1)
    assert a == b and len(a) == 20 and a != lm.sample(20, seed=2)
    assert all(t in lm.vocab and t != EOS for s in a for t in s)
    assert any(len(s) < 100 for s in a)  # stopped at </s>
    assert all(len(s) <= 3 for s in lm.sample(20, seed=1, max_len=3))
    mle = NgramLM(2, "mle").fit([["a", "b"]])
    assert mle.sample(3, seed=0) == [["a", "b"]] * 3


def test_character_bigram_on_names_matches_makemore():
    """makemore's counting bigram reaches about 2.45 nats on the dev split."""
    try:
        train, dev, _ = data.names_split()
    except data.DatasetError:
        pytest.skip("the names dataset is not available offline here (set LMBOOK_DATA_DIR)")
    for smoothing in ("add_k", "kneser_ney"):
        lm = NgramLM(2, smoothing, k=1).fit([list(name) for name in train])
        assert 2.40 <= lm.cross_entropy([list(name) for name in dev]) <= 2.50


# ---- bad input ------------------------------------------------------------------------------


@pytest.mark.parametrize("make,error,message", [
    (lambda: NgramLM(0), ValueError, r"order must be an int >= 1 .*got 0"),
    (lambda: NgramLM(2.5), TypeError, r"order must be an int >= 1 .*got 2.5"),
    (lambda: NgramLM(2, "witten_bell"), ValueError,
     r"unknown smoothing 'witten_bell'; allowed: 'mle', 'add_k', 'interpolated', 'kneser_ney'"),
    (lambda: NgramLM(2, "add_k", k=-1), ValueError, r"k must be > 0 .*got -1"),
    (lambda: NgramLM(2, discount=1.5), ValueError, r"discount must be in the open interval \(0, 1\), got 1.5"),
    (lambda: NgramLM(2, discount=0), ValueError, r"discount must be in the open interval \(0, 1\), got 0"),
    (lambda: NgramLM(2, min_count=0), ValueError, r"min_count must be an int >= 1, got 0"),
    (lambda: NgramLM(2, "interpolated", lambdas=[0.5, 0.5]), ValueError,
     r"lambdas must be 3 weights >= 0 summing to 1"),
    (lambda: NgramLM(2, "add_k", lambdas=[0.2, 0.3, 0.5]), ValueError, r"lambdas are only used by"),
    (lambda: NgramLM(2).fit([]), ValueError, r"cannot fit on an empty corpus: got 0 sequences"),
    (lambda: NgramLM(2).fit([[], []]), ValueError, r"cannot fit on an empty corpus: got 2 sequences and no tokens"),
    (lambda: NgramLM(2).fit("some text"), TypeError,
     r"fit expects an iterable of token sequences .*got str 'some text'"),
    (lambda: NgramLM(2).fit(["emma", "olivia"]), TypeError,
     r"sequence 0 is str 'emma'; each sequence must be a list of str tokens"),
    (lambda: NgramLM(2).fit([["a", "b"], ["c", 42]]), TypeError,
     r"token 1 of sequence 1 is 42 \(int\); tokens must be str"),
    (lambda: NgramLM(2).fit([["a", BOS]]), ValueError, r"sequence 0 contains '<s>', the padding"),
    (lambda: NgramLM(2).prob("a", []), ValueError, r"not fitted yet: call .fit\(sequences\)"),
    (lambda: NgramLM(2).perplexity([["a"]]), ValueError, r"not fitted yet"),
    (lambda: NgramLM(2).fit([["a"]]).perplexity([]), ValueError, r"cannot score an empty corpus"),
    (lambda: NgramLM(2).fit([["a"]]).probs("a"), TypeError, r"context must be a list of str tokens"),
    (lambda: NgramLM(2).fit([["a"]]).prob(3, ["a"]), TypeError, r"token must be a str, got 3"),
    (lambda: NgramLM(2).fit([["a"]]).tune_lambdas([["a"]]), ValueError,
     r"tune_lambdas is for smoothing='interpolated'"),
])
def test_bad_input_says_what_is_wrong(make, error, message):
    with pytest.raises(error, match=message):
        make()
