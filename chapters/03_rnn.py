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
# # 3. Recurrent networks: RNN, LSTM, GRU
#
# Chapter 2's MLP reads a fixed window of characters. Everything before the window is invisible to
# it, and every position inside the window has its own weights, so a longer window costs
# parameters and data in proportion. Language does not come in windows: whether a quotation mark
# is open, whether we are in a speaker's name or in their speech, how long the current verse line
# already is, all depend on text an arbitrary distance back.
#
# A **recurrent** network reads the text one character at a time and keeps a running summary, its
# hidden state, updated at every step by the *same* function with the *same* weights. Its context
# is, in principle, everything it has read. This chapter builds the three recurrent cells that
# mattered, from scratch and checked against PyTorch: the plain (Elman) RNN, the LSTM and the GRU;
# shows why training them through long sequences is hard (vanishing and exploding gradients) and
# what fixes it; and trains a character-level LSTM language model on names and on Shakespeare,
# which we then open up to see what one of its units tracks.

# %%
import math
import time

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from lmbook import data, env, ngram
from lmbook.batching import Vocab, random_batches
from lmbook.plot import use_book_style
from lmbook.rnn import GRU, LSTM, RNN, CharRNN, TruncatedBPTT, evaluate_stream, tbptt_batches
from lmbook.train import train

chapter_start, chapter_cpu = time.perf_counter(), time.process_time()
env.seed_everything(1337)
use_book_style()
device = env.device()
# A small recurrent layer does many small matrix products, one per time step: on a 2-core CPU
# they are not worth sharing between threads, and one thread leaves the other core free.
if device == "cpu":
    torch.set_num_threads(1)
print(env.describe())

# %% [markdown]
# ## 3.1 The recurrent cell, unrolled in time
#
# The simple recurrent network of Elman (1990): at step $t$ the cell combines the current input
# $\mathbf{x}_t$ (a character's embedding) with the previous hidden state $\mathbf{h}_{t-1}$:
#
# $$
# \mathbf{h}_t = \tanh\left(W_{ih}\mathbf{x}_t + \mathbf{b}_{ih} + W_{hh}\mathbf{h}_{t-1} + \mathbf{b}_{hh}\right),
# \qquad \mathbf{h}_0 = \mathbf{0}.
# $$
#
# $W_{ih}$ ($H \times d$) and $W_{hh}$ ($H \times H$) are the same at every step: that is what
# "recurrent" means, and why the number of parameters does not depend on the length of the text.
# (PyTorch keeps two bias vectors, $\mathbf{b}_{ih}$ and $\mathbf{b}_{hh}$, where one would do; we
# keep both, so that our parameters map one to one onto theirs.) Unrolled, the network is a very
# deep feed-forward network, one layer per time step, all layers sharing their weights. Here it is
# in five lines, on 3 sequences of 6 steps:

# %% tags=["nbval-check-output"]
g = torch.Generator().manual_seed(0)
d_in, H, T_demo, B_demo = 4, 5, 6, 3
W_ih, W_hh = torch.randn(H, d_in, generator=g) * 0.5, torch.randn(H, H, generator=g) * 0.5
b_ih, b_hh = torch.zeros(H), torch.zeros(H)
xs = torch.randn(T_demo, B_demo, d_in, generator=g)     # (T, B, d): time first, as torch's default

h = torch.zeros(B_demo, H)                               # h_0
hs = []
for t in range(T_demo):                                  # the same weights at every step
    h = torch.tanh(xs[t] @ W_ih.T + b_ih + h @ W_hh.T + b_hh)   # (B, H)
    hs.append(h)
hs = torch.stack(hs)                                     # (T, B, H)
print("outputs", tuple(hs.shape), "| final state", tuple(h.shape))

# %% [markdown]
# `torch.nn.RNN` computes the same thing. Give it our weights and compare:

# %%
reference = nn.RNN(d_in, H)
with torch.no_grad():
    for name, value in [("weight_ih_l0", W_ih), ("weight_hh_l0", W_hh), ("bias_ih_l0", b_ih), ("bias_hh_l0", b_hh)]:
        getattr(reference, name).copy_(value)
ref_out, ref_h = reference(xs)
print(f"max |ours - nn.RNN|: outputs {(hs - ref_out).abs().max():.1e}, final state {(h - ref_h[0]).abs().max():.1e}")
assert torch.allclose(hs, ref_out, atol=1e-6)

# %% [markdown]
# ### The package's version
#
# `lmbook.rnn` splits the step in two. The input's share, $W_{ih}\mathbf{x}_t + \mathbf{b}_{ih}$,
# does not depend on the previous step, so a layer computes it for *all* steps in one big matrix
# product before the loop; only $W_{hh}\mathbf{h}_{t-1}$ is truly sequential. The cell receives the
# precomputed share as `xg`. (This is the package's code, verbatim; the cell before it imports
# what the package's code needs.)

# %%
from torch import Tensor

from lmbook.rnn import IMPLEMENTATIONS, _batch_size, detach_state  # used by the code below
from lmbook.rnn import _check_model_args, _checked_ids, _checked_prompt  # its input checks (clear errors)

# %%
# From lmbook/rnn.py
def rnn_cell(xg: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None, nonlinearity: str = "tanh") -> Tensor:
    """One step of an Elman RNN: xg (B, H) = W_ih x_t + b_ih, h (B, H) = h_{t-1} -> h_t (B, H)."""
    pre = xg + F.linear(h, w_hh, b_hh)                          # (B, H)
    return torch.tanh(pre) if nonlinearity == "tanh" else torch.relu(pre)

# %% [markdown]
# The layer `lmbook.rnn.RNN` loops that cell over time and stacks layers: layer $k+1$ reads the
# sequence of hidden states of layer $k$ as its input. It has the interface of `nn.RNN` (the same
# arguments, parameter names, initialisation, input layout `(T, B, d)` or `(B, T, d)` with
# `batch_first=True`, and return values `(output, h_n)`), so a `state_dict` moves between the two
# unchanged. The tests in `tests/test_rnn.py` check outputs, final states and all gradients against
# PyTorch to $10^{-5}$ for several depths, batch sizes and lengths; here is one check:

# %%
torch.manual_seed(0)
ours, theirs = RNN(4, 8, num_layers=2, batch_first=True), nn.RNN(4, 8, num_layers=2, batch_first=True)
ours.load_state_dict(theirs.state_dict())
x = torch.randn(3, 20, 4)                                # (B, T, d)
(out, h_n), (ref_out, ref_h_n) = ours(x), theirs(x)
print(ours, "| output", tuple(out.shape), "| h_n", tuple(h_n.shape))
print(f"max |difference|: output {(out - ref_out).abs().max():.1e}, h_n {(h_n - ref_h_n).abs().max():.1e}")

# %% [markdown]
# Wrong shapes get an error that says what was expected, not a crash deep inside a matrix product:

# %% tags=["nbval-check-output"]
for bad_input, bad_state in [(torch.randn(3, 20, 5), None), (x, torch.zeros(1, 3, 8))]:
    try:
        ours(bad_input, bad_state)
    except ValueError as err:
        print("ValueError:", err)

# %% [markdown]
# ## 3.2 Backpropagation through time, and truncating it
#
# A language model predicts at every step, and its loss is the average over steps of the
# cross-entropy of chapters 1 and 2. The gradient with respect to the shared weights is the sum of
# their gradients at every step of the unrolled network: this is **backpropagation through time**
# (BPTT; Werbos, 1990), nothing more than ordinary backpropagation on the unrolled graph, which
# autograd does for us. The gradient reaching step $t-k$ from a loss at step $t$ passes through $k$ Jacobians:
#
# $$
# \frac{\partial \mathbf{h}_t}{\partial \mathbf{h}_{t-k}} = \prod_{j=t-k+1}^{t}
#   \frac{\partial \mathbf{h}_j}{\partial \mathbf{h}_{j-1}}, \qquad
# \frac{\partial \mathbf{h}_j}{\partial \mathbf{h}_{j-1}} = \mathrm{diag}\left(1 - \mathbf{h}_j^2\right) W_{hh}.
# $$
#
# Two practical problems follow. Memory: autograd keeps every step's activations until the
# backward pass, so a book-length sequence does not fit. And the product of many Jacobians, the
# subject of section 3.3.
#
# **Truncated BPTT** handles the first: cut the text into chunks of $T$ characters, backpropagate
# within a chunk only, but *carry the hidden state* from the end of one chunk to the start of the
# next. The state still summarises everything read so far; only the gradient is cut off. In code,
# the carried state must be **detached** from the graph that computed it. `tbptt_batches` cuts one
# long stream into $B$ rows and serves consecutive chunks, so that row $b$ of each batch continues
# row $b$ of the previous one:

# %% tags=["nbval-check-output"]
toy = "the quick brown fox jumps over the lazy dog, again and again and again"
toy_vocab = Vocab(toy)
batches = tbptt_batches(torch.tensor(toy_vocab.encode(toy)), batch_size=3, seq_len=8)
for k in range(3):
    x, y = next(batches)
    print(f"batch {k}: " + " | ".join(repr("".join(toy_vocab.decode(row.tolist()))) for row in x))
