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
# # 2. Neural language models, from counts to gradients
#
# Chapter 1 estimated every probability by counting, and spent most of its effort on the events
# it had never counted. The count model has no notion that two histories are *similar*: having
# seen "the cat sat" teaches it nothing about "the dog sat". A neural language model replaces the
# table of counts by a function with parameters, fitted by gradient descent on the same loss we
# used to evaluate the counts, the cross-entropy. Similar histories get similar internal
# representations, so what the model learns about one transfers to the others.
#
# The plan: (1) rebuild the bigram model as a tiny network and watch gradient descent rediscover the
# counts; (2) derive the gradient by hand; (3) build the multilayer perceptron language model of
# Bengio et al. (2003), with embeddings and a context of several characters; (4) make training work:
# learning rate, initialisation, normalisation, overfitting; (5) look at what the embeddings learned,
# and measure everything against chapter 1's n-grams on the same splits.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook import data, env, ngram
from lmbook.batching import Vocab, context_windows, random_batches, stream_windows
from lmbook.mlp import MLPLanguageModel, NeuralBigram, softmax_cross_entropy
from lmbook.plot import use_book_style
from lmbook.train import evaluate, train

chapter_start = time.perf_counter()
env.seed_everything(1337)
use_book_style()
device = env.device()
# The models of this chapter are small: on a CPU one thread runs them about as fast as two, far more
# steadily when other programs share the cores, and with the same numbers on every run.
torch.set_num_threads(env.pick(test=1, cpu=1, gpu=torch.get_num_threads()))
print(env.describe())

# %% [markdown]
# The data are chapter 1's: the `names` dataset with makemore's 80/10/10 split, characters as tokens
# and one boundary symbol `.` that both starts and ends a name. `Vocab` numbers the tokens.

# %% tags=["nbval-check-output"]
names_train, names_dev, names_test = data.names_split()
vocab = Vocab("".join(names_train), specials=["."])
V = len(vocab)
encoded = {split: [vocab.encode(name) for name in names]
           for split, names in [("train", names_train), ("dev", names_dev), ("test", names_test)]}
print(f"{len(names_train):,} training, {len(names_dev):,} dev and {len(names_test):,} test names;"
      f" V = {V} tokens: {''.join(vocab.itos)}")
print("emma ->", vocab.encode("emma"))

# %% [markdown]
# ## 2.1 The bigram model as a neural network
#
# A bigram model maps the previous token to a distribution over the next. As a network: encode the
# previous token $x$ as a one-hot vector $\mathbf{e}_x \in \{0,1\}^V$, multiply by a weight matrix
# $W \in \mathbb{R}^{V \times V}$ to get one score per possible next token (the **logits**), and turn
# the scores into probabilities with the **softmax**:
#
# $$
# \mathbf{z} = \mathbf{e}_x^\top W, \qquad
# p_j = \mathrm{softmax}(\mathbf{z})_j = \frac{e^{z_j}}{\sum_{k=1}^{V} e^{z_k}}.
# $$
#
# Multiplying a one-hot vector by $W$ just selects row $x$ of $W$, so the "network" is a table of
# $V \times V$ numbers, the same size as the count table. The difference is how we fill it: not by
# counting, but by minimising the cross-entropy of chapter 1 on the training pairs,
#
# $$
# \mathcal{L}(W) = -\frac{1}{N} \sum_{t=1}^{N} \ln p_{y_t}(x_t; W).
# $$

# %% tags=["nbval-check-output"]
X_pairs, Y_pairs = context_windows(encoded["train"], block_size=1, boundary_id=0)
X_pairs = X_pairs[:, 0]
W = torch.randn(V, V, generator=torch.Generator().manual_seed(0))
via_one_hot = F.one_hot(X_pairs[:5], V).float() @ W
print(f"{len(X_pairs):,} training pairs (previous, next);",
      "one-hot @ W equals W[x]:", torch.equal(via_one_hot, W[X_pairs[:5]]))

# %% [markdown]
# ### The gradient of softmax + cross-entropy, by hand
#
# For one example with logits $\mathbf{z}$ and target $y$, the loss is
# $\ell = -z_y + \ln \sum_k e^{z_k}$. Differentiating,
#
# $$
# \frac{\partial \ell}{\partial z_j} = -\mathbb{1}[j = y] + \frac{e^{z_j}}{\sum_k e^{z_k}}
#   = p_j - \mathbb{1}[j = y].
# $$
#
# The gradient is the predicted distribution minus the one-hot target: push up the score of what
# happened, push down every score in proportion to how much probability it took. Averaged over a
# batch of $B$ examples it is divided by $B$. In code, with the usual trick of subtracting the
# largest logit first so that $e^{z}$ never overflows (it changes nothing, since softmax is
# invariant to adding a constant to every logit). This is the package's code, verbatim; it runs
# here too, so the cell before it imports what it needs:

# %%
from torch import Tensor

from lmbook.mlp import _check_model_args, _checked_batch, _checked_context, _checked_targets  # its input checks

# %%
# From lmbook/mlp.py
def softmax_cross_entropy(logits: Tensor, targets: Tensor) -> tuple[Tensor, Tensor]:
    """Mean cross-entropy of `targets` under softmax(`logits`), and its gradient w.r.t. the logits.

    logits (B, V) float, targets (B,) integer ids. Returns (loss, a scalar; dlogits, (B, V)), with
    dlogits = (softmax(logits) − onehot(targets)) / B. Subtracting each row's largest logit first
    changes nothing (softmax ignores a constant added to a row) and keeps exp() from overflowing.

    >>> loss, dlogits = softmax_cross_entropy(torch.zeros(1, 4), torch.tensor([2]))  # uniform guess
    >>> round(loss.item(), 4), dlogits  # ln 4; a descent step raises the target's logit
    (1.3863, tensor([[ 0.2500,  0.2500, -0.7500,  0.2500]]))
    """
    targets = _checked_targets(logits, targets)                 # (B,) int64
    B, V = logits.shape
    shifted = logits - logits.max(dim=1, keepdim=True).values   # (B, V), each row's max is 0
    log_sum_exp = shifted.exp().sum(dim=1).log()                 # (B,) log Σ_k e^{z_k} (shifted)
    log_probs = shifted - log_sum_exp[:, None]                   # (B, V) log softmax
    loss = -log_probs[torch.arange(B, device=logits.device), targets].mean()
    dlogits = (log_probs.exp() - F.one_hot(targets, V).to(logits.dtype)) / B  # (B, V)
    return loss, dlogits

# %% [markdown]
# Autograd must agree to rounding error, in float64:

# %% tags=["nbval-check-output"]
g = torch.Generator().manual_seed(1)
logits = torch.randn(64, V, dtype=torch.float64, generator=g, requires_grad=True)
targets = torch.randint(0, V, (64,), generator=g)
loss, dlogits = softmax_cross_entropy(logits.detach(), targets)
(autograd_dlogits,) = torch.autograd.grad(F.cross_entropy(logits, targets), logits)
print(f"loss {loss.item():.6f} vs F.cross_entropy {F.cross_entropy(logits, targets).item():.6f};"
      f" max |gradient difference| {(dlogits - autograd_dlogits).abs().max().item():.1e}")
