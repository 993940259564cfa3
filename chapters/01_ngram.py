# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 1. N-gram language models
#
# A language model assigns a probability to every piece of text. That one ability is enough to
# generate text (draw one token at a time), to score it (which of two sentences is more
# plausible?), and to compress it. Every model in this book, up to the GPT of the last chapter,
# is a language model in exactly this sense; they differ only in *how* they compute the
# probabilities.
#
# This chapter builds the oldest kind that still works: the **n-gram model**, which estimates
# probabilities by counting. It is worth learning well, because the questions it raises (how do we
# measure a language model? what do we do with events we never saw?) are the same for neural
# models, and because it sets the baseline that every later chapter must beat.
#
# We will (1) write down what a language model is, (2) build an n-gram model from counts,
# (3) learn to evaluate it with cross-entropy and perplexity, (4) fix its fatal flaw with
# smoothing, up to Kneser–Ney, and (5) run it on real text: 32,000 first names and the complete
# *tinyshakespeare* corpus.

# %% [markdown]
# Every chapter starts the same way: seed every random number generator, so that re-running
# the notebook gives the same numbers, and print the *profile* the notebook runs at. The profile
# (`test`, `cpu` or `gpu`) sets the size of each experiment; the outputs you see in the book were
# produced at the profile printed below.

# %%
import math
import re
from collections import Counter, defaultdict

import matplotlib.pyplot as plt
import numpy as np

from lmbook import data, env, ngram
from lmbook.plot import use_book_style

env.seed_everything(1337)
use_book_style()
print(env.describe())

# %% [markdown]
# ## 1.1 What a language model is
#
# Split a text into **tokens** $w_1, w_2, \dots, w_T$: characters, words, or (chapter 6) subwords.
# A language model gives the probability of the whole sequence. By the chain rule of probability,
# any joint distribution factors into next-token predictions:
#
# $$
# P(w_1, \dots, w_T) = \prod_{t=1}^{T} P(w_t \mid w_1, \dots, w_{t-1}).
# $$
#
# This is not an approximation: it is an identity. It turns "model text" into "predict the next
# token given everything before it", which is what every model in this book does.
#
# The history $w_1, \dots, w_{t-1}$ grows without bound, and we can never see enough text to
# estimate a distribution for every possible history. The **Markov assumption** cuts it short:
# the next token depends only on the last $n-1$ tokens,
#
# $$
# P(w_t \mid w_1, \dots, w_{t-1}) \approx P(w_t \mid w_{t-n+1}, \dots, w_{t-1}).
# $$
#
# A model that makes this assumption is an **n-gram model**: a *bigram* model ($n=2$) looks at
# one previous token, a *trigram* model at two.
#
# Where does a sequence begin and end? We pad it on the left with $n-1$ copies of a start symbol
# `<s>` (so the first token has a full history) and add an end symbol `</s>` on the right, which
# the model must predict like any other token. Predicting `</s>` is how a model says "this
# sentence is finished", and it is what makes the probabilities of all sequences of all lengths
# sum to one.

# %% [markdown]
# Here is the chain rule at work on a toy corpus of three "names", with a bigram model whose
# probabilities we count by hand.

# %% tags=["nbval-check-output"]
toy = ["ab", "abb", "b"]
bigram_counts = Counter()
for name in toy:
    tokens = ["<s>"] + list(name) + ["</s>"]
    bigram_counts.update(zip(tokens, tokens[1:]))

history_counts = Counter()
for (h, w), c in bigram_counts.items():
    history_counts[h] += c


def p_bigram(w: str, h: str) -> float:
    return bigram_counts[(h, w)] / history_counts[h]


tokens = ["<s>", "a", "b", "</s>"]
factors = [p_bigram(w, h) for h, w in zip(tokens, tokens[1:])]
print(" * ".join(f"P({w}|{h})={p:.3f}" for (h, w), p in zip(zip(tokens, tokens[1:]), factors)))
print(f"P('ab') = {math.prod(factors):.4f}")

# %% [markdown]
# ### Why a language model keeps punctuation and stop words
#
# Many text-processing tutorials begin by lower-casing, deleting punctuation and removing "stop
# words" such as *the*, *of* and *and*. That is sensible for a keyword search or a bag-of-words
# classifier, where those tokens carry little topical signal. **For a language model it is
# wrong.** The model's job is to assign probabilities to the text people actually write; a model
# trained on text without stop words assigns probabilities to a language nobody speaks, and can
# only generate that language. Stop words and punctuation are also the easiest, most frequent
# predictions: they carry the grammar. Look at what they are in Shakespeare:

# %% tags=["nbval-check-output"]
def words(line: str) -> list[str]:
    """Split a line into words and punctuation marks, keeping both (case is kept too)."""
    return re.findall(r"[A-Za-z']+|[^\sA-Za-z']", line)


shakespeare_train, shakespeare_val = data.shakespeare_split()
train_lines = [words(line) for line in shakespeare_train.splitlines()]
word_counts = Counter(w for line in train_lines for w in line)
total = sum(word_counts.values())
top = word_counts.most_common(12)
print(f"{total:,} word tokens, {len(word_counts):,} distinct")
print("most frequent:", " ".join(w for w, _ in top))
print(f"the 12 most frequent tokens are {sum(c for _, c in top) / total:.1%} of all tokens")

# %% [markdown]
# Punctuation and a handful of function words make up more than a quarter of every token a
# model must predict. Strip them and "To be, or not to be: that is the question" becomes
# "question" — no longer a sentence a model could learn to write.

# %% [markdown]
# ## 1.2 Counting: the maximum-likelihood n-gram model
#
# The natural estimate of $P(w \mid h)$, for a history $h$ of $n-1$ tokens, is the fraction of the
# times we saw $h$ that it was followed by $w$:
#
# $$
# P_{\text{MLE}}(w \mid h) = \frac{c(h\,w)}{c(h)}, \qquad c(h) = \sum_{w'} c(h\,w').
# $$
#
# It is called the **maximum-likelihood estimate** because, among all distributions, it is the
# one that gives the training text the highest probability (a short Lagrange-multiplier argument;
# see exercise 6). For characters on the `names` dataset (makemore's), the counts of a bigram
# model form a 27 × 27 table: 26 letters plus one boundary symbol. We use `.` for both `<s>` and
# `</s>` here, as makemore does, so the table is square.

