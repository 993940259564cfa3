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
# # 4. Attention: from seq2seq to multi-head self-attention
#
# Chapter 3's recurrent networks read a sequence one token at a time and carry everything they
# know in one state vector. That is fine for predicting the next character, but many tasks map a
# whole input sequence to a whole output sequence: translation, summarisation, rewriting. The
# first neural answer, the *encoder–decoder* (Sutskever et al. 2014; Cho et al. 2014), reads the
# input into one vector and writes the output from it. Bahdanau et al. (2015) noticed that this
# one vector is a bottleneck, and let the decoder *look back* at every input position, with
# weights it computes itself: attention. Two years later Vaswani et al. (2017) kept only the
# attention, and the Transformer was born.
#
# The plan: (1) a sequence-to-sequence task generated in code, dates written the ways people write
# them → ISO 8601; (2) an LSTM encoder–decoder without attention, and where its single vector
# hurts; (3) additive attention, the accuracy-against-length curve again, and the attention weights
# as pictures; (4) queries, keys and values, scaled dot-product attention and why it divides by
# $\sqrt{d_k}$; (5) masks and self-attention; (6) multi-head attention; (7) positions;
# (8) what attention costs as the sequence grows. Chapter 5 builds a GPT from the pieces.

# %%
import math
import time
from collections import defaultdict

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook import dates, env
from lmbook.attention import MultiHeadAttention, causal_mask, padding_mask, sinusoidal_positions
from lmbook.batching import random_batches
from lmbook.plot import use_book_style
from lmbook.seq2seq import Seq2Seq, encode_pairs, encode_sources, exact_match, make_vocabs, translate
from lmbook.train import train

chapter_start, chapter_cpu = time.perf_counter(), time.process_time()
env.seed_everything(1337)
use_book_style()
device = env.device()
torch.set_num_threads(1)  # the models are small: one thread is as fast, and undisturbed by other programs
print(env.describe())

# %% [markdown]
# ## 4.1 A translation task generated in code: dates
#
# We need a task with a right answer, inputs of very different lengths, and no download. Dates fit:
# people write the same day as "3rd of March 1999", "03/03/99", "Wednesday, March 3, 1999" or
# "19990303", and a program wants "1999-03-03". `lmbook.dates` writes each day in 14 formats (in
# title, lower or upper case when it spells out a name). The conventions make each input mean one
# day: slashes are American (month/day/year), dots European (day.month.year), and every date lies in
# 1950–2049 so that a two-digit year is unambiguous.

# %% tags=["nbval-check-output"]
day = dates.datetime.date(1999, 3, 3)
for fmt in dates.FORMATS:
    print(f"{fmt:18s} {dates.format_date(day, fmt)!r:48s} -> {day.isoformat()}")

# %% [markdown]
# The splits are drawn from **disjoint sets of calendar days**: 10% of the 36,525 days are kept for
# validation, 10% for the test set. A test date never occurs in training in any format, so the test
# set measures whether the model learned to *read* dates, not whether it remembers them.

# %%
n_train = env.pick(test=4_000, cpu=40_000, gpu=100_000)
n_test = env.pick(test=1_000, cpu=4_000, gpu=10_000)
splits = dates.make_splits(n_train, 1_000, n_test, seed=0)
src_vocab, tgt_vocab = make_vocabs(splits["train"])
days = {name: {iso for _, iso in pairs} for name, pairs in splits.items()}
assert not days["train"] & days["test"] and not days["train"] & days["val"]
all_days = dates.all_dates()
print(f"{len(all_days):,} days from {all_days[0]} to {all_days[-1]};",
      {name: len(pairs) for name, pairs in splits.items()}, "examples;",
      f"{len(days['train'] & days['test'])} test days seen in training")
print(f"source vocabulary: {len(src_vocab)} characters; target vocabulary: {tgt_vocab.itos}")
lengths = [len(s) for s, _ in splits["test"]]
print(f"test inputs are {min(lengths)} to {max(lengths)} characters long; examples:", splits["test"][:3])

# %% [markdown]
# ## 4.2 Sequence to sequence: an encoder, a decoder, and one vector between them
#
# The **encoder** is an LSTM (chapter 3) that reads the source characters $x_1 \dots x_S$ and leaves
# a state after each, $h_j = \mathrm{LSTM}(h_{j-1}, \mathrm{emb}(x_j))$. The **decoder** is a second
# LSTM that starts from the encoder's last state, $s_0 = h_S$, and writes the target one character
# at a time: at step $t$ it reads the previous character $y_{t-1}$ (the first is a start symbol
# `<s>`), updates its state and predicts the next one,
#
# $$
# s_t = \mathrm{LSTM}(s_{t-1}, \mathrm{emb}(y_{t-1})), \qquad
# p(y_t \mid y_{<t}, x) = \mathrm{softmax}(W_o s_t + b_o),
# $$
#
# until it writes the end symbol `</s>`. The loss is the cross-entropy of chapter 2, averaged over
# the $T$ target positions: $\mathcal{L} = -\frac{1}{T} \sum_{t=1}^{T} \log p(y_t \mid y_{<t}, x)$.
#
# **Teacher forcing.** During training the decoder's input at step $t$ is the *true* $y_{t-1}$, not
# its own guess, so one forward pass scores all $T$ steps and an early mistake does not derail the
# rest. At test time there is no true $y_{t-1}$: **greedy decoding** feeds back the most probable
# character, $\hat y_t = \arg\max_v p(v \mid \hat y_{<t}, x)$. The metric is **exact match**: the
# fraction of test dates whose whole ISO string is right (one wrong digit is a wrong date).
#
# `encode_pairs` puts the source ids and the teacher-forced decoder input side by side in one tensor,
# so chapter 2's `train` loop works unchanged:

# %% tags=["nbval-check-output"]
X_demo, Y_demo = encode_pairs([("3/3/1999", "1999-03-03")], src_vocab, tgt_vocab)
print("x =", X_demo[0].tolist(), "  (8 source ids | <s> and the first 10 target ids)")
print("y =", Y_demo[0].tolist(), "  (the 10 target ids and </s>)")
print("decoder input:", tgt_vocab.decode(X_demo[0, 8:]), "\ntarget:       ", tgt_vocab.decode(Y_demo[0]))

# %% [markdown]
# Both models of this chapter are `lmbook.seq2seq.Seq2Seq`, with and without attention, the same
# sizes and the same training. Training runs `steps` minibatches of 128 with AdamW, a short warm-up
# and a linear decay of the learning rate, and gradient clipping (chapter 3 explains why recurrent
# networks need it).

# %%
X_train, Y_train = encode_pairs(splits["train"], src_vocab, tgt_vocab)
X_val, Y_val = encode_pairs(splits["val"], src_vocab, tgt_vocab)
test_texts = [s for s, _ in splits["test"]]
test_targets = [t for _, t in splits["test"]]
steps = env.pick(test=400, cpu=1_500, gpu=6_000)
exercise_steps = env.pick(test=60, cpu=800, gpu=6_000)  # for the exercises' extra models
hidden = env.pick(test=32, cpu=64, gpu=128)


def warmup_then_decay(step: int) -> float:
    return min(1.0, (step + 1) / 100) * (1.0 - 0.9 * step / steps)