assert torch.allclose(dlogits, autograd_dlogits, atol=1e-12)

# %% [markdown]
# ### Gradient descent rediscovers the counts
#
# Now train the table with nothing but that formula: no autograd. The gradient with respect to $W$
# adds each example's $\partial\ell/\partial\mathbf{z}$ into the row of its previous token. Starting
# from $W = 0$ (a uniform prediction, loss $\ln V$), plain gradient descent on all 182,625 training pairs:

# %%
count_table = torch.zeros(V, V)
count_table.index_put_((X_pairs, Y_pairs), torch.ones(len(X_pairs)), accumulate=True)
count_nll = -(count_table * torch.log(count_table / count_table.sum(1, keepdim=True)).nan_to_num(0)).sum() / len(X_pairs)

W = torch.zeros(V, V)
gd_steps = env.pick(test=60, cpu=400, gpu=400)
gd_losses = []
for step in range(gd_steps):
    loss, dlogits = softmax_cross_entropy(W[X_pairs], Y_pairs)
    dW = torch.zeros_like(W).index_add_(0, X_pairs, dlogits)  # row x collects its examples' gradients
    W -= 50.0 * dW
    gd_losses.append(loss.item())
print(f"step 0 loss {gd_losses[0]:.4f} (ln V = {math.log(V):.4f}); after {gd_steps} steps {gd_losses[-1]:.4f};"
      f" count model {count_nll.item():.4f}")

# %%
fig, ax = plt.subplots()
ax.plot(gd_losses, label="neural bigram, gradient descent")
ax.axhline(count_nll.item(), color="C1", ls="--", label="count bigram (maximum likelihood)")
ax.set_ylim(count_nll.item() - 0.05, 3.4)
ax.set_xlabel("gradient step (full batch)")
ax.set_ylabel("training loss (nats/char)")
ax.set_title("The neural bigram converges to the count model")
ax.legend()
plt.show()

# %% [markdown]
# The loss approaches the count model's from above: the count table is the exact minimiser (chapter
# 1, exercise 6), and gradient descent on the same objective walks towards it. The learned
# probabilities approach the counted ones too:

# %%
P_counts = count_table / count_table.sum(1, keepdim=True)
P_neural = torch.softmax(W, dim=1)
busy = count_table.sum(1) >= 1000  # rows with plenty of data
print(f"max |P_neural - P_counts| over rows with >= 1000 examples: {(P_neural - P_counts)[busy].abs().max():.4f}")
print(f"P_counts(n | a) = {P_counts[vocab.stoi['a'], vocab.stoi['n']]:.4f},"
      f" P_neural(n | a) = {P_neural[vocab.stoi['a'], vocab.stoi['n']]:.4f}")

# %% [markdown]
# ### An L2 penalty pulls towards uniform, as add-k does
#
# The counted model puts exactly zero on pairs it never saw. The neural model can only approach zero
# by driving a logit to $-\infty$, which gradient descent does slowly, forever. Add a penalty
# $\lambda \sum_{ij} W_{ij}^2$ to the loss (**L2 regularisation**) and the logits are pulled towards
# zero, where all probabilities are equal: towards the uniform distribution, the direction in which
# add-$k$ moved the counts. The analogy is in that direction, not in the formula. Add-$k$ adds the
# same pseudo-count $k$ to every pair (the posterior mean under a Dirichlet prior); the penalty is a
# Gaussian prior on the logits, and minimising the penalised loss finds the most probable $W$ under
# it. In both, a row with few examples moves further towards uniform than a row with many: $k$
# weighs more against a small count, and the penalty is the same for every row while a row's share
# of the data term grows with its number of examples. (This penalty, added to the loss, is L2
# regularisation. The *weight decay* of section 2.3 is AdamW's decoupled version, which shrinks the
# weights directly instead of adding $2\lambda W$ to a gradient that Adam then rescales; chapter 7
# comes back to it.)
#
# The mean loss over the training pairs depends only on how often each pair occurs, so we can
# compute it, and its gradient, from the $V \times V$ count table instead of the list of pairs: the
# same loss, far cheaper, so Adam can run until the penalised loss stops changing. Here it is for
# several $\lambda$, with the probability of the pair ('g', 'f'), which never occurs in a training
# name but does in the dev names (chapter 1, section 1.3):

