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
# # 7. Training a GPT on a GPU: the full recipe, measured
#
# Chapter 5 built a GPT and trained it with chapter 2's four-line loop. That loop is correct, and on
# a GPU it wastes most of the machine: it computes in 32-bit floats on hardware built for 16-bit
# ones, writes the $T \times T$ attention matrix to memory and reads it back, launches hundreds of
# small kernels where a few fused ones would do, and has no answer to the questions a run that costs
# GPU hours raises: what happens when the loss becomes NaN at step 40,000, when the machine is
# preempted, when the batch no longer fits in memory, when one GPU is not enough?
#
# This chapter turns the loop into a trainer one can trust, `lmbook.trainer`, and measures every
# piece. The plan: (1) where the time of a training step goes, and how to count its FLOPs; (2) the
# number formats fp32, TF32, bf16 and fp16, and why bf16 needs no loss scaling; (3) what flash
# attention and `torch.compile` change; (4) memory: parameters, gradients, optimizer state and
# activations, by formula and measured; (5) the optimizer recipe: AdamW, weight-decay groups,
# warm-up and cosine decay, gradient accumulation and clipping; (6) checkpoints that survive
# crashes and resume bit for bit; (7) a run on your machine, beside the book's two committed models
# (one trained on a CPU, the reference run on a GPU) and the speed-up table; (8) more than one GPU.
#
# Every experiment is sized by the profile (chapter 1): on a CPU the notebook trains a small model on
# Shakespeare in about two minutes; the GPU measurements (the speed-up table, and the reference run, a
# GPT of nanoGPT's shakespeare-char shape with a schedule of its own) come from result files that one
# script writes on a GPU (`bash bench/gpu_all.sh`). The cells that show them name the GPU, the date
# and the command, and say so when a file has not been measured yet.

# %%
import json
import math
import re
import shutil
import tempfile
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import lmbook
from lmbook import checkpoint, data, env, models, tokens, trainer
from lmbook.gpt import GPT, GPTConfig, flops_per_token, param_count
from lmbook.plot import use_book_style
from lmbook.trainer import Trainer, TrainConfig, decay_split, lr_schedule

chapter_start = time.perf_counter()
env.seed_everything(1337)
use_book_style()
device = torch.device(env.device())
# The CPU models of this notebook are small: one thread runs them about as fast as several, and far
# more steadily when other programs share the cores.
torch.set_num_threads(env.pick(test=1, cpu=1, gpu=torch.get_num_threads()))
print(env.describe())

# the repository's root, where configs/, bench/results/ and runs/ live: above this notebook, or the
# checkout lmbook is installed from (`pip install -e .`) when the notebook was copied elsewhere
ROOT = next(p for p in [Path.cwd(), *Path.cwd().parents, Path(lmbook.__file__).resolve().parents[1]]
            if (p / "configs" / "shakespeare_char_gpu.json").is_file())
scratch = Path(tempfile.mkdtemp(prefix="lmbook_ch07_"))  # this notebook's runs; never printed

# %% [markdown]
# The reference model is nanoGPT's *shakespeare-char*: 6 layers, 6 heads, width 384, a context of 256
# characters, trained on tinyshakespeare (nanoGPT's 90/10 split) with batches of 64 sequences. Its
# configuration ships as `configs/nanogpt_shakespeare_char.json`; the trainer reads it as a `TrainConfig`,
# which checks every value.

# %% tags=["nbval-check-output"]
reference = TrainConfig.from_dict(json.loads((ROOT / "configs" / "nanogpt_shakespeare_char.json").read_text()))
ref_model = GPTConfig(vocab_size=65, block_size=reference.block_size, n_layer=reference.n_layer,
                      n_head=reference.n_head, n_embd=reference.n_embd, bias=reference.bias)
N_ref = param_count(ref_model)
print(f"shakespeare-char: {reference.n_layer} layers, {reference.n_head} heads, width {reference.n_embd}, "
      f"context {reference.block_size}: {N_ref:,} parameters")
print(f"one step = {reference.batch_size} x {reference.block_size} = {reference.batch_size * reference.block_size:,} "
      f"tokens; {reference.max_steps:,} steps = {reference.max_steps * reference.batch_size * reference.block_size / 1e6:.1f}M tokens")

# %% [markdown]
# ## 7.1 Where the time goes
#
# A training step is a forward pass, a backward pass and an optimizer update. Almost all of the
# arithmetic is in matrix products. A product of an activation row with a weight matrix of $N$
# entries costs $2N$ floating-point operations (a multiply and an add per weight) in the forward
# pass. The backward pass needs two products of the same size, one for the gradient of the input
# and one for the gradient of the weights, so $4N$. Counting every weight matrix that multiplies
# activations, $N = 12 L d^2 + V d$ for our GPT (the blocks and the tied LM head), and adding the two
# attention products $QK^\top$ and $AV$, which have no weights but cost $2Td$ each per token and
# layer in the forward pass, the training cost per token is
#
# $$
# C_{\text{token}} = 6N + 12\,L\,T\,d \quad \text{FLOPs}.
# $$
#
# This is `lmbook.gpt.flops_per_token` (chapter 5). Let us check it against torch's FLOP counter,
# which counts every matrix product that actually runs in one forward and backward pass:

# %% tags=["nbval-check-output"]
small = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64, attention="lmbook")
counted_model = GPT(small)
idx = torch.randint(0, 65, (4, 64))
with FlopCounterMode(display=False) as counter:
    _, loss = counted_model(idx, idx)
    loss.backward()
per_token = counter.get_total_flops() / idx.numel()
print(f"torch's FLOP counter: {per_token:,.0f} FLOPs per token; formula 6N + 12LTd: {flops_per_token(small):,}")
assert abs(per_token / flops_per_token(small) - 1) < 0.01

# %% [markdown]
# The formula is what *MFU*, model FLOPs utilisation (Chowdhery et al., 2022), is built on:
#
# $$
# \text{MFU} = \frac{\text{tokens per second} \times C_{\text{token}}}{\text{peak FLOP/s of the device}}.
# $$
#
# It says which fraction of the hardware's arithmetic did useful work. The peak depends on the
# device *and* the number format: an H100 SXM does about 989 TFLOP/s in dense bf16, 495 in TF32 and
# 67 in plain fp32. nanoGPT hard-wires the A100's 312 TFLOP/s, so the same code on an H100 reports
# MFUs 3.2 times too high, above 100% as soon as the true one passes 32% (exercise 3).
# `lmbook.trainer.peak_tflops` looks the device up by name (and an unknown device gets no MFU rather
# than a wrong one, unless you pass `peak_tflops`):

# %% tags=["nbval-check-output"]
for name, (bf16, tf32, fp32) in trainer.PEAK_TFLOPS:
    print(f"{name:10s} bf16 {bf16:6.1f}   tf32 {tf32:6.1f}   fp32 {fp32:5.1f}  TFLOP/s (dense)")

# %% [markdown]
# Where does the time of a step go on *your* device? We time the three phases of one step of a small
# GPT separately (on a GPU, `torch.cuda.synchronize` makes the CPU wait for the kernels to finish;
# without it we would time only how long the CPU takes to queue them). The backward pass should cost
# about twice the forward, as the FLOP count says.

# %%
def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_phases(config: GPTConfig, batch: int, repeats: int = 5) -> dict[str, float]:
    model = GPT(config).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(0, config.vocab_size, (batch, config.block_size), device=device)
    times = {"forward": [], "backward": [], "optimizer": []}
    for i in range(repeats + 1):  # the first is a warm-up
        sync(); t0 = time.perf_counter()
        _, loss = model(x, x)
        sync(); t1 = time.perf_counter()
        loss.backward()
        sync(); t2 = time.perf_counter()
        opt.step(); opt.zero_grad(set_to_none=True)
        sync(); t3 = time.perf_counter()
        if i:
            for k, v in zip(times, (t1 - t0, t2 - t1, t3 - t2)):
                times[k].append(v)
    return {k: float(np.median(v)) for k, v in times.items()}


phase_config = env.pick(test=GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64),
                        cpu=GPTConfig(vocab_size=65, block_size=128, n_layer=4, n_head=4, n_embd=128),
                        gpu=ref_model)
phases = time_phases(phase_config, batch=env.pick(test=4, cpu=8, gpu=64))
total = sum(phases.values())
for k, v in phases.items():
    print(f"{k:9s} {1000 * v:8.2f} ms  {v / total:6.1%}")
print(f"backward / forward = {phases['backward'] / phases['forward']:.2f}")

# %% [markdown]
# On this run the backward pass took somewhat less than twice the forward (the ratio printed
# above): the FLOP count gives the factor 2 for the matrix products only, and the rest of the work
# (softmax, LayerNorm, GELU, the loss) need not split between the passes in that proportion.
# The optimizer step is small: it touches each parameter a few times, no matter how many tokens
# are in the batch, while forward and backward grow with the batch. That is also why larger batches
# (and gradient accumulation, section 7.5) amortise everything that is per step.
#
# A matrix product of an $(m \times k)$ by a $(k \times n)$ matrix does $2mkn$ FLOPs on
# $mk + kn + mn$ numbers: its *arithmetic intensity* grows with the sizes, so large products keep
# the arithmetic units busy. Elementwise operations (GELU, dropout, the residual additions,
# LayerNorm, softmax) do a handful of FLOPs per number read and written, so their speed is set by
# memory bandwidth, not by arithmetic. On an H100, with about 3.35 TB/s of memory bandwidth and
# 989 TFLOP/s, an operation needs roughly 300 FLOPs per byte to be compute-bound. Most of the
# speed-ups that follow are about this: do the products in a faster format (7.2), and stop moving
# intermediate results through memory (7.3).