def fit(attention: bool) -> tuple[Seq2Seq, float]:
    torch.manual_seed(0)
    model = Seq2Seq(len(src_vocab), len(tgt_vocab), Y_train.shape[1], emb_dim=32, hidden=hidden,
                    attention=attention)
    start = time.perf_counter()
    history = train(model, random_batches(X_train, Y_train, 128, torch.Generator().manual_seed(0)), steps=steps,
                    lr=5e-3, lr_schedule=warmup_then_decay, grad_clip=1.0, eval_sets={"val": (X_val, Y_val)},
                    eval_every=max(1, steps // 5), progress=False, device=device)
    print(f"attention={attention}: {sum(p.numel() for p in model.parameters()):,} parameters, "
          f"val loss {history.eval_loss['val'][0]:.3f} -> {history.eval_loss['val'][-1]:.4f} "
          f"in {time.perf_counter() - start:.0f} s")
    return model, time.perf_counter() - start


baseline, baseline_seconds = fit(attention=False)
baseline_pred = translate(baseline, test_texts, src_vocab, tgt_vocab)
baseline_em = exact_match(baseline_pred, test_targets)
print(f"no attention: exact match {baseline_em:.2%} on {len(test_texts):,} held-out dates")

# %% [markdown]
# ### Looking for the bottleneck
#
# The decoder's only view of the input is $h_S$, one vector of `hidden` numbers written after the
# *last* character: the day, month and year must survive in it however many characters came after
# them. On sentences, whose content grows with their length, Cho et al. (2014) and Bahdanau et al.
# (2015) saw the fixed-vector model's translations get worse as the sentences got longer. Group the
# test dates by the length of their input and measure exact match in each group:

# %%
BIN = 6


def accuracy_by_length(predictions: list[str]) -> dict[int, float]:
    """Exact match in bins of BIN input characters (keyed by the bin's first length); bins of at
    least 20 test dates."""
    hits = defaultdict(list)
    for text, pred, target in zip(test_texts, predictions, test_targets):
        hits[len(text) // BIN * BIN].append(pred == target)
    return {start: float(np.mean(h)) for start, h in sorted(hits.items()) if len(h) >= 20}


def plot_accuracy_by_length(curves: dict[str, dict[int, float]], ax=None):
    ax = ax if ax is not None else plt.subplots()[1]
    for label, curve in curves.items():
        ax.plot([s + (BIN - 1) / 2 for s in curve], [100 * a for a in curve.values()], "o-", label=label)
    ax.set(xlabel="input length (characters)", ylabel="exact match (%)", title="held-out dates")
    ax.legend()
    return ax


baseline_curve = accuracy_by_length(baseline_pred)
plot_accuracy_by_length({"no attention": baseline_curve})
plt.show()
print({f"{s}-{s + BIN - 1}": f"{a:.1%}" for s, a in baseline_curve.items()})
short_inputs, long_inputs = np.mean(list(baseline_curve.values())[:2]), np.mean(list(baseline_curve.values())[-2:])
print(f"mean exact match of the two shortest bins {short_inputs:.1%}, of the two longest {long_inputs:.1%}")

# %% [markdown]
# On dates the curve does **not** fall with length: the worst group is the *shortest* inputs, and
# the longest are no worse than the middle ones. A date carries the same payload, eight digits,
# whatever its length. The short inputs are the
# all-digit formats ("03/03/99", "19990303"), where every one of those digits must survive in
# $h_S$ in its exact place; a long input spells the month (and often the day) as words, which the
# vector can hold as one category among 12 or 31, and pads the rest with characters (a weekday, "the",
# "of") that carry nothing new. So on this task the bottleneck is the width of $h_S$ against the
# payload, not the length of the input; exercise 5 narrows the vector and compares the two models
# again, and after attention is in place we give both models a task whose payload grows with its
# length, where the classic falling curve appears. The baseline's mistakes, longest first (among the long inputs, the day spelled in words is
# what goes wrong):

# %%
wrong = [(s, p, t) for s, p, t in zip(test_texts, baseline_pred, test_targets) if p != t]
for s, p, t in sorted(wrong, key=lambda w: -len(w[0]))[:6]:
    print(f"{s!r:50s} -> {p}   (true {t})")

# %% [markdown]
# ## 4.3 Additive attention: let the decoder look back
#
# Bahdanau et al. (2015) keep *every* encoder state $h_1 \dots h_S$. At each step the decoder scores
# each of them against its own state with a one-hidden-layer network, turns the scores into weights
# with a softmax, and reads the weighted average of the states, the **context** $c_t$:
#
# $$
# e_{tj} = v^\top \tanh(W_q s_{t-1} + W_k h_j + b), \qquad
# \alpha_{tj} = \frac{\exp e_{tj}}{\sum_{j'} \exp e_{tj'}}, \qquad
# c_t = \sum_{j=1}^{S} \alpha_{tj} h_j .
# $$
#
# The decoder reads $[\mathrm{emb}(y_{t-1}); c_t]$, and the output layer sees $[s_t; c_t]$. Padding
# positions get the score $-\infty$, hence the weight 0. $W_k h_j$ does not depend on $t$: it is
# computed once per sequence (`project_keys`). Here is the module as it lives in `lmbook`:

# %%
from torch import Tensor

from lmbook.attention import softmax  # defined and explained in section 4.4
from lmbook.attention import _check_additive_inputs, _check_mha_args, _check_mha_inputs, _check_sizes  # input checks

# %%
# From lmbook/attention.py
class AdditiveAttention(nn.Module):
    """Bahdanau attention: score(s, h_j) = vᵀ tanh(W_q s + W_k h_j), weights = softmax over j.

    forward(query (B, d_query), keys (B, T, d_key), mask (B, T) bool, True = a real position)
    -> (context (B, d_key), weights (B, T)): the context is Σ_j weight_j · h_j, the keys being also
    the values, as in the paper.
    """

    def __init__(self, d_query: int, d_key: int, d_attn: int):
        super().__init__()
        _check_sizes(d_query=d_query, d_key=d_key, d_attn=d_attn)
        self.W_q = nn.Linear(d_query, d_attn, bias=False)
        self.W_k = nn.Linear(d_key, d_attn, bias=True)
        self.v = nn.Linear(d_attn, 1, bias=False)

    def project_keys(self, keys: Tensor) -> Tensor:
        """W_k h_j for every encoder position: (B, T, d_key) -> (B, T, d_attn). It does not depend
        on the decoder step, so the decoder computes it once per sequence and passes it back in."""
        return self.W_k(keys)

    def forward(self, query: Tensor, keys: Tensor, mask: Tensor | None = None,
                projected_keys: Tensor | None = None) -> tuple[Tensor, Tensor]:
        _check_additive_inputs(self, query, keys, mask, projected_keys)
        pk = self.project_keys(keys) if projected_keys is None else projected_keys  # (B, T, d_attn)
        scores = self.v(torch.tanh(self.W_q(query)[:, None, :] + pk)).squeeze(-1)  # (B, T)
        if mask is not None:
            scores = scores.masked_fill(~mask, float("-inf"))
        weights = softmax(scores, dim=-1)  # (B, T)
        context = torch.bmm(weights[:, None, :], keys).squeeze(1)  # (B, 1, T) @ (B, T, d_key) -> (B, d_key)
        return context, weights


# %% [markdown]
# The same training, now with attention:

# %%
attentive, attentive_seconds = fit(attention=True)
attentive_pred = translate(attentive, test_texts, src_vocab, tgt_vocab)
attentive_em = exact_match(attentive_pred, test_targets)
print(f"with attention: exact match {attentive_em:.2%} on {len(test_texts):,} held-out dates "
      f"({sum(p != t for p, t in zip(attentive_pred, test_targets))} wrong)")
if env.profile() != "test":
    assert attentive_em >= 0.99, "target: at least 99% exact match with attention"

# %%
attentive_curve = accuracy_by_length(attentive_pred)
plot_accuracy_by_length({"no attention": baseline_curve, "additive attention": attentive_curve})
plt.show()

# %% [markdown]
# ### When the payload grows with the length
#
# Dates could not show the effect Cho et al. and Bahdanau et al. saw on sentences, because a date's
# payload is eight digits whatever its length. Give the same two models a task whose payload *does*
# grow with the input: **reverse a string of n random digits**, n from 4 to 24 (the target is padded
# with "." to 24 characters, so that every target has the same length). Now $h_S$ must hold n
# independent digits, and a fixed vector of 64 numbers runs out of room as n grows; attention reads
# the digit it needs straight from $h_j$.

# %%
REV_MAX = 24


def reversal_pairs(n_examples: int, seed: int) -> list[tuple[str, str]]:
    """(n random digits, the same digits reversed and padded with '.' to REV_MAX), 4 <= n <= REV_MAX."""
    rng = np.random.default_rng(seed)
    pairs = []
    for n in rng.integers(4, REV_MAX + 1, size=n_examples):
        digits = "".join(map(str, rng.integers(0, 10, size=n)))
        pairs.append((digits, digits[::-1].ljust(REV_MAX, ".")))
    return pairs


rev_train, rev_test = reversal_pairs(env.pick(test=2_000, cpu=20_000, gpu=40_000), 0), reversal_pairs(2_000, 1)
rev_src, rev_tgt = make_vocabs(rev_train + rev_test)
rev_X, rev_Y = encode_pairs(rev_train, rev_src, rev_tgt)
rev_steps = env.pick(test=40, cpu=1_000, gpu=3_000)
rev_curves = {}
for use_attention in (False, True):
    torch.manual_seed(0)
    m = Seq2Seq(len(rev_src), len(rev_tgt), rev_Y.shape[1], emb_dim=32, hidden=hidden, attention=use_attention)
    start = time.perf_counter()
    train(m, random_batches(rev_X, rev_Y, 128, torch.Generator().manual_seed(0)), steps=rev_steps, lr=5e-3,
          lr_schedule=lambda t: min(1.0, (t + 1) / 100) * (1.0 - 0.9 * t / rev_steps), grad_clip=1.0,
          progress=False, device=device)
    pred = translate(m, [s for s, _ in rev_test], rev_src, rev_tgt)
    hits = defaultdict(list)
    for (s, t), p in zip(rev_test, pred):
        hits[(len(s) - 4) // 3 * 3 + 4].append(p == t)
    label = "additive attention" if use_attention else "no attention"
    rev_curves[label] = {n: float(np.mean(h)) for n, h in sorted(hits.items())}
    print(f"{label}: exact match {exact_match(pred, [t for _, t in rev_test]):.1%} on {len(rev_test):,} held-out "
          f"strings after {rev_steps} steps ({time.perf_counter() - start:.0f} s); by n: "
          + ", ".join(f"{n}-{n + 2}: {a:.0%}" for n, a in rev_curves[label].items()))

# %%
fig, ax = plt.subplots()
for label, curve in rev_curves.items():
    ax.plot([n + 1 for n in curve], [100 * a for a in curve.values()], "o-", label=label)
ax.set(xlabel="digits to reverse, n", ylabel="exact match (%)", title="reversing n digits (held out)")
ax.legend()
plt.show()
base, att = list(rev_curves["no attention"].values()), list(rev_curves["additive attention"].values())
if env.profile() != "test":  # the bottleneck: the fixed vector fails as the payload grows; attention does not
    assert base[0] > base[-1] + 0.5 and att[-1] > base[-1] + 0.5, (base, att)

# %% [markdown]
# This is the bottleneck of the fixed vector in its classic form: without attention, exact match
# collapses as the number of digits grows, because $h_S$ has to carry all of them at once; with
# attention, the long strings are solved too. (The two curves are not perfectly flat: attention must
# still learn *where* to look, position by position, and the longest strings are the rarest lesson.)

# %% [markdown]
# With attention the decoder no longer needs the input squeezed into $h_S$: it fetches what it
# needs when it needs it, and the short all-digit inputs stop being special. The weights
# $\alpha_{tj}$ show *where* it looks. Each row of the pictures below is one output character, each
# column one input character:

# %%
examples = ["Wednesday the twenty-first of September, 1999", "3rd of MARCH 2031", "12/31/49"]
src = encode_sources(examples, src_vocab).to(device)
attentive.eval()
ids, weights = attentive.greedy_decode(src)  # weights (B, T, S)
fig, axes = plt.subplots(1, 3, figsize=(13, 3.6), gridspec_kw={"width_ratios": [len(e) + 4 for e in examples]})
for ax, text, row_ids, w in zip(axes, examples, ids.tolist(), weights.cpu()):
    out = tgt_vocab.decode(row_ids)
    ax.imshow(w[:, : len(text)], cmap="Greys", aspect="auto", vmin=0, vmax=1)
    ax.set_xticks(range(len(text)), list(text), fontsize=7)
    ax.set_yticks(range(len(out)), out, fontsize=7)
    ax.grid(False)
    ax.set_title("".join(out[:10]), fontsize=9)
plt.tight_layout()
plt.show()

# %% [markdown]
# Each output character draws on a few input positions, and they are the right field of the input:
# the year digits on the year, the month on the month's name or number, the day on the day. The
# encoder reads left to right, so the state at a character also summarises what came before it,
# and the weight often sits at or just after the characters that decide the output. The model
# learned this alignment between input and output without ever being told one: the only training
# signal was the cross-entropy of the output characters. (Exercise 6 measures it.)
#
# ## 4.4 Queries, keys and values: scaled dot-product attention
#
# Look at attention abstractly. A **query** $q$ (what the decoder is looking for) is compared with a
# set of **keys** $k_j$ (what each position offers to be found by); the comparison scores become
# weights by a softmax; the result is the weighted average of the **values** $v_j$ (what each
# position hands over when found). In Bahdanau's model the keys and the values are the same
# vectors $h_j$ and the comparison is a small network. Luong et al. (2015) compared with a plain dot
# product, $q^\top k_j$, which for a whole matrix of queries $Q$ (one per row) and keys $K$ is one
# matrix product. Vaswani et al. (2017) scale it by $1/\sqrt{d_k}$:
#
# $$
# \mathrm{Attention}(Q, K, V) = \mathrm{softmax}\!\left(\frac{Q K^\top}{\sqrt{d_k}}\right) V,
# \qquad Q \in \mathbb{R}^{T_q \times d_k},\; K \in \mathbb{R}^{T_k \times d_k},\; V \in \mathbb{R}^{T_k \times d_v},
# $$
#
# where the softmax runs along each row. Output row $i$ is $\sum_j \alpha_{ij} v_j$ with
# $\alpha_{ij} = \mathrm{softmax}_j(q_i^\top k_j / \sqrt{d_k})$: a mixture of the values, in
# proportions decided by how well query $i$ matches each key.
#
# **Why $\sqrt{d_k}$.** If the components of $q$ and $k$ are independent with mean 0 and variance 1,
# then $q^\top k = \sum_{m=1}^{d_k} q_m k_m$ is a sum of $d_k$ terms of variance 1: its variance is
# $d_k$. Wider heads give larger scores, the softmax saturates on its largest score (a one-hot
# weight vector), and its gradient, $\alpha_i(\delta_{ij} - \alpha_j)$, vanishes. Dividing by
# $\sqrt{d_k}$ brings the variance back to 1 whatever the width. Measured:

# %% tags=["nbval-check-output"]
g = torch.Generator().manual_seed(0)
print(f"{'d_k':>5} {'std of q.k':>11} {'max weight':>11} {'(scaled)':>9} {'grad norm':>10} {'(scaled)':>9}")
for d_k in [4, 16, 64, 256, 1024]:
    q = torch.randn(2000, 1, d_k, generator=g)
    k = torch.randn(2000, 16, d_k, generator=g)
    scores = (q @ k.transpose(-2, -1)).squeeze(1)  # (2000, 16): one query against 16 keys, 2000 times
    row = {}
    for name, s in {"raw": scores, "scaled": scores / math.sqrt(d_k)}.items():
        s = s.clone().requires_grad_()
        w = torch.softmax(s, dim=-1)
        (w * torch.randn(w.shape, generator=g)).sum().backward()  # a random upstream gradient
        row[name] = (w.max(-1).values.mean().item(), s.grad.norm(dim=-1).mean().item())
    print(f"{d_k:5d} {scores.std().item():11.1f} {row['raw'][0]:11.3f} {row['scaled'][0]:9.3f} "
          f"{row['raw'][1]:10.4f} {row['scaled'][1]:9.4f}")

# %% [markdown]
# Unscaled, the standard deviation of the scores grows as $\sqrt{d_k}$, the softmax puts almost all
# of its weight on one key, and the gradient reaching the scores shrinks towards zero: attention
# stops learning *where* to look. Scaled, the weights and the gradients look the same at every width.
#
# The softmax itself must not overflow: $e^{1000}$ is infinite in any float format. Subtracting the
# row's maximum first changes nothing ($e^{z_j - m} / \sum_k e^{z_k - m} = e^{z_j} / \sum_k e^{z_k}$)
# and keeps every exponent $\le 0$. A row that may attend to nothing (all $-\infty$) would give
# $0/0$; `lmbook` returns zeros for it, as torch's fused kernel does:

# %%
# From lmbook/attention.py
def softmax(x: Tensor, dim: int = -1) -> Tensor:
    """exp(x − max x) / Σ exp(x − max x) along `dim`; rows that are all −inf give all zeros.

    Subtracting the row's maximum changes nothing mathematically (it cancels between numerator and
    denominator) but keeps exp() ≤ 1, so logits of 1000 do not overflow:
    ``softmax(torch.tensor([1000., 1000., 0.]))`` → ``[0.5, 0.5, 0.0]``.
    """
    x_max = x.amax(dim=dim, keepdim=True)
    x_max = torch.where(x_max == -math.inf, torch.zeros_like(x_max), x_max)  # an all −inf row: subtract 0
    e = torch.exp(x - x_max)
    total = e.sum(dim=dim, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))  # an all −inf row: 0 / 1 = 0


# %% tags=["nbval-check-output"]
big = torch.tensor([[1000.0, 1000.0, 0.0], [-math.inf, -math.inf, -math.inf]])
print("naive exp(x)/sum:", (big.exp() / big.exp().sum(-1, keepdim=True)).tolist())
print("lmbook softmax:  ", softmax(big).tolist())

# %% [markdown]
# Now the function itself. It takes the arguments of `F.scaled_dot_product_attention`, so that the
# two can be swapped (chapter 5's GPT does exactly that), and it can return the weights, which the
# fused kernel cannot. Masks come in section 4.5; the input checks live in `_check_attention_inputs`.

# %%
from lmbook.attention import _check_attention_inputs  # the input checks it calls (clear errors)

# %%
# From lmbook/attention.py
def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, attn_mask: Tensor | None = None,
                                 is_causal: bool = False, dropout_p: float = 0.0, scale: float | None = None,
                                 return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """softmax(q kᵀ · scale + mask) v, with the arguments of ``F.scaled_dot_product_attention``.

    q (..., T_q, d), k (..., T_k, d), v (..., T_k, d_v) -> out (..., T_q, d_v); the leading
    dimensions broadcast. scale defaults to 1/√d. attn_mask broadcasts to (..., T_q, T_k): bool
    (True = may attend) or float (added to the scores). is_causal masks key j > query i; it cannot
    be combined with attn_mask (as in torch): pass ``causal_mask(T) & your_mask`` instead.
    dropout_p drops attention weights (always, as torch does: pass 0.0 in evaluation).
    With return_weights=True, returns (out, weights (..., T_q, T_k)), the weights before dropout.
    A query row that may attend to nothing gets out = 0 and weights = 0.
    """
    _check_attention_inputs(q, k, v, attn_mask, is_causal, dropout_p, scale)
    d, T_q, T_k = q.shape[-1], q.shape[-2], k.shape[-2]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale  # (..., T_q, d) @ (..., d, T_k) -> (..., T_q, T_k)
    if is_causal:
        attn_mask = torch.ones(T_q, T_k, dtype=torch.bool, device=q.device).tril()  # key j <= query i
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        scores = scores.masked_fill(~attn_mask, float("-inf"))
    elif attn_mask is not None:
        scores = scores + attn_mask
    weights = softmax(scores, dim=-1)  # (..., T_q, T_k), each row sums to 1 (or is all 0)
    dropped = F.dropout(weights, p=dropout_p) if dropout_p > 0 else weights
    out = dropped @ v  # (..., T_q, T_k) @ (..., T_k, d_v) -> (..., T_q, d_v)
    return (out, weights) if return_weights else out


# %% [markdown]
# It computes what torch's fused kernel computes (`tests/test_attention.py` checks masks, causal
# attention, 3-D and 4-D inputs and the gradients, to $10^{-6}$ in float64 and $10^{-5}$ in float32):

# %%
q, k, v = (torch.randn(2, 4, 7, 16, dtype=torch.float64) for _ in range(3))  # (B, heads, T, d)
print("max |lmbook - torch| (float64):",
      (scaled_dot_product_attention(q, k, v) - F.scaled_dot_product_attention(q, k, v)).abs().max().item())
out, w = scaled_dot_product_attention(q, k, v, return_weights=True)
print("out", tuple(out.shape), "weights", tuple(w.shape), "rows sum to", w.sum(-1).mean().item())

# %% [markdown]
# ### Sidebar: "attention = exp(QKᵀ/√d_k) / Z" is not attention
#
# A formula that circulates in tutorials writes $\mathrm{Attention}(Q, K, V) = \exp(QK^\top/\sqrt{d_k})/Z$
# with $Z$ a normaliser, and stops there. That is the softmax, the **weight matrix** $\alpha$, and
# it has no $V$ in it. It answers "how much does query $i$ look at position $j$", a $T_q \times T_k$
# table of proportions, not "what does query $i$ get": its shape depends on the number of keys and
# not on the values' width, and changing the values changes nothing in it. Attention is
# $\alpha V$, the mixture of the values in those proportions:

# %%
q, k = torch.randn(5, 8), torch.randn(6, 8)
v1, v2 = torch.randn(6, 3), torch.randn(6, 3)
without_v = torch.exp(q @ k.T / math.sqrt(8)) / torch.exp(q @ k.T / math.sqrt(8)).sum(-1, keepdim=True)
print("exp(QKᵀ/√d)/Z:", tuple(without_v.shape), "— the same for values v1 and v2")
print("attention:    ", tuple(scaled_dot_product_attention(q, k, v1).shape),
      "— differs:", not torch.allclose(scaled_dot_product_attention(q, k, v1), scaled_dot_product_attention(q, k, v2)))
assert torch.allclose(without_v, softmax(q @ k.T / math.sqrt(8)), atol=1e-6)

# %% [markdown]
# ## 4.5 Masks and self-attention
#
# Two kinds of masks decide which keys a query may see. A **padding mask** hides the padding at the
# end of shorter sequences in a batch (the seq2seq model above does this). A **causal mask** lets
# position $i$ see positions $0 \dots i$ only, so that a model predicting token $i+1$ cannot peek at
# it: that is what makes a Transformer a language model (chapter 5). Both are boolean with
# **True = may attend**, the convention of `F.scaled_dot_product_attention`; a masked score becomes
# $-\infty$ before the softmax, so its weight is exactly 0. A float mask is *added* to the scores
# instead (0 to attend, $-\infty$ not to, or any bias in between).
#
# Careful: `nn.MultiheadAttention` uses the **opposite** convention for boolean masks (True = *not*
# allowed), and its `key_padding_mask` is True at the padding. Mixing the two up silently attends
# to exactly the wrong positions.

# %% tags=["nbval-check-output"]
print("causal_mask(4):\n", causal_mask(4).int())
print("padding_mask(lengths=[2, 4], T=4):\n", padding_mask(torch.tensor([2, 4]), 4).int())
print("both, for a batch (B, T_q, T_k) = (2, 4, 4): row b is causal & padding[b]\n",
      (causal_mask(4) & padding_mask(torch.tensor([2, 4]), 4)[:, None, :]).int()[0])

# %% [markdown]
# **Self-attention** is attention whose queries, keys and values all come from the same sequence:
# every position looks at every (allowed) position of its own sequence. With a causal mask, the
# output at position $t$ depends only on the inputs at $0 \dots t$. We check that directly: change
# the inputs after position 3 and look at what moves.

# %%
x = torch.randn(1, 8, 16)
x_changed = x.clone()
x_changed[:, 4:] = torch.randn(1, 4, 16)
out, out_changed = (scaled_dot_product_attention(t, t, t, is_causal=True) for t in (x, x_changed))
moved = (out - out_changed).abs().amax(-1)[0]
print("change of the output at each position:", [f"{m:.2f}" for m in moved.tolist()])
assert (moved[:4] == 0).all() and (moved[4:] > 0).all()

# %% [markdown]
# A query whose every key is masked (a padding *query*, say) has nothing to average. Torch's fused
# kernel returns 0 for it, and so does `lmbook`, with zero weights; no NaN reaches the output or the
# gradients (the math formula gives $0/0$):

# %%
mask = torch.ones(3, 5, dtype=torch.bool)
mask[1] = False  # query 1 may attend to nothing
q, k, v = torch.randn(3, 8), torch.randn(5, 8), torch.randn(5, 4)
out, w = scaled_dot_product_attention(q, k, v, attn_mask=mask, return_weights=True)
print("lmbook output row 1:", out[1].tolist(), " weights:", w[1].tolist())
print("torch output row 1: ", F.scaled_dot_product_attention(q, k, v, attn_mask=mask)[1].tolist())

# %% [markdown]
# ## 4.6 Multi-head attention
#
# One attention computes one mixture per position: one way of deciding what is relevant. **Multi-head
# attention** runs $h$ of them side by side, each on its own learned projection of width
# $d_{\text{head}} = d_{\text{model}} / h$, so that one head can track (say) the previous token while
# another tracks the subject of the sentence:
#
# $$
# \mathrm{head}_i = \mathrm{Attention}(X_q W_i^Q, X_k W_i^K, X_v W_i^V), \qquad
# \mathrm{MHA}(X_q, X_k, X_v) = [\mathrm{head}_1; \dots; \mathrm{head}_h]\, W^O .
# $$
#
# The $h$ projections $W_i^Q$ are the column blocks of one $d_{\text{model}} \times d_{\text{model}}$
# matrix, so all heads are computed at once: project, **split** the last dimension into
# $(h, d_{\text{head}})$, move the heads next to the batch, attend, **concatenate** back, **project**.
# The cost is that of one attention of width $d_{\text{model}}$.

# %%
# From lmbook/attention.py
class MultiHeadAttention(nn.Module):
    """Multi-head attention, batch first: query (B, T_q, d_model), key and value (B, T_k, d_model).

    Project q, k, v with three Linear layers, split d_model into n_heads heads of d_head =
    d_model / n_heads, run scaled dot-product attention on every head at once, concatenate the
    heads and project with out_proj. attn_mask (bool, True = attend; or float, added) is (T_q, T_k),
    (B, T_q, T_k) or (B, n_heads, T_q, T_k). Self-attention is ``mha(x, x, x)``.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        _check_mha_args(d_model, n_heads, dropout)
        self.d_model, self.n_heads, self.d_head, self.dropout = d_model, n_heads, d_model // n_heads, dropout
        self.q_proj = nn.Linear(d_model, d_model, bias=bias)
        self.k_proj = nn.Linear(d_model, d_model, bias=bias)
        self.v_proj = nn.Linear(d_model, d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def split_heads(self, x: Tensor) -> Tensor:
        """(B, T, d_model) -> (B, n_heads, T, d_head)."""
        B, T, _ = x.shape
        return x.view(B, T, self.n_heads, self.d_head).transpose(1, 2)

    def forward(self, query: Tensor, key: Tensor, value: Tensor, attn_mask: Tensor | None = None,
                is_causal: bool = False, return_weights: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        _check_mha_inputs(self, query, key, value)
        if attn_mask is not None and attn_mask.dim() == 3:
            attn_mask = attn_mask[:, None]  # (B, T_q, T_k) -> (B, 1, T_q, T_k): the same for every head
        q = self.split_heads(self.q_proj(query))  # (B, n_heads, T_q, d_head)
        k = self.split_heads(self.k_proj(key))  # (B, n_heads, T_k, d_head)
        v = self.split_heads(self.v_proj(value))  # (B, n_heads, T_k, d_head)
        out, weights = scaled_dot_product_attention(q, k, v, attn_mask=attn_mask, is_causal=is_causal,
                                                    dropout_p=self.dropout if self.training else 0.0,
                                                    return_weights=True)  # (B, n_heads, T_q, d_head)
        B, _, T_q, _ = out.shape
        out = out.transpose(1, 2).reshape(B, T_q, self.d_model)  # concatenate the heads: (B, T_q, d_model)
        out = self.out_proj(out)
        return (out, weights) if return_weights else out


# %% [markdown]
# The shapes at each step, for a batch of 2 sequences of 5 tokens, $d_{\text{model}} = 12$, 3 heads:

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
mha = MultiHeadAttention(d_model=12, n_heads=3)
x = torch.randn(2, 5, 12)
q = mha.q_proj(x)
print("x                  ", tuple(x.shape), "  (B, T, d_model)")
print("q = x W_Q          ", tuple(q.shape), "  (B, T, d_model)")
print("view               ", tuple(q.view(2, 5, 3, 4).shape), "(B, T, heads, d_head)")
print("split_heads        ", tuple(mha.split_heads(q).shape), "(B, heads, T, d_head)")
out, w = mha(x, x, x, is_causal=True, return_weights=True)
print("weights            ", tuple(w.shape), "(B, heads, T_q, T_k)")
print("concat + out_proj  ", tuple(out.shape), "  (B, T, d_model)")

# %% [markdown]
# Against `nn.MultiheadAttention` with the same weights (torch stores $W^Q, W^K, W^V$ stacked in
# one `in_proj_weight`, and wants the *inverted* causal mask):

# %%
torch_mha = nn.MultiheadAttention(12, 3, batch_first=True)
with torch.no_grad():
    for i, proj in enumerate([mha.q_proj, mha.k_proj, mha.v_proj]):
        torch_mha.in_proj_weight[12 * i: 12 * (i + 1)] = proj.weight
        torch_mha.in_proj_bias[12 * i: 12 * (i + 1)] = proj.bias
    torch_mha.out_proj.weight.copy_(mha.out_proj.weight)
    torch_mha.out_proj.bias.copy_(mha.out_proj.bias)
reference, _ = torch_mha(x, x, x, attn_mask=~causal_mask(5))
print("max |lmbook - nn.MultiheadAttention| =", (out - reference).abs().max().item())
assert torch.allclose(out, reference, atol=1e-6)

# %% [markdown]
# ## 4.7 Positions
#
# Self-attention has no idea of order. The scores $q_i^\top k_j$ depend on the *contents* at $i$ and
# $j$, not on where they are: shuffle the input positions and the outputs are shuffled the same way,
# nothing else changes. Self-attention is **permutation-equivariant**, $\mathrm{SA}(PX) = P\,\mathrm{SA}(X)$
# for any permutation matrix $P$, so "dog bites man" and "man bites dog" get the same set of
# vectors. (The seq2seq model did not have this problem: its LSTM reads in order.)

# %%
perm = torch.randperm(5)
shuffled = mha(x[:, perm], x[:, perm], x[:, perm])
print("SA(PX) == P SA(X):", torch.allclose(shuffled, mha(x, x, x)[:, perm], atol=1e-6))

# %% [markdown]
# The fix is to add to each token's vector a vector that says where it is. Vaswani et al. (2017)
# used fixed **sinusoidal** encodings: for position $p$ and $i = 0, 1, \dots, d/2 - 1$,
#
# $$
# PE_{p, 2i} = \sin\!\left(\frac{p}{10000^{2i/d}}\right), \qquad PE_{p, 2i+1} = \cos\!\left(\frac{p}{10000^{2i/d}}\right).
# $$
#
# Each pair of columns is a clock hand turning at its own speed, from one radian per position to one
# turn every $2\pi \cdot 10000$ positions. Nearby positions get similar vectors, and moving $k$
# positions is the same rotation of every pair whatever $p$ is, so $PE_{p+k}$ is a linear function
# of $PE_p$: a fixed offset is easy for attention to find.

# %%
# From lmbook/attention.py
def sinusoidal_positions(T: int, d: int) -> Tensor:
    """The encodings of Vaswani et al. (2017), (T, d) float32: for position p and i = 0, 1, …,
    PE[p, 2i] = sin(p / 10000^(2i/d)) and PE[p, 2i+1] = cos(p / 10000^(2i/d)).

    Each pair of columns is a clock turning at its own speed, from one radian per position down to
    one turn in 2π·10000 positions, so nearby positions get similar vectors and PE[p + k] is a fixed
    rotation of PE[p] for every p.
    """
    _check_sizes(T=T, d=d)
    position = torch.arange(T, dtype=torch.float64)[:, None]  # (T, 1)
    frequency = 10000.0 ** (-torch.arange(0, d, 2, dtype=torch.float64) / d)  # (ceil(d/2),)
    angle = position * frequency  # (T, ceil(d/2))
    pe = torch.zeros(T, d, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle[:, : d // 2])
    return pe.float()


# %%
pe = sinusoidal_positions(128, 64)
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.4))
ax1.imshow(pe.T, cmap="RdBu", aspect="auto")
ax1.set(xlabel="position p", ylabel="dimension", title="sinusoidal encodings PE[p]")
ax1.grid(False)
ax2.plot((pe @ pe[40]).numpy())
ax2.set(xlabel="position p", ylabel="PE[p] · PE[40]", title="similarity peaks at p = 40 and decays")
plt.show()

# %% [markdown]
# With positions added, shuffling the tokens changes the result, as it must:

# %%
pos = sinusoidal_positions(5, 12)
y, y_shuffled = x + pos, x[:, perm] + pos
print("SA(PX + PE) == P SA(X + PE):", torch.allclose(mha(y_shuffled, y_shuffled, y_shuffled), mha(y, y, y)[:, perm], atol=1e-6))

# %% [markdown]
# The other common choice is **learned** position embeddings (GPT-2, chapter 5): a table
# `nn.Embedding(block_size, d)` with one trainable vector per position, looked up with the
# *positions* $0, 1, \dots, T-1$. A mistake seen in tutorial code indexes that table with the
# *token ids* instead, `pos_emb(x)`: that is a second token embedding, it carries no position
# at all, and the model stays permutation-equivariant. Vaswani et al. tried both kinds and found
# nearly identical results {cite:p}`vaswani2017`. Learned embeddings know nothing beyond
# `block_size`; sinusoids are defined for every $p$. (Rotary embeddings, which rotate $q$ and $k$
# instead of adding to $x$, come in chapter 9.)

# %%
tok_emb, pos_emb = nn.Embedding(len(src_vocab), 12), nn.Embedding(32, 12)
ids = torch.tensor([src_vocab.encode("3/3/1999")])  # (1, 8)
right = tok_emb(ids) + pos_emb(torch.arange(ids.shape[1]))  # one vector per *position*
wrong = tok_emb(ids) + pos_emb(ids)  # one vector per *token id*: position-blind
print("the two '3's at positions 0 and 2 — right:", not torch.allclose(right[0, 0], right[0, 2]),
      "differ; wrong:", not torch.allclose(wrong[0, 0], wrong[0, 2]), "differ")

# %% [markdown]
# ## 4.8 What attention costs
#
# Self-attention over $T$ positions computes $QK^\top$, a $T \times T$ matrix per head: $T^2 d$
# multiply-adds for the scores and $T^2 d$ more for $\alpha V$, against $4 T d_{\text{model}}^2$ for
# the four projections. The two are equal when $2T^2 d = 4 T d^2$, at $T = 2d$: for shorter
# sequences the projections dominate, beyond $T \approx 2\,d_{\text{model}}$ the $T^2$ term does. Memory is worse: written out as above, attention stores several $T \times T$
# tensors per head (the scores, the weights) and keeps them for the backward pass.
#
# `F.scaled_dot_product_attention` computes the same function with **fused kernels**: on a GPU,
# FlashAttention (Dao et al. 2022) walks over blocks of keys, keeps a running maximum and running sum
# of the softmax ("online softmax"), and never writes the $T \times T$ matrix to memory; on a CPU,
# torch runs the same blocked algorithm. The arithmetic is still $O(T^2)$; the memory becomes $O(T)$,
# and the time drops because the slow part on modern hardware is moving the $T \times T$ matrix in
# and out of memory, not multiplying. We measure both here (forward + backward, causal, 8 heads of
# 64): time, and the memory autograd saves for the backward pass (counted with
# `saved_tensors_hooks`, a property of the algorithm, the same on every machine).
# `bench/bench_attention.py` runs the longer version; its results are in
# `bench/results/bench_attention.txt`.

# %%
def saved_mib(fn, T: int, heads: int = 8, d: int = 64) -> float:
    """MiB of the distinct tensors autograd saves during fn's forward pass (inputs included)."""
    seen = {}

    def pack(t):
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    q, k, v = (torch.randn(1, heads, T, d, device=device, requires_grad=True) for _ in range(3))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn(q, k, v, is_causal=True)
    return sum(seen.values()) / 2**20


def seconds(fn, T: int, heads: int = 8, d: int = 64, repeats: int = 3) -> float:
    """Median time of a forward + backward pass."""
    times = []
    for _ in range(repeats + 1):  # the first is a warm-up
        q, k, v = (torch.randn(1, heads, T, d, device=device, requires_grad=True) for _ in range(3))
        if device == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn(q, k, v, is_causal=True).sum().backward()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return float(np.median(times[1:]))


lengths_T = env.pick(test=[32, 64, 128, 256], cpu=[64, 128, 256, 512, 1024], gpu=[256, 512, 1024, 2048, 4096])
implementations = {"lmbook (written out)": scaled_dot_product_attention, "F.scaled_dot_product_attention": F.scaled_dot_product_attention}
cost = {name: {"ms": [seconds(fn, T) * 1e3 for T in lengths_T], "MiB": [saved_mib(fn, T) for T in lengths_T]}
        for name, fn in implementations.items()}
print(f"{'T':>6}" + "".join(f" | {name[:22]:>22s} ms  MiB" for name in cost))
for i, T in enumerate(lengths_T):
    print(f"{T:6d}" + "".join(f" | {c['ms'][i]:25.1f} {c['MiB'][i]:5.1f}" for c in cost.values()))

# %%
fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 3.6))
for name, c in cost.items():
    ax1.loglog(lengths_T, c["ms"], "o-", label=name)
    ax2.loglog(lengths_T, c["MiB"], "o-", label=name)
ref = np.array(lengths_T, dtype=float)
ax1.loglog(ref, cost["lmbook (written out)"]["ms"][-1] * (ref / ref[-1]) ** 2, "k:", label="∝ T²")
ax2.loglog(ref, cost["lmbook (written out)"]["MiB"][-1] * (ref / ref[-1]) ** 2, "k:", label="∝ T²")
ax1.set(xlabel="sequence length T", ylabel="forward + backward (ms)", title="time")
ax2.set(xlabel="sequence length T", ylabel="saved for backward (MiB)", title="memory")
ax1.legend(fontsize=8)
ax2.legend(fontsize=8)
plt.show()
growth = {}
for name, c in cost.items():
    log_T = np.log(lengths_T[-3:])  # a straight line through the three longest, in log-log
    p_mem = float(np.polyfit(log_T, np.log(c["MiB"][-3:]), 1)[0])
    p_time = float(np.polyfit(log_T, np.log(c["ms"][-3:]), 1)[0])
    print(f"{name}: from T={lengths_T[-3]} to {lengths_T[-1]}, memory ∝ T^{p_mem:.2f}, time ∝ T^{p_time:.2f}")
    growth[name] = p_mem
assert growth["lmbook (written out)"] > 1.5 and growth["F.scaled_dot_product_attention"] < 1.2, \
    "saved memory should grow as T² written out, as T fused"

# %% [markdown]
# The written-out version's saved memory grows as $T^2$: the $T \times T$ matrices dominate it
# as soon as $T$ exceeds a few hundred. The fused kernel's grows as $T$ (it keeps $q, k, v$, the
# output and one number per query). The arithmetic of both grows as $T^2$, but the measured time
# follows it only roughly, and the fitted exponents above say how: one below 2 means that fixed
# costs per call (and the parts linear in $T$) still weigh at these lengths; one above 2, that the
# $T \times T$ matrices no longer fit in the processor's caches and every pass over them waits for
# memory. The time columns compare the two kernels at each length; on a busy shared CPU the timings
# are noisy, and the bench repeats them.
# At GPT-2's $T = 1024$ and 12 heads per layer, the written-out weights alone are
# $12 \times 1024^2 \times 4$ bytes = 48 MiB per layer and sequence; fused kernels are what make long
# contexts affordable. The $T^2$ itself remains; chapter 7 comes back to it.
#
# ## 4.9 Results
#
# Every number below comes from this run.

# %%
print(f"{'model':38s} {'params':>8s} {'exact match':>12s} {'train time':>11s}")
for label, model, em, secs in [("LSTM encoder-decoder, no attention", baseline, baseline_em, baseline_seconds),
                               ("LSTM encoder-decoder, additive attn.", attentive, attentive_em, attentive_seconds)]:
    print(f"{label:38s} {sum(p.numel() for p in model.parameters()):8,d} {em:12.2%} {secs:10.0f}s")
print(f"\n({len(test_texts):,} held-out dates, {steps:,} steps of 128, hidden {hidden}; "
      f"this notebook ran in {time.perf_counter() - chapter_start:.0f} s at the {env.profile()} profile, "
      f"using {time.process_time() - chapter_cpu:.0f} s of CPU time)")
if env.profile() != "test":
    assert attentive_em > baseline_em

# %% [markdown]
# What to take away:
#
# - An encoder–decoder squeezes the input into one vector; it fails where the input holds more
#   than that vector keeps (on sentences, the long ones; on dates, the densest ones). Attention lets
#   the decoder read a weighted average of all encoder states at every step, and the weights it
#   learns are an alignment nobody taught it.
# - Attention is $\mathrm{softmax}(QK^\top/\sqrt{d_k})V$: weights from comparing queries with keys,
#   applied to values. Without the $V$ it is only the weights; without the $\sqrt{d_k}$ the softmax
#   saturates and stops learning.
# - Masks set scores to $-\infty$: padding masks hide padding, the causal mask hides the future.
#   Check the convention (True = attend in `F.scaled_dot_product_attention`, the opposite in
#   `nn.MultiheadAttention`).
# - Multi-head attention is $h$ attentions of width $d/h$ computed as one; self-attention ignores
#   order until positions are added.
# - Attention costs $O(T^2)$ time; fused kernels cut its memory from $O(T^2)$ to $O(T)$.
#
# Chapter 5 stacks masked multi-head self-attention with MLPs, residual connections and LayerNorm
# into a Transformer, and trains a GPT.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (autograded).** Write `masked_multihead_attention(x, W_q, W_k, W_v, W_o, n_heads, mask)`
# from scratch: `x` is (B, T, d), the four weight matrices are (d, d) and used as `x @ W`, `mask` is
# a bool (T, T) tensor with True = may attend. Split into heads, apply scaled dot-product attention
# per head with the mask (write the softmax yourself or use `torch.softmax`, but not
# `F.scaled_dot_product_attention` or `lmbook`), concatenate, project with `W_o`. It must pass the
# parity test against `F.scaled_dot_product_attention`.

# %%
def masked_multihead_attention(x: torch.Tensor, W_q: torch.Tensor, W_k: torch.Tensor, W_v: torch.Tensor,
                               W_o: torch.Tensor, n_heads: int, mask: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    B, T, d = x.shape
    d_head = d // n_heads

    def split(t):  # (B, T, d) -> (B, n_heads, T, d_head)
        return t.view(B, T, n_heads, d_head).transpose(1, 2)

    q, k, v = split(x @ W_q), split(x @ W_k), split(x @ W_v)
    scores = q @ k.transpose(-2, -1) / math.sqrt(d_head)  # (B, n_heads, T, T)
    weights = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(B, T, d)  # (B, T, d)
    return out @ W_o
    ### END SOLUTION

# %%
# Autograded test: ex1_masked_mha (3 points)
_g = torch.Generator().manual_seed(0)
_x = torch.randn(2, 6, 16, generator=_g, dtype=torch.float64)
_W = [torch.randn(16, 16, generator=_g, dtype=torch.float64) / 4 for _ in range(4)]


def _reference(x, W_q, W_k, W_v, W_o, n_heads, mask):
    B, T, d = x.shape
    q, k, v = ((x @ W).view(B, T, n_heads, d // n_heads).transpose(1, 2) for W in (W_q, W_k, W_v))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask).transpose(1, 2).reshape(B, T, d) @ W_o


_causal = torch.ones(6, 6, dtype=torch.bool).tril()
_got = masked_multihead_attention(_x, *_W, 4, _causal)
assert _got.shape == (2, 6, 16), f"the output should be (B, T, d) = (2, 6, 16), got {tuple(_got.shape)}"
assert torch.allclose(_got, _reference(_x, *_W, 4, _causal), atol=1e-6), \
    "with a causal mask, 4 heads: compare with F.scaled_dot_product_attention on the split heads"
### BEGIN HIDDEN TESTS
from lmbook import grading

_random_mask = torch.rand(6, 6, generator=_g) < 0.5
_random_mask[:, 0] = True
_expected2, _expected1 = _reference(_x, *_W, 2, _random_mask), _reference(_x, *_W, 1, _causal)
with grading.without("torch.nn.functional.scaled_dot_product_attention", "lmbook.attention.scaled_dot_product_attention",
                     "scaled_dot_product_attention", "lmbook.attention.MultiHeadAttention", "MultiHeadAttention",
                     "torch.nn.MultiheadAttention", "torch.nn.functional.multi_head_attention_forward"):
    assert torch.allclose(masked_multihead_attention(_x, *_W, 2, _random_mask), _expected2, atol=1e-6), \
        "2 heads and a random mask: compute the attention yourself (F.scaled_dot_product_attention is not available)"
    assert torch.allclose(masked_multihead_attention(_x, *_W, 1, _causal), _expected1, atol=1e-6)
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2 (autograded).** Section 4.7 claimed that moving $k$ positions is the same rotation
# of every pair of columns, whatever $p$ is, so that $PE_{p+k}$ is a linear function of $PE_p$.
# Make it concrete: write `offset_rotation(k, d)`, the $(d, d)$ matrix $M$ (for an even $d$) with
# $PE_{p+k} = PE_p\, M$ for every position $p$, rows being positions as in
# `sinusoidal_positions`. Build it from the frequencies (the hidden tests take
# `sinusoidal_positions` away, so fitting $M$ to the encodings does not work).

# %%
def offset_rotation(k: int, d: int) -> torch.Tensor:
    ### BEGIN SOLUTION
    M = torch.zeros(d, d, dtype=torch.float64)
    for i in range(d // 2):
        angle = k / 10000 ** (2 * i / d)  # pair i turns by k times its frequency
        c, s = math.cos(angle), math.sin(angle)
        # [sin(a + b), cos(a + b)] = [sin a, cos a] @ [[cos b, -sin b], [sin b, cos b]]
        M[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    return M.float()
    ### END SOLUTION

# %%
# Autograded test: ex2_offset_rotation (2 points)
_pe = sinusoidal_positions(60, 16)
_M = offset_rotation(3, 16)
assert tuple(_M.shape) == (16, 16), f"expected shape (16, 16), got {tuple(_M.shape)}"
assert torch.allclose(_pe[:-3] @ _M, _pe[3:], atol=1e-4), "PE[p] @ M should equal PE[p + 3] for every p"
assert torch.allclose(offset_rotation(0, 16), torch.eye(16), atol=1e-6), "an offset of 0 is the identity"
### BEGIN HIDDEN TESTS
from lmbook import grading

_pe8 = sinusoidal_positions(200, 8)
with grading.without("lmbook.attention.sinusoidal_positions", "sinusoidal_positions"):
    _M = offset_rotation(57, 8)
    assert torch.allclose(_pe8[:-57] @ _M, _pe8[57:], atol=1e-4), "check a large offset and another width"
    assert torch.allclose(offset_rotation(5, 8) @ offset_rotation(7, 8), offset_rotation(12, 8), atol=1e-5), \
        "two offsets in a row are one offset of their sum"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3 (autograded).** Write `dot_attention(query, keys, mask)`, the decoder attention of
# Luong et al. (2015) with a dot-product score: `query` (B, d), `keys` (B, S, d), `mask` (B, S) bool,
# True at real positions. Return `(context (B, d), weights (B, S))` with
# weights = softmax over the real positions of $q^\top h_j$ (unscaled) and context = Σ weights · keys.

# %%
def dot_attention(query: torch.Tensor, keys: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ### BEGIN SOLUTION
    scores = torch.einsum("bd,bsd->bs", query, keys).masked_fill(~mask, float("-inf"))
    weights = torch.softmax(scores, dim=-1)
    return torch.einsum("bs,bsd->bd", weights, keys), weights
    ### END SOLUTION

# %%
# Autograded test: ex3_dot_attention (2 points)
_q, _h = torch.randn(3, 8, dtype=torch.float64), torch.randn(3, 5, 8, dtype=torch.float64)
_m = padding_mask(torch.tensor([5, 2, 1]), 5)
_c, _w = dot_attention(_q, _h, _m)
assert tuple(_w.shape) == (3, 5) and tuple(_c.shape) == (3, 8), "weights (B, S) and context (B, d)"
assert torch.allclose(_w.sum(-1), torch.ones(3, dtype=torch.float64)), "each row of weights should sum to 1"
assert (_w[~_m] == 0).all(), "padding positions must get weight 0"
_ref = scaled_dot_product_attention(_q[:, None], _h, _h, attn_mask=_m[:, None], scale=1.0)[:, 0]
assert torch.allclose(_c, _ref), "context = sum_j softmax_j(q . h_j) h_j over the real positions"
### BEGIN HIDDEN TESTS
from lmbook import grading

_q2, _h2 = torch.randn(2, 4, dtype=torch.float64) * 3, torch.randn(2, 6, 4, dtype=torch.float64)
_m2 = padding_mask(torch.tensor([6, 3]), 6)
_c2_ref, _w2_ref = scaled_dot_product_attention(_q2[:, None], _h2, _h2, attn_mask=_m2[:, None], scale=1.0,
                                                 return_weights=True)
with grading.without("torch.nn.functional.scaled_dot_product_attention", "lmbook.attention.scaled_dot_product_attention",
                     "scaled_dot_product_attention", "lmbook.attention.AdditiveAttention"):
    _c2, _w2 = dot_attention(_q2, _h2, _m2)
    assert torch.allclose(_c2, _c2_ref[:, 0]) and torch.allclose(_w2, _w2_ref[:, 0]), \
        "unscaled scores q . h_j, a softmax over the real positions, then the weighted sum of the keys"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 4.** Replace the additive attention of the date model by Luong's dot-product attention
# (your `dot_attention`; the decoder state and the encoder states have the same width) and train it
# for `exercise_steps` steps. How accurate is it? Is it faster per step than additive attention, and why?

# %%
### BEGIN SOLUTION
class DotAttention(nn.Module):  # the interface of AdditiveAttention, with a dot-product score
    def project_keys(self, keys):
        return None

    def forward(self, query, keys, mask=None, projected_keys=None):
        return dot_attention(query, keys, mask)


torch.manual_seed(0)
luong = Seq2Seq(len(src_vocab), len(tgt_vocab), Y_train.shape[1], emb_dim=32, hidden=hidden, attention=True)
luong.attention = DotAttention()
_start = time.perf_counter()
train(luong, random_batches(X_train, Y_train, 128, torch.Generator().manual_seed(0)), steps=exercise_steps, lr=5e-3,
      grad_clip=1.0, progress=False, device=device)
_per_step = (time.perf_counter() - _start) / exercise_steps
print(f"dot-product attention, {exercise_steps} steps: exact match "
      f"{exact_match(translate(luong, test_texts, src_vocab, tgt_vocab), test_targets):.2%}, {1e3 * _per_step:.0f} ms per step "
      f"(additive, {steps} steps: {attentive_em:.2%}, {1e3 * attentive_seconds / steps:.0f} ms per step)")
# The dot product needs no (B, S, d_attn) tanh layer per step, so each step is cheaper; it has no
# parameters of its own, so the encoder and decoder states must learn to align in one space.
### END SOLUTION

# %% [markdown]
# **Exercise 5.** Make the bottleneck bite: train both date models again with `hidden=32` (half the
# width of $h_S$) for `exercise_steps` steps each, and draw their accuracy-against-length curves. Which
# model loses more, and on which inputs? Why does attention suffer less from a narrow state?

# %%
### BEGIN SOLUTION
narrow = {}
for use_attention in (False, True):
    torch.manual_seed(0)
    m = Seq2Seq(len(src_vocab), len(tgt_vocab), Y_train.shape[1], emb_dim=32, hidden=32, attention=use_attention)
    train(m, random_batches(X_train, Y_train, 128, torch.Generator().manual_seed(0)), steps=exercise_steps, lr=5e-3,
          grad_clip=1.0, progress=False, device=device)
    pred = translate(m, test_texts, src_vocab, tgt_vocab)
    label = "attention, hidden 32" if use_attention else "no attention, hidden 32"
    narrow[label] = accuracy_by_length(pred)
    print(f"{label}: exact match {exact_match(pred, test_targets):.2%}; by input length:",
          {f"{s}-{s + BIN - 1}": f"{a:.0%}" for s, a in narrow[label].items()})
plot_accuracy_by_length(narrow)
plt.show()
# Without attention, the whole date must fit in 32 numbers after the last character; the bins above
# show which inputs pay (the shortest are the all-digit formats, eight digits in eight to ten
# characters). With attention each encoder state only has to describe its neighbourhood (a digit
# and where it sits), and the decoder fetches the states it needs, so a narrow state costs less.
### END SOLUTION

# %% [markdown]
# **Exercise 6.** Which input characters does the attention model use for the *month*? For every
# test date in the `month_d_y` format, sum the attention weights of the two month output digits
# over the input positions of the month's name, over the one character right after it, and over
# everything else, and report the means. Do the same for `mdy_slash`, where the month is a number.
# Where does the attention sit, and why can a weight on the character *after* the field still be
# attention to the month?

# %%
### BEGIN SOLUTION
import random as _random

_rng = _random.Random(0)
for fmt, locate in [("month_d_y", lambda text: range(0, text.index(" "))),
                    ("mdy_slash", lambda text: range(0, text.index("/")))]:
    test_days = sorted({dates.datetime.date.fromisoformat(iso) for iso in test_targets})[:200]
    texts = [dates.format_date(d, fmt) for d in test_days]
    attentive.eval()
    _, w = attentive.greedy_decode(encode_sources(texts, src_vocab).to(device))  # (B, 11, S)
    month_w = w[:, 5:7].cpu()  # (B, 2, S): the weights behind the two month digits of YYYY-MM-DD
    on_field, just_after = [], []
    for i, t in enumerate(texts):
        field = list(locate(t))
        on_field.append(month_w[i][:, field].sum(-1).mean().item())
        just_after.append(month_w[i][:, field[-1] + 1].mean().item())
    print(f"{fmt:10s} mean attention of the month digits: on the month field {np.mean(on_field):.2f}, "
          f"on the character after it {np.mean(just_after):.2f}, "
          f"elsewhere {1 - np.mean(on_field) - np.mean(just_after):.2f}")
# The encoder reads left to right, so its state at the character after a field has read the whole
# field: a weight there is attention to the month as much as a weight on the field itself. Where the
# numbers above put the weight is where this model learned to look; the weights are an alignment the
# model found for itself, not one it was given, and need not sit on the characters a person would pick.
### END SOLUTION

# %% [markdown]
# **Exercise 7.** Learned positions do not extrapolate. Make the causal self-attention example of
# section 4.5 into a tiny model (token embedding + either sinusoidal or learned positions + one
# `MultiHeadAttention` + a linear head) that copies its input shifted by one, trained on sequences of
# length 16. Evaluate both on length 32, counting the positions beyond 16 on their own. What happens
# to each model beyond the training length, and why?

# %%
### BEGIN SOLUTION
class TinyCopier(nn.Module):
    def __init__(self, V: int, d: int, learned: bool, max_len: int = 64):
        super().__init__()
        self.tok, self.attn, self.head = nn.Embedding(V, d), MultiHeadAttention(d, 4), nn.Linear(d, V)
        self.pos = nn.Embedding(max_len, d) if learned else None
        self.register_buffer("sin", sinusoidal_positions(max_len, d))

    def forward(self, x):
        T = x.shape[1]
        h = self.tok(x) + (self.pos(torch.arange(T, device=x.device)) if self.pos is not None else self.sin[:T])
        return self.head(h + self.attn(h, h, h, is_causal=True))


def copy_batch(B, T, g):
    x = torch.randint(0, 10, (B, T), generator=g)
    return x, torch.cat([x[:, :1], x[:, :-1]], 1)  # predict the previous token


for learned in (False, True):
    torch.manual_seed(0)
    model = TinyCopier(10, 32, learned)
    g = torch.Generator().manual_seed(0)
    train(model, iter(lambda: copy_batch(64, 16, g), None), steps=env.pick(test=60, cpu=600, gpu=600), lr=3e-3,
          progress=False, device=device)
    x, y = copy_batch(256, 32, g)
    hit = (model(x.to(device)).argmax(-1).cpu() == y).float()  # (256, 32)
    print(f"{'learned' if learned else 'sinusoidal':10s} positions: accuracy {hit[:, :16].mean():.2%} on "
          f"positions 0-15 (seen in training), {hit[:, 16:].mean():.2%} on positions 16-31")
# Rows 16..31 of the learned table never received a gradient: they are still their random
# initial values, so beyond the training length the model cannot tell where "one step back" is.
# The sinusoids are defined there, but the attention was never trained on those vectors either,
# and neither scheme extrapolates reliably (Press et al. 2022): one reason for relative position
# schemes such as ALiBi and the rotary embeddings of chapter 9.
### END SOLUTION