# %% tags=["nbval-check-output"]
names_train, names_dev, names_test = data.names_split()
print(f"names: {len(names_train):,} train, {len(names_dev):,} dev, {len(names_test):,} test;",
      "e.g.", ", ".join(names_train[:5]))

chars = ["."] + sorted(set("".join(names_train)))
index = {ch: i for i, ch in enumerate(chars)}
N = np.zeros((len(chars), len(chars)), dtype=np.int64)
for name in names_train:
    seq = ["."] + list(name) + ["."]
    for a, b in zip(seq, seq[1:]):
        N[index[a], index[b]] += 1
print("count of 'a' followed by 'n':", N[index["a"], index["n"]])

# %% [markdown]
# The table itself is the model. Each row is the next-character distribution after one
# character; the first row says how names begin, the first column how they end.

# %%
fig, ax = plt.subplots(figsize=(7.5, 7.5))
ax.imshow(np.log1p(N), cmap="Blues")
for i in range(len(chars)):
    for j in range(len(chars)):
        ax.text(j, i, f"{chars[i]}{chars[j]}\n{N[i, j]}", ha="center", va="center", fontsize=5.5)
ax.set_xticks(range(len(chars)), chars)
ax.set_yticks(range(len(chars)), chars)
ax.set_xlabel("next character")
ax.set_ylabel("previous character")
ax.set_title("Bigram counts on the names training split (colour: log(1 + count))")
ax.grid(False)
plt.show()

# %% [markdown]
# To **sample** a name, start from `.`, draw the next character from its row (normalised into
# probabilities), and repeat until we draw `.` again.

# %% tags=["nbval-check-output"]
P = N / N.sum(axis=1, keepdims=True)
rng = np.random.default_rng(1337)


def sample_name(P: np.ndarray, rng: np.random.Generator) -> str:
    out, i = [], 0
    while True:
        i = rng.choice(len(chars), p=P[i])
        if i == 0:
            return "".join(out)
        out.append(chars[i])


print(", ".join(sample_name(P, rng) for _ in range(12)))

# %% [markdown]
# Bigram names sound vaguely name-like and are mostly terrible: one character of memory is not
# much. Before we give the model more memory we need a way to *measure* how good it is.

# %% [markdown]
# ## 1.3 Evaluation: cross-entropy, perplexity and bits
#
# A language model is a probability distribution, so we judge it the way we judge any
# probabilistic forecast: by the probability it assigned to what actually happened, on text it
# did **not** see during training. For held-out tokens $w_1, \dots, w_N$ (each with its history
# $h_t$), the average negative log-probability is the model's **cross-entropy** on that text:
#
# $$
# H = -\frac{1}{N} \sum_{t=1}^{N} \ln P(w_t \mid h_t) \quad \text{nats per token.}
# $$
#
# It is also the loss that every neural model in this book minimises. Two other units are common:
# divide by $\ln 2$ to get **bits per token** (the average code length an arithmetic coder would
# need using this model), and exponentiate to get the **perplexity**
#
# $$
# \mathrm{PPL} = e^{H} = \Big(\prod_{t} P(w_t \mid h_t)\Big)^{-1/N},
# $$
#
# the size of a uniform choice that would be equally surprising: a model with perplexity 5 is, on
# average, as uncertain as if it picked among 5 equally likely tokens. A uniform model over $V$
# tokens has perplexity exactly $V$, which makes a useful sanity check.
#
# `N` here counts every predicted token, including each `</s>`; the start padding is never
# predicted, so it does not count. Here is the computation from scratch for the bigram of
# section 1.2, first on the names it was counted from:

# %% tags=["nbval-check-output"]
def cross_entropy(P: np.ndarray, names: list[str]) -> float:
    """Mean negative log-likelihood (nats) per predicted character, the final '.' included."""
    nll, n = 0.0, 0
    for name in names:
        seq = [0] + [index[c] for c in name] + [0]
        for a, b in zip(seq, seq[1:]):
            nll -= math.log(P[a, b]) if P[a, b] > 0 else -math.inf
            n += 1
    return nll / n


H_train = cross_entropy(P, names_train)
print(f"bigram (MLE) on its training names: {H_train:.4f} nats/char,"
      f" perplexity {math.exp(H_train):.2f}, {H_train / math.log(2):.3f} bits/char")
print(f"a uniform model over the {len(chars)} characters would have perplexity {len(chars)}")

# %% [markdown]
# On the training names the bigram's perplexity is about 11.6: it is as uncertain as a uniform
# choice among 11.6 characters rather than 27. Now the held-out dev names:

# %% tags=["nbval-check-output"]
print(f"bigram (MLE) on dev names: {cross_entropy(P, names_dev)} nats/char")
unseen = sorted({(a, b) for name in names_dev for a, b in zip("." + name, name + ".")
                 if N[index[a], index[b]] == 0})
print("pairs in dev names never seen in training:", unseen)

# %% [markdown]
# Infinite. A few dev names contain a pair of characters that no training name contains, the
# maximum-likelihood model gives that pair probability zero, and $-\ln 0 = \infty$: one unseen
# event ruins the whole evaluation. This **zero-count problem** is the subject of section 1.4. The
# quickest fix, which makemore uses, is to add one to every count before normalising:

# %% tags=["nbval-check-output"]
P1 = (N + 1) / (N + 1).sum(axis=1, keepdims=True)
H1_train, H1_dev = cross_entropy(P1, names_train), cross_entropy(P1, names_dev)
print(f"bigram, add-one: train {H1_train:.4f}  dev {H1_dev:.4f} nats/char"
      f"  (dev perplexity {math.exp(H1_dev):.2f})")

# %% [markdown]
# The makemore lecture reports a loss of about 2.45 on its training names for this add-one count
# bigram {cite:p}`karpathy2022makemore`; ours rounds to the same on both training and dev names.
# Every later model of the book is compared against these numbers on exactly this split.
#
# ### Why not precision, recall or F1?
#
# A popular recipe for "evaluating a language model" lists accuracy, precision, recall and F1.
# Those measure a *classifier* on a downstream task (is this review positive?), where there is one
# right label and the model makes a hard decision. A language model makes no hard decision: it
# outputs a distribution, and its quality lies in how much probability it puts on what actually
# comes next. Reducing it to its top-1 guess throws that away. Two models can make the same
# guesses (same accuracy, same precision, same F1) and still differ enormously in how well they
# predict:

# %% tags=["nbval-check-output"]
def top1_accuracy(P: np.ndarray, names: list[str]) -> float:
    hits = n = 0
    for name in names:
        seq = [0] + [index[c] for c in name] + [0]
        for a, b in zip(seq, seq[1:]):
            hits += int(P[a].argmax() == b)
            n += 1
    return hits / n


# Same argmax in every row, but less confident: mix with the uniform distribution.
P_timid = 0.5 * P1 + 0.5 / len(chars)
for label, model in [("bigram (add-one)", P1), ("timid bigram", P_timid)]:
    print(f"{label:16s} top-1 accuracy {top1_accuracy(model, names_dev):.3f}"
          f"   dev cross-entropy {cross_entropy(model, names_dev):.3f} nats")

# %% [markdown]
# Identical accuracy, very different cross-entropy. Task metrics such as F1 are the right tool
# *after* a language model has been turned into a classifier or a tagger; for the language model
# itself, use cross-entropy (or perplexity, or bits) on held-out text, always measured on the same
# tokenisation (chapter 6 explains why models with different tokenisers must be compared in bits
# per byte instead).

# %% [markdown]
# ## 1.4 The zero-count problem and smoothing
#
# The zero count we met in section 1.3 gets worse with more memory. Here is a maximum-likelihood
# *trigram* on the same names, computed with `lmbook.ngram`, the package version of this chapter's code (we
# look inside it in section 1.5):

# %% tags=["nbval-check-output"]
name_seqs = {split: [list(w) for w in names]
             for split, names in [("train", names_train), ("dev", names_dev), ("test", names_test)]}
mle3 = ngram.NgramLM(order=3, smoothing="mle").fit(name_seqs["train"])
print(f"trigram MLE: train {mle3.cross_entropy(name_seqs['train']):.4f} nats/char,"
      f" dev {mle3.cross_entropy(name_seqs['dev'])}")

# %% [markdown]
# Infinite again, and no surprise: a model that calls an ordinary name impossible is simply
# wrong, and the more context we use, the more of the histories and events we need are rare or
# unseen in training. **Smoothing** moves
# a little probability mass from seen events to unseen ones. There are three classic ideas.
#
# ### Add-k smoothing
#
# Pretend every possible next token was seen $k$ extra times ($k=1$ is Laplace's rule):
#
# $$
# P_{\text{add-}k}(w \mid h) = \frac{c(h\,w) + k}{c(h) + kV}.
# $$

# %% tags=["nbval-check-output"]
def add_k_probs(N: np.ndarray, k: float) -> np.ndarray:
    """Row-normalised (counts + k): one next-token distribution per history."""
    return (N + k) / (N + k).sum(axis=1, keepdims=True)


ks = [0.001, 0.01, 0.1, 0.3, 1, 3, 10, 30, 100]
dev_loss = [cross_entropy(add_k_probs(N, k), names_dev) for k in ks]
best_k = ks[int(np.argmin(dev_loss))]
print("dev loss per k:", ", ".join(f"{k}: {h:.4f}" for k, h in zip(ks, dev_loss)))

# %% [markdown]
# For a bigram on 27 characters almost every pair has been seen, so $k$ barely matters until it
# is so large that it flattens the distribution. For a trigram, $k$ decides between infinity and a
# good model, and the right value is found on held-out data, never on the test set. We tune it on
# dev for the character trigram:

# %%
ks3 = [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3]
dev3 = [ngram.NgramLM(3, "add_k", k=k).fit(name_seqs["train"]).cross_entropy(name_seqs["dev"])
        for k in ks3]
fig, ax = plt.subplots()
ax.semilogx(ks, dev_loss, "o-", label="bigram")
ax.semilogx(ks3, dev3, "s-", label="trigram")
ax.set_xlabel("k (pseudo-count added to every event)")
ax.set_ylabel("dev cross-entropy (nats/char)")
ax.set_title("Add-k smoothing on names: k is tuned on held-out data")
ax.legend()
plt.show()
print(f"best k for the trigram: {ks3[int(np.argmin(dev3))]} (dev {min(dev3):.4f})")

# %% [markdown]
# Add-k is crude: it gives every unseen event the same share, and with a large vocabulary (words
# rather than characters) it steals far too much mass from what was seen. The next two ideas use
# the *shorter* histories instead, which are seen much more often.
#
# ### Interpolation
#
# Mix the estimates of every order, from the full history down to no history at all (and a uniform
# distribution, so that nothing is ever zero):
#
# $$
# P_{\text{interp}}(w \mid w_{t-2}, w_{t-1}) = \lambda_3 P_{\text{MLE}}(w \mid w_{t-2}, w_{t-1})
#   + \lambda_2 P_{\text{MLE}}(w \mid w_{t-1}) + \lambda_1 P_{\text{MLE}}(w) + \lambda_0 \tfrac{1}{V},
# \qquad \sum_i \lambda_i = 1.
# $$
#
# The weights $\lambda$ are chosen to maximise the likelihood of **held-out** data (tuning them on
# the training data would put all weight on the highest order, which fits the training text best).
# `lmbook` tunes them with the EM algorithm on the dev set; the test set stays untouched until the end.

# %% tags=["nbval-check-output"]
interp3 = ngram.NgramLM(3, "interpolated").fit(name_seqs["train"])
lambdas = interp3.tune_lambdas(name_seqs["dev"])
print("tuned lambdas:", np.round(lambdas, 3))
print(f"interpolated trigram dev: {interp3.cross_entropy(name_seqs['dev']):.4f} nats/char")

# %% [markdown]
# ### Backoff
#
# Interpolation always mixes all orders. **Backoff** uses the longest history that was actually
# seen and falls back to a shorter one only when it was not. The simplest version, "stupid
# backoff", multiplies by a constant $0.4$ at each step down:
#
# $$
# S(w \mid h) = \begin{cases} \dfrac{c(h\,w)}{c(h)} & \text{if } c(h\,w) > 0,\\[4pt]
#   0.4\, S(w \mid h') & \text{otherwise,} \end{cases}
# $$
#
# where $h'$ is $h$ without its oldest token. It works well for very large corpora, but its
# scores are not probabilities: they do not sum to one.