# %% [markdown]
# ## 7.2 Number formats: fp32, TF32, bf16, fp16
#
# A floating-point number is $(-1)^s \times 1.m \times 2^{e}$: a sign, an exponent of $E$ bits (the
# *range*) and a mantissa of $M$ bits (the *precision*). The gap between 1 and the next number is
# $\varepsilon = 2^{-M}$, so rounding to the nearest representable number has a relative error of
# at most $\varepsilon/2 = 2^{-(M+1)}$.

# %% tags=["nbval-check-output"]
formats = [("float32", torch.float32, 8, 23), ("tf32 (matmul inputs)", None, 8, 10),
           ("bfloat16", torch.bfloat16, 8, 7), ("float16", torch.float16, 5, 10)]
print(f"{'format':22s} {'bits':>4s} {'exp':>4s} {'mant':>4s} {'eps = 2^-M':>11s} {'largest':>10s} {'smallest normal':>16s}")
for name, dtype, E, M in formats:
    fi = torch.finfo(dtype if dtype is not None else torch.float32)  # tf32 has fp32's range
    bits = 1 + E + M
    print(f"{name:22s} {bits:4d} {E:4d} {M:4d} {2.0 ** -M:11.2e} {fi.max:10.2e} {fi.tiny:16.2e}")
    if dtype is not None:
        assert fi.eps == 2.0 ** -M and fi.bits == bits

# %% [markdown]
# bf16 keeps float32's 8 exponent bits and cuts the mantissa to 7: the same range, about two to
# three significant digits. fp16 spends its bits the other way: 10 mantissa bits, but only 5
# exponent bits, so nothing above 65,504 and nothing below about $6 \times 10^{-8}$ (its smallest
# *subnormal* number). TF32 is not a storage format: it is how the tensor cores of Ampere and newer
# GPUs read float32 inputs to a matrix product, with a 10-bit mantissa, accumulating in float32.
# PyTorch leaves it off for matrix products by default, and then a float32 product on an H100 does
# not use the tensor cores at all: it runs on the ordinary CUDA cores, at the fp32 column's peak
# above. Turning TF32 on (`torch.backends.cuda.matmul.allow_tf32 = True`, which the trainer's
# `tf32=True` sets) sends the same float32 tensors through the tensor cores, at up to the tf32
# column's peak, seven times the fp32 one, for products with the error of 10-bit inputs (measured
# below). Nothing else changes: the weights, activations and gradients stay float32.
#
# The difference that matters for training is range. Gradients of a language model are often tiny:
# below fp16's smallest number they round to zero (they *underflow*), and the weights they belong to
# stop learning. fp16 training therefore multiplies the loss by a large *loss scale* $S$ (so every
# gradient is $S$ times larger), divides the gradients by $S$ in float32 before the update, and
# lowers $S$ whenever an overflow produces an inf. bf16 has float32's range and needs none of it:

# %% tags=["nbval-check-output"]
grads = torch.tensor([3e-3, 2e-6, 1e-8, 3e-10])
S = 2.0 ** 16
print("gradient      ", [f"{g:.1e}" for g in grads.tolist()])
print("as float16    ", [f"{g:.1e}" for g in grads.half().float().tolist()])
print("float16 x S/S ", [f"{g:.1e}" for g in ((grads * S).half().float() / S).tolist()])
print("as bfloat16   ", [f"{g:.1e}" for g in grads.bfloat16().float().tolist()])
assert grads.half()[3] == 0 and grads.bfloat16()[3] > 0

# %% [markdown]
# Precision is the price bf16 pays. $1 + 2^{-8}$ is not a bf16 number: adding a small update to a
# weight of size 1 can do nothing at all. That is why mixed-precision training keeps the *master
# weights*, the optimizer state and the update in float32, and uses bf16 only for the products of
# the forward and backward passes. `torch.autocast` does this per operation: matrix products run in
# bf16, while reductions that need precision (softmax, the log-sum-exp of the cross-entropy,
# LayerNorm's statistics) run in float32. You can watch it choose, on a CPU too:

# %% tags=["nbval-check-output"]
w = torch.ones(())
print("1 + 2^-8 in bfloat16:", (w.bfloat16() + 2.0 ** -8).item(), "| in float32:", (w + 2.0 ** -8).item())
lin = torch.nn.Linear(8, 8)
x8 = torch.randn(4, 8)
with torch.autocast("cpu", dtype=torch.bfloat16):
    h = lin(x8)
    ce = F.cross_entropy(h, torch.zeros(4, dtype=torch.long))
print(f"under autocast: weights {lin.weight.dtype}, Linear output {h.dtype}, cross-entropy {ce.dtype}")
assert lin.weight.dtype == torch.float32 and h.dtype == torch.bfloat16 and ce.dtype == torch.float32

# %% [markdown]
# How much error does each format put into a matrix product? We round float32 inputs to a given
# number of mantissa bits (this emulates TF32 and bf16 on any machine) and compare a product of two
# random $256 \times 4096$ and $4096 \times 256$ matrices with the exact one, computed in float64.
# The products accumulate in float32 in every case, as tensor cores do.

# %%
def round_mantissa(x: torch.Tensor, bits: int) -> torch.Tensor:
    """Round float32 values to `bits` mantissa bits, to nearest, ties to even (as the hardware does)."""
    drop = 23 - bits
    if drop == 0:
        return x.clone()
    i = x.view(torch.int32)
    half = (1 << (drop - 1)) - 1
    i = (i + half + ((i >> drop) & 1)) & ~((1 << drop) - 1)  # add just under half an ulp (+1 on ties to odd), truncate
    return i.view(torch.float32)


assert torch.equal(round_mantissa(x8, 7), x8.bfloat16().float())  # 7 bits: exactly torch's bfloat16
ga, gb = torch.Generator().manual_seed(0), torch.Generator().manual_seed(1)
A, B = torch.randn(256, 4096, generator=ga), torch.randn(4096, 256, generator=gb)
exact = A.double() @ B.double()
for name, bits in [("float32", 23), ("tf32", 10), ("bfloat16", 7)]:
    approx = round_mantissa(A, bits) @ round_mantissa(B, bits)
    rel = ((approx.double() - exact).norm() / exact.norm()).item()
    print(f"{name:9s} inputs: relative error of the product {rel:.1e}   (2^-(M+1) = {2.0 ** -(bits + 1):.1e})")

# %% [markdown]
# With TF32 or bf16 inputs, the product's error is close to the rounding error of the inputs,
# $2^{-(M+1)}$ (the errors of the 4,096 terms of each sum are independent and partly cancel); with
# float32 inputs, what remains is the float32 accumulation's own rounding. Training tolerates this: stochastic gradients are
# far noisier than $10^{-3}$. The pay-off is speed and memory: an H100 does 15 times more dense bf16
# FLOP/s on its tensor cores than float32 FLOP/s on its CUDA cores, and a bf16 activation takes half
# the bytes.
#
# The trainer's settings: `dtype="auto"` (bf16 autocast on GPUs that support it and on CPUs with bf16
# instructions, AVX512-BF16 or AMX; float32 elsewhere, since a CPU without them emulates bf16 slowly),
# `tf32=True` (for any work left in float32), and `dtype="float16"` on older GPUs, where
# `torch.amp.GradScaler` does the loss scaling.

# %% [markdown]
# ## 7.3 Flash attention and compilation
#
# Attention as chapter 4 wrote it computes the scores $S = QK^\top/\sqrt{d}$, a $T \times T$ matrix
# per head, masks it, applies the softmax and multiplies by $V$. Each of these steps writes a
# $T \times T$ matrix to memory and the next one reads it back, and the backward pass needs the
# attention weights, so they are kept. *Flash attention* (Dao et al., 2022) computes the same
# result in tiles that stay in the GPU's on-chip memory, using an *online softmax*: it keeps, for
# each query, the running maximum $m$ and the running sum $\ell$ of $e^{s - m}$ and rescales the
# partial output whenever $m$ grows. The $T \times T$ matrix never exists in memory; the backward
# pass recomputes it from $Q$, $K$, $V$, the output and the saved log-sum-exp, one scalar per query and head.
# Same numbers (up to rounding), memory linear in $T$ instead of quadratic, and far fewer bytes moved.
#
# `F.scaled_dot_product_attention` picks a flash kernel where it can (CUDA, and a CPU
# implementation too); our GPT uses it with `attention="sdpa"` and chapter 4's code with
# `attention="lmbook"`. Both give the same output:

# %%
Bq, H, T, dh = 4, 4, 256, 32
q, k, v = (torch.randn(Bq, H, T, dh, generator=torch.Generator().manual_seed(s), requires_grad=True) for s in range(3))
from lmbook import attention as ch4  # noqa: E402

out_flash = F.scaled_dot_product_attention(q, k, v, is_causal=True)
out_ch4 = ch4.scaled_dot_product_attention(q, k, v, is_causal=True)
print(f"max |sdpa - chapter 4| = {(out_flash - out_ch4).abs().max().item():.1e}")
assert torch.allclose(out_flash, out_ch4, atol=1e-5)