# %%
Xd_pairs, Yd_pairs = context_windows(encoded["dev"], block_size=1, boundary_id=0)
Xd_pairs = Xd_pairs[:, 0]
dev_table = torch.zeros(V, V).index_put_((Xd_pairs, Yd_pairs), torch.ones(len(Xd_pairs)), accumulate=True)
print(f"{len(X_pairs):,} training pairs, {int(count_table.count_nonzero())} of the {V * V} possible pairs seen")
unseen = (vocab.stoi["g"], vocab.stoi["f"])
l2_steps = env.pick(test=300, cpu=3000, gpu=3000)
decay_rows = []
for lam in [0.0, 1e-6, 1e-5, 1e-4, 1e-3]:
    W = torch.zeros(V, V, requires_grad=True)
    opt = torch.optim.Adam([W], lr=0.1)
    for _ in range(l2_steps):  # the mean loss over all pairs, from the counts
        loss = -(count_table * F.log_softmax(W, dim=1)).sum() / len(X_pairs) + lam * (W ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        dev = -(dev_table * F.log_softmax(W, dim=1)).sum().item() / len(Xd_pairs)
        p_gf = torch.softmax(W[unseen[0]], 0)[unseen[1]].item()
    decay_rows.append((lam, dev, p_gf))
    print(f"lambda={lam:<7} dev loss {dev:.5f}   P(f | g) = {p_gf:.2e}")
print("best lambda on dev:", min(decay_rows, key=lambda r: r[1])[0])

# %%
add_k_rows = []
for k in [1e-3, 0.1, 1, 10, 100]:
    P_k = (count_table + k) / (count_table + k).sum(1, keepdim=True)
    add_k_rows.append((k, F.nll_loss(torch.log(P_k[Xd_pairs]), Yd_pairs).item(), P_k[unseen].item()))
    print(f"add-k k={k:<6} dev loss {add_k_rows[-1][1]:.5f}   P(f | g) = {add_k_rows[-1][2]:.2e}")
print("best k on dev:", min(add_k_rows, key=lambda r: r[1])[0])
assert decay_rows[-1][2] > decay_rows[1][2]  # stronger penalty, more mass on the unseen pair

# %% [markdown]
# Both knobs trade the same thing: a little probability taken from what was seen and spread over
# what was not. Each has a best value on the dev set (printed above; with $\lambda = 0$ the unseen
# pairs' logits keep sinking, and the dev loss with them), and both hurt when pushed far. Here the
# best values gain a thousandth of a nat or less over the weakest smoothing in each list: with
# 182,625 examples for 729 probabilities, a bigram has almost nothing left to smooth. Where data are
# scarce the same knobs matter far more, as section 2.3 shows. That is the first answer to "how do I
# fight overfitting?": regularise, and tune the strength on data you did not train on.

# %% [markdown]
# ## 2.2 Embeddings and the MLP language model
#
# A bigram sees one character. Counting longer histories runs out of data, as chapter 1 showed:
# $27^7$ possible 7-character histories, most never seen. Bengio et al. (2003) proposed the way out
# that all modern language models still use:
#
# 1. map every token to a learned vector, its **embedding** $C[w] \in \mathbb{R}^d$, from a table
#    $C \in \mathbb{R}^{V \times d}$;
# 2. concatenate the embeddings of the last $T$ tokens into one vector $\mathbf{x} \in \mathbb{R}^{Td}$;
# 3. pass it through a hidden layer and an output layer:
#
# $$
# \mathbf{h} = \tanh(W_1 \mathbf{x} + \mathbf{b}_1), \qquad \mathbf{z} = W_2 \mathbf{h} + \mathbf{b}_2,
# \qquad p = \mathrm{softmax}(\mathbf{z}).
# $$
#
# The parameters grow linearly with $T$, not exponentially, and characters that behave alike
# (vowels, say) end up with similar embeddings, so what the model learns about one history transfers
# to similar ones. Here is one forward pass from scratch on a batch of 4 contexts of $T = 8$
# characters, with every shape written out:

# %% tags=["nbval-check-output"]
T, d, hidden = 8, 24, 256
X, Y = {}, {}
for split in ["train", "dev", "test"]:
    X[split], Y[split] = context_windows(encoded[split], block_size=T, boundary_id=0)
print({split: tuple(X[split].shape) for split in X})
print("the windows of 'emma':")
for x, y in zip(*context_windows([vocab.encode("emma")], block_size=T, boundary_id=0)):
    print(f"  {''.join(vocab.decode(x.tolist()))} -> {vocab.itos[y]}")

# %%
g = torch.Generator().manual_seed(0)
C = torch.randn(V, d, generator=g)                            # (V, d) embedding table
W1 = torch.randn(T * d, hidden, generator=g) / (T * d) ** 0.5  # (T*d, hidden)
b1 = torch.zeros(hidden)
W2 = torch.randn(hidden, V, generator=g) * 0.01                # (hidden, V)
b2 = torch.zeros(V)

xb, yb = X["train"][:4], Y["train"][:4]   # (4, T) token ids
emb = C[xb]                                # (4, T, d)
h = torch.tanh(emb.view(4, T * d) @ W1 + b1)  # (4, hidden)
z = h @ W2 + b2                            # (4, V) logits
print(tuple(emb.shape), tuple(h.shape), tuple(z.shape), f"loss {F.cross_entropy(z, yb).item():.4f}")

# %% [markdown]
# `lmbook.mlp.MLPLanguageModel` is the same network as a `torch.nn.Module`, with the two
# refinements that section 2.3 motivates: an optional normalisation layer before the tanh and a
# careful initialisation. It also checks its input: a context of the wrong length or a token id
# outside the vocabulary is an error with a message, not a crash deep inside torch.

# %%
# From lmbook/mlp.py
class MLPLanguageModel(nn.Module):
    """Bengio et al. (2003): predict the next token from the embeddings of the last `block_size`.

        x = [C[w_1]; …; C[w_T]]                      (B, T·emb_dim)  concatenated embeddings
        h = dropout(tanh(norm(W_1 x + b_1)))         (B, hidden)
        z = W_2 h + b_2                              (B, V)          logits

    `norm` is ``"none"``, ``"batch"`` (nn.BatchNorm1d) or ``"layer"`` (nn.LayerNorm) over the hidden
    units; with a norm, W_1 has no bias (the norm's own shift replaces it).

    The initialisation is chosen so that training starts well (chapter 2, section 2.3):

    - C ~ N(0, 1); W_1 ~ N(0, (5/3)² / fan_in) (Kaiming initialisation with tanh's gain 5/3),
      fan_in = block_size·emb_dim; b_1 = 0. The pre-activations then have a standard deviation
      of about 5/3 whatever the context length (with W_1 ~ N(0, 1) it would be √fan_in, ≈ 14 for
      8 × 24, and nearly every tanh unit would sit at ±1, saturated, with zero gradient).
    - W_2 ~ N(0, 0.1² / hidden), b_2 = 0. Because |tanh| ≤ 1, every initial logit has standard
      deviation at most 0.1 whatever the width, so the initial prediction is nearly uniform and
      the step-0 loss is ln V plus about 0.1²/2 = 0.005 nats at most (0.15% of ln 27).

    >>> model = MLPLanguageModel(27, block_size=3, emb_dim=2, hidden=8)
    >>> model(torch.tensor([[0, 0, 5], [0, 5, 13]])).shape  # two contexts of 3 tokens
    torch.Size([2, 27])
    """

    def __init__(self, vocab_size: int, block_size: int, emb_dim: int = 24, hidden: int = 256,
                 norm: str = "layer", dropout: float = 0.0):
        super().__init__()
        _check_model_args(vocab_size, block_size, emb_dim, hidden, norm, dropout)
        self.vocab_size, self.block_size, self.norm_name = vocab_size, block_size, norm
        self.embedding = nn.Embedding(vocab_size, emb_dim)                       # C: (V, emb_dim)
        self.hidden_layer = nn.Linear(block_size * emb_dim, hidden, bias=norm == "none")
        self.norm = {"none": nn.Identity, "batch": nn.BatchNorm1d, "layer": nn.LayerNorm}[norm](hidden)
        self.dropout = nn.Dropout(dropout)
        self.output_layer = nn.Linear(hidden, vocab_size)
        with torch.no_grad():
            nn.init.normal_(self.embedding.weight, 0.0, 1.0)
            nn.init.normal_(self.hidden_layer.weight, 0.0, (5 / 3) / math.sqrt(block_size * emb_dim))
            if self.hidden_layer.bias is not None:
                nn.init.zeros_(self.hidden_layer.bias)
            nn.init.normal_(self.output_layer.weight, 0.0, 0.1 / math.sqrt(hidden))
            nn.init.zeros_(self.output_layer.bias)

    def forward(self, idx: Tensor) -> Tensor:
        """idx (B, block_size) token ids -> logits (B, V) for the token that follows each context."""
        return self.output_layer(self.dropout(self.hidden_activations(idx)))

    def hidden_activations(self, idx: Tensor) -> Tensor:
        """The tanh outputs (B, hidden), before dropout: near ±1 means saturated (no gradient)."""
        idx = _checked_batch(self, idx)                          # (B, block_size) int64
        emb = self.embedding(idx)                                # (B, block_size, emb_dim)
        x = emb.view(len(idx), -1)                               # (B, block_size * emb_dim)
        return torch.tanh(self.norm(self.hidden_layer(x)))       # (B, hidden)

    @torch.no_grad()
    def generate(self, context: list[int], max_new_tokens: int, *, stop_id: int | None = None,
                 temperature: float = 1.0, generator: torch.Generator | None = None) -> list[int]:
        """Sample up to `max_new_tokens` tokens, one at a time, each from the last `block_size`.

        `context` needs at least `block_size` ids (left-pad with the boundary id). Sampling stops
        early when `stop_id` is drawn; the stop token is not returned. `temperature` divides the
        logits: below 1 is greedier, above 1 more random. The model is in eval mode while sampling
        (dropout off, BatchNorm's running statistics) and back in its previous mode afterwards.

        >>> model = MLPLanguageModel(27, block_size=3)
        >>> out = model.generate([0, 0, 0], 5, generator=torch.Generator().manual_seed(0))
        >>> len(out), all(0 <= t < 27 for t in out)
        (5, True)
        """
        window = _checked_context(self, context, max_new_tokens, stop_id, temperature)  # the last block_size ids
        device = self.output_layer.weight.device
        was_training = self.training
        self.eval()
        new: list[int] = []
        try:
            for _ in range(max_new_tokens):
                logits = self(torch.tensor([window], device=device))[0]   # (V,)
                probs = torch.softmax(logits.float() / temperature, dim=0)
                if generator is not None:
                    probs = probs.to(generator.device)
                token = int(torch.multinomial(probs, 1, generator=generator))
                if token == stop_id:
                    break
                new.append(token)
                window = window[1:] + [token]                      # slide: drop the oldest token
        finally:
            self.train(was_training)
        return new

    def extra_repr(self) -> str:
        return f"vocab_size={self.vocab_size}, block_size={self.block_size}"

# %% tags=["nbval-check-output"]
model = MLPLanguageModel(V, block_size=T, emb_dim=d, hidden=hidden, norm="layer")
print(f"{sum(p.numel() for p in model.parameters()):,} parameters")
try:
    model(torch.zeros(2, 9, dtype=torch.long))
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# ### Minibatches
#
# The full training set has 182,625 windows. Computing the exact gradient over all of them for every
# step is wasteful: a random **minibatch** of a few hundred gives a noisy but unbiased estimate of the
# same gradient, hundreds of times more cheaply, and many cheap noisy steps beat few exact ones.

# %%
def seconds_per_step(batch_size: int, repeats: int = 5) -> float:
    m = MLPLanguageModel(V, block_size=T, emb_dim=d, hidden=hidden)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    start = time.perf_counter()
    for i in range(repeats):
        idx = torch.randint(0, len(X["train"]), (batch_size,))
        loss = F.cross_entropy(m(X["train"][idx]), Y["train"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / repeats


full, mini = seconds_per_step(len(X["train"]), 2), seconds_per_step(256)
print(f"one step: full batch {full * 1000:.0f} ms, minibatch of 256 {mini * 1000:.1f} ms"
      f" ({full / mini:.0f}x cheaper)")

# %% [markdown]
# (Timings are printed for the machine that ran this notebook; the ratio is what matters.)
#
# ### The learning rate
#
# The most important knob. Too small and training crawls; too large and the loss bounces or
# diverges. Find it empirically: train the same model for a fixed, short budget at learning rates
# spread over several orders of magnitude, and compare the dev loss. `lmbook.train.train` is the
# small training loop every chapter from here on uses: it draws minibatches, steps an AdamW
# optimizer, evaluates on held-out sets at regular intervals, and returns a history.

# %%
sweep_steps = env.pick(test=150, cpu=1500, gpu=1500)
lrs = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1]
sweep_dev = []
for lr in lrs:
    torch.manual_seed(0)
    m = MLPLanguageModel(V, block_size=T, emb_dim=d, hidden=hidden)
    hist = train(m, random_batches(X["train"], Y["train"], 256, torch.Generator().manual_seed(0)),
                 steps=sweep_steps, lr=lr, eval_sets={"dev": (X["dev"], Y["dev"])},
                 eval_every=sweep_steps, progress=False, device=device)
    sweep_dev.append(hist.eval_loss["dev"][-1])
best_lr = lrs[int(np.argmin(sweep_dev))]
print("dev loss after", sweep_steps, "steps:", {lr: round(x, 3) for lr, x in zip(lrs, sweep_dev)})

# %%
fig, ax = plt.subplots()
ax.semilogx(lrs, sweep_dev, "o-")
ax.set_xlabel("learning rate (AdamW)")
ax.set_ylabel(f"dev loss after {sweep_steps} steps")
ax.set_title(f"Learning-rate sweep: best {best_lr}")
plt.show()

# %% [markdown]
# The curve is U-shaped and the bottom is broad: anything within a factor of three of the best
# learning rate is fine. We use the best one from here on, and decay it during long runs.
#
# **Train, dev, test.** The sweep chose a learning rate by looking at the dev set, so the dev loss of
# the winner is now slightly optimistic. That is why the test set exists: it is used once, at the
# very end, for the number we report.

# %% [markdown]
# ## 2.3 Training that works
#
# ### Initialisation: what the loss at step 0 should be
#
# Before training, the model knows nothing, so it should predict the uniform distribution and its
# loss should be $-\ln(1/V) = \ln V$. If the step-0 loss is much higher, the initial weights make
# confident *wrong* predictions, and the first part of training is wasted undoing them. The classic
# beginner's initialisation, every weight drawn from $\mathcal{N}(0, 1)$, shows both problems at
# once: huge logits, and a hidden layer whose pre-activations are so large that almost every tanh
# unit sits at $\pm 1$, where its gradient $1 - \tanh^2$ is zero (the unit is **saturated** and
# stops learning).

# %%
def naive_init(m: MLPLanguageModel) -> MLPLanguageModel:
    with torch.no_grad():
        for p in m.parameters():
            if p.dim() > 1:
                p.normal_(0, 1)
    return m


torch.manual_seed(0)
careful = MLPLanguageModel(V, block_size=T, emb_dim=d, hidden=hidden, norm="none")
naive = naive_init(MLPLanguageModel(V, block_size=T, emb_dim=d, hidden=hidden, norm="none"))
batch = X["train"][:1000], Y["train"][:1000]
for label, m in [("N(0,1) init", naive), ("lmbook init", careful)]:
    print(f"{label:12s} step-0 loss {F.cross_entropy(m(batch[0]), batch[1]).item():7.3f}"
          f"   (ln V = {math.log(V):.3f})")

# %%
fig, axes = plt.subplots(1, 2, figsize=(8, 3))
for ax, (label, m) in zip(axes, [("N(0,1) init", naive), ("lmbook init", careful)]):
    with torch.no_grad():
        acts = m.hidden_activations(batch[0]).flatten()
    ax.hist(acts.numpy(), bins=50)
    ax.set_title(f"{label}: {(acts.abs() > 0.99).float().mean():.0%} saturated")
    ax.set_xlabel("tanh output")
plt.tight_layout()
plt.show()

# %% [markdown]
# `lmbook` scales each hidden weight matrix by $\frac{5/3}{\sqrt{\text{fan-in}}}$ (Kaiming
# initialisation with the tanh gain), which keeps the pre-activations of order one, and shrinks the
# output layer so that the initial logits are nearly equal. Train both for the same budget:

# %%
init_steps = env.pick(test=150, cpu=2000, gpu=2000)
init_hist = {}
for label, m in [("N(0,1) init", naive), ("lmbook init", careful)]:
    init_hist[label] = train(m, random_batches(X["train"], Y["train"], 256, torch.Generator().manual_seed(0)),
                             steps=init_steps, lr=best_lr, eval_sets={"dev": (X["dev"], Y["dev"])},
                             eval_every=max(1, init_steps // 10), progress=False, device=device)
fig, ax = plt.subplots()
for label, hist in init_hist.items():
    ax.plot(hist.eval_step, hist.eval_loss["dev"], "o-", label=label)
ax.set_ylim(1.9, 4)
ax.set_xlabel("step")
ax.set_ylabel("dev loss")
ax.set_title("Initialisation: the same model, the same budget")
ax.legend()
plt.show()
print({label: round(h.eval_loss["dev"][-1], 4) for label, h in init_hist.items()})
assert init_hist["lmbook init"].eval_loss["dev"][-1] < init_hist["N(0,1) init"].eval_loss["dev"][-1]

# %% [markdown]
# ### Normalisation: BatchNorm and LayerNorm
#
# Good initialisation keeps activations well scaled at step 0, but training moves the weights and
# the scales drift. A normalisation layer re-standardises the hidden pre-activations at every step,
# $\hat{a} = \gamma \odot \frac{a - \mu}{\sqrt{\sigma^2 + \epsilon}} + \beta$, with learned $\gamma, \beta$.
# The two common choices differ in *what* the mean and variance are taken over:
#
# - **BatchNorm** normalises each unit over the examples of the batch. During training an example's
#   output depends on the other examples in its batch; at inference it uses running averages, so the
#   model behaves differently in training and in use.
# - **LayerNorm** normalises each example over its own units. It is the same computation in training
#   and inference, for a batch of one, and for every position of a sequence.

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
for norm in ["batch", "layer"]:
    m = MLPLanguageModel(V, block_size=T, emb_dim=d, hidden=hidden, norm=norm).train()
    first = X["train"][:1]
    with_a = m(torch.cat([first, X["train"][1:64]]))[0]
    with_b = m(torch.cat([first, X["train"][1000:1063]]))[0]
    print(f"{norm}Norm: the logits of the same first example change with its batch-mates:"
          f" {not torch.allclose(with_a, with_b, atol=1e-6)}")

# %% [markdown]
# That batch dependence is why language models use LayerNorm: generation predicts one token at a
# time for one sequence, sequence models (chapters 3 to 5) would otherwise mix statistics across
# positions and padding, and the training-versus-inference gap of BatchNorm is a classic source of
# bugs (exercise 5). On this small MLP, at the learning rate the sweep chose, the three variants
# train to nearly the same dev loss, and the one without normalisation is no worse than the others:
# a network this shallow, with a careful initialisation, does not need it. Normalisation earns its
# place in deep stacks, such as chapter 5's Transformer, with two LayerNorms in each block.

# %%
norm_steps = env.pick(test=150, cpu=3000, gpu=3000)
norm_dev = {}
for norm in ["none", "batch", "layer"]:
    torch.manual_seed(0)
    m = MLPLanguageModel(V, block_size=T, emb_dim=d, hidden=hidden, norm=norm)
    hist = train(m, random_batches(X["train"], Y["train"], 256, torch.Generator().manual_seed(0)),
                 steps=norm_steps, lr=best_lr, eval_sets={"dev": (X["dev"], Y["dev"])},
                 eval_every=norm_steps, progress=False, device=device)
    norm_dev[norm] = hist.eval_loss["dev"][-1]
print(f"dev loss after {norm_steps} steps:", {k: round(v, 4) for k, v in norm_dev.items()})

# %% [markdown]
# ### Overfitting and its cures
#
# Overfitting is easiest to study where it is strong: a large MLP (512 hidden units) trained on only
# 1,000 names. The training loss keeps falling while the dev loss turns up: the model is memorising
# the names rather than learning how names are built. Then three cures, each on its own, with the
# same budget, and two of them together: **weight decay** (AdamW's decoupled cousin of section 2.1's
# L2 penalty: `train(weight_decay=...)` shrinks the weight matrices at every step, and leaves the
# embeddings, biases and normalisation gains alone, the rule `lmbook.train.decay_split` states once
# for the whole book; chapter 7 explains it), **dropout** (randomly zeroing a fraction of the hidden
# units at each training step, so that no unit can rely on another; switched off at evaluation),
# and **early stopping** (keep the weights with the best dev loss and stop when it stops improving).

# %%
small_X, small_Y = context_windows(encoded["train"][:1000], block_size=T, boundary_id=0)
overfit_steps = env.pick(test=300, cpu=4000, gpu=4000)
every = max(1, overfit_steps // 20)
big_hidden = 512
setups = {
    "no regularisation": dict(model=dict(), train=dict()),
    "weight decay 0.3": dict(model=dict(), train=dict(weight_decay=0.3)),
    "dropout 0.5": dict(model=dict(dropout=0.5), train=dict()),
    "early stopping": dict(model=dict(), train=dict(early_stopping="dev", patience=3)),
    "dropout + weight decay": dict(model=dict(dropout=0.5), train=dict(weight_decay=0.3)),
}
print(f"{len(encoded['train'][:1000]):,} training names ({len(small_X):,} windows), {big_hidden} hidden units, "
      f"{overfit_steps:,} steps of 128")
overfit = {}
for label, setup in setups.items():
    torch.manual_seed(0)
    m = MLPLanguageModel(V, block_size=T, emb_dim=d, hidden=big_hidden, **setup["model"])
    overfit[label] = train(m, random_batches(small_X, small_Y, 128, torch.Generator().manual_seed(0)),
                           steps=overfit_steps, lr=best_lr,
                           eval_sets={"train": (small_X, small_Y), "dev": (X["dev"], Y["dev"])},
                           eval_every=every, progress=False, device=device, **setup["train"])

# %%
fig, ax = plt.subplots(figsize=(7, 4))
base = overfit["no regularisation"]
ax.plot(base.eval_step, base.eval_loss["train"], "--", color="C0", label="no regularisation (train)")
for (label, hist), color in zip(overfit.items(), ["C0", "C1", "C2", "C3", "C4"]):
    ax.plot(hist.eval_step, hist.eval_loss["dev"], "-", color=color, label=f"{label} (dev)")
ax.set_ylim(1.0, 3.4)
ax.set_xlabel("step")
ax.set_ylabel("loss (nats/char)")
ax.set_title("1,000 training names, 512 hidden units")
ax.legend(fontsize=8)
plt.show()
for label, hist in overfit.items():
    print(f"{label:22s} best dev {min(hist.eval_loss['dev']):.4f}   last evaluated {hist.eval_loss['dev'][-1]:.4f}"
          + (f"   (stopped at step {hist.eval_step[-1]}, weights of step {hist.best_step} restored)"
             if hist.stopped_early else ""))
assert base.eval_loss["dev"][-1] > min(base.eval_loss["dev"])  # the dev loss turned up

# %% [markdown]
# Each cure narrows the gap between the last evaluation and the best one, and two of them combine:
# dropout with weight decay ends lower than either of them alone. Early stopping is the cheapest:
# it costs nothing but a held-out set, and the weights it keeps are those of its best evaluation,
# from before the dev loss turned (its "last evaluated" is where it stopped looking). None of the
# cures is "make the model more complex", which makes overfitting worse; and the one that needs no
# tuning at all is more data, which the next section uses: all 25,626 training names.

# %% [markdown]
# ## 2.4 The MLP on names, in full
#
# Now the real run: the whole training split, the learning rate from the sweep, a little weight
# decay, and the learning rate divided by ten for the last fifth of training (large steps to get
# close, small steps to settle). Training runs to the end and then keeps the weights of the best
# dev evaluation (`early_stopping="dev"` without a `patience`).

# %%
steps = env.pick(test=1500, cpu=30000, gpu=60000)
torch.manual_seed(1337)
names_mlp = MLPLanguageModel(V, block_size=T, emb_dim=d, hidden=hidden, norm="layer")
start = time.perf_counter()
names_hist = train(names_mlp, random_batches(X["train"], Y["train"], 256, torch.Generator().manual_seed(1337)),
                   steps=steps, lr=best_lr, weight_decay=0.01,
                   lr_schedule=lambda t: 1.0 if t < 0.8 * steps else 0.1,
                   eval_sets={"dev": (X["dev"], Y["dev"])}, eval_every=max(1, steps // 30),
                   early_stopping="dev", progress=False, device=device)
names_seconds = time.perf_counter() - start
mlp_dev, mlp_test = evaluate(names_mlp, X["dev"], Y["dev"]), evaluate(names_mlp, X["test"], Y["test"])
print(f"{steps:,} steps in {names_seconds:.0f} s: dev {mlp_dev:.4f}, test {mlp_test:.4f} nats/char")

# %%
ax = names_hist.plot(title="MLP on names: training and dev loss")
ax.set_ylim(1.8, 2.8)
plt.show()

# %% [markdown]
# Samples from the trained model (it starts from eight `.` and stops when it predicts `.` again):

# %%
g = torch.Generator().manual_seed(42)
print(", ".join("".join(vocab.decode(names_mlp.generate([0] * T, 30, stop_id=0, generator=g)))
                for _ in range(15)))

# %% [markdown]
# ### What the embeddings learned
#
# Each character's 24-dimensional embedding was learned only to predict the next character. Project
# the 27 vectors onto their two principal directions, and list each vowel's nearest neighbours by
# cosine similarity:

# %%
emb_table = names_mlp.embedding.weight.detach()
centered = emb_table - emb_table.mean(0)
_, _, Vt = torch.linalg.svd(centered, full_matrices=False)
xy = centered @ Vt[:2].T
fig, ax = plt.subplots(figsize=(5, 5))
vowels = set("aeiouy")
for i, ch in enumerate(vocab.itos):
    ax.scatter(xy[i, 0], xy[i, 1], s=220, color="C1" if ch in vowels else ("C2" if ch == "." else "C0"), alpha=0.5)
    ax.text(xy[i, 0], xy[i, 1], ch, ha="center", va="center")
ax.set_title("Character embeddings, first two principal components\n(orange: vowels, green: boundary)")
plt.show()

# %%
unit = F.normalize(emb_table, dim=1)
similarity = unit @ unit.T
for ch in "aeiou":
    i = vocab.stoi[ch]
    nearest = [vocab.itos[j] for j in similarity[i].argsort(descending=True)[1:5].tolist()]
    print(f"{ch}: nearest {' '.join(nearest)}")

# %% [markdown]
# Nobody told the model what a vowel is. Vowels cluster because they are interchangeable in many
# contexts ("j_n" can be "jan", "jen", "jon"), and predicting the next character well rewards giving
# interchangeable characters similar vectors. This is the mechanism behind the generalisation the
# count models lacked, and word embeddings (word2vec, the input layer of every Transformer) are the
# same idea at the level of words.

# %% [markdown]
# ## 2.5 A common mistake: a softmax over one unit
#
# A snippet that circulates in tutorials ends a next-word model for a 10,000-word vocabulary with
# `Dense(units=1, activation='softmax')`. It trains without errors, and learns nothing. A softmax
# normalises over its units; over a single unit it is $e^{z}/e^{z} = 1$, whatever $z$ is. The output
# is the constant 1.0, and the gradient with respect to everything before it is exactly zero. Here
# is the same mistake in PyTorch:

# %% tags=["nbval-check-output"]
torch.manual_seed(0)
wrong_head = nn.Linear(hidden, 1)
h = torch.randn(5, hidden, requires_grad=True)
out = torch.softmax(wrong_head(h), dim=-1)          # (5, 1)
print("outputs:", out.squeeze(1).tolist())
out.sum().backward()
print("gradient reaching the hidden layer:", h.grad.abs().max().item())

# %% [markdown]
# A language model needs one output per vocabulary entry: a layer with $V$ outputs producing
# **logits**, and the cross-entropy computed from the logits (`F.cross_entropy` applies a stable
# log-softmax itself; applying softmax first and then taking a log loses precision). That is exactly
# the output layer of `MLPLanguageModel` above:

# %% tags=["nbval-check-output"]
right_head = nn.Linear(hidden, 10_000)
h = torch.randn(5, hidden, requires_grad=True)
targets = torch.tensor([3, 141, 5926, 5358, 9793])
loss = F.cross_entropy(right_head(h), targets)
loss.backward()
print(f"loss {loss.item():.3f} (ln 10000 = {math.log(10_000):.3f}); gradient reaching the hidden layer:"
      f" {h.grad.abs().max().item():.4f}")

# %% [markdown]
# ## 2.6 Shakespeare, character by character
#
# The same MLP on *tinyshakespeare*, one long stream of characters with nanoGPT's 90/10 split. Every
# window of 16 characters predicts the next one; a bigger context helps more here than on names.

# %%
shakespeare_train, shakespeare_val = data.shakespeare_split()
char_vocab = Vocab(shakespeare_train)
sh_T = 16
Xs_train, Ys_train = stream_windows(torch.tensor(char_vocab.encode(shakespeare_train)), sh_T)
Xs_val, Ys_val = stream_windows(torch.tensor(char_vocab.encode(shakespeare_val)), sh_T)
n_val = env.pick(test=20_000, cpu=None, gpu=None)  # the test profile scores a slice of validation
Xs_val, Ys_val = Xs_val[:n_val], Ys_val[:n_val]
print(f"{len(char_vocab)} characters; {len(Xs_train):,} training windows, {len(Xs_val):,} validation windows")

sh_steps = env.pick(test=800, cpu=15000, gpu=40000)
torch.manual_seed(1337)
sh_mlp = MLPLanguageModel(len(char_vocab), block_size=sh_T, emb_dim=24, hidden=512, norm="layer")
sh_start = time.perf_counter()
sh_hist = train(sh_mlp, random_batches(Xs_train, Ys_train, 256, torch.Generator().manual_seed(1337)),
                steps=sh_steps, lr=best_lr, weight_decay=0.01,
                lr_schedule=lambda t: 1.0 if t < 0.8 * sh_steps else 0.1,
                eval_sets={"val": (Xs_val, Ys_val)}, eval_every=max(1, sh_steps // 15),
                progress=False, device=device)
sh_val = evaluate(sh_mlp, Xs_val, Ys_val)
print(f"validation loss {sh_val:.4f} nats/char after {sh_steps:,} steps ({time.perf_counter() - sh_start:.0f} s)")

# %%
g = torch.Generator().manual_seed(7)
start_ctx = char_vocab.encode("\n" * sh_T)
print("".join(char_vocab.decode(sh_mlp.generate(start_ctx, 300, generator=g))))

# %% [markdown]
# ## 2.7 The running table
#
# Every model so far, on the same splits. The count models are refitted here with `lmbook.ngram`
# (chapter 1), so every number in the table comes from this run.

# %%
def ngram_loss(order: int, smoothing: str, train_seqs, eval_seqs, **kw) -> float:
    return ngram.NgramLM(order, smoothing, **kw).fit(train_seqs).cross_entropy(eval_seqs)


names_chars = {split: [list(n) for n in names] for split, names in
               [("train", names_train), ("dev", names_dev)]}
sh_chars = [list(shakespeare_train)], [list(shakespeare_val)]
table = [
    ("count bigram (add-one)", ngram_loss(2, "add_k", names_chars["train"], names_chars["dev"]),
     ngram_loss(2, "add_k", *sh_chars)),
    ("best n-gram: Kneser-Ney, n=6", ngram_loss(6, "kneser_ney", names_chars["train"], names_chars["dev"]),
     ngram_loss(6, "kneser_ney", *sh_chars)),
    (f"MLP (context {T} / {sh_T})", mlp_dev, sh_val),
]
print(f"{'model':32s} {'names dev':>10s} {'shakespeare val':>16s}   (nats/char)")
for label, names_loss, sh_loss in table:
    print(f"{label:32s} {names_loss:10.4f} {sh_loss:16.4f}")
assert mlp_dev < table[0][1]
print(f"\nthis notebook ran in {time.perf_counter() - chapter_start:.0f} s at the {env.profile()} profile")

# %% [markdown]
# The MLP is far better than the bigram it grew out of, and meets this chapter's target on names
# (a dev loss below 2.10; makemore's MLP lecture reached 2.17 {cite:p}`karpathy2022makemore`). But
# it does **not** beat a well-smoothed 6-gram: with short contexts and plenty of data, Kneser–Ney is
# a strong baseline, slightly ahead of the MLP on names and clearly ahead on Shakespeare, where our
# MLP is small and trained briefly (section 2.6 prints its steps and seconds). The MLP's
# weakness is the context: its input grows with every character it reads, each position has its
# own weights, so a longer window costs parameters and data. Chapter 3's recurrent networks read
# the context one character at a time with shared weights; chapter 3 measures what that buys on
# both datasets.
#
# What to take away:
#
# - A neural LM is trained on the evaluation metric of chapter 1: cross-entropy. The gradient of
#   softmax + cross-entropy is $p - \mathbf{e}_y$.
# - Embeddings let similar tokens share statistical strength; that is what counts cannot do.
# - Training that works: check the step-0 loss against $\ln V$, keep activations out of saturation,
#   sweep the learning rate, normalise (LayerNorm for language models), and watch train *and* dev
#   loss. Fight overfitting with weight decay, dropout and early stopping, tuned on held-out data.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (autograded).** A neural *trigram* reads the previous two tokens. As a one-hot
# network its input is the one-hot vector of the *pair* $(a, b)$ = (second-to-last, last token), one
# of $V^2$ possible histories, numbered $a \cdot V + b$, and its weight matrix $W$ is $V^2 \times V$:
# one row of logits per history, like chapter 1's trigram count table. Write
# `trigram_logits(prev2, prev1, W)` that computes the logits with an explicit one-hot product
# (`F.one_hot`), not by indexing, for batches `prev2`, `prev1` of shape `(B,)`; gradients must flow
# into `W`.

# %%
def trigram_logits(prev2: torch.Tensor, prev1: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    V = W.shape[1]
    history = prev2 * V + prev1                                   # (B,) the pair's row of W
    return F.one_hot(history, V * V).to(W.dtype) @ W              # (B, V*V) @ (V*V, V) -> (B, V)
    ### END SOLUTION

# %%
# Autograded test: ex1_trigram (2 points)
_W = torch.randn(16, 4, requires_grad=True)                      # V = 4: 16 histories
_a, _b = torch.tensor([0, 3, 3, 1]), torch.tensor([2, 0, 0, 3])
_z = trigram_logits(_a, _b, _W)
assert _z.shape == (4, 4), f"expected logits of shape (B, V) = (4, 4), got {tuple(_z.shape)}"
assert torch.allclose(_z, _W[_a * 4 + _b]), "the history (a, b) selects row a * V + b of W"
_z.sum().backward()
assert _W.grad is not None and _W.grad[12].sum().item() == 8.0, \
    "the history (3, 0) occurs twice, so row 12 of the gradient of the sum should be 2 in each of 4 columns"
### BEGIN HIDDEN TESTS
_W5 = torch.randn(25, 5, dtype=torch.float64)
_a5, _b5 = torch.randint(0, 5, (50,)), torch.randint(0, 5, (50,))
assert torch.allclose(trigram_logits(_a5, _b5, _W5), _W5[_a5 * 5 + _b5]), "check another V (and float64 weights)"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2 (autograded).** *Label smoothing* trains against a softened target: instead of the
# one-hot $\mathbf{e}_y$, the distribution $\mathbf{q} = (1 - \varepsilon)\,\mathbf{e}_y + \varepsilon / V$,
# with loss $-\sum_j q_j \ln p_j$ (what `F.cross_entropy(..., label_smoothing=eps)` computes). Derive
# its gradient with respect to the logits, as section 2.1 did for $\varepsilon = 0$, and write
# `smoothed_ce_grad(logits, targets, eps)` returning the gradient of the *mean* loss over the batch,
# without autograd and without the chapter's `softmax_cross_entropy` (the hidden tests take both
# away). It must stay finite for logits as large as 1000.

# %%
def smoothed_ce_grad(logits: torch.Tensor, targets: torch.Tensor, eps: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    B, V = logits.shape
    p = torch.softmax(logits, dim=1)                              # stable: torch subtracts the max
    q = torch.full_like(p, eps / V)
    q[torch.arange(B), targets] += 1 - eps
    return (p - q) / B                                            # d(-sum q log p)/dz = p - q (sum q = 1)
    ### END SOLUTION

# %%
# Autograded test: ex2_smoothed_grad (2 points)
_logits = torch.randn(8, 6, dtype=torch.float64, requires_grad=True)
_t = torch.randint(0, 6, (8,))
(_expected,) = torch.autograd.grad(F.cross_entropy(_logits, _t, label_smoothing=0.1), _logits)
_got = smoothed_ce_grad(_logits.detach().clone(), _t, 0.1)
assert torch.allclose(_got, _expected, atol=1e-10), \
    "the gradient of the mean loss should be (softmax - q) / batch size, with q the smoothed target"
### BEGIN HIDDEN TESTS
from lmbook import grading

(_expected0,) = torch.autograd.grad(F.cross_entropy(_logits, _t), _logits)
(_expected3,) = torch.autograd.grad(F.cross_entropy(_logits, _t, label_smoothing=0.3), _logits)
with grading.without("softmax_cross_entropy", "lmbook.mlp.softmax_cross_entropy", "torch.autograd.grad",
                     "torch.autograd.backward", "torch.Tensor.backward"):
    assert torch.allclose(smoothed_ce_grad(_logits.detach().clone(), _t, 0.3), _expected3, atol=1e-10)
    assert torch.allclose(smoothed_ce_grad(_logits.detach().clone(), _t, 0.0), _expected0, atol=1e-10), \
        "eps = 0 is the plain cross-entropy of section 2.1"
    _big = torch.tensor([[1000.0, 0.0, -1000.0]])
    assert torch.isfinite(smoothed_ce_grad(_big, torch.tensor([1]), 0.1)).all(), "use a numerically stable softmax"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3 (autograded).** Llama and most recent language models replace LayerNorm by
# **RMSNorm** (Zhang & Sennrich, 2019): no mean subtracted and no shift, only a rescaling by the
# root mean square, $\mathrm{RMSNorm}(x) = \gamma \odot x / \sqrt{\frac{1}{H}\sum_i x_i^2 + \epsilon}$.
# Write `rms_norm(x, gamma, eps)` from scratch for `x` of shape `(B, H)` (the hidden tests take
# torch's `rms_norm` and `layer_norm` away).

# %%
def rms_norm(x: torch.Tensor, gamma: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    ### BEGIN SOLUTION
    return gamma * x / torch.sqrt(x.pow(2).mean(dim=-1, keepdim=True) + eps)
    ### END SOLUTION

# %%
# Autograded test: ex3_rms_norm (2 points)
_x = torch.randn(4, 10, dtype=torch.float64) * 3 + 1
_gamma = torch.rand(10, dtype=torch.float64)
_expected = F.rms_norm(_x, (10,), _gamma, eps=1e-6)
assert torch.allclose(rms_norm(_x, _gamma, 1e-6), _expected, atol=1e-10), \
    "divide each row by sqrt(mean of its squares + eps), then scale by gamma; no mean is subtracted"
### BEGIN HIDDEN TESTS
from lmbook import grading

_x2 = torch.randn(3, 7, dtype=torch.float64)
_expected2 = F.rms_norm(_x2, (7,), torch.ones(7, dtype=torch.float64), eps=1e-2)
with grading.without("torch.nn.functional.rms_norm", "torch.rms_norm", "torch.nn.RMSNorm",
                     "torch.nn.functional.layer_norm", "torch.layer_norm", "torch.nn.LayerNorm"):
    assert torch.allclose(rms_norm(_x, _gamma, 1e-6), _expected, atol=1e-10)
    assert torch.allclose(rms_norm(_x2, torch.ones(7, dtype=torch.float64), 1e-2), _expected2, atol=1e-10), \
        "eps goes inside the square root"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 4.** How much does context help the MLP? Train it on names with `block_size` 1, 3 and 8
# for the same number of steps and compare the dev losses with the n-grams of chapter 1 of the same
# context length (orders 2, 4 and 9).

# %%
### BEGIN SOLUTION
for block in [1, 3, 8]:
    Xb, Yb = context_windows(encoded["train"], block_size=block, boundary_id=0)
    Xdb, Ydb = context_windows(encoded["dev"], block_size=block, boundary_id=0)
    torch.manual_seed(0)
    m = MLPLanguageModel(V, block_size=block, emb_dim=d, hidden=hidden)
    train(m, random_batches(Xb, Yb, 256, torch.Generator().manual_seed(0)), steps=sweep_steps, lr=best_lr,
          progress=False, device=device)
    kn = ngram_loss(block + 1, "kneser_ney", names_chars["train"], names_chars["dev"])
    print(f"context {block}: MLP dev {evaluate(m, Xdb, Ydb):.4f}   Kneser-Ney n={block + 1} dev {kn:.4f}")
### END SOLUTION

# %% [markdown]
# **Exercise 5.** Put a BatchNorm model in training mode and generate names one at a time (a batch of
# one). What goes wrong, and why does `generate` switch the model to evaluation mode?

# %%
### BEGIN SOLUTION
bn = MLPLanguageModel(V, block_size=T, emb_dim=d, hidden=hidden, norm="batch")
train(bn, random_batches(X["train"], Y["train"], 256, torch.Generator().manual_seed(0)), steps=sweep_steps,
      lr=best_lr, progress=False, device=device)
bn.train()
try:
    bn(X["dev"][:1])
except ValueError as err:  # BatchNorm cannot compute a variance from one example in training mode
    print("training mode, batch of one:", err)
print("eval mode:", "".join(vocab.decode(bn.generate([0] * T, 20, stop_id=0,
                                                      generator=torch.Generator().manual_seed(0)))))
# In training mode BatchNorm normalises with the statistics of the current batch: with one example
# the variance is undefined (PyTorch refuses), and with a few examples every prediction depends on
# the others. Evaluation mode uses the running averages collected during training instead.
### END SOLUTION

# %% [markdown]
# **Exercise 6.** Bengio et al. plotted embeddings directly. Train the names MLP with `emb_dim=2` and
# plot the 27 embeddings without any projection. Which characters end up close together? What does
# the dev loss cost you, compared with `emb_dim=24`?

# %%
### BEGIN SOLUTION
torch.manual_seed(0)
m2 = MLPLanguageModel(V, block_size=T, emb_dim=2, hidden=hidden)
train(m2, random_batches(X["train"], Y["train"], 256, torch.Generator().manual_seed(0)), steps=sweep_steps * 2,
      lr=best_lr, progress=False, device=device)
e2 = m2.embedding.weight.detach()
fig, ax = plt.subplots(figsize=(4, 4))
ax.scatter(e2[:, 0], e2[:, 1], s=200, alpha=0.4)
for i, ch in enumerate(vocab.itos):
    ax.text(e2[i, 0], e2[i, 1], ch, ha="center", va="center")
plt.show()
print(f"emb_dim=2 dev loss {evaluate(m2, X['dev'], Y['dev']):.4f}")
### END SOLUTION

# %% [markdown]
# **Exercise 7.** Sample 10 names from the trained names MLP at temperatures 0.5, 1 and 1.5 (the
# `temperature` argument of `generate`). How many of the samples are names that occur in the training
# set? What does that say about memorisation?

# %%
### BEGIN SOLUTION
known = set(names_train)
for tau in [0.5, 1.0, 1.5]:
    g = torch.Generator().manual_seed(0)
    samples = ["".join(vocab.decode(names_mlp.generate([0] * T, 30, stop_id=0, temperature=tau, generator=g)))
               for _ in range(10)]
    print(f"tau={tau}: {sum(s in known for s in samples)}/10 in the training set:", ", ".join(samples))
# Low temperatures concentrate on the most probable names, many of which are common training names;
# a model can reproduce its training data without having "memorised" it in the overfitting sense.
### END SOLUTION