# the toy text has room for two chunks per row, so batch 2 starts over

# %% [markdown]
# `TruncatedBPTT` wraps a model so that each training call starts from the previous call's final
# state, detached; it plugs into chapter 2's `lmbook.train.train` unchanged:

# %%
# From lmbook/rnn.py
class TruncatedBPTT(nn.Module):
    """Wraps a `CharRNN` so that, in training mode, each call starts from the final state of the
    previous call, detached: gradients flow back through the current chunk only (truncated BPTT),
    while the state carries information from all the text before it. Feed it `tbptt_batches`.
    In eval mode every call starts from zeros (so `lmbook.train.evaluate` is unaffected);
    `reset()` forgets the carried state, as does a change of batch size.
    """

    def __init__(self, model: CharRNN):
        super().__init__()
        self.model = model
        self.state = None

    def forward(self, idx: Tensor) -> Tensor:
        if not self.training:
            return self.model(idx)
        if self.state is not None and _batch_size(self.state) != len(idx):
            self.state = None
        logits, state = self.model(idx, self.state, return_state=True)
        self.state = detach_state(state)     # without this, backward would run into the previous chunk
        return logits

    def reset(self) -> None:
        self.state = None

# %% [markdown]
# What goes wrong without the detach? The second chunk's graph then reaches back into the first
# chunk's, whose intermediate values were freed by the first `backward()`:

# %%
torch.manual_seed(0)
toy_model = CharRNN(len(toy_vocab), emb_dim=8, hidden_size=16, num_layers=1)
batches = tbptt_batches(torch.tensor(toy_vocab.encode(toy)), batch_size=3, seq_len=8)
state = None
try:
    for k in range(2):
        x, y = next(batches)
        logits, state = toy_model(x, state, return_state=True)   # state NOT detached
        F.cross_entropy(logits.flatten(0, 1), y.flatten()).backward()
except RuntimeError as err:
    print("RuntimeError:", str(err).split(".")[0])

# %% [markdown]
# Keeping the graph alive (`retain_graph=True`) would "fix" the error and silently turn truncated
# BPTT into full BPTT over everything read so far, with memory and time growing at every step.
# Detaching is the point: the test `test_truncated_bptt_carries_the_state_and_cuts_the_gradient`
# checks that the wrapper's gradients equal those of the chunk alone, started from the carried
# state taken as a constant.

# %% [markdown]
# ## 3.3 Vanishing and exploding gradients, made visible
#
# Back to the product of Jacobians. Each factor multiplies by $W_{hh}$ and by $\tanh'$, which is at
# most 1. If the factors shrink vectors, the product shrinks *exponentially* in $k$: the gradient
# from step $t$ carries almost nothing back to step $t-k$, and the network cannot learn that
# something $k$ steps back mattered (**vanishing gradients**; Bengio, Simard & Frasconi, 1994). If
# they stretch vectors, the product grows exponentially (**exploding gradients**; Pascanu, Mikolov &
# Bengio, 2013). Measure it: feed a random sequence of 100 steps, take the sum of the last hidden
# state's units, and ask how large its gradient is with respect to the input $k$ steps earlier.

# %%
def gradient_by_distance(layer: nn.Module, x: torch.Tensor | None = None, steps: int = 100, batch: int = 16) -> np.ndarray:
    """‖∂(Σ h_T) / ∂x_{T-k}‖ for k = 0 … T-1, averaged over a batch; x (B, T, d), random when None."""
    if x is None:
        x = torch.randn(batch, steps, layer.input_size, generator=torch.Generator().manual_seed(0))
    x = x.detach().clone().requires_grad_()
    out, _ = layer(x)                                  # (B, T, H)
    out[:, -1].sum().backward()                        # the last step's hidden state
    return x.grad.norm(dim=2).mean(0).flip(0).cpu().numpy()  # index k = distance back from the last step


torch.manual_seed(0)
rnn_default = RNN(16, 64, batch_first=True)
rnn_large = RNN(16, 64, batch_first=True)
with torch.no_grad():
    nn.init.normal_(rnn_large.weight_hh_l0, 0.0, 1.5 / math.sqrt(64))   # spectral radius ≈ 1.5
lstm_default = LSTM(16, 64, batch_first=True)
curves = {"RNN, torch's initialisation": gradient_by_distance(rnn_default),
          "RNN, large recurrent weights": gradient_by_distance(rnn_large),
          "LSTM, torch's initialisation": gradient_by_distance(lstm_default)}

fig, ax = plt.subplots()
for label, curve in curves.items():
    ax.semilogy(curve, label=label)
ax.set(xlabel="k: distance back in time (steps)", ylabel="gradient norm w.r.t. input at step T-k",
       title="How much does the input k steps back influence the last state?")
ax.legend()
plt.show()
for label, curve in curves.items():
    print(f"{label:30s} k=1: {curve[1]:.2e}   k=20: {curve[20]:.2e}   k=50: {curve[50]:.2e}")
assert curves["RNN, torch's initialisation"][50] < 1e-3 * curves["RNN, torch's initialisation"][1]

# %% [markdown]
# With PyTorch's default initialisation, the plain RNN forgets the way the plot shows: the
# gradient falls by orders of magnitude within a few dozen steps, so learning a dependency across a
# line of verse is hopeless. With larger recurrent weights the gradient does not decay, but the
# tanh units saturate and the dynamics turn chaotic: the gradient norm is large and erratic, and
# in training it can suddenly *explode*. At initialisation the LSTM's gradient decays too: its
# forget gates start near $\sigma(0) = 0.5$, so the cell keeps about half of itself per step. What
# the LSTM has, and section 3.4 explains, is a path along which it can *learn* not to forget;
# section 3.5 measures the same curve after training.
#
# ### Gradient clipping
#
# Exploding gradients have a blunt, effective fix (Pascanu et al., 2013): if the norm of the whole
# gradient $\mathbf{g}$ (all parameters together) exceeds a threshold $c$, scale it down to $c$,
#
# $$
# \mathbf{g} \leftarrow \mathbf{g} \cdot \min\left(1, \frac{c}{\lVert \mathbf{g} \rVert}\right).
# $$
#
# The direction is kept; only the step length is capped, so one freak batch cannot throw the
# weights far away. This is `torch.nn.utils.clip_grad_norm_`, and `lmbook.train.train(grad_clip=c)`.
# Here is a plain RNN language model on Shakespeare trained twice by plain SGD with a large
# learning rate, from the same initial weights on the same batches, once without clipping and
# once with $c = 1$. The gradient norm of every step is recorded (before clipping):

# %%
shakespeare_train, shakespeare_val = data.shakespeare_split()
char_vocab = Vocab(shakespeare_train)
train_ids = torch.tensor(char_vocab.encode(shakespeare_train))
val_ids = torch.tensor(char_vocab.encode(shakespeare_val))
print(f"{len(char_vocab)} characters; {len(train_ids):,} training and {len(val_ids):,} validation characters")

clip_steps = env.pick(test=60, cpu=300, gpu=300)
clip_runs = {}
for clip in [None, 1.0]:
    torch.manual_seed(0)
    model = CharRNN(len(char_vocab), emb_dim=32, hidden_size=128, num_layers=1, cell="rnn").to(device)
    stateful, batches = TruncatedBPTT(model).train(), tbptt_batches(train_ids, batch_size=32, seq_len=64)
    optimizer = torch.optim.SGD(model.parameters(), lr=2.0)
    losses, norms = [], []
    for step in range(clip_steps):
        x, y = next(batches)
        loss = F.cross_entropy(stateful(x.to(device)).flatten(0, 1), y.to(device).flatten())
        optimizer.zero_grad()
        loss.backward()
        norm = nn.utils.clip_grad_norm_(model.parameters(), clip if clip is not None else math.inf)
        optimizer.step()
        losses.append(loss.item())
        norms.append(norm.item())
    clip_runs["no clipping" if clip is None else f"clipped at {clip}"] = (losses, norms)

fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
for label, (losses, norms) in clip_runs.items():
    ax1.plot(losses, lw=1, label=label)
    ax2.semilogy(norms, lw=1, label=label)
ax1.set(xlabel="step", ylabel="training loss (nats/char)", title="Plain RNN, SGD with a large learning rate")
ax2.set(xlabel="step", ylabel="gradient norm (before clipping)", title="The gradient's norm at every step")
ax1.legend()
plt.show()
for label, (losses, norms) in clip_runs.items():
    print(f"{label:15s} largest gradient norm {max(norms):10.1f}   mean loss of the last 20 steps {np.mean(losses[-20:]):.3f}")
assert np.mean(clip_runs["clipped at 1.0"][0][-20:]) < np.mean(clip_runs["no clipping"][0][-20:])