# %% [markdown]
# What the backward pass keeps is measurable without a GPU: `torch.autograd.graph.saved_tensors_hooks`
# sees every tensor autograd saves for the backward pass. We add up their sizes (each storage once,
# leaving out the parameters) for one forward pass of a GPT, with chapter 4's attention and with sdpa:

# %%
def activation_bytes(model: GPT, idx: torch.Tensor) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of model(idx, idx), parameters excluded."""
    storages: dict[int, int] = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(idx, idx)
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    return sum(n for ptr, n in storages.items() if ptr not in params)


# %% [markdown]
# Counting what each block keeps, in float32 with no dropout: the input of each LayerNorm and of
# each linear layer, the queries, keys and values, the attention output, the MLP's $4d$-wide hidden
# layer before and after GELU: about $16d$ numbers per token and layer. Chapter 4's attention also
# keeps about three $T \times T$ matrices per head (the scores, the masked scores, the weights).
# With the final LayerNorm, the LM head's input and the logits:
#
# $$
# \text{activations per token} \approx L\,(16d + 3HT) + 2d + V \ \text{(materialised attention)},
# \qquad L\,(16d + 2H) + 2d + V \ \text{(flash)}.
# $$

# %% tags=["nbval-check-output"]
def activation_formula(c: GPTConfig, flash: bool) -> int:
    per_layer = 16 * c.n_embd + (2 * c.n_head if flash else 3 * c.n_head * c.block_size)
    return c.n_layer * per_layer + 2 * c.n_embd + c.vocab_size  # numbers per token


print(f"{'attention':10s} {'T':>4s} {'measured MB':>12s} {'formula MB':>11s}")
for T_ in (64, 256):
    for path in ("lmbook", "sdpa"):
        c = GPTConfig(vocab_size=65, block_size=T_, n_layer=2, n_head=4, n_embd=64, attention=path)
        tok = torch.randint(0, 65, (4, T_))
        measured = activation_bytes(GPT(c), tok)
        estimate = 4 * tok.numel() * activation_formula(c, flash=path == "sdpa")
        print(f"{path:10s} {T_:4d} {measured / 1e6:12.2f} {estimate / 1e6:11.2f}")
        assert abs(measured / estimate - 1) < 0.03

# %% [markdown]
# The formula holds to within a few percent, and the $3HT$ term is the point: at $T = 256$ it is
# already larger than everything else in the block, and it grows with the context. Flash attention
# removes it.
#
# **`torch.compile`** attacks the other memory traffic. It traces the model's forward and backward
# passes into a graph and generates kernels for it (with Triton on GPUs, C++ on CPUs), *fusing*
# chains of elementwise operations: the bias addition, GELU and dropout of the MLP become one kernel
# that reads its input once and writes its output once, instead of three round trips through memory.
# It also removes Python's per-operation overhead. Compilation itself is paid once, in the first
# step of a run: the reference run of section 7.7 spends 17.9 s of its 36.6 s of training there. So
# the trainer's default (`compile=None`) turns it on only for runs long enough to earn that back,
# by a rule of thumb: always on CUDA, and on a CPU for runs of at least 500 steps when a C++
# compiler is installed (inductor writes C++ for the CPU); shorter CPU runs stay eager. This
# notebook's own run in section 7.7 has 1,000 steps at the `cpu` profile, so it compiles (its
# output says `compile True`). The last
# switch is the **fused AdamW**: one kernel reads each parameter, its gradient and its two moments
# once and writes them back once, where PyTorch's default on CUDA (the *foreach* implementation)
# runs one multi-tensor kernel per arithmetic operation of the update, each a round trip through
# memory.

# %% [markdown]
# ## 7.4 Memory: weights, gradients, optimizer state, activations
#
# With mixed precision, each parameter costs 4 bytes of float32 master weight, 4 bytes of gradient
# and 8 bytes of AdamW state (the first and second moments), 16 bytes in all, plus a transient bf16
# copy of the weights inside autocast. Activations come on top, and they scale with the batch and the
# context. For the reference run:

# %% tags=["nbval-check-output"]
def memory_estimate(c: GPTConfig, batch: int, flash: bool, bytes_per_activation: int = 2) -> dict[str, float]:
    n = param_count(c)
    return {"weights (fp32)": 4 * n, "gradients (fp32)": 4 * n, "AdamW moments (fp32)": 8 * n,
            "activations": bytes_per_activation * batch * c.block_size * activation_formula(c, flash)}


for flash in (False, True):
    est = memory_estimate(ref_model, reference.batch_size, flash)
    print(f"{'flash' if flash else 'materialised'} attention, batch {reference.batch_size}: "
          + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in est.items())
          + f"; total {sum(est.values()) / 1e9:.2f} GB")
gpt2_small = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
est = memory_estimate(gpt2_small, 16, flash=True)
print(f"GPT-2 small ({param_count(gpt2_small) / 1e6:.0f}M parameters), batch 16 x 1024, flash: "
      + ", ".join(f"{k} {v / 1e9:.2f} GB" for k, v in est.items()))

# %% [markdown]
# For a model this small, the activations dominate and the parameters are a rounding error: the
# batch size and the context are what fill a GPU. When a run does not fit, the trainer says what
# to lower: the micro-batch (raising `grad_accum` to keep the same global batch), the precision,
# the model. The estimate is rough (autocast keeps some activations in float32, and the logits of a
# 50k vocabulary are large), and the speed-up table of section 7.7 shows how rough: at GPT-2 small's
# shape with flash attention the GPU measured a peak of 17.23 GB, twice the 8.5 GB the last line above
# adds up to (15.58 GB once compilation fuses the elementwise operations).

# %% [markdown]
# ## 7.5 The optimizer recipe
#
# **AdamW** (Loshchilov & Hutter, 2019) applies weight decay *decoupled* from the gradient: after the
# Adam update, every decayed weight shrinks by $\eta\lambda w$, rather than adding $\lambda w$ to a
# gradient that Adam would then rescale. Decay is a prior that weights should be small. It makes sense
# for the matrices that multiply activations, and none for biases and LayerNorm gains (shrinking a
# gain toward 0 switches a feature off). Embeddings are a choice. A row of the input embedding gets
# a gradient only when its token appears (tied to the output layer, it also gets one at every
# position from there, but for a token that is rarely the answer that one mostly pushes its logit
# down), while decoupled decay shrinks it at every step, so the rows of rare tokens are pulled toward
# 0 between their appearances. This book leaves embeddings (and so
# the tied output matrix) undecayed, as minGPT does; nanoGPT decays every parameter with two or more
# dimensions, embeddings included, which is worth remembering when comparing with its numbers
# (exercise 5 measures the difference on a small model). The rule is one function, used by chapter
# 2's `lmbook.train.train` and by the trainer, whose `make_optimizer` turns its two lists into
# AdamW's two parameter groups (the second without decay), fused into one kernel on CUDA:

# %%
# From lmbook/train.py
def decay_split(model: nn.Module) -> tuple[list[str], list[str]]:
    """Names of the parameters that get weight decay (the weight matrices of linear layers) and of
    those that do not (biases, norm gains, embeddings: shrinking them toward 0 has no use). A tied
    embedding/LM-head matrix is an embedding. This is the book's one rule, in `train` (chapter 2)
    and in `lmbook.trainer` (chapter 7); nanoGPT differs: it decays every parameter of 2 or more
    dimensions, embeddings included."""
    embeddings = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # tied parameters appear once
        if p.requires_grad:
            (decay if p.dim() >= 2 and id(p) not in embeddings else no_decay).append(name)
    return decay, no_decay


# %% tags=["nbval-check-output"]
decay, no_decay = decay_split(GPT(GPTConfig(vocab_size=65, block_size=256, n_layer=6, n_head=6, n_embd=384, bias=False)))
print(f"decayed ({len(decay)}):", ", ".join(n for n in decay if ".h.0." in n), "… in every block")
print(f"not decayed ({len(no_decay)}):", ", ".join(n for n in no_decay if ".h." not in n or ".h.0." in n), "…")

# %% [markdown]
# **The learning-rate schedule.** Adam's second-moment estimates are unreliable for the first
# steps, and a large rate applied to random initial weights can throw training into a bad region,
# so the rate rises linearly for $W$ warm-up steps; then it follows half a cosine down to a floor
# $\eta_{\min}$ at step $S$:
#
# $$
# \eta_t = \eta\,\frac{t+1}{W} \quad (t < W), \qquad
# \eta_t = \eta_{\min} + \tfrac12\left(1 + \cos\!\left(\pi\,\frac{t - W}{S - W}\right)\right)(\eta - \eta_{\min})
# \quad (W \le t \le S).
# $$
#
# The plot after the code draws it for nanoGPT's shakespeare-char settings, the configuration at the
# start of this chapter (not the schedule of the reference run, which section 7.7 chooses).

# %%
# From lmbook/trainer.py
def lr_schedule(step: int, *, lr: float, min_lr: float, warmup_steps: int, max_steps: int) -> float:
    """Linear warm-up to `lr`, then a cosine decay to `min_lr` at `max_steps` (and `min_lr` after):

        step < W:        lr · (step + 1) / W
        W <= step <= S:  min_lr + ½ (1 + cos(π (step − W) / (S − W))) (lr − min_lr)

    >>> [round(lr_schedule(s, lr=1.0, min_lr=0.1, warmup_steps=2, max_steps=4), 3) for s in range(6)]
    [0.5, 1.0, 1.0, 0.55, 0.1, 0.1]
    """
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    progress = (step - warmup_steps) / max(1, max_steps - warmup_steps)  # 0 -> 1
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * progress)) * (lr - min_lr)


# %%
sched = dict(lr=reference.lr, min_lr=reference.min_lr, warmup_steps=reference.warmup_steps, max_steps=reference.max_steps)
steps_axis = np.arange(reference.max_steps + 200)
rates = [lr_schedule(int(s), **sched) for s in steps_axis]
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
axes[0].plot(steps_axis, rates)
axes[0].set(xlabel="step", ylabel="learning rate", title="warm-up + cosine (nanoGPT's shakespeare-char settings)")
axes[1].plot(steps_axis[:300], rates[:300])
axes[1].set(xlabel="step", title="the first 300 steps")
plt.show()
print({s: f"{lr_schedule(s, **sched):.2e}" for s in (0, 99, 100, 2550, 5000, 6000)})
assert lr_schedule(reference.warmup_steps - 1, **sched) == reference.lr == lr_schedule(reference.warmup_steps, **sched)

# %% [markdown]
# **Gradient accumulation.** When the batch you want does not fit in memory, split it into $k$
# micro-batches, run forward and backward on each, and step once. Gradients add up in `.grad`, so
# each micro-batch's loss is divided by $k$: the accumulated gradient is then the gradient of the
# mean over the whole batch,
# $\nabla \frac{1}{k}\sum_{j=1}^{k} \bar\ell_j = \nabla \bar\ell$ when the micro-batches have the
# same number of tokens. The same update, within float32 rounding:

# %%
acc_model = GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=1, n_head=2, n_embd=32))
xb = torch.randint(0, 65, (8, 32), generator=torch.Generator().manual_seed(0))
_, big_loss = acc_model(xb, xb)
big_grads = torch.autograd.grad(big_loss, list(acc_model.parameters()))
for chunk in xb.chunk(4):
    _, micro_loss = acc_model(chunk, chunk)
    (micro_loss / 4).backward()
diff = max((p.grad - g).abs().max().item() for p, g in zip(acc_model.parameters(), big_grads))
print(f"one batch of 8 vs 4 micro-batches of 2: largest gradient difference {diff:.1e}")
assert diff < 1e-6

# %% [markdown]
# **Gradient clipping** rescales the whole gradient when its norm exceeds a threshold (1.0 here), so
# that one unlucky batch cannot throw the weights far away; with mixed precision the gradients are
# clipped after unscaling. The trainer applies all of this in `Trainer.train_step`, and the tests
# check each piece: the schedule at its boundaries, the decay groups, accumulation against one large
# batch.
#
# **NaN detection without slowing the GPU.** Reading the loss with `loss.item()` every step makes the
# CPU wait for the GPU, which stops it from queueing the next step's kernels. The trainer keeps each
# step's loss on the device and reads them all every `log_every` steps, in one transfer; the first
# non-finite one stops the run with the step it happened at, before any checkpoint is written.

# %% [markdown]
# ## 7.6 Checkpoints: crash-safe, no pickle, exact resume
#
# A checkpoint must hold everything the next step depends on: weights, AdamW's moments, the step (the
# schedule is a function of it), and the state of every random generator: the batch sampler's and
# the one dropout draws from. `lmbook.checkpoint` writes the weights as safetensors and the rest as
# tensors plus JSON, never as a pickle (loading a pickled `.pt` file from someone else can run any
# code), into a temporary folder that is renamed into place when complete, with a manifest of sizes
# and sha256 sums. Let us interrupt a small run and resume it:

# %%
text_train, text_val = data.shakespeare_split()
data_dir = scratch / "shakespeare_char"
meta = tokens.prepare_chars(text_train + text_val, data_dir)  # the same 90/10 split as shakespeare_split
print(f"{meta['vocab_size']} characters; {meta['train_tokens']:,} training and {meta['val_tokens']:,} "
      f"validation tokens in {(data_dir / 'train.bin').stat().st_size / 1e6:.1f} MB of uint16")


def tiny_config(out: str, **kw) -> TrainConfig:
    values = dict(data_dir=str(data_dir), out_dir=str(scratch / out), n_layer=2, n_head=2, n_embd=32,
                  block_size=32, dropout=0.1, batch_size=8, max_steps=40, warmup_steps=5, lr=3e-3,
                  eval_every=20, eval_windows=128, log_every=10, checkpoint_every=20, progress=False, seed=0)
    return TrainConfig(**(values | kw))


straight = Trainer(tiny_config("straight")).fit()


class Preempted(Exception):
    pass


crashing = Trainer(tiny_config("crash"))
original_step = Trainer.train_step


def preempt_at_step_30(self, batches):
    if self.step == 30:
        raise Preempted
    return original_step(self, batches)


Trainer.train_step = preempt_at_step_30
try:
    crashing.fit()
except Preempted:
    print("preempted at step 30; checkpoints on disk:", [p.name for p in checkpoint.list_checkpoints(scratch / "crash")])
finally:
    Trainer.train_step = original_step

resumed_trainer = Trainer(tiny_config("crash", resume="latest"))
print("resumed at step", resumed_trainer.step)
resumed = resumed_trainer.fit()
print("identical loss curve, bit for bit:", resumed.train_loss == straight.train_loss)
assert resumed.train_loss == straight.train_loss and resumed.eval_loss == straight.eval_loss

# %% [markdown]
# Dropout was on, so this also checks that the random state came back. Now damage the newest
# checkpoint the way a full disk would, by cutting its weights file in half: loading refuses it,
# names the file, and points at the checkpoint that is still good.

# %%
newest = checkpoint.latest_checkpoint(scratch / "crash")
weights_file = newest / "model.safetensors"
weights_file.write_bytes(weights_file.read_bytes()[: weights_file.stat().st_size // 2])
try:
    checkpoint.load_checkpoint(scratch / "crash", GPT(GPTConfig(vocab_size=65, block_size=32, n_layer=2, n_head=2, n_embd=32)))
except checkpoint.CheckpointError as err:
    print(str(err).replace(str(scratch), "<scratch>"))
print("still there:", [p.name for p in checkpoint.list_checkpoints(scratch / "crash")])

# %% [markdown]
# ## 7.7 A run on your machine, and the reference run on a GPU
#
# The same trainer now trains a character-level GPT on Shakespeare at this notebook's profile. On a
# GPU (the `gpu` profile) it is the reference run itself, `configs/shakespeare_char_gpu.json`; on a
# CPU it is a smaller model (nanoGPT's "baby GPT" for laptops, `configs/shakespeare_char_cpu.json`),
# trained here for 1,000 steps, about two minutes (the file itself asks for 2,000). From a shell,
# the full runs are one command each:
#
# ```bash
# python -m lmbook.trainer --config configs/shakespeare_char_cpu.json     # CPU
# python -m lmbook.trainer --config configs/shakespeare_char_gpu.json     # GPU: the reference run
# python -m lmbook.trainer --config configs/shakespeare_char_gpu.json --max_steps 800 --dtype float32
# ```
#
# Flags override the file; every setting is checked (a misspelt name gets a "did you mean").

# %%
cpu_config = json.loads((ROOT / "configs" / "shakespeare_char_cpu.json").read_text())
profile_overrides = env.pick(
    test=dict(n_layer=2, n_head=2, n_embd=32, block_size=32, batch_size=8, max_steps=150, warmup_steps=20,
              eval_every=50, eval_windows=256, log_every=25),
    cpu=dict(max_steps=1000, eval_every=250, eval_windows=512),
    gpu=json.loads((ROOT / "configs" / "shakespeare_char_gpu.json").read_text()),
)
mine = TrainConfig.from_dict(cpu_config | profile_overrides | {
    "data_dir": str(data_dir), "out_dir": str(scratch / "mine"), "progress": False})
my_trainer = Trainer(mine)
my_metrics = my_trainer.fit()
info = my_metrics.info
print(f"{info['params']:,} parameters on {info['device']} ({info['dtype']}, compile {info['compile']}); "
      f"{my_trainer.step} steps of {info['tokens_per_step']:,} tokens in {my_metrics.train_seconds:.0f} s of training")
print(f"median {np.median(my_metrics.tokens_per_second):,.0f} tokens/s"
      + (f", MFU {np.median([m for m in my_metrics.mfu if m]):.1%}" if any(my_metrics.mfu) else " (MFU: no known peak for this device)"))
print(f"val loss: {my_metrics.eval_loss['val'][0]:.4f} at step 0 -> {my_metrics.eval_loss['val'][-1]:.4f} at step {my_trainer.step}")
assert my_metrics.eval_loss["val"][-1] < my_metrics.eval_loss["val"][0] - 1.0

# %% [markdown]
# ### The reference run
#
# The reference model has nanoGPT's shape (6 layers, width 384, context 256), and its run is a
# committed folder, `runs/shakespeare_char_gpu/`: the weights in bf16 (`model.safetensors`, 21 MB),
# `config.json` (the model, the tokenizer, every training setting and the weights' sha256),
# `metrics.json` (every step's loss, the evaluations, tokens/second, the GPU, torch and CUDA
# versions, the command) and `samples.txt`. One command on a GPU re-makes it, and
# `bash bench/gpu_all.sh` re-makes every GPU number of this chapter (the sweep below only with
# `SWEEP=1`).
#
# Its schedule is not nanoGPT's. nanoGPT trains 5,000 steps of 64 sequences and keeps the checkpoint
# with the best validation loss, 1.4697; a reader of nanoGPT reports that loss bottoming out near
# step 1,750 and rising after it ([nanoGPT issue 211](https://github.com/karpathy/nanoGPT/issues/211)):
# the model starts to memorise its million characters. So the
# schedule was chosen by measurement, in two rounds on the GPU. First a sweep of four settings
# (batch, steps, learning rate, dropout), run side by side on the same GPU, so that their losses are
# what each would give alone but their times are not; then the best of them, `b128_s2000_d30`, alone.
# In the sweep, that setting's validation loss was lowest at step 1,600 of 2,000 and rose after it;
# alone, it again ended above its lowest. So a last run, the reference run, ends its cosine at step
# 1,600. The next cell prints both rounds from `bench/results/shakespeare_char_gpu_sweep.json`.

# %%
ref_dir = ROOT / "runs" / "shakespeare_char_gpu"
sweep = json.loads((ROOT / "bench" / "results" / "shakespeare_char_gpu_sweep.json").read_text())
print(f"the sweep on one {sweep['device']} (torch {sweep['torch']}, CUDA {sweep['cuda']}), each over "
      f"configs/nanogpt_shakespeare_char.json:")
print(f"  {'setting':16s} {'batch':>5s} {'steps':>5s} {'lr':>7s} {'dropout':>7s} {'tokens':>7s} {'lowest val (step)':>18s} {'final val':>9s}")
for r in sweep["sweep"]:
    st = r["settings"]
    print(f"  {r['name']:16s} {st['batch_size']:5d} {st['max_steps']:5d} {st['lr']:7.1e} {st['dropout']:7.2f} "
          f"{r['tokens'] / 1e6:6.1f}M {r['best_val']:11.4f} ({r['best_step']:4d}) {r['final_val']:9.4f}")
for label, run in [("the chosen setting alone", sweep["earlier_references"][-1]),
                   ("the reference run (cosine ending at step 1,600)", sweep["reference"])]:
    print(f"{label}: {run['steps']} steps, val {run['val_loss']:.4f} (lowest {run['best_val']:.4f}) after "
          f"{run['train_seconds']:.1f} s of training, of which {run['first_step_seconds']:.1f} s the first step "
          f"(compilation)")

ref_metrics = json.loads((ref_dir / "metrics.json").read_text())
ri = ref_metrics["info"]
ref_tokens = ref_metrics["eval_step"][-1] * ri["tokens_per_step"]
print(f"\nreference run: {ri['device']}, torch {ri['torch']}, CUDA {ri['cuda']}, {ri['date']}; `{ri['command']}`")
print(f"  val loss {ref_metrics['eval_loss']['val'][-1]:.4f} after {ref_metrics['eval_step'][-1]:,} steps "
      f"({ref_tokens / 1e6:.1f}M tokens) and {ref_metrics['train_seconds']:.1f} s of training, "
      f"{ri['first_step_seconds']:.1f} s of it the first step; median "
      f"{np.median(ref_metrics['tokens_per_second'][1:]) / 1e6:.2f}M tokens/s, MFU "
      f"{np.median(ref_metrics['mfu'][1:]):.1%}")

# %% [markdown]
# The goal set for this run was a validation loss of at most 1.45 in at most 60 seconds of training
# on one H100-class GPU, against nanoGPT's 1.4697 in about three minutes on an A100. The run above
# meets it on an H200 with a small margin in loss (1.4498) and a large one in time: half of its
# training time is the first step, in which `torch.compile` builds its kernels. The earlier run of
# the same setting for 2,000 steps spent under 2 seconds on its first step, most likely because the
# sweep, run before it on the same machine, had filled the compiler's cache. Either way compilation
# is a fixed cost that does not grow with the length of the run. Ending the cosine
# at step 1,600 did not reach the lowest points of the 2,000-step runs: 1.4498, against 1.4439 for
# that setting in the sweep and 1.4407 alone. But those two runs, the same setting and the same seed,
# already differ by 0.003 in their lowest loss (the GPU's kernels are not bit-for-bit reproducible),
# so one run of each cannot tell the shorter cosine's gap of 0.006 to 0.009 from run-to-run noise; a
# few seeds of each would.

# %% [markdown]
# The reference run beats chapter 1's best n-gram, a Kneser-Ney 6-gram on the same split, and it does
# not need a GPU to be *used*: its weights load on any machine (below). The next cell prints the
# n-gram's loss, from `bench/ngram_baselines.py`.

# %%
ngram_baseline = json.loads((ROOT / "bench" / "results" / "ngram_baselines.json").read_text())["tinyshakespeare"]
print(f"Kneser-Ney {ngram_baseline['best_order']}-gram (chapter 1), same split: val {ngram_baseline['best_val_loss']:.4f}; "
      f"reference run: {ref_metrics['eval_loss']['val'][-1]:.4f}")

# %% [markdown]
# ### The book's CPU model
#
# A reader without a GPU gets a trained model too. `runs/shakespeare_char/` was trained on the
# 2-core CPU this book is built on, by one command (`make models` runs it and the Tang poems model):
#
# ```bash
# python -m lmbook.trainer --config configs/shakespeare_char.json
# ```
#
# Its budget was an hour of that CPU. What fits in an hour was measured first: a sweep of short runs
# (`python bench/cpu_sweep.py`, a budget of four minutes of training each) compared three settings,
# four and six layers of width 256 at a learning rate of 0.001 and the four-layer model at 0.002,
# and the next cell prints it. Each run's number of steps (and so its schedule) is sized to the
# budget from a short probe of its speed (200 at least), so the times differ a little (234 to
# 256 s). The four-layer model beat the six-layer one (2.1745 against 2.3587) with 309 steps to
# 200: about 1.4 times as many per second, so its lead in steps comes mostly from its speed, not
# from its 22 s of extra time. A learning rate of 0.002 beat 0.001 (2.0124 against 2.1745), in 16 s
# less. A four-minute run
# cannot say how the settings rank after an hour (a short budget favours small models and large
# learning rates), so the table is a guide, not a proof. `configs/shakespeare_char.json` takes the
# best of the three (four layers of width 256, learning rate 0.002) for 4,200 steps, and trains
# with bf16 autocast (the processor has bf16 instructions) and `torch.compile`, both of which the
# CPU rows of the speed-up table below find faster.

# %%
cpu_sweep = json.loads((ROOT / "bench" / "results" / "shakespeare_char_cpu_sweep.json").read_text())
print(f"short runs of equal wall time ({cpu_sweep['machine']}):")
for name, r in cpu_sweep["runs"].items():
    st = r["settings"]
    print(f"  {name:20s} {st['n_layer']} x {st['n_embd']}, lr {st.get('lr', 1e-3):.0e}: {r['params'] / 1e6:.1f}M "
          f"parameters, {r['steps']} steps ({r['tokens'] / 1e6:.2f}M characters) in {r['train_seconds']:.0f} s -> "
          f"val {r['val'][-1]:.4f}")
cpu_metrics = models.metrics("shakespeare_char")
ci = cpu_metrics["info"]
cpu_tokens = cpu_metrics["eval_step"][-1] * ci["tokens_per_step"]
print(f"\nruns/shakespeare_char: {ci['params']:,} parameters, `{ci['command']}`, {ci['date']}")
print(f"  {cpu_metrics['eval_step'][-1]:,} steps ({cpu_tokens / 1e6:.1f}M characters) in "
      f"{cpu_metrics['train_seconds'] / 60:.0f} minutes of training on the {ci['cpu_count']}-core CPU "
      f"({ci['threads']} threads, {ci['dtype']}, compile {ci['compile']}, torch {ci['torch']})")
print(f"  val loss {cpu_metrics['eval_loss']['val'][-1]:.4f}; Kneser-Ney {ngram_baseline['best_order']}-gram on the "
      f"same split: {ngram_baseline['best_val_loss']:.4f}; reference run: {ref_metrics['eval_loss']['val'][-1]:.4f}")
print("  val at each evaluation: " + ", ".join(f"{v:.4f} ({s})" for s, v in
                                             zip(cpu_metrics["eval_step"], cpu_metrics["eval_loss"]["val"])))
print("  train at each evaluation: " + ", ".join(f"{v:.4f}" for v in cpu_metrics["eval_loss"]["train"]))

# %% [markdown]
# Under an hour of a 2-core CPU (49 minutes in training steps) gives a GPT that beats the best
# n-gram clearly (1.4762 against 1.5387 nats per character), and lands within 0.03 of the GPU
# reference run, which saw three times as many characters through a model more than three times as
# large. Its last evaluations show how the hour ends: as the cosine brought the learning rate down
# to its floor at step 4,200, the validation loss stopped falling (1.4754 at step 4,000, 1.4762 at
# the end) while the training loss kept going down, and the gap between the two grew from 0.19 at
# step 1,000 to 0.28 at the end. Whether a longer schedule would still help this model, one run
# cannot say; the growing gap says that more and more of what it learns is the training text
# itself. The reference run shows what does better, a larger model on more characters: by the count
# of section 7.1 (about $6N$ per character) that is about ten times this run's arithmetic, so many
# hours of this CPU.

# %% [markdown]
# The curves below put the reference run and the CPU model beside yours, against the number of
# characters seen (runs with different batch sizes compare fairly only on that axis). Each
# validation curve starts with the evaluation at step 0 (about 4.17 for the CPU runs), at zero
# characters, which a logarithmic axis places infinitely far to the left: the flat stretch at the
# left end of each validation curve is the line drawn towards that point, not a plateau.

# %%
fig, ax = plt.subplots(figsize=(8, 4))
runs = [("your run", {"eval_step": my_metrics.eval_step, "eval_loss": my_metrics.eval_loss, "step": my_metrics.step,
                      "train_loss": my_metrics.train_loss, "info": info}),
        ("runs/shakespeare_char (CPU)", cpu_metrics),
        (f"runs/shakespeare_char_gpu ({ri['device']})", ref_metrics)]
for label, m in runs:
    per_step = m["info"]["tokens_per_step"] / 1e6
    w = max(1, min(50, len(m["train_loss"]) // 20))
    smooth = np.convolve(m["train_loss"], np.ones(w) / w, mode="valid")
    line, = ax.plot(np.array(m["step"][w - 1:]) * per_step, smooth, lw=1, alpha=0.6,
                    label=f"{label}: train (mean of {w} steps)")
    ax.plot(np.array(m["eval_step"]) * per_step, m["eval_loss"]["val"], "o-", ms=3, color=line.get_color(),
            label=f"{label}: val")
ax.axhline(ngram_baseline["best_val_loss"], ls="--", color="grey", lw=1,
           label=f"Kneser-Ney {ngram_baseline['best_order']}-gram val (chapter 1)")
ax.axhline(1.4697, ls=":", color="k", lw=1, label="nanoGPT shakespeare-char val (1.4697)")
ax.set(xlabel="characters seen (millions)", ylabel="loss (nats per character)", xscale="log", ylim=(0.8, 4.5),
       title="character-level GPT on tinyshakespeare")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# Samples: first from your model, then from the two committed models, loaded on this machine by name
# with `lmbook.models.load` from their bf16 safetensors files (no GPU is needed to *use* a model
# trained on one; the loader checks each file against the sha256 in its `config.json`).

# %%
def sample(model: GPT, chars: list[str], n: int = 300) -> str:
    start = torch.tensor([[chars.index("\n")]], device=next(model.parameters()).device)
    out = model.generate(start, n, temperature=0.8, top_k=20, generator=None)
    return tokens.decode_chars(out[0].tolist(), chars)


torch.manual_seed(0)
print("--- your model ---")
print(sample(my_trainer.raw_model.eval(), meta["chars"]))
for name in ("shakespeare_char", "shakespeare_char_gpu"):
    committed, committed_meta = models.load(name, device=device)
    print(f"--- runs/{name} ---")
    print(sample(committed, committed_meta["chars"]))

# %% [markdown]
# ### The speed-up table
#
# `bench/bench_trainer.py` measures tokens per second, peak memory and MFU as each speed-up is switched
# on, at GPT-2 small's shape on a GPU (12 layers, width 768, context 1024, micro-batch 16), and our GPT
# against Hugging Face's `GPT2LMHeadModel` of the same shape, both trained by the same `Trainer` with
# the same settings. On a CPU the script runs at a small shape. The committed results of both are
# printed below, each with the machine it comes from.

# %%
def show_bench(results: dict) -> None:
    print(f"{results['device']} | {results['date']} | torch {results['torch']} | `{results['command']}`")
    print(f"shape: {results['shape']}")
    if results.get("matmul_bf16_tflops"):
        print(f"dense bf16 peak {results['datasheet_bf16_tflops']} TFLOP/s (data sheet); one 8192^3 bf16 matrix "
              f"product measured {results['matmul_bf16_tflops']:.0f} TFLOP/s")
    base = None
    for row in results["ablation"]:
        if "skipped" in row:
            print(f"  {row['name']:28s} skipped: {row['skipped']}")
        elif "error" in row:
            print(f"  {row['name']:28s} failed: {row['error']}")
        else:
            base = base or row["tokens_per_second"]
            mem = f"{row['peak_memory_gb']:6.2f} GB" if row["peak_memory_gb"] is not None else "      —  "
            mfu = f"{row['mfu']:6.1%}" if row["mfu"] is not None else "    —"
            print(f"  {row['name']:28s} {row['tokens_per_second']:12,.0f} tok/s {row['tokens_per_second'] / base:6.2f}x  {mem}  MFU {mfu}")
    hf = results["hf"]
    if hf.get("ratio"):
        print(f"  lmbook GPT {hf['lmbook']['tokens_per_second']:,.0f} tok/s vs Hugging Face GPT2LMHeadModel "
              f"{hf['hf']['tokens_per_second']:,.0f} tok/s: ratio {hf['ratio']:.2f} (settings {hf['settings']})")


bench_results = {kind: json.loads((ROOT / "bench" / "results" / f"trainer_{kind}.json").read_text())
                 for kind in ("gpu", "cpu")}
for kind, results in bench_results.items():
    print(f"=== {kind.upper()} measurements ===")
    show_bench(results)

# %%
rows = [r for r in bench_results["gpu"]["ablation"] if "tokens_per_second" in r]
fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
names = [r["name"].replace("+ ", "") for r in rows]
axes[0].barh(names, [r["tokens_per_second"] / 1e3 for r in rows], color="C0")
axes[0].set(xlabel="thousand tokens per second", title=f"GPT-2 small shape, one {bench_results['gpu']['device']}")
axes[1].barh(names, [r["peak_memory_gb"] for r in rows], color="C1")
axes[1].set(xlabel="peak memory (GB)", title="memory")
for ax in axes:
    ax.invert_yaxis()
for k, r in enumerate(rows):
    axes[0].text(r["tokens_per_second"] / 1e3, k, f" MFU {r['mfu']:.0%}", va="center", fontsize=8)
axes[1].set_yticklabels([])
plt.tight_layout()
plt.show()

# %% [markdown]
# How to read the table, row by row on the GPU. Plain fp32 arithmetic leaves the tensor cores idle:
# 3% of the bf16 peak. TF32 lets the matrix products use them, at a 10-bit mantissa (1.83 times the
# speed). bf16 autocast adds little on top (2.02 times the fp32 row, about 10% over TF32) while the
# attention is written out: the $T \times T$ score matrices still go through memory several times
# per layer, and bf16 only halves their size, which is what the memory column shows (54 to 37 GB).
# The next row shows what they cost: flash attention removes them altogether, 3.3 times faster again
# and 17 GB. Compilation then fuses the elementwise work around the matrix products (1.8 times), and
# a fused optimizer saves a little more (about 4%). The last row, twice the micro-batch, gives the
# GPU larger matrix products to work on: 5.5% more tokens per second, for almost twice the
# memory. On a CPU there are no tensor cores: bf16 helps only where the processor has bf16
# instructions (the CPU of the table evidently has them: 1.70 times), and compilation pays once it is done
# (3.67 times against 1.47 without it); it needs a C++ compiler, and its first step is a cost that a
# short run does not earn back, which is why the trainer leaves it off for CPU runs under 500 steps.
# At that small shape, sdpa and the fused
# optimizer do not pay on the CPU: each of their rows is slower than the row above it.
#
# Our GPT trains 1.13 times as fast as Hugging Face's GPT-2 of the same shape, with the same trainer
# (1.22 times on the CPU, at its small shape in float32): the two compute the same function, so the
# difference is in how each is written; this measurement does not say which part costs the other its
# extra time. MFU, 38 to 40% of the data sheet's dense bf16 peak, sounds low; but one large bf16
# matrix product alone, the best case, reaches 79% of that peak on this GPU, so a whole training step
# reaches about half of what the hardware delivers in practice. The table does not say where the rest
# goes; the candidates are the parts that are not matrix products (normalisation, softmax, the loss
# over 50,257 outputs, the optimizer) and matrices too small to fill the GPU, and a profiler trace
# of one step would tell them apart.
#
# Two honest caveats about the MFU column. The FLOP count includes the full $T \times T$ attention
# products, as a dense kernel computes them; a causal flash kernel skips the masked half, so its
# true utilisation is a little lower than the reported one. And the peak is the dense bf16 one for
# every row, so the fp32 rows show how much of the GPU fp32 leaves idle.

# %% [markdown]
# ## 7.8 More than one GPU
#
# The trainer runs unchanged under `torchrun`, which starts one process per GPU and sets the
# variables (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`) that the trainer reads:
#
# ```bash
# torchrun --standalone --nproc_per_node 8 -m lmbook.trainer --config configs/shakespeare_char_gpu.json
# ```
#
# Each process holds a full copy of the model, wrapped in PyTorch's `DistributedDataParallel`: after
# each backward pass the gradients are averaged across processes (NCCL on GPUs, gloo on CPUs), so
# every copy takes the same step. Every process draws the offsets of the whole global batch from the
# same seeded generator and keeps its own slice, so two processes with micro-batch 32 see exactly the
# examples one process with batch 64 sees; a test launches two CPU processes and checks that the loss
# curve matches the single-process run to float32 rounding. During gradient accumulation, the
# averaging is skipped (`no_sync`) until the last micro-batch. Data parallelism stops helping when
# the model no longer fits on one GPU; then the parameters, gradients and optimizer state are
# sharded across GPUs (ZeRO, PyTorch's FSDP), the next step beyond this book.

# %% [markdown]
# ## 7.9 How long will training take?
#
# The question every practitioner asks first has an answer in one line. Training on $D$ tokens costs
# $D \cdot C_{\text{token}} \approx 6ND$ FLOPs; at a utilisation MFU of a device with peak $P$ FLOP/s,
#
# $$
# \text{time} \approx \frac{D \cdot C_{\text{token}}}{\text{MFU} \cdot P}.
# $$

# %% tags=["nbval-check-output"]
def training_hours(c: GPTConfig, tokens_: float, mfu: float, peak_tflops: float, gpus: int = 1) -> float:
    return tokens_ * flops_per_token(c) / (mfu * peak_tflops * 1e12 * gpus) / 3600


D_ref = reference.max_steps * reference.batch_size * reference.block_size
print(f"shakespeare-char, {D_ref / 1e6:.0f}M tokens, one H100 at 30% MFU: "
      f"{3600 * training_hours(ref_model, D_ref, 0.30, 989.4):.0f} s")
print(f"measured: the reference run trained on {ref_tokens / 1e6:.0f}M tokens in "
      f"{ref_metrics['train_seconds'] - ri['first_step_seconds']:.0f} s of steps (after compiling) on an {ri['device']}, "
      f"at a median MFU of {np.median(ref_metrics['mfu'][1:]):.0%}")
print(f"GPT-2 small, 10B tokens, 8 H100s at 45% MFU: {training_hours(gpt2_small, 10e9, 0.45, 989.4, gpus=8):.1f} h")
print(f"GPT-2 small, 10B tokens, a laptop CPU at 0.5 TFLOP/s: {training_hours(gpt2_small, 10e9, 1.0, 0.5) / 24:.0f} days")

# %% [markdown]
# ## 7.10 The running table
#
# The character-level Shakespeare models of this chapter and the book's committed ones, measured on
# the same validation split (the last 10% of tinyshakespeare), each with its budget: characters seen
# in training, and the training time on the device it ran on. The GPT rows are the trainer's own
# evaluations: each model scores the split in windows of its own context, the committed models all
# of it, this notebook's run 512 windows spread evenly over it.

# %%
table = [(f"this notebook's run ({env.profile()} profile)", my_metrics.eval_loss["val"][-1],
          my_trainer.step * info["tokens_per_step"], f"{my_metrics.train_seconds:.0f} s on {info['device']}"),
         ("Kneser-Ney 6-gram (chapter 1)", ngram_baseline["best_val_loss"], ngram_baseline["train_chars"],
          "counts, no gradient steps"),
         ("the book's CPU model, runs/shakespeare_char", cpu_metrics["eval_loss"]["val"][-1], cpu_tokens,
          f"{cpu_metrics['train_seconds'] / 60:.0f} min on the {ci['cpu_count']}-core CPU"),
         ("reference run, runs/shakespeare_char_gpu", ref_metrics["eval_loss"]["val"][-1], ref_tokens,
          f"{ref_metrics['train_seconds']:.0f} s on {ri['device']}"),
         ("nanoGPT shakespeare-char (its README)", 1.4697, 5000 * 64 * 256, "about 3 min on an A100")]
print(f"{'model':42s} {'val loss':>9s} {'characters':>11s}   training")
for label, loss, seen, note in table:
    print(f"{label:42s} {loss:9.4f} {seen / 1e6:10.1f}M   {note}")
print(f"\nthis notebook ran in {time.perf_counter() - chapter_start:.0f} s at the {env.profile()} profile")

# %% [markdown]
# What to take away:
#
# - Count before you optimise: $6N + 12LTd$ FLOPs per token, and MFU against the right peak for the
#   device and the format.
# - bf16 has float32's range, so unlike fp16 it needs no loss scaling; keep master weights and
#   optimizer state in float32 and let autocast choose per operation.
# - Flash attention removes the $T \times T$ activations and gives the same output up to rounding;
#   compilation fuses the memory-bound elementwise work.
# - Per parameter, mixed-precision AdamW costs 16 bytes; for small models the activations dominate.
# - A run worth its GPU hours has decay groups, warm-up and cosine decay, clipping, NaN detection,
#   and checkpoints that are atomic, pickle-free and resume exactly.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (autograded).** The cosine schedule starts decaying right after the warm-up. The
# *warm-up, stable, decay* (WSD) schedule of several recent models holds the peak rate instead and
# decays only at the end, so that a run can be continued from any checkpoint of its long stable
# phase. Write `wsd_lr(step, lr, min_lr, warmup_steps, decay_steps, max_steps)`: the linear warm-up
# of section 7.5 ($\eta\,(t+1)/W$ for $t < W$), then $\eta$ until step $S - D$ (with $D$ =
# `decay_steps`, $S$ = `max_steps`), then a straight line from $\eta$ at step $S - D$ down to
# $\eta_{\min}$ at step $S$, and $\eta_{\min}$ after. The hidden tests take `lr_schedule` away.

# %%
def wsd_lr(step: int, lr: float, min_lr: float, warmup_steps: int, decay_steps: int, max_steps: int) -> float:
    ### BEGIN SOLUTION
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    if step >= max_steps:
        return min_lr
    decay_start = max_steps - decay_steps
    if step < decay_start:
        return lr
    return lr - (lr - min_lr) * (step - decay_start) / decay_steps
    ### END SOLUTION

# %%
# Autograded test: ex1_wsd (2 points)
_kw = dict(lr=6e-4, min_lr=6e-5, warmup_steps=10, decay_steps=20, max_steps=100)
assert abs(wsd_lr(0, **_kw) - 6e-5) < 1e-12, "step 0 of the warm-up should already use lr / warmup_steps"
assert abs(wsd_lr(9, **_kw) - 6e-4) < 1e-12, "the last warm-up step (W - 1) should reach lr"
assert abs(wsd_lr(50, **_kw) - 6e-4) < 1e-12, "between the warm-up and the decay the rate stays at lr"
assert abs(wsd_lr(90, **_kw) - 3.3e-4) < 1e-12, "halfway through the decay the rate is (lr + min_lr) / 2"
assert abs(wsd_lr(100, **_kw) - 6e-5) < 1e-12 and abs(wsd_lr(500, **_kw) - 6e-5) < 1e-12, "end at min_lr and stay there"
### BEGIN HIDDEN TESTS
from lmbook import grading

with grading.without("lr_schedule", "lmbook.trainer.lr_schedule"):
    _kw2 = dict(lr=1e-3, min_lr=0.0, warmup_steps=5, decay_steps=40, max_steps=200)
    for _s in range(0, 230, 3):
        _expected = (1e-3 * (_s + 1) / 5 if _s < 5 else 1e-3 if _s < 160 else 0.0 if _s >= 200
                     else 1e-3 * (200 - _s) / 40)
        assert abs(wsd_lr(_s, **_kw2) - _expected) < 1e-12, f"step {_s}: expected {_expected:.3e}"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2 (autograded).** Rounding to the nearest has a bias when updates are small: $1 + 2^{-9}$
# rounds to 1 in bfloat16, every time, so an update of $2^{-9}$ to a weight of 1 is lost every time
# (section 7.2). *Stochastic rounding* removes the bias: it rounds to the neighbour further from zero
# with a probability equal to the distance from the neighbour nearer to zero, as a fraction of the
# gap between the two, so that the expected result is the input itself. Write
# `stochastic_bfloat16(x, generator)`: for a float32 tensor of finite values, return float32 values
# that are bfloat16 numbers, each the lower or the upper bfloat16 neighbour of its input (the input
# itself when it is a bfloat16 number), drawn with those probabilities from
# `torch.rand(x.shape, generator=generator)`, with integer operations on the bits (a bfloat16
# number is the top 16 bits of a float32; no `.bfloat16()`).

# %%
def stochastic_bfloat16(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    ### BEGIN SOLUTION
    i = x.view(torch.int32)
    dropped = (i & 0xFFFF).float()               # the bits bfloat16 drops: the distance to the value cut toward zero
    away = torch.rand(x.shape, generator=generator) * 65536 < dropped  # probability dropped / 2^16
    i = (i & ~0xFFFF) + away.to(torch.int32) * 0x10000  # cut toward zero, or one bfloat16 step away from zero
    return i.view(torch.float32)
    ### END SOLUTION

# %%
# Autograded test: ex2_stochastic (2 points)
_g = torch.Generator().manual_seed(0)
_x = torch.full((200_000,), 1 + 2.0 ** -9)
_y = stochastic_bfloat16(_x, _g)
assert set(_y.unique().tolist()) == {1.0, 1 + 2.0 ** -7}, "each value goes to one of its two bfloat16 neighbours"
assert abs(_y.mean().item() - (1 + 2.0 ** -9)) < 4e-5, \
    "1 + 2^-9 lies a quarter of the way from 1 to 1 + 2^-7: round up with probability 1/4, so the mean is the input"
_exact = torch.tensor([1.0, -2.5, 0.0, 3 * 2.0 ** -20])
assert torch.equal(stochastic_bfloat16(_exact, _g), _exact), "bfloat16 numbers stay as they are"
### BEGIN HIDDEN TESTS
from lmbook import grading

_v = torch.randn(1000, generator=torch.Generator().manual_seed(1)) * 100
_cut = (_v.abs().view(torch.int32) & ~0xFFFF).view(torch.float32)   # |v| cut toward zero to a bfloat16
_gap = (_cut.view(torch.int32) + 0x10000).view(torch.float32) - _cut  # one bfloat16 step there
with grading.without("round_mantissa"):
    _draws = torch.stack([stochastic_bfloat16(_v, _g) for _ in range(400)])  # (400, 1000)
    assert torch.equal(_draws, _draws.bfloat16().float()), "every result must be a bfloat16 number"
    assert ((_draws - _v).abs() <= _gap).all(), "each result must be one of the input's two neighbours"
    assert ((_draws.mean(0) - _v).abs() / _gap).mean() < 0.05, "the mean of many roundings should be the input"
    _neg = stochastic_bfloat16(torch.full((200_000,), -(1 + 2.0 ** -9)), _g)
    assert abs(_neg.mean().item() + (1 + 2.0 ** -9)) < 4e-5, "negative values: the same rule, mirrored"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3 (autograded).** Write `mfu(tokens_per_second, config, peak_tflops)` from the formula of
# section 7.1, counting the FLOPs per token yourself, $6N + 12LTd$ with $N = 12Ld^2 + Vd$ (the hidden
# tests take `flops_per_token` and `param_count` away). Then: an A100 trains GPT-2 small at 150,000
# tokens/s; nanoGPT's A100 constant would report what MFU for the same speed on an H100, and what is
# the true one?

# %%
def mfu(tokens_per_second: float, config: GPTConfig, peak_tflops: float) -> float:
    ### BEGIN SOLUTION
    L, d, V, T = config.n_layer, config.n_embd, config.vocab_size, config.block_size
    flops = 6 * (12 * L * d * d + V * d) + 12 * L * T * d  # the blocks and the tied head, plus attention
    return tokens_per_second * flops / (peak_tflops * 1e12)
    ### END SOLUTION


### BEGIN SOLUTION
print(f"A100 constant: {mfu(150_000, gpt2_small, 312):.1%}; true H100 MFU: {mfu(150_000, gpt2_small, 989.4):.1%}")
### END SOLUTION

# %%
# Autograded test: ex3_mfu (2 points)
assert abs(mfu(1e5, gpt2_small, 312) - 1e5 * flops_per_token(gpt2_small) / 312e12) < 1e-12, \
    "MFU = tokens/s x FLOPs per token / (peak TFLOP/s x 1e12)"
### BEGIN HIDDEN TESTS
from lmbook import grading

_c = GPTConfig(vocab_size=500, block_size=64, n_layer=3, n_head=2, n_embd=96)
_expected = 2e4 * flops_per_token(_c) / 50e12
with grading.without("flops_per_token", "lmbook.gpt.flops_per_token", "param_count", "lmbook.gpt.param_count"):
    assert abs(mfu(2e4, _c, 50.0) - _expected) < 1e-12, \
        "count 6N + 12LTd yourself, with N = 12Ld^2 + Vd (the embedding look-ups, biases and LayerNorms do not count)"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 4.** Gradient accumulation with padding: when the micro-batches have different numbers of
# target tokens (some positions carry the ignore index −100), dividing each micro-batch's mean loss
# by $k$ no longer gives the gradient of the mean over the whole batch. Show it with two micro-batches
# of unequal token counts, and fix it.

# %%
### BEGIN SOLUTION
g_model = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=1, n_head=2, n_embd=16))
xa, xb_ = torch.randint(0, 65, (2, 16)), torch.randint(0, 65, (2, 16))
ya, yb = xa.clone(), xb_.clone()
yb[:, 4:] = -100  # the second micro-batch has only 8 target tokens, the first 32
logits = torch.cat([g_model(xa)[0], g_model(xb_)[0]])
full = F.cross_entropy(logits.flatten(0, 1), torch.cat([ya, yb]).flatten(), ignore_index=-100)
wrong = (g_model(xa, ya)[1] + g_model(xb_, yb)[1]) / 2
n_a, n_b = (ya != -100).sum(), (yb != -100).sum()
right = (g_model(xa, ya)[1] * n_a + g_model(xb_, yb)[1] * n_b) / (n_a + n_b)
print(f"mean over all tokens {full.item():.5f}; mean of micro-batch means {wrong.item():.5f}; token-weighted {right.item():.5f}")
# Weight each micro-batch's mean by its number of target tokens (or sum the losses and divide by the
# total count of the whole batch, known in advance).
### END SOLUTION

# %% [markdown]
# **Exercise 5.** Weight decay on embeddings. Train the small model of section 7.6 twice for a few
# hundred steps, once with the trainer's groups and once with weight decay on *every* parameter (write
# your own `make_optimizer`), and compare the validation losses and the norms of the rows of the
# embedding matrix for rare and frequent characters. What does the decay do to the rare ones?

# %%
### BEGIN SOLUTION
counts = np.bincount(tokens.read_tokens(data_dir / "train.bin"), minlength=meta["vocab_size"])
rare, frequent = np.argsort(counts)[:5], np.argsort(counts)[-5:]
wd_steps = env.pick(test=60, cpu=300, gpu=300)
for decay_everything in (False, True):
    t = Trainer(tiny_config(f"wd_{decay_everything}", max_steps=wd_steps, weight_decay=0.5, lr=3e-3, dropout=0.0,
                            checkpoint_every=0, eval_every=wd_steps))
    if decay_everything:
        t.optimizer = torch.optim.AdamW(t.raw_model.parameters(), lr=3e-3, weight_decay=0.5, betas=(0.9, 0.99))
    m = t.fit()
    emb = t.raw_model.transformer.wte.weight.detach()
    print(f"decay on everything={decay_everything}: val {m.eval_loss['val'][-1]:.4f}; embedding row norms: "
          f"rare {emb[rare].norm(dim=1).mean():.3f}, frequent {emb[frequent].norm(dim=1).mean():.3f}")
# Decay on every parameter shrinks the rows of the rare characters by a few percent and those of the
# frequent ones barely: a rare character's row gets an input-side gradient only in the few steps
# whose batch holds it (and from the tied output layer mostly a push of its logit down), while the
# decay pulls it towards zero at every step; a frequent character's row is pulled back by its
# gradient all the time. The validation loss is worse with decay on everything, but this pair of
# runs cannot say how much of that comes from the embeddings: the second run also decays the
# position embeddings, the LayerNorm gains and the biases. Over a few hundred steps the effect on
# the rows is small; the pull acts at every step, so it should grow with the length of the run.
### END SOLUTION

# %% [markdown]
# **Exercise 6.** Loss scaling by hand. In float16, find the smallest power-of-two loss scale $S$ for
# which a gradient of $10^{-9}$ survives the cast (is not zero), and the largest $S$ for which a
# gradient of $0.1$ does not overflow. Why does `GradScaler` start high and halve $S$ after an overflow
# rather than pick one $S$ for the whole run?

# %%
### BEGIN SOLUTION
smallest = next(2 ** e for e in range(60) if torch.tensor(1e-9 * 2 ** e).half().item() != 0)
largest = max(2 ** e for e in range(60) if math.isfinite(torch.tensor(0.1 * 2 ** e).half().item()))
print(f"S >= 2^{int(math.log2(smallest))} keeps 1e-9; S <= 2^{int(math.log2(largest))} keeps 0.1 finite")
# The range of gradient magnitudes drifts during training (large early, small late), and fp16 has only
# about 2^40 between its smallest subnormal and its largest number: a dynamic scale follows the drift,
# skipping the few steps that overflow.
### END SOLUTION

# %% [markdown]
# **Exercise 7 (GPU).** The reference run reached 1.4498 in 36.6 s of training on an H200, half of it
# compiling (sections 7.7 and 7.9 printed its first step and its steps after compiling). The sweep
# file also has the run's wall time, from start to end: from it and the run's `metrics.json` (no GPU
# needed), work out how much of the wall time was neither compilation nor training steps, and what
# it went to (evaluations, start-up). Then estimate with the formula of section 7.9 how long the same
# 52M characters would take at the MFU of the speed-up table's best row, and say which two changes
# would bring the time to 1.45 down most on your GPU.

# %%
### BEGIN SOLUTION
first = ri["first_step_seconds"]
steps_time = ref_metrics["train_seconds"] - first
wall = sweep["reference"]["wall_seconds"]
print(f"compiling {first:.1f} s, training steps {steps_time:.1f} s, everything else {wall - first - steps_time:.1f} s "
      f"of {wall:.0f} s wall")
best_mfu = max(r["mfu"] for r in rows)
print(f"at the MFU of the best row ({best_mfu:.0%}) the steps would take "
      f"{3600 * training_hours(ref_model, ref_tokens, best_mfu, ri['peak_tflops_bf16']):.1f} s instead of {steps_time:.1f} s")
# This model is small: its matrix products are too small to fill the GPU (its MFU is well below the
# GPT-2-small row's), so a larger batch with a larger learning rate buys speed per character, and a
# fixed cost (compilation, start-up, evaluation) is a large share of a one-minute run: evaluating less
# often and on fewer windows, and keeping the compiler's cache between runs, cut it.
### END SOLUTION