# %% tags=["nbval-check-output"]
def stupid_backoff_scores(seqs: list[list[str]], history: tuple[str, ...]) -> dict[str, float]:
    """Stupid-backoff scores of every next character after `history` (a trigram model)."""
    counts = [Counter() for _ in range(3)]  # counts[m][(history of length m, w)]
    for seq in seqs:
        padded = ["<s>", "<s>"] + seq + ["</s>"]
        for i in range(2, len(padded)):
            for m in range(3):
                counts[m][(tuple(padded[i - m:i]), padded[i])] += 1
    vocab = sorted({w for (_, w) in counts[0]})
    totals = [Counter() for _ in range(3)]
    for m in range(3):
        for (h, _), c in counts[m].items():
            totals[m][h] += c

    def score(w, h):
        m = len(h)
        if m == 0:
            return counts[0][((), w)] / totals[0][()]
        if counts[m][(h, w)] > 0:
            return counts[m][(h, w)] / totals[m][h]
        return 0.4 * score(w, h[1:])

    return {w: score(w, history) for w in vocab}


scores = stupid_backoff_scores(name_seqs["train"], ("q", "u"))
print(f"sum of stupid-backoff scores after 'qu': {sum(scores.values()):.3f}")

# %% [markdown]
# Because the scores sum to more than one, stupid backoff has no honest perplexity. *Katz
# backoff* repairs this by discounting the seen counts and handing exactly the freed mass to the
# lower order. The best-known member of the family does that discounting more cleverly.
#
# ### Kneser–Ney smoothing
#
# Two observations make Kneser–Ney the best classic smoothing method (Chen and Goodman's
# comparison found it best across corpora and sizes).
#
# **Absolute discounting.** Counts of events seen once or twice are inflated by luck; subtracting a
# fixed discount $d \approx 0.75$ from every seen count frees mass for the unseen, and removes
# proportionally more from rare events than from frequent ones.
#
# **Continuation counts.** When we back off to a shorter history, the question changes: the
# lower-order model is only consulted when the longer history was *not* informative, so it should
# predict how likely $w$ is to appear in a **new** context, not how frequent $w$ is. In
# Shakespeare, *VINCENTIO* appears almost two hundred times but always after *DUKE*; a unigram model
# finds it more frequent than many common words, yet in any new context it is very unlikely.
# Kneser–Ney replaces the count of $w$ with the number of distinct tokens that precede it:

# %% tags=["nbval-check-output"]
predecessors = defaultdict(set)
for line in train_lines:
    seq = ["<s>"] + line
    for a, b in zip(seq, seq[1:]):
        predecessors[b].add(a)
for w in ["VINCENTIO", "DUKE", "love", "the"]:
    print(f"{w:10s} count {word_counts[w]:5d}   distinct predecessors {len(predecessors[w]):5d}")

# %% [markdown]
# Formally, with $N_{1+}(\bullet\, w) = |\{v : c(v\,w) > 0\}|$, the continuation probability is
#
# $$
# P_{\text{cont}}(w) = \frac{N_{1+}(\bullet\, w)}{N_{1+}(\bullet\,\bullet)}.
# $$
#
# **Interpolated Kneser–Ney** for a bigram combines both ideas: discount the bigram counts, and
# give the freed mass to the continuation distribution,
#
# $$
# P_{\text{KN}}(w \mid v) = \frac{\max(c(v\,w) - d,\ 0)}{c(v)}
#   + \underbrace{\frac{d \cdot N_{1+}(v\,\bullet)}{c(v)}}_{\gamma(v)} P_{\text{cont}}(w),
# $$
#
# where $N_{1+}(v\,\bullet)$ is the number of distinct tokens seen after $v$: each of them gave up
# $d$, so $\gamma(v)$ is exactly the mass that was discounted, and the distribution sums to one.
# For higher orders the same formula recurses, and every order below the top uses continuation
# counts. Here is the bigram version from scratch on the names, in plain Python:

# %% tags=["nbval-check-output"]
def kneser_ney_bigram(seqs: list[list[str]], d: float = 0.75):
    """Return P(w | v) for an interpolated Kneser-Ney bigram model, from scratch."""
    c = Counter()
    for seq in seqs:
        padded = ["<s>"] + seq + ["</s>"]
        c.update(zip(padded, padded[1:]))
    c_v, followers, preceders = Counter(), Counter(), Counter()
    for (v, w), n in c.items():
        c_v[v] += n          # c(v)
        followers[v] += 1    # N1+(v .)
        preceders[w] += 1    # N1+(. w)
    n_bigram_types = len(c)  # N1+(. .)
    if preceders["<unk>"] == 0:  # reserve one continuation for unknown tokens (see below)
        preceders["<unk>"], n_bigram_types = 1, n_bigram_types + 1

    def prob(w: str, v: str) -> float:
        p_cont = preceders[w] / n_bigram_types
        if c_v[v] == 0:  # unseen history: only the continuation distribution is left
            return p_cont
        return max(c[(v, w)] - d, 0) / c_v[v] + d * followers[v] / c_v[v] * p_cont

    return prob


kn = kneser_ney_bigram(name_seqs["train"])
vocab = sorted(set("".join(names_train))) + ["</s>", "<unk>"]
print(f"P_KN(n | a) = {kn('n', 'a'):.5f};  sum over the vocabulary after 'a': "
      f"{sum(kn(w, 'a') for w in vocab):.12f}")

# %% [markdown]
# One detail needs explaining: `<unk>`. A character never seen in training (an accented letter,
# say) has no continuation count, so the formula would give it probability zero and an infinite
# loss. Both versions therefore reserve a single continuation count for the unknown token `<unk>`,
# which makes an unseen character improbable rather than impossible (more on `<unk>` below).
#
# `lmbook.ngram` implements the same model for any order. For a bigram the two must agree exactly:

# %% tags=["nbval-check-output"]
kn2 = ngram.NgramLM(order=2, smoothing="kneser_ney", discount=0.75).fit(name_seqs["train"])
worst = max(abs(kn(w, v) - kn2.prob(w, [v])) for v in vocab if v != "</s>" for w in vocab)
print(f"largest difference between the from-scratch bigram and lmbook: {worst:.1e}")
assert worst < 1e-12