# %% [markdown]
# Without clipping, early in the run one batch produces a gradient thousands of times larger than
# the typical one; the step it causes throws the weights far away, the loss shoots up, and the run
# never recovers within its budget, limping along far above the clipped one while more spikes keep
# hitting it. With clipping, the same learning rate trains smoothly: the rare huge
# gradients are cut to length and the common ones (norms below 1) are untouched. Clipping is cheap
# insurance, which is why every training run in this chapter (and in `lmbook.train` when asked) uses
# it. It does nothing for *vanishing* gradients, which need a different cell.
#
# ## 3.4 The LSTM: a memory cell with gates
#
# Hochreiter & Schmidhuber (1997) attacked the vanishing gradient at its root. Next to the hidden
# state $\mathbf{h}_t$, the **long short-term memory** keeps a *cell state* $\mathbf{c}_t$ that is
# updated additively, under the control of three gates, each a sigmoid in $(0, 1)$ computed from
# $\mathbf{x}_t$ and $\mathbf{h}_{t-1}$ (the forget gate was added by Gers, Schmidhuber & Cummins, 2000):
#
# $$
# \begin{aligned}
# \mathbf{i}_t &= \sigma(W_{ii}\mathbf{x}_t + \mathbf{b}_{ii} + W_{hi}\mathbf{h}_{t-1} + \mathbf{b}_{hi}) && \text{input gate: how much new to write}\\
# \mathbf{f}_t &= \sigma(W_{if}\mathbf{x}_t + \mathbf{b}_{if} + W_{hf}\mathbf{h}_{t-1} + \mathbf{b}_{hf}) && \text{forget gate: how much old to keep}\\
# \mathbf{g}_t &= \tanh(W_{ig}\mathbf{x}_t + \mathbf{b}_{ig} + W_{hg}\mathbf{h}_{t-1} + \mathbf{b}_{hg}) && \text{candidate: what to write}\\
# \mathbf{o}_t &= \sigma(W_{io}\mathbf{x}_t + \mathbf{b}_{io} + W_{ho}\mathbf{h}_{t-1} + \mathbf{b}_{ho}) && \text{output gate: how much to show}\\
# \mathbf{c}_t &= \mathbf{f}_t \odot \mathbf{c}_{t-1} + \mathbf{i}_t \odot \mathbf{g}_t, \qquad
# \mathbf{h}_t = \mathbf{o}_t \odot \tanh(\mathbf{c}_t).
# \end{aligned}
# $$
#
# The four weight matrices of each kind are stacked into one: $W_{ih}$ is $4H \times d$ and
# $W_{hh}$ is $4H \times H$, in PyTorch's order $i, f, g, o$. The key line is the cell update:
# along the cell state, $\partial \mathbf{c}_t / \partial \mathbf{c}_{t-1} = \mathrm{diag}(\mathbf{f}_t)$
# (plus terms through the gates), with no squashing nonlinearity and no weight matrix. When the
# network learns to keep $\mathbf{f}_t \approx 1$, information and gradient travel across many steps
# nearly unchanged. The cell, verbatim from the package:

# %%
# From lmbook/rnn.py
def lstm_cell(xg: Tensor, state: tuple[Tensor, Tensor], w_hh: Tensor,
              b_hh: Tensor | None) -> tuple[Tensor, Tensor]:
    """One LSTM step: xg (B, 4H) = W_ih x_t + b_ih, state (h, c) each (B, H) -> (h_t, c_t).

    The four blocks of the pre-activations are, in torch's order, the input gate i, the forget
    gate f, the candidate g and the output gate o.
    """
    h, c = state
    i, f, g, o = (xg + F.linear(h, w_hh, b_hh)).chunk(4, dim=1)  # 4 × (B, H)
    c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # forget some of the old, add some new
    h = torch.sigmoid(o) * torch.tanh(c)                         # show some of the cell
    return h, c

# %% [markdown]
# ### The GRU
#
# Cho et al. (2014) simplified the LSTM into the **gated recurrent unit**: no separate cell, two
# gates instead of three, and the new state an interpolation between the old one and a candidate:
#
# $$
# \begin{aligned}
# \mathbf{r}_t &= \sigma(W_{ir}\mathbf{x}_t + \mathbf{b}_{ir} + W_{hr}\mathbf{h}_{t-1} + \mathbf{b}_{hr}) && \text{reset gate}\\
# \mathbf{z}_t &= \sigma(W_{iz}\mathbf{x}_t + \mathbf{b}_{iz} + W_{hz}\mathbf{h}_{t-1} + \mathbf{b}_{hz}) && \text{update gate}\\
# \mathbf{n}_t &= \tanh\left(W_{in}\mathbf{x}_t + \mathbf{b}_{in} + \mathbf{r}_t \odot (W_{hn}\mathbf{h}_{t-1} + \mathbf{b}_{hn})\right) && \text{candidate}\\
# \mathbf{h}_t &= (1 - \mathbf{z}_t) \odot \mathbf{n}_t + \mathbf{z}_t \odot \mathbf{h}_{t-1}.
# \end{aligned}
# $$
#
# $\mathbf{z}_t \approx 1$ copies the old state forward, the GRU's version of the LSTM's
# $\mathbf{f}_t \approx 1$. One detail matters for matching PyTorch: the reset gate multiplies the
# recurrent term *including its bias* $\mathbf{b}_{hn}$ (the cuDNN formulation; the original paper
# applies $\mathbf{r}_t$ to $\mathbf{h}_{t-1}$ before the matrix product). With 3 blocks instead of
# 4, a GRU has three quarters of an LSTM's parameters.

# %%
# From lmbook/rnn.py
def gru_cell(xg: Tensor, h: Tensor, w_hh: Tensor, b_hh: Tensor | None) -> Tensor:
    """One GRU step: xg (B, 3H) = W_ih x_t + b_ih, h (B, H) -> h_t (B, H).

    Blocks in torch's order: reset gate r, update gate z, candidate n. The reset gate scales the
    recurrent part of the candidate *including its bias* b_hn, as torch (and cuDNN) compute it.
    """
    x_r, x_z, x_n = xg.chunk(3, dim=1)                            # 3 × (B, H)
    h_r, h_z, h_n = F.linear(h, w_hh, b_hh).chunk(3, dim=1)      # 3 × (B, H)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h                                   # z = 1 keeps the old state

# %% [markdown]
# `lmbook.rnn.LSTM` and `lmbook.rnn.GRU` loop these cells exactly as `RNN` loops its own. The same
# weights in our layers and in PyTorch's give the same outputs, final states and gradients: three
# stacked layers, batch-first, a random initial state, and a loss that depends on everything.

# %% tags=["nbval-check-output"]
def parity(ours_cls, torch_cls, B=4, T=25, d=6, H=10, layers=3) -> dict[str, float]:
    torch.manual_seed(0)
    theirs = torch_cls(d, H, num_layers=layers, batch_first=True)
    ours = ours_cls(d, H, num_layers=layers, batch_first=True)
    ours.load_state_dict(theirs.state_dict())
    x = torch.randn(B, T, d)
    h0 = torch.randn(layers, B, H)
    hx = (h0, torch.randn(layers, B, H)) if ours_cls is LSTM else h0
    diffs = {}
    results = []
    for layer in (ours, theirs):
        out, final = layer(x, hx)
        final = final if isinstance(final, tuple) else (final,)
        (out.sin().sum() + sum(s.square().sum() for s in final)).backward()
        results.append((out, final, [p.grad for p in layer.parameters()]))
    (o1, f1, g1), (o2, f2, g2) = results
    diffs["output"] = (o1 - o2).abs().max().item()
    diffs["final state"] = max((a - b).abs().max().item() for a, b in zip(f1, f2))
    diffs["gradients"] = max((a - b).abs().max().item() for a, b in zip(g1, g2))
    return diffs


for ours_cls, torch_cls in [(RNN, nn.RNN), (LSTM, nn.LSTM), (GRU, nn.GRU)]:
    diffs = parity(ours_cls, torch_cls)
    print(f"{ours_cls.__name__:4s} vs nn.{torch_cls.__name__:4s}: max |difference| "
          + ", ".join(f"{k} {'< 1e-5' if v < 1e-5 else f'{v:.1e}'}" for k, v in diffs.items()))
    assert max(diffs.values()) < 1e-5

# %% [markdown]
# ### Why one uses `torch.nn.LSTM` in practice
#
# Ours and PyTorch's compute the same numbers, but not at the same speed. Our layer runs its time
# loop in Python, and autograd records a dozen small operations per step, each with Python's
# overhead; `nn.LSTM` runs the same loop in C++, and on a GPU calls NVIDIA's cuDNN, which fuses the
# gate arithmetic into a few kernels and overlaps work across layers. One forward and backward pass
# at this chapter's Shakespeare size (a batch of 32 sequences of 64 characters, 2 layers of 256 units):

# %%
def forward_backward_seconds(layer: nn.Module, x: torch.Tensor, repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        out, (h_n, c_n) = layer(x)
        (out.square().mean() + h_n.square().mean()).backward()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


torch.manual_seed(0)
fast_lstm = nn.LSTM(64, 256, num_layers=2, batch_first=True).to(device)
scratch_lstm = LSTM(64, 256, num_layers=2, batch_first=True).to(device)
scratch_lstm.load_state_dict(fast_lstm.state_dict())
x = torch.randn(32, 64, 64, device=device)
forward_backward_seconds(fast_lstm, x, 1), forward_backward_seconds(scratch_lstm, x, 1)  # warm-up
t_fast, t_scratch = forward_backward_seconds(fast_lstm, x), forward_backward_seconds(scratch_lstm, x)
print(f"nn.LSTM {1000 * t_fast:.0f} ms, from scratch {1000 * t_scratch:.0f} ms per forward+backward: "
      f"ours takes {t_scratch / t_fast:.1f}x as long (on {device})")

# %% [markdown]
# (`bench/bench_rnn.py` measures the same ratio more carefully, interleaving repeated runs, and
# saves it in `bench/results/bench_rnn.txt`.) So the rest of the chapter trains with PyTorch's
# layers, `CharRNN(impl="torch")`, the default; `impl="lmbook"` builds the identical model from our
# layers, and because the parameter names agree, weights trained with one load into the other.
#
# ## 3.5 A character-level language model
#
# `CharRNN` is the whole language model: an embedding table, a stack of recurrent layers, dropout,
# and a linear layer that turns each hidden state into logits for the next character,
#
# $$
# \mathbf{e}_t = C[x_t], \qquad \mathbf{h}_t = \mathrm{LSTM}(\mathbf{e}_t, \mathbf{h}_{t-1}, \mathbf{c}_{t-1}),
# \qquad \mathbf{z}_t = W\,\mathrm{dropout}(\mathbf{h}_t) + \mathbf{b}.
# $$
#
# Unlike the MLP, it predicts at *every* position of its input in one pass: a sequence of $T$
# characters gives $T$ training examples, each with all the characters before it as context.
# `model(idx)` returns logits `(B, T, V)`, which chapter 2's `train` and `evaluate` handle as they are.

# %%
# From lmbook/rnn.py
class CharRNN(nn.Module):
    """A recurrent language model: embedding -> `num_layers` recurrent layers -> dropout -> logits.

        e_t = C[x_t]                       (B, T, emb_dim)
        h_t = cell(e_t, h_{t-1})           (B, T, hidden_size)   the top layer's output
        z_t = W dropout(h_t) + b           (B, T, V)             logits for x_{t+1}

    `cell` is "rnn", "lstm" or "gru"; `impl` is "torch" (nn.LSTM & co., fast, cuDNN on a GPU) or
    "lmbook" (this module's from-scratch layers). Both have the same parameter names, so a
    state_dict trained with one loads into the other. `dropout` applies between recurrent layers
    and before the output layer.

    forward(idx) returns the logits, so `lmbook.train.train` and `evaluate` work unchanged;
    forward(idx, state, return_state=True) also returns the final state, to continue from it.

    >>> model = CharRNN(27, emb_dim=8, hidden_size=16)
    >>> model(torch.zeros(2, 5, dtype=torch.long)).shape  # 2 sequences of 5 tokens
    torch.Size([2, 5, 27])
    """

    def __init__(self, vocab_size: int, emb_dim: int = 64, hidden_size: int = 256, num_layers: int = 2,
                 cell: str = "lstm", dropout: float = 0.0, impl: str = "torch"):
        super().__init__()
        _check_model_args(vocab_size, emb_dim, hidden_size, num_layers, cell, dropout, impl)
        self.vocab_size, self.cell, self.impl = vocab_size, cell, impl
        self.embedding = nn.Embedding(vocab_size, emb_dim)                       # C: (V, emb_dim)
        self.rnn = IMPLEMENTATIONS[impl][cell](emb_dim, hidden_size, num_layers, batch_first=True,
                                               dropout=dropout if num_layers > 1 else 0.0)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, vocab_size)
        # torch's default initialisation throughout. (Shrinking the output layer, as chapter 2 did for
        # the MLP, made the first Shakespeare steps markedly slower here: it also shrinks the gradient
        # that reaches the recurrent layers.)

    def forward(self, idx: Tensor, state=None, return_state: bool = False):
        """idx (B, T) token ids -> logits (B, T, V); with return_state, (logits, final state)."""
        out, state = self.rnn(self.embedding(_checked_ids(idx, self.vocab_size)), state)  # (B, T, H)
        logits = self.head(self.dropout(out))                                   # (B, T, V)
        return (logits, state) if return_state else logits

    def hidden_states(self, idx: Tensor, state=None) -> Tensor:
        """The top layer's outputs h_t (B, T, H) for a batch of sequences, without dropout."""
        out, _ = self.rnn(self.embedding(_checked_ids(idx, self.vocab_size)), state)
        return out

    @torch.no_grad()
    def generate(self, prompt: list[int], max_new_tokens: int, *, temperature: float = 1.0,
                 stop_id: int | None = None, generator: torch.Generator | None = None) -> list[int]:
        """Read `prompt` (at least one id), then sample up to `max_new_tokens` ids one at a time,
        carrying the state: each step costs one cell update, however long the text so far.

        `temperature` divides the logits (below 1 greedier, above 1 more random); sampling stops
        when `stop_id` is drawn (not returned). Runs in eval mode (no dropout), then restores the mode.

        >>> model = CharRNN(27, emb_dim=8, hidden_size=16)
        >>> out = model.generate([0], 5, generator=torch.Generator().manual_seed(0))
        >>> len(out), all(0 <= t < 27 for t in out)
        (5, True)
        """
        prompt = _checked_prompt(prompt, max_new_tokens, temperature, stop_id, self.vocab_size)
        device = self.head.weight.device
        was_training = self.training
        self.eval()
        new: list[int] = []
        try:
            logits, state = self(torch.tensor([prompt], device=device), return_state=True)  # (1, P, V)
            for _ in range(max_new_tokens):
                probs = torch.softmax(logits[0, -1].float() / temperature, dim=0)         # (V,)
                if generator is not None:
                    probs = probs.to(generator.device)
                token = int(torch.multinomial(probs, 1, generator=generator))
                if token == stop_id:
                    break
                new.append(token)
                logits, state = self(torch.tensor([[token]], device=device), state, return_state=True)
        finally:
            self.train(was_training)
        return new

# %% [markdown]
# ### Names
#
# First the `names` data of chapters 1 and 2, with the same split and the same vocabulary: 26
# letters and the boundary `.`. Each name is one sequence: the input is `.` followed by the name,
# the target is the name followed by `.`, so the model predicts every letter and the end, exactly
# the targets chapter 2's MLP predicted. Names have different lengths; we pad them on the right to
# the longest and give the padded positions the target $-100$, which `F.cross_entropy` ignores
# (its `ignore_index`): the mean loss is over real characters only.

# %% tags=["nbval-check-output"]
names_train, names_dev, names_test = data.names_split()
vocab = Vocab("".join(names_train), specials=["."])
V = len(vocab)