# %% [markdown]
# ### Unknown tokens and sentence boundaries
#
# Characters come from a closed set, but words do not: the validation text of Shakespeare contains
# words the training text never uses, and no smoothing of *counts* can give a probability to a word
# that is not in the vocabulary at all. The standard fix is a reserved token `<unk>`. Words seen
# fewer than `min_count` times in training are replaced by `<unk>`, so the model learns how often
# "some rare word" appears and where; at evaluation time every out-of-vocabulary word is scored as
# `<unk>`. Perplexities are then only comparable between models with the **same** vocabulary.

# %% tags=["nbval-check-output"]
val_lines = [words(line) for line in shakespeare_val.splitlines()]
val_tokens = [w for line in val_lines for w in line]
oov = sum(w not in word_counts for w in val_tokens)
print(f"{oov:,} of {len(val_tokens):,} validation word tokens ({oov / len(val_tokens):.1%})"
      " never occur in the training text")

# %% [markdown]
# ## 1.5 The same code, as it lives in `lmbook`
#
# The from-scratch code above uses Python dictionaries, one token at a time: clear, and fast
# enough for 32,000 names. `lmbook.ngram` computes the same quantities with NumPy arrays, so that
# fitting and scoring all of *tinyshakespeare* takes seconds rather than minutes. Below are its
# central pieces, shown verbatim (a test checks that these cells and the package never drift apart).

# %% [markdown]
# The cells below run here as well, so they need the module's own imports:

# %%
from collections.abc import Iterable, Sequence

from lmbook.ngram import BOS, EOS
from lmbook.ngram import _checked_likelihoods  # the input checks em_mixture_weights calls

# %% [markdown]
# First, padding and counting. `count_ngrams` is the dictionary version, for reading; `NgramLM`
# does the same counting with integer arrays.

# %%
# From lmbook/ngram.py
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

# %% [markdown]
# The two smoothing formulas of section 1.4, written once for whole arrays of counts. Each line is
# the formula it is named after; `kneser_ney` is one level of the recursion, and `lower` is the
# distribution of the level below.

# %%
# From lmbook/ngram.py
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

# %% [markdown]
# The interpolation weights are fitted by EM: each held-out token is split between the component
# distributions in proportion to how well each predicts it, and each weight becomes the average
# share of its component. Every step increases the held-out likelihood.

# %%
# From lmbook/ngram.py
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

# %% [markdown]
# The speed comes from one idea. Every history is turned into a single integer: the id of a history
# of length $m$ is computed from the id of its length-$(m-1)$ suffix and its oldest token, and an
# n-gram is then `history_id * V + token`. Counting all n-grams becomes one `np.unique` over an
# integer array, and scoring a whole corpus becomes one binary search per level:

# %%
# From lmbook/ngram.py
def lookup(table: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """Index of each key in the sorted array `table`, or -1 where the key is absent.

    >>> lookup(np.array([3, 7, 9]), np.array([7, 4, 9]))
    array([ 1, -1,  2])
    """
    i = np.searchsorted(table, keys).clip(max=len(table) - 1)
    return np.where(table[i] == keys, i, -1)

# %% [markdown]
# ## 1.6 Experiments on real text
#
# ### Names: how much context helps?
#
# We fit character models of increasing order on the training names and measure the dev loss,
# with add-k ($k$ tuned on dev for each order) and with Kneser–Ney.

# %%
max_order = env.pick(test=5, cpu=8, gpu=8)
orders = list(range(1, max_order + 1))
names_results = {"add-k (tuned k)": [], "Kneser-Ney": []}
for n in orders:
    best = min(ngram.NgramLM(n, "add_k", k=k).fit(name_seqs["train"]).cross_entropy(name_seqs["dev"])
               for k in [0.003, 0.01, 0.03, 0.1, 0.3, 1.0])
    names_results["add-k (tuned k)"].append(best)
    kn_n = ngram.NgramLM(n, "kneser_ney").fit(name_seqs["train"])
    names_results["Kneser-Ney"].append(kn_n.cross_entropy(name_seqs["dev"]))

print(f"{'order':16s}" + "".join(f"{n:>8d}" for n in orders))
for label, losses in names_results.items():
    print(f"{label:16s}" + "".join(f"{h:8.4f}" for h in losses))

# %%
fig, ax = plt.subplots()
for label, losses in names_results.items():
    ax.plot(orders, losses, "o-", label=label)
ax.axhline(2.45, color="gray", lw=1, ls=":")
ax.text(orders[-1], 2.46, "makemore's count bigram (about 2.45)", ha="right", va="bottom", fontsize=8)
ax.set_xlabel("n (order of the model)")
ax.set_ylabel("dev cross-entropy (nats/char)")
ax.set_title("names: dev loss against model order")
ax.legend()
plt.show()

# %% [markdown]
# Up to the bigram the two are the same model in practice (almost every pair of characters has been
# seen). From the trigram on, Kneser–Ney pulls ahead by a widening margin: add-k is best at $n=4$
# and then gets worse, because most long histories are rare and adding $k$ to their few counts
# gives a nearly flat guess, while Kneser–Ney falls back on the shorter histories and keeps
# improving until $n \approx 6$. We pick the best order on the dev
# set and only then look at the test set, once:

# %%
best_order = orders[int(np.argmin(names_results["Kneser-Ney"]))]
best_names_model = ngram.NgramLM(best_order, "kneser_ney").fit(name_seqs["train"])
bigram_add1 = ngram.NgramLM(2, "add_k", k=1.0).fit(name_seqs["train"])
print(f"count bigram (add-1):   dev {bigram_add1.cross_entropy(name_seqs['dev']):.4f}"
      f"   test {bigram_add1.cross_entropy(name_seqs['test']):.4f}")
print(f"best: Kneser-Ney n={best_order}: dev {best_names_model.cross_entropy(name_seqs['dev']):.4f}"
      f"   test {best_names_model.cross_entropy(name_seqs['test']):.4f}")
assert best_names_model.cross_entropy(name_seqs["dev"]) < bigram_add1.cross_entropy(name_seqs["dev"])

# %%
samples = best_names_model.sample(15, seed=1337)
print(", ".join("".join(s) for s in samples))

# %% [markdown]
# ### Shakespeare, character by character: overfitting made visible
#
# Now the whole of *tinyshakespeare* as one long stream of characters (newlines included), with
# nanoGPT's split: the first 90% for training, the last 10% for validation. As the order grows the
# model memorises more of the training text. With almost no smoothing (add-k, $k = 0.01$) the
# training perplexity falls towards 1 while the validation perplexity turns around and climbs:
# that gap is **overfitting**. Kneser–Ney holds the validation loss down much longer.

# %%
char_train, char_val = [list(shakespeare_train)], [list(shakespeare_val)]
char_orders = list(range(1, env.pick(test=6, cpu=11, gpu=11)))
curves = {"add-k 0.01": ([], []), "Kneser-Ney": ([], [])}
char_models = {}
for n in char_orders:
    for label, model in [("add-k 0.01", ngram.NgramLM(n, "add_k", k=0.01)),
                         ("Kneser-Ney", ngram.NgramLM(n, "kneser_ney"))]:
        model.fit(char_train)
        curves[label][0].append(model.perplexity(char_train))
        curves[label][1].append(model.perplexity(char_val))
        if label == "Kneser-Ney":
            char_models[n] = model
print("order", char_orders)
for label, (tr, va) in curves.items():
    print(f"{label:11s} train ppl", np.round(tr, 2))
    print(f"{label:11s} val   ppl", np.round(va, 2))

# %%
def plot_train_val(orders: list[int], curves: dict, unit: str, title: str) -> None:
    """Train (dashed) and validation (solid) perplexity against the order, one colour per model."""
    fig, ax = plt.subplots()
    for (label, (tr, va)), color in zip(curves.items(), ["C0", "C1"]):
        ax.plot(orders, tr, "o--", color=color, label=f"{label}, train")
        ax.plot(orders, va, "o-", color=color, label=f"{label}, validation")
    ax.set_yscale("log")
    ax.set_xlabel("n (order of the model)")
    ax.set_ylabel(f"perplexity per {unit} (log scale)")
    ax.set_title(title)
    ax.legend()
    plt.show()


plot_train_val(char_orders, curves, "character", "tinyshakespeare characters: train vs validation")

# %%
best_char_n = char_orders[int(np.argmin(curves["Kneser-Ney"][1]))]
best_char_loss = math.log(min(curves["Kneser-Ney"][1]))
print(f"best character model: Kneser-Ney n={best_char_n}, validation {best_char_loss:.4f} nats/char"
      f" ({best_char_loss / math.log(2):.3f} bits/char)")
assert curves["add-k 0.01"][0][-1] < curves["add-k 0.01"][1][-1]  # overfitting: train below val
assert min(curves["Kneser-Ney"][1]) < min(curves["add-k 0.01"][1])  # smoothing helps

# %% [markdown]
# Samples make the numbers concrete. Each model starts from nothing and writes 250 characters:

# %%
for n in [1, 3, 5, char_orders[-1]]:
    text = "".join(char_models[n].sample(1, seed=7, max_len=250)[0])
    print(f"--- order {n} ---\n{text}\n")

# %% [markdown]
# Order 1 is letter soup with the right letter frequencies; order 3 makes pronounceable
# gibberish; by order 5 most words are real and the layout of a play (speaker names in capitals,
# a colon, a line break) appears; the highest orders start to copy whole phrases of the training
# text, which is what a low training perplexity means.
#
# ### Shakespeare, word by word
#
# At the word level the vocabulary is large (over 13,000 types) and the data per history is thin,
# so smoothing matters even more. Each speech (a block of lines between blank lines, starting with
# the speaker's name) is one sequence, with the line breaks kept as a token `\n`; words seen once in
# training are mapped to `<unk>`, and every model is scored with that same vocabulary.

# %% tags=["nbval-check-output"]
def speeches(text: str) -> list[list[str]]:
    """Split a play into speeches (blocks between blank lines); line breaks become the token '\\n'."""
    blocks = [block for block in text.split("\n\n") if block.strip()]
    return [[w for line in block.strip("\n").split("\n") for w in words(line) + ["\n"]][:-1]
            for block in blocks]


train_speeches, val_speeches = speeches(shakespeare_train), speeches(shakespeare_val)
print(f"{len(train_speeches):,} training speeches, {len(val_speeches):,} validation speeches; the first:")
print(train_speeches[0])

# %%
word_orders = list(range(1, env.pick(test=4, cpu=6, gpu=6)))
word_curves = {"add-k 0.01": ([], []), "Kneser-Ney": ([], [])}
word_models = {}
for n in word_orders:
    for label, model in [("add-k 0.01", ngram.NgramLM(n, "add_k", k=0.01, min_count=2)),
                         ("Kneser-Ney", ngram.NgramLM(n, "kneser_ney", min_count=2))]:
        model.fit(train_speeches)
        word_curves[label][0].append(model.perplexity(train_speeches))
        word_curves[label][1].append(model.perplexity(val_speeches))
        if label == "Kneser-Ney":
            word_models[n] = model
print(f"vocabulary: {len(word_models[1].vocab):,} tokens (including <unk>, </s> and the line break)")
for label, (tr, va) in word_curves.items():
    print(f"{label:11s} train ppl", np.round(tr, 1))
    print(f"{label:11s} val   ppl", np.round(va, 1))

# %%
plot_train_val(word_orders, word_curves, "word", "tinyshakespeare words: train vs validation")
assert min(word_curves["Kneser-Ney"][1]) < min(word_curves["add-k 0.01"][1])

# %% [markdown]
# Two speeches from each model (the unigram model does not even know that a speech starts with a
# name and a colon):

# %%
def show(tokens: list[str]) -> str:
    return " ".join(tokens).replace(" \n ", "\n")


for n in word_orders:
    print(f"--- order {n} ---")
    for speech in word_models[n].sample(2, seed=3, max_len=60):
        print(show(speech) + "\n")

# %% [markdown]
# ### How fast is it?
#
# Counting is cheap when it is done with arrays. The whole word-level experiment above, every
# model fitted on all 226,489 training words and scored on train and validation, takes seconds.
# The script `bench/bench_ngram.py` compares `lmbook`'s Kneser–Ney with NLTK's
# `KneserNeyInterpolated` (the implementation most tutorials use) on the same data, with identical
# probabilities; its last run printed:

# %%
from pathlib import Path

import lmbook

print((Path(lmbook.__file__).parent.parent / "bench" / "results" / "ngram.txt").read_text())

# %% [markdown]
# ## 1.7 Summary
#
# The numbers every later chapter has to beat, on the same splits (chapter 2 adds the neural models
# to this table). For scale: makemore's README reports a test loss of about 1.92 for its small
# Transformer on names, on its own split {cite:p}`karpathy2022makemore`.

# %%
summary = {
    "count bigram (add-1)": bigram_add1.cross_entropy(name_seqs["dev"]),
    f"Kneser-Ney, n={best_order}": best_names_model.cross_entropy(name_seqs["dev"]),
}
for label, loss in summary.items():
    print(f"{label:24s} names dev loss {loss:.4f} nats/char")
print(f"{'Kneser-Ney, n=' + str(best_char_n):24s} tinyshakespeare val loss {best_char_loss:.4f} nats/char")

# %% [markdown]
# What to take away:
#
# - A language model is a next-token predictor; the chain rule makes that exact, the Markov
#   assumption makes it countable.
# - Evaluate it by cross-entropy on held-out text (or perplexity, or bits), never by task metrics
#   such as F1, and never on the data it was tuned on.
# - Unseen events are the central problem. Smoothing, and above all Kneser–Ney's discounting with
#   continuation counts, is the count-based answer; neural models (chapter 2) answer it by sharing
#   statistical strength between similar histories.
# - More context helps until the data runs out; after that the model memorises, and the gap between
#   training and validation loss shows it.

# %% [markdown]
# ## Exercises
#
# Exercises marked *(autograded)* have tests; in a classroom release the solution cells are
# empty and the tests decide the grade. Solutions are hidden in the rendered book: click
# "Show solution" to see one.
#
# **Exercise 1 (autograded).** Kneser–Ney is absolute discounting plus continuation counts.
# Write the first half alone: `abs_discount_prob(counts, history, token, d, vocab_size)` returns
# interpolated absolute discounting with a *uniform* lower order,
#
# $$
# P(w \mid h) = \frac{\max(c(h\,w) - d,\ 0)}{c(h)} + \frac{d \cdot N_{1+}(h\,\bullet)}{c(h)} \cdot \frac{1}{V},
# $$
#
# from a `Counter` of `(history, token)` pairs. A history never seen must give $1/V$. Compute it
# yourself: the hidden tests take `lmbook.ngram`'s formulas (and this chapter's copies) away.

# %%
def abs_discount_prob(counts: Counter, history: tuple, token: str, d: float, vocab_size: int) -> float:
    ### BEGIN SOLUTION
    seen = {w: c for (h, w), c in counts.items() if h == history and c > 0}
    c_history = sum(seen.values())
    if c_history == 0:
        return 1 / vocab_size
    return max(seen.get(token, 0) - d, 0) / c_history + d * len(seen) / c_history / vocab_size
    ### END SOLUTION

# %%
# Autograded test: ex1_abs_discount (2 points)
_counts = Counter({(("a",), "b"): 3, (("a",), "c"): 1, (("b",), "a"): 2})
assert math.isclose(abs_discount_prob(_counts, ("a",), "b", 0.5, 3), 2.5 / 4 + 0.5 * 2 / 4 / 3), \
    "P(b | a) with d=0.5, V=3: (3 - 0.5) / 4 + 0.5 * 2 / 4 * 1/3 (two distinct tokens follow 'a')"
assert math.isclose(abs_discount_prob(_counts, ("z",), "b", 0.5, 3), 1 / 3), \
    "an unseen history should give the uniform probability 1/V"
### BEGIN HIDDEN TESTS
from lmbook import grading

with grading.without("lmbook.ngram.kneser_ney", "lmbook.ngram.add_k", "kneser_ney", "add_k", "add_k_probs",
                     "kneser_ney_bigram"):
    assert math.isclose(abs_discount_prob(_counts, ("a",), "a", 0.5, 3), 0.5 * 2 / 4 / 3), \
        "a token never seen after the history gets only its share of the discounted mass"
    assert math.isclose(sum(abs_discount_prob(_counts, ("a",), w, 0.3, 3) for w in "abc"), 1.0), \
        "the probabilities over the vocabulary should sum to 1"
    assert math.isclose(sum(abs_discount_prob(_counts, ("b",), w, 0.9, 4) for w in "abcd"), 1.0)
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2 (autograded).** Write `perplexity(probs)` that takes the list of probabilities a
# model gave to each held-out token and returns the perplexity. Avoid multiplying the
# probabilities directly (why?). Return `math.inf` if any probability is zero.

# %%
def perplexity(probs: list[float]) -> float:
    ### BEGIN SOLUTION
    if any(p == 0 for p in probs):
        return math.inf
    return math.exp(-sum(math.log(p) for p in probs) / len(probs))
    ### END SOLUTION

# %%
# Autograded test: ex2_perplexity (2 points)
assert math.isclose(perplexity([0.25] * 8), 4.0), \
    "a model that gives every token probability 1/4 has perplexity 4"
assert perplexity([0.5, 0.0]) == math.inf, "a zero probability should give math.inf"
### BEGIN HIDDEN TESTS
assert math.isclose(perplexity([1e-300] * 2000), 1e300, rel_tol=1e-9), \
    "the product of 2000 tiny probabilities underflows: sum log-probabilities instead"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3 (autograded).** In a Kneser–Ney trigram, the middle order (the bigram level) also
# uses continuation counts: how many distinct tokens $u$ precede the pair $v\,w$, out of all the
# distinct contexts $u$ that precede $v$ and some token,
#
# $$
# P_{\text{cont}}(w \mid v) = \frac{N_{1+}(\bullet\, v\, w)}{N_{1+}(\bullet\, v\, \bullet)},
# \qquad N_{1+}(\bullet\, v\, w) = |\{u : c(u\,v\,w) > 0\}|, \quad
# N_{1+}(\bullet\, v\, \bullet) = |\{(u, w') : c(u\,v\,w') > 0\}|.
# $$
#
# Write `continuation_probs(seqs, v)`, the dict mapping each token $w$ seen after $v$ to
# $P_{\text{cont}}(w \mid v)$, counting trigrams over sequences padded with two `<s>` on the left and
# one `</s>` on the right. (Section 1.4 computed the unigram version, with no $v$.)

# %%
def continuation_probs(seqs: list[list[str]], v: str) -> dict[str, float]:
    ### BEGIN SOLUTION
    trigram_types = set()
    for seq in seqs:
        padded = ["<s>", "<s>"] + list(seq) + ["</s>"]
        trigram_types.update(t for t in zip(padded, padded[1:], padded[2:]) if t[1] == v)
    preceders = Counter(w for _, _, w in trigram_types)
    return {w: n / len(trigram_types) for w, n in preceders.items()}
    ### END SOLUTION

# %%
# Autograded test: ex3_continuation (2 points)
_cp = continuation_probs([list("abc"), list("xbc"), list("abd"), list("abc")], "b")
# trigram types with b in the middle: (a,b,c) (x,b,c) (a,b,d): three types; c follows "b" after two
# distinct tokens, d after one
assert math.isclose(_cp["c"], 2 / 3) and math.isclose(_cp["d"], 1 / 3), \
    f"P_cont(c | b) should be 2/3 and P_cont(d | b) 1/3, got {_cp}"
assert math.isclose(sum(_cp.values()), 1.0), "continuation probabilities should sum to 1"
### BEGIN HIDDEN TESTS
_cp = continuation_probs(name_seqs["train"][:500], "a")
assert math.isclose(sum(_cp.values()), 1.0)
assert "<s>" not in _cp, "<s> is never predicted, so it has no continuation probability"
_cp = continuation_probs([["a", "a", "a"]], "a")
assert math.isclose(_cp["a"], 2 / 3) and math.isclose(_cp["</s>"], 1 / 3), \
    "pad with two <s>: the trigrams with 'a' in the middle are (<s>,a,a) (a,a,a) (a,a,</s>)"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 4.** The perplexity of a uniform model over $V$ tokens is exactly $V$. Prove it, then
# check it numerically with `lmbook` on the names: an order-1 add-$k$ model with a huge $k$ is
# (almost) uniform. What is $V$ for lmbook's names model, and why does it differ from the 27 rows
# of the count table in section 1.2?

# %%
### BEGIN SOLUTION
# Proof: every token gets probability 1/V, so H = -(1/N) * N * ln(1/V) = ln V and PPL = e^H = V.
# lmbook's vocabulary has V = 28 entries: 26 letters, </s> and <unk>. <s> is only ever a history,
# never predicted, so it is not in the output vocabulary; <unk> is, even though no training name
# contains an unknown character (the makemore table of section 1.2 has no <unk>, hence 27).
uniform = ngram.NgramLM(1, "add_k", k=1e9).fit(name_seqs["train"])
print(len(uniform.vocab), uniform.perplexity(name_seqs["dev"]))
### END SOLUTION

# %% [markdown]
# **Exercise 5.** Sampling with a *temperature* $\tau$ draws from $p_i^{1/\tau} / \sum_j p_j^{1/\tau}$.
# Sample 10 names from the best names model at $\tau = 0.5, 1, 2$ (use `probs(context)` and your
# own loop). What happens to the diversity and the quality as $\tau$ moves away from 1?

# %%
### BEGIN SOLUTION
def sample_with_temperature(model: ngram.NgramLM, tau: float, rng: np.random.Generator) -> str:
    out = []
    while len(out) < 30:
        p = model.probs(out) ** (1.0 / tau)
        token = model.vocab[rng.choice(len(p), p=p / p.sum())]
        if token == ngram.EOS:
            break
        out.append(token)
    return "".join(out)


rng = np.random.default_rng(0)
for tau in [0.5, 1.0, 2.0]:
    print(tau, ", ".join(sample_with_temperature(best_names_model, tau, rng) for _ in range(10)))
# Low temperature: common, safe, repetitive names. High temperature: diverse but often unpronounceable.
### END SOLUTION

# %% [markdown]
# **Exercise 6.** Show that the maximum-likelihood estimate of a categorical distribution from
# counts $c_1, \dots, c_V$ is $p_i = c_i / \sum_j c_j$: maximise $\sum_i c_i \ln p_i$ subject to
# $\sum_i p_i = 1$ with a Lagrange multiplier. Then verify numerically that perturbing the MLE
# bigram table `P` of section 1.2 in any direction that keeps rows normalised lowers the training
# log-likelihood.

# %%
### BEGIN SOLUTION
# d/dp_i [sum_j c_j ln p_j - mu (sum_j p_j - 1)] = c_i / p_i - mu = 0  =>  p_i = c_i / mu,
# and sum_i p_i = 1 gives mu = sum_j c_j.
def train_loglik(P):
    return float((N * np.log(np.where(N > 0, P, 1.0))).sum())


base = train_loglik(P)
rng = np.random.default_rng(0)
worse = 0
for _ in range(20):
    Q = np.clip(P + 1e-3 * rng.standard_normal(P.shape) * (N > 0), 1e-12, None) * (N > 0)
    Q /= Q.sum(axis=1, keepdims=True)
    worse += train_loglik(Q) < base
print(f"{worse} of 20 random perturbations lower the training log-likelihood")
### END SOLUTION

# %% [markdown]
# **Exercise 7.** Tune the discount $d$ of the Kneser–Ney word trigram on the Shakespeare
# validation text (try $d \in \{0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99\}$). In a real project, which data should you
# tune $d$ on, and which data should you report the final number on?

# %%
### BEGIN SOLUTION
discount_ppl = {}
for d in [0.6, 0.7, 0.8, 0.85, 0.9, 0.95, 0.99]:
    m = ngram.NgramLM(3, "kneser_ney", discount=d, min_count=2).fit(train_speeches)
    discount_ppl[d] = m.perplexity(val_speeches)
    print(f"d={d}: validation perplexity {discount_ppl[d]:.2f}")
print("best d:", min(discount_ppl, key=discount_ppl.get), "(the default is 0.75)")
# The curve has its minimum inside the grid: the discounts that fit this word trigram are larger
# than the 0.75 used elsewhere in this chapter (modified Kneser-Ney uses separate, larger discounts
# for counts of 2 and 3+).
# Tune on a dev split carved out of the training data (or the validation set), and report the final
# number once on a separate test set that played no part in any choice.
### END SOLUTION