def padded_names(names: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """X (N, L+1): '.' then the name, then padding 0; Y (N, L+1): the name, then '.', then -100."""
    length = max(len(name) for name in names) + 1
    X = torch.zeros(len(names), length, dtype=torch.long)
    Y = torch.full((len(names), length), -100, dtype=torch.long)
    for row, name in enumerate(names):
        ids = vocab.encode(name)
        X[row, 1 : len(ids) + 1] = torch.tensor(ids)
        Y[row, : len(ids) + 1] = torch.tensor(ids + [0])
    return X, Y


names_X, names_Y = {}, {}
for split, names in [("train", names_train), ("dev", names_dev), ("test", names_test)]:
    names_X[split], names_Y[split] = padded_names(names)
print({split: tuple(X.shape) for split, X in names_X.items()})
print("emma: input ", names_X["train"][names_train.index("emma")].tolist())
print("      target", names_Y["train"][names_train.index("emma")].tolist())


@torch.no_grad()
def padded_loss(model: nn.Module, X: torch.Tensor, Y: torch.Tensor) -> float:
    """Mean cross-entropy per real (not padded) target, in eval mode."""
    was_training = model.training
    model.eval()
    logits = model(X.to(device))                                               # (N, L, V)
    total = F.cross_entropy(logits.flatten(0, 1), Y.to(device).flatten(), reduction="sum").item()
    model.train(was_training)
    return total / (Y != -100).sum().item()

# %% [markdown]
# One LSTM layer of 128 units is plenty for names. Dropout on the LSTM's outputs fights
# overfitting, and the gradients are clipped at norm 1. The untrained model's loss is close to
# $\ln 27 = 3.30$, as it should be: its hidden states start small, so its first guesses are
# nearly uniform.

# %%
names_steps = env.pick(test=150, cpu=2000, gpu=2 * 2000)
torch.manual_seed(1337)
names_lstm = CharRNN(V, emb_dim=32, hidden_size=env.pick(test=64, cpu=128, gpu=128),
                     num_layers=1, dropout=0.2).to(device)
print(f"one LSTM layer of {names_lstm.rnn.hidden_size} units, {sum(p.numel() for p in names_lstm.parameters()):,} parameters; "
      f"loss before training {padded_loss(names_lstm, names_X['dev'], names_Y['dev']):.4f} (ln V = {math.log(V):.4f})")
start = time.perf_counter()
names_hist = train(names_lstm, random_batches(names_X["train"], names_Y["train"], 64,
                                              torch.Generator().manual_seed(1337)),
                   steps=names_steps, lr=5e-3, lr_schedule=lambda t: 1.0 if t < 0.7 * names_steps else 0.1,
                   grad_clip=1.0, progress=False, device=device)
names_seconds = time.perf_counter() - start
lstm_names_dev = padded_loss(names_lstm, names_X["dev"], names_Y["dev"])
lstm_names_test = padded_loss(names_lstm, names_X["test"], names_Y["test"])
print(f"{names_steps:,} steps in {names_seconds:.0f} s: dev {lstm_names_dev:.4f}, test {lstm_names_test:.4f} nats/char")

# %%
g = torch.Generator().manual_seed(42)
print(", ".join("".join(vocab.decode(names_lstm.generate([0], 30, stop_id=0, generator=g))) for _ in range(15)))

# %% [markdown]
# ### Shakespeare, with truncated BPTT
#
# Now the model the chapter is named for: a two-layer LSTM on *tinyshakespeare* (nanoGPT's 90/10
# split), trained with truncated BPTT in chunks of 64 characters, 32 rows at a time, the state
# carried across chunks. On a GPU the model is wider and trains for many passes over the text, so
# it gets dropout between the layers and before the output layer (Zaremba, Sutskever & Vinyals,
# 2014); at the `cpu` profile it reads the text less than twice, too little to overfit, and dropout
# would only slow it down (it is on for names above, where it helps). During training we watch the loss on a slice of the validation
# text, read in windows that start from a zero state; at the end, `evaluate_stream` scores the
# *whole* validation text with the state carried from its start, so that every character is
# predicted from all the text before it, as the n-gram models of chapter 1 and the windows of
# chapter 2's MLP were scored on every character.

# %%
sh_seq, sh_batch = 64, env.pick(test=32, cpu=32, gpu=64)
sh_steps = env.pick(test=100, cpu=800, gpu=8000)
warmup = min(50, sh_steps // 10)  # steps of linear warm-up, then a cosine decay to a tenth
sh_hidden = env.pick(test=64, cpu=256, gpu=512)
n_windows = env.pick(test=4, cpu=48, gpu=None)
val_windows = val_ids[: len(val_ids) - 1 - (len(val_ids) - 1) % 256]
Xv, Yv = val_windows.view(-1, 256)[:n_windows], val_ids[1 : len(val_windows) + 1].view(-1, 256)[:n_windows]

torch.manual_seed(1337)
sh_lstm = CharRNN(len(char_vocab), emb_dim=64, hidden_size=sh_hidden, num_layers=2,
                  dropout=env.pick(test=0.0, cpu=0.0, gpu=0.3))  # no dropout for under two passes
print(sh_lstm)
print(f"{sum(p.numel() for p in sh_lstm.parameters()):,} parameters")
start = time.perf_counter()
sh_hist = train(TruncatedBPTT(sh_lstm), tbptt_batches(train_ids, sh_batch, sh_seq), steps=sh_steps, lr=3e-3,
                lr_schedule=lambda t: min(1.0, (t + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t / sh_steps))),
                grad_clip=1.0, eval_sets={"val (windows of 256)": (Xv, Yv)}, eval_every=max(1, sh_steps // 8),
                early_stopping="val (windows of 256)", progress=False, device=device)  # keeps the best weights
sh_seconds = time.perf_counter() - start
sh_val = evaluate_stream(sh_lstm, val_ids if env.profile() != "test" else val_ids[:20_000])
print(f"{sh_steps:,} steps ({sh_steps * sh_batch * sh_seq / len(train_ids):.1f} passes over the training text) "
      f"in {sh_seconds:.0f} s; validation loss {sh_val:.4f} nats/char (state carried through the whole text)")

# %%
ax = sh_hist.plot(title="Two-layer LSTM on tinyshakespeare", smooth=50)
ax.set_ylim(1.3, 3.0)
plt.show()

# %% [markdown]
# Section 3.3 promised a second look at the gradient. Feed 16 stretches of 100 validation
# characters through the trained LSTM layers and through an untrained copy, and measure again how
# strongly the last hidden state depends on the input $k$ characters back:

# %%
torch.manual_seed(1337)
untrained = CharRNN(len(char_vocab), emb_dim=64, hidden_size=sh_hidden, num_layers=2).to(device).eval()
sh_lstm.eval()
stretches = val_ids[: 16 * 100].view(16, 100).to(device)
trained_curves = {"untrained": gradient_by_distance(untrained.rnn, untrained.embedding(stretches)),
                  "trained on Shakespeare": gradient_by_distance(sh_lstm.rnn, sh_lstm.embedding(stretches))}
fig, ax = plt.subplots()
for label, curve in trained_curves.items():
    ax.semilogy(curve, label=label)
ax.set(xlabel="k: distance back (characters)", ylabel="gradient norm w.r.t. input k back",
       title="The two-layer LSTM, before and after training")
ax.legend()
plt.show()
for label, curve in trained_curves.items():
    print(f"{label:24s} k=1: {curve[1]:.2e}   k=20: {curve[20]:.2e}   k=50: {curve[50]:.2e}")

# %% [markdown]
# Before training, the gradient falls off exponentially with the distance, like the plain RNN's in
# section 3.3. After training it decays slowly: the input 50 characters back still moves the last
# state by many orders of magnitude more than before. The LSTM has learned to keep its forget gates
# open where that pays, and so to use context from a line or more back, which is exactly what the
# plain RNN's product of Jacobians makes so hard to learn.

# %% [markdown]
# ### Sampling with a temperature
#
# To generate, the model reads a prompt, then repeatedly samples a character from its predicted
# distribution and feeds it back in, carrying the state: each new character costs one step of the
# recurrence, however long the text so far. Dividing the logits by a **temperature** $\tau$ before
# the softmax, $p_j \propto e^{z_j / \tau}$, sharpens the distribution ($\tau < 1$: safer, more
# repetitive) or flattens it ($\tau > 1$: more varied, more mistakes).

# %%
for tau in [0.5, 0.8, 1.0]:
    g = torch.Generator().manual_seed(7)
    sample = "".join(char_vocab.decode(sh_lstm.generate(char_vocab.encode("ROMEO:\n"), 250, temperature=tau, generator=g)))
    print(f"--- temperature {tau} ---\nROMEO:\n{sample}\n")

# %% [markdown]
# ### A look inside: a unit that counts the line
#
# Karpathy, Johnson & Fei-Fei (2015) found individual LSTM units with interpretable jobs: one that
# switches on inside quotes, one that tracks the position in a line. Shakespeare's lines run to a
# few dozen characters (their lengths are printed below), so knowing how far into the line you are
# helps predict the newline. Run the trained model over a stretch of the validation text, record
# the top layer's hidden units, and look for the one most correlated with the number of characters
# since the last newline:

# %%
passage_ids = val_ids[:4000]
passage = "".join(char_vocab.decode(passage_ids.tolist()))
sh_lstm.eval()
with torch.no_grad():
    states = sh_lstm.hidden_states(passage_ids[None].to(device))[0].cpu()     # (T, H)
position_in_line = np.zeros(len(passage))
for t in range(1, len(passage)):
    position_in_line[t] = 0 if passage[t - 1] == "\n" else position_in_line[t - 1] + 1
pos = (position_in_line - position_in_line.mean()) / position_in_line.std()
units = (states.numpy() - states.numpy().mean(0)) / (states.numpy().std(0) + 1e-8)
correlation = units.T @ pos / len(pos)                                        # (H,) Pearson r per unit
unit = int(np.abs(correlation).argmax())
line_lengths = [len(line) for line in passage.split("\n") if line]
print(f"{len(line_lengths)} lines in the passage: median length {np.median(line_lengths):.0f} characters, "
      f"longest {max(line_lengths)}")
print(f"unit {unit}: correlation with the position in the line r = {correlation[unit]:+.2f} "
      f"(median |r| over all {len(correlation)} units: {np.median(np.abs(correlation)):.2f})")
activation = states[:, unit].numpy() * np.sign(correlation[unit])  # oriented to rise along the line
for lo, hi in [(0, 1), (1, 5), (5, 10), (10, 20), (20, 30), (30, 80)]:
    at = (position_in_line >= lo) & (position_in_line < hi)
    print(f"  {lo:2d}-{hi - 1:2d} characters into the line: mean activation {activation[at].mean():+.2f}")

# %%
shown = slice(200, 600)
fig, ax = plt.subplots(figsize=(10, 3.2))
ax.plot(states[shown, unit].numpy(), color="C0", label=f"unit {unit}")
ax.set_ylabel(f"activation of unit {unit}", color="C0")
ax2 = ax.twinx()
ax2.plot(position_in_line[shown], color="C1", lw=1, alpha=0.8, label="characters since the newline")
ax2.set_ylabel("characters since the newline", color="C1")
newlines = [t - shown.start for t in range(shown.start, shown.stop) if passage[t] == "\n"]
for t in newlines:
    ax.axvline(t, color="grey", lw=0.5, alpha=0.5)
ax.set(xlabel="character of the validation text", title=f"Unit {unit} over a passage (grey: newlines)")
plt.show()
print(passage[shown])

# %% [markdown]
# The unit found here is not a linear counter but a clock of the start of the line: it drops at
# every newline and climbs back over the first characters of the line, then stays high (the mean
# activations by position, printed above, and the plot show it; the sign is chosen so that "rises
# along the line" reads upward); short lines, such as a speaker's name, keep it low. That is the
# information one needs to predict a capital letter or a speaker's name after a newline, and where
# a verse line might end.
# Nobody told the model about lines. Most units are far less legible (the median correlation above
# shows how unusual this one is): they share the work in ways a single correlation cannot read.
#
# ## 3.6 The same model in TensorFlow, and how it maps
#
# One of the articles this book grew from builds its language model in TensorFlow's Keras:
#
# ```python
# class LanguageModel(tf.keras.Model):
#     def __init__(self, vocab_size, embedding_dim, hidden_dim):
#         super().__init__()
#         self.embedding = tf.keras.layers.Embedding(vocab_size, embedding_dim)
#         self.lstm = tf.keras.layers.LSTM(hidden_dim, return_sequences=True)
#         self.dense = tf.keras.layers.Dense(vocab_size)
#
#     def call(self, inputs, training=None):
#         return self.dense(self.lstm(self.embedding(inputs), training=training))
#
# loss = tf.keras.losses.sparse_categorical_crossentropy(y_true, y_pred, from_logits=True)
# ```
#
# This one is right, and it is our `CharRNN` with one layer and no dropout. Line by line:
#
# | Keras | PyTorch | note |
# |---|---|---|
# | `Embedding(vocab_size, embedding_dim)` | `nn.Embedding(vocab_size, emb_dim)` | the same table |
# | `LSTM(hidden_dim, return_sequences=True)` | `nn.LSTM(emb_dim, hidden_size, batch_first=True)` | Keras is batch-first; PyTorch needs the input size, Keras infers it. `return_sequences=True` returns $\mathbf{h}_t$ for every $t$, which `nn.LSTM` always does (its `output`); the default `False` returns only the last, one prediction per sequence |
# | `Dense(vocab_size)` | `nn.Linear(hidden_size, vocab_size)` | no activation: logits |
# | `sparse_categorical_crossentropy(..., from_logits=True)` | `F.cross_entropy(logits, targets)` | integer targets, softmax inside; on `(B, T, V)` logits flatten first |
# | kernel `(d, 4H)`, recurrent kernel `(H, 4H)`, one bias `(4H,)` | `weight_ih` `(4H, d)`, `weight_hh` `(4H, H)`, two biases | transposed; gate order $i, f, g, o$ in both (Keras calls $g$ "c") |
# | glorot / orthogonal initialisation, forget-gate bias 1 | uniform $\pm 1/\sqrt{H}$, all biases | different defaults; both train |
#
# The other article's version, `LSTM(units=64)` followed by `Dense(units=1, activation='softmax')`,
# makes two mistakes: without `return_sequences` it predicts once per sequence instead of at every
# position, and a softmax over one unit is the constant 1 (chapter 2, section 2.5), so it learns
# nothing. The seed model in PyTorch, with the Keras weights' layout converted:

# %%
class KerasStyleLanguageModel(nn.Module):
    """The article's tf.keras LanguageModel, line for line in PyTorch."""

    def __init__(self, vocab_size: int, embedding_dim: int, hidden_dim: int):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, embedding_dim)
        self.lstm = nn.LSTM(embedding_dim, hidden_dim, batch_first=True)    # return_sequences=True
        self.dense = nn.Linear(hidden_dim, vocab_size)                       # logits

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        output, _ = self.lstm(self.embedding(inputs))                        # (B, T, hidden_dim)
        return self.dense(output)                                            # (B, T, vocab_size)


def load_keras_lstm(lstm: nn.LSTM, kernel: np.ndarray, recurrent_kernel: np.ndarray, bias: np.ndarray) -> None:
    """Copy a Keras LSTM's weights (kernel (d, 4H), recurrent_kernel (H, 4H), bias (4H,)) into nn.LSTM."""
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(kernel.T))
        lstm.weight_hh_l0.copy_(torch.from_numpy(recurrent_kernel.T))
        lstm.bias_ih_l0.copy_(torch.from_numpy(bias))
        lstm.bias_hh_l0.zero_()                                              # Keras has a single bias


def keras_lstm_reference(x: np.ndarray, kernel, recurrent_kernel, bias) -> np.ndarray:
    """Keras's LSTM equations in NumPy (z = x·kernel + h·recurrent_kernel + bias; i, f, c, o), batch-first."""
    B, T, _ = x.shape
    H = recurrent_kernel.shape[0]
    h, c, outputs = np.zeros((B, H)), np.zeros((B, H)), []
    sigmoid = lambda a: 1 / (1 + np.exp(-a))
    for t in range(T):
        z = x[:, t] @ kernel + h @ recurrent_kernel + bias
        i, f, g, o = sigmoid(z[:, :H]), sigmoid(z[:, H:2 * H]), np.tanh(z[:, 2 * H:3 * H]), sigmoid(z[:, 3 * H:])
        c = f * c + i * g
        h = o * np.tanh(c)
        outputs.append(h)
    return np.stack(outputs, axis=1)                                         # (B, T, H)


rng = np.random.default_rng(0)
kernel, recurrent_kernel = rng.normal(0, 0.3, (8, 4 * 16)), rng.normal(0, 0.3, (16, 4 * 16))
bias = np.concatenate([np.zeros(16), np.ones(16), np.zeros(32)])             # Keras: forget-gate bias 1
seed_model = KerasStyleLanguageModel(vocab_size=V, embedding_dim=8, hidden_dim=16).double()
load_keras_lstm(seed_model.lstm, kernel, recurrent_kernel, bias)
ids = names_X["train"][:4]                                                   # (4, L)
emb = seed_model.embedding(ids).detach()
print("max |nn.LSTM - Keras equations|:",
      f"{np.abs(seed_model.lstm(emb)[0].detach().numpy() - keras_lstm_reference(emb.numpy(), kernel, recurrent_kernel, bias)).max():.1e}")
logits = seed_model(ids)
print("logits", tuple(logits.shape), f"| loss {F.cross_entropy(logits.flatten(0, 1), names_Y['train'][:4].flatten()).item():.4f}"
      f" (ln V = {math.log(V):.4f})")

# %% [markdown]
# ## 3.7 The running table
#
# Every model so far, on the same splits, in nats per character. The count models are refitted here
# with `lmbook.ngram`; the MLP's numbers are chapter 2's, measured at the `cpu` profile (retraining
# it here would double this chapter's running time).

# %%
def ngram_loss(order: int, smoothing: str, train_seqs, eval_seqs) -> float:
    return ngram.NgramLM(order, smoothing).fit(train_seqs).cross_entropy(eval_seqs)


names_chars = {split: [list(n) for n in names] for split, names in [("train", names_train), ("dev", names_dev)]}
sh_chars = [list(shakespeare_train)], [list(shakespeare_val)]
MLP_CHAPTER_2 = (2.0389, 1.7479)   # chapter 2, cpu profile: names dev, tinyshakespeare validation
table = [
    ("count bigram (add-one)", ngram_loss(2, "add_k", names_chars["train"], names_chars["dev"]),
     ngram_loss(2, "add_k", *sh_chars), "this run"),
    ("Kneser-Ney, n=6", ngram_loss(6, "kneser_ney", names_chars["train"], names_chars["dev"]),
     ngram_loss(6, "kneser_ney", *sh_chars), "this run"),
    ("MLP (context 8 / 16)", *MLP_CHAPTER_2, "chapter 2, cpu profile"),
    ("LSTM (this chapter)", lstm_names_dev, sh_val, f"this run, {env.profile()} profile"),
]
print(f"{'model':24s} {'names dev':>10s} {'shakespeare val':>16s}   source")
for label, names_loss, sh_loss, source in table:
    print(f"{label:24s} {names_loss:10.4f} {sh_loss:16.4f}   {source}")
if env.profile() != "test":  # the test profile trains for seconds: only check that the cells run
    assert lstm_names_dev <= 2.05 and sh_val <= 1.75, "the chapter's targets: names dev <= 2.05, Shakespeare <= 1.75"
    assert lstm_names_dev < table[2][1] and sh_val < table[2][2], "the LSTM should beat chapter 2's MLP"
print(f"\nthis notebook ran in {time.perf_counter() - chapter_start:.0f} s at the {env.profile()} profile, "
      f"using {time.process_time() - chapter_cpu:.0f} s of CPU time")

# %% [markdown]
# On names the LSTM is the best model so far, a little ahead of both chapter 2's MLP and the
# 6-gram. Names are short, so an unbounded context has little to offer over eight characters; what
# the LSTM adds is a smooth model of the whole name so far. On Shakespeare, trained on one CPU core
# and reading the text less than twice, it clearly beats the MLP but not
# Kneser–Ney's 6-gram, which, with a million characters of counts, is a strong baseline for
# character-level text. Closing that gap takes a bigger model and many passes over the text, which
# is what the `gpu` profile attempts (a wider LSTM with dropout, for ten times the steps).
#
# ### Which architecture, and how long does training take?
#
# Two questions the source articles ask. *Which network?* For sequences, the answer changed in
# 2017: a Transformer (chapters 4 and 5) trains in parallel over all positions, while a recurrent
# network must run its steps one after the other, which is why our LSTM's speed is bounded by a
# Python or C++ loop over time, however many cores there are. Recurrent networks remain the right
# tool when memory per step must be constant (streaming speech, small devices), and their ideas
# (gating, a state updated step by step) are back in recent state-space models. Between the three
# cells: the plain RNN only for short dependencies, the GRU when parameters or time are tight, the
# LSTM as the safe default. *How long?* Measure it, as this chapter does: its Shakespeare model read
# the training text less than twice, on one laptop core (section 3.5 prints the passes and the
# seconds); the `gpu` profile trains a wider model for longer.
#
# What to take away:
#
# - A recurrent network applies one cell, with one set of weights, at every step, carrying a state:
#   its context is unbounded, its parameters are not.
# - Training unrolls it in time (BPTT). Truncated BPTT carries the state across chunks and cuts
#   the gradient by detaching it.
# - Gradients through many steps vanish or explode. Clipping the gradient norm tames explosions;
#   the LSTM's additive cell state and the GRU's interpolation keep gradients alive.
# - Our from-scratch layers equal PyTorch's to $10^{-5}$; PyTorch's are what one trains with.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (autograded).** Section 3.4 noted that torch's GRU applies the reset gate to the
# recurrent term *after* the matrix product, $\mathbf{r}_t \odot (W_{hn}\mathbf{h}_{t-1} + \mathbf{b}_{hn})$,
# while Cho et al. (2014) apply it *before*:
# $\mathbf{n}_t = \tanh\left(W_{in}\mathbf{x}_t + \mathbf{b}_{in} + W_{hn}(\mathbf{r}_t \odot \mathbf{h}_{t-1}) + \mathbf{b}_{hn}\right)$.
# Implement one step of the paper's GRU, `gru_step_original`, from the raw input and PyTorch's
# stacked weights: `weight_ih` $(3H, d)$, `weight_hh` $(3H, H)$, `bias_ih` and `bias_hh` $(3H,)$,
# blocks in the order $r, z, n$ (the gates $r$ and $z$ are computed as in torch). When the reset
# gate is fully open the two versions agree, which the visible test uses; the hidden tests take
# `gru_cell` away.

# %%
def gru_step_original(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
                      bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
    ### BEGIN SOLUTION
    H = h.shape[1]
    x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=1)
    h_r, h_z = (h @ weight_hh[: 2 * H].T + bias_hh[: 2 * H]).chunk(2, dim=1)
    r, z = torch.sigmoid(x_r + h_r), torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + (r * h) @ weight_hh[2 * H :].T + bias_hh[2 * H :])  # reset before the product
    return (1 - z) * n + z * h
    ### END SOLUTION

# %%
# Autograded test: ex1_gru_original (3 points)
torch.manual_seed(0)
_cell = nn.GRUCell(5, 7)
_x, _h = torch.randn(4, 5), torch.randn(4, 7)
_open_ih = _cell.bias_ih.detach().clone()
_open_ih[:7] = 30.0  # reset gate r = sigmoid(30 + ...) = 1: both versions compute the same step
with torch.no_grad():
    _ref = nn.GRUCell(5, 7)
    _ref.load_state_dict(_cell.state_dict())
    _ref.bias_ih.copy_(_open_ih)
    _expected = _ref(_x, _h)
_got = gru_step_original(_x, _h, _cell.weight_ih, _cell.weight_hh, _open_ih, _cell.bias_hh)
assert _got.shape == (4, 7), f"expected the new state of shape (4, 7), got {tuple(_got.shape)}"
assert torch.allclose(_got, _expected, atol=1e-5), \
    "with the reset gate open (r = 1), the paper's GRU must equal nn.GRUCell: blocks are r, z, n"
### BEGIN HIDDEN TESTS
from lmbook import grading

_w_ir, _w_iz, _w_in = _cell.weight_ih.detach().chunk(3)
_w_hr, _w_hz, _w_hn = _cell.weight_hh.detach().chunk(3)
_b_ir, _b_iz, _b_in = _cell.bias_ih.detach().chunk(3)
_b_hr, _b_hz, _b_hn = _cell.bias_hh.detach().chunk(3)
_r = torch.sigmoid(_x @ _w_ir.T + _b_ir + _h @ _w_hr.T + _b_hr)
_z = torch.sigmoid(_x @ _w_iz.T + _b_iz + _h @ _w_hz.T + _b_hz)
_n = torch.tanh(_x @ _w_in.T + _b_in + (_r * _h) @ _w_hn.T + _b_hn)
_paper = (1 - _z) * _n + _z * _h
with grading.without("gru_cell", "lmbook.rnn.gru_cell"), torch.no_grad():
    _got = gru_step_original(_x, _h, _cell.weight_ih, _cell.weight_hh, _cell.bias_ih, _cell.bias_hh)
    assert torch.allclose(_got, _paper, atol=1e-5), \
        "with a partly closed reset gate, apply r to h before multiplying by W_hn (b_hn is added after)"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2 (autograded).** Implement gradient clipping by the global norm: given a list of
# parameters whose `.grad` is set, scale all gradients in place so that their joint L2 norm is at
# most `max_norm`, and return the norm before clipping. It must agree with
# `torch.nn.utils.clip_grad_norm_`, which the hidden tests take away.

# %%
def clip_global_norm(parameters: list[torch.Tensor], max_norm: float) -> float:
    ### BEGIN SOLUTION
    norm = math.sqrt(sum(p.grad.pow(2).sum().item() for p in parameters))
    if norm > max_norm:
        for p in parameters:
            p.grad.mul_(max_norm / norm)
    return norm
    ### END SOLUTION

# %%
# Autograded test: ex2_clip (2 points)
_params = [torch.randn(3, 4, requires_grad=True), torch.randn(5, requires_grad=True)]
_twins = [p.detach().clone().requires_grad_() for p in _params]
for _ps in (_params, _twins):
    (sum((p ** 3).sum() for p in _ps)).backward()
_norm = clip_global_norm(_params, 1.0)
_ref = torch.nn.utils.clip_grad_norm_(_twins, 1.0)
assert abs(_norm - _ref.item()) < 1e-4, f"return the norm before clipping: expected {_ref.item():.4f}, got {_norm:.4f}"
for _p, _t in zip(_params, _twins):
    assert torch.allclose(_p.grad, _t.grad, atol=1e-5), "scale every gradient by max_norm / total norm"
### BEGIN HIDDEN TESTS
from lmbook import grading

_more = [torch.randn(6, requires_grad=True), torch.randn(2, 2, requires_grad=True)]
_more_twins = [p.detach().clone().requires_grad_() for p in _more]
for _ps in (_more, _more_twins):
    (sum((p ** 3).sum() for p in _ps)).backward()
_ref = torch.nn.utils.clip_grad_norm_(_more_twins, 0.5).item()
with grading.without("torch.nn.utils.clip_grad_norm_", "torch.nn.utils.clip_grad.clip_grad_norm_",
                     "torch.nn.utils.get_total_norm", "torch.nn.utils.clip_grads_with_norm_"):
    assert abs(clip_global_norm(_more, 0.5) - _ref) < 1e-4, "compute the global norm yourself"
    for _p, _t in zip(_more, _more_twins):
        assert torch.allclose(_p.grad, _t.grad, atol=1e-5)
    _small = [torch.zeros(2, requires_grad=True)]
    _small[0].grad = torch.tensor([0.3, 0.4])
    assert abs(clip_global_norm(_small, 1.0) - 0.5) < 1e-6 and torch.allclose(_small[0].grad, torch.tensor([0.3, 0.4])), \
        "gradients with a norm below max_norm must stay unchanged"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3 (autograded).** Gers & Schmidhuber (2000) let the gates look at the cell itself:
# *peephole connections* add $\mathbf{p}_i \odot \mathbf{c}_{t-1}$ to the input gate's and
# $\mathbf{p}_f \odot \mathbf{c}_{t-1}$ to the forget gate's pre-activation, and
# $\mathbf{p}_o \odot \mathbf{c}_t$ (the *new* cell) to the output gate's, with learned vectors
# $\mathbf{p}_i, \mathbf{p}_f, \mathbf{p}_o$ of size $H$. Implement one step,
# `lstm_peephole_step(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh, peephole) -> (h, c)`, with
# PyTorch's stacked weights (blocks $i, f, g, o$) and `peephole` of shape $(3, H)$ holding
# $\mathbf{p}_i, \mathbf{p}_f, \mathbf{p}_o$. With zero peepholes it is `nn.LSTMCell`; the hidden tests
# take `lstm_cell` away.

# %%
def lstm_peephole_step(x, h, c, weight_ih, weight_hh, bias_ih, bias_hh, peephole):
    ### BEGIN SOLUTION
    p_i, p_f, p_o = peephole
    i, f, g, o = (x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).chunk(4, dim=1)
    c_new = torch.sigmoid(f + p_f * c) * c + torch.sigmoid(i + p_i * c) * torch.tanh(g)
    h_new = torch.sigmoid(o + p_o * c_new) * torch.tanh(c_new)
    return h_new, c_new
    ### END SOLUTION

# %%
# Autograded test: ex3_peephole (2 points)
torch.manual_seed(0)
_cell = nn.LSTMCell(3, 6)
_x, _h, _c = torch.randn(2, 3), torch.randn(2, 6), torch.randn(2, 6)
_w = (_cell.weight_ih, _cell.weight_hh, _cell.bias_ih, _cell.bias_hh)
_h1, _c1 = lstm_peephole_step(_x, _h, _c, *_w, torch.zeros(3, 6))
_rh, _rc = _cell(_x, (_h, _c))
assert torch.allclose(_c1, _rc, atol=1e-5), "with zero peepholes, c = sigmoid(f) * c + sigmoid(i) * tanh(g)"
assert torch.allclose(_h1, _rh, atol=1e-5), "with zero peepholes, h = sigmoid(o) * tanh(c), with the new c"
### BEGIN HIDDEN TESTS
from lmbook import grading

_p = torch.randn(3, 6)
with torch.no_grad():
    _pre = (_x @ _cell.weight_ih.T + _cell.bias_ih + _h @ _cell.weight_hh.T + _cell.bias_hh).chunk(4, dim=1)
    _ec = torch.sigmoid(_pre[1] + _p[1] * _c) * _c + torch.sigmoid(_pre[0] + _p[0] * _c) * torch.tanh(_pre[2])
    _eh = torch.sigmoid(_pre[3] + _p[2] * _ec) * torch.tanh(_ec)
with grading.without("lstm_cell", "lmbook.rnn.lstm_cell"), torch.no_grad():
    _h2, _c2 = lstm_peephole_step(_x, _h, _c, *_w, _p)
    assert torch.allclose(_c2, _ec, atol=1e-5), "the input and forget gates look at the old cell c_{t-1}"
    assert torch.allclose(_h2, _eh, atol=1e-5), "the output gate looks at the new cell c_t"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 4.** Jozefowicz, Zaremba & Sutskever (2015) recommend initialising the LSTM's forget-gate
# bias to 1 (Keras does it by default). Set it in `lstm_default` (the rows $H \ldots 2H-1$ of both
# biases: 0.5 each, so that they add up to 1) and redraw the gradient-by-distance curve of section
# 3.3. What changes, and why?

# %%
### BEGIN SOLUTION
lstm_forget = LSTM(16, 64, batch_first=True)
lstm_forget.load_state_dict(lstm_default.state_dict())
with torch.no_grad():
    lstm_forget.bias_ih_l0[64:128] = 0.5
    lstm_forget.bias_hh_l0[64:128] = 0.5
fig, ax = plt.subplots()
ax.semilogy(curves["LSTM, torch's initialisation"], label="LSTM, torch's initialisation")
ax.semilogy(gradient_by_distance(lstm_forget), label="LSTM, forget-gate bias 1")
ax.set(xlabel="k", ylabel="gradient norm")
ax.legend()
plt.show()
# With f ≈ sigmoid(1) ≈ 0.73 instead of ≈ 0.5, the cell keeps more of its past at every step, and
# the gradient along the cell state, a product of forget gates, decays more slowly with k.
### END SOLUTION

# %% [markdown]
# **Exercise 5.** Train the names model with `cell="rnn"` and `cell="gru"` (same size, same steps)
# and compare dev losses and parameter counts with the LSTM's. Is the ranking what section 3.3
# predicts? (Names are short: how far back does a name's next letter depend?)

# %%
### BEGIN SOLUTION
ex_steps = env.pick(test=50, cpu=400, gpu=1000)
for cell in ["rnn", "gru", "lstm"]:
    torch.manual_seed(0)
    m = CharRNN(V, emb_dim=32, hidden_size=64, num_layers=1, cell=cell)
    train(m, random_batches(names_X["train"], names_Y["train"], 64, torch.Generator().manual_seed(0)),
          steps=ex_steps, lr=5e-3, grad_clip=1.0, progress=False, device=device)
    print(f"{cell:4s} {sum(p.numel() for p in m.parameters()):6,} parameters, "
          f"dev {padded_loss(m, names_X['dev'], names_Y['dev']):.4f} after {ex_steps} steps")
# Names are short (at most 16 steps), so the plain RNN's vanishing gradient matters little here;
# the gated cells learn somewhat faster per step, with two to three times the parameters.
### END SOLUTION

# %% [markdown]
# **Exercise 6.** Does carrying the state matter? Train a copy of the Shakespeare model on random
# windows with `lmbook.batching.stream_batches` (every window starts from a zero state, as
# chapter 2's MLP did) for the same number of steps, and compare `evaluate_stream` on the validation
# text. Then evaluate both models on windows of 32 characters started from zero. Explain the two
# results.

# %%
### BEGIN SOLUTION
from lmbook.batching import stream_batches

ex6_steps = env.pick(test=30, cpu=150, gpu=2000)
results = {}
for label, make_batches, wrap in [("carried state (TBPTT)", lambda: tbptt_batches(train_ids, 32, sh_seq), TruncatedBPTT),
                                  ("random windows", lambda: stream_batches(train_ids, sh_seq, 32, torch.Generator().manual_seed(0)),
                                   lambda m: m)]:
    torch.manual_seed(0)
    m = CharRNN(len(char_vocab), emb_dim=32, hidden_size=128, num_layers=1)
    train(wrap(m), make_batches(), steps=ex6_steps, lr=3e-3, grad_clip=1.0, progress=False, device=device)
    short = val_ids[: 32 * 200 + 1]
    with torch.no_grad():
        m.eval()
        short_loss = F.cross_entropy(m(short[:-1].view(200, 32).to(device)).flatten(0, 1), short[1:].to(device)).item()
    results[label] = (evaluate_stream(m, val_ids[:40_000]), short_loss)
    print(f"{label:22s} stream {results[label][0]:.4f}   windows of 32 from zero {results[label][1]:.4f}")
# At this small budget the two end up close, and the model trained on random windows is even a
# little ahead on both. Carrying the state gives every chunk a long context for free, but a small
# model trained briefly cannot use much of it yet, and each window-trained step sees 32 fresh random
# places in the text where TBPTT reads it in order. Scored from zero states on short windows, the
# window-trained model is at home: it is the only situation it has seen. Train both for longer (and
# bigger) to see the carried state pay off.
### END SOLUTION

# %% [markdown]
# **Exercise 7.** Find a unit with a different job. Shakespeare's speaker names are in capitals and
# end with a colon and a newline (`ROMEO:`). Correlate every unit of `states` with the indicator
# "this character is part of a line that ends with ':'", plot the best unit over a passage, and say
# what it seems to track.

# %%
### BEGIN SOLUTION
in_name_line = np.zeros(len(passage))
for line_start in [0] + [t + 1 for t, ch in enumerate(passage) if ch == "\n"]:
    end = passage.find("\n", line_start)
    end = len(passage) if end == -1 else end
    if passage[line_start:end].endswith(":"):
        in_name_line[line_start:end] = 1
target = (in_name_line - in_name_line.mean()) / in_name_line.std()
corr = units.T @ target / len(target)
best = int(np.abs(corr).argmax())
fig, ax = plt.subplots(figsize=(10, 3))
ax.plot(states[shown, best].numpy(), label=f"unit {best} (r = {corr[best]:+.2f})")
ax.plot(in_name_line[shown], lw=1, label="inside a speaker's name")
ax.legend()
plt.show()
inside, outside = states[in_name_line == 1, best].mean().item(), states[in_name_line == 0, best].mean().item()
print(f"unit {best}: r = {corr[best]:+.2f}; mean activation {inside:+.2f} inside speaker-name lines, "
      f"{outside:+.2f} elsewhere")
# The correlation and the two means say how cleanly the unit separates the speakers' names (a few
# capitals and a colon) from the speech; the plot shows where it switches on and off.
### END SOLUTION
