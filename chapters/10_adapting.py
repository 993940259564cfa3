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
# # 10. Adapting a language model: classification, instructions, LoRA and preferences, measured
#
# A pretrained language model has learned one thing: to predict the next token of the text it was
# trained on. Most people meet language models doing something else: sorting texts into classes,
# answering questions, following instructions, preferring some answers to others. This chapter
# adapts the book's pretrained models to such tasks, and measures what each way of doing it buys.
#
# The plan: (1) a classification task on the book's own data, attributing a Tang poem to its poet,
# with a baseline that needs no neural network; (2) a classifier made from the pretrained GPT:
# which position to read, and how much of the model to train (a frozen probe, the last blocks,
# everything), against the same network trained from scratch; (3) LoRA, low-rank adapters written
# from scratch: how few parameters are enough, and merging them away; (4) what pretraining buys, as
# a learning curve over the number of labelled poems; (5) prompting the model instead of training
# it; (6) instruction tuning, a chat template, and a loss on the answers only; what the model
# forgets and what replaying a little pretraining text does; (7) preference tuning with DPO; (8)
# the applications the source articles list, mapped to where the book answers them.
#
# Every comparison is at an equal, stated budget (the same labelled examples seen the same number
# of times), and every accuracy comes with a 95% bootstrap interval over the test examples. The
# pretrained models come with the book (`lmbook.models`), both trained with chapter 7's trainer:
# `tang_poems_char`, a character-level GPT (4 blocks of width 256, context 128) trained on a 2-core
# CPU on the training split of the Tang poems, and `shakespeare_char_gpu` (6 blocks, context 256),
# chapter 7's reference model, trained on tinyshakespeare on one GPU. Both load and run on a CPU.

# %%
import copy
import json
import math
import random
import re
import time
from collections import Counter
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmbook import data, env, evaluate, finetune, generate, instructions, models, tokens, trainer
from lmbook.finetune import (PAD, Autocast, ChatTemplate, CharTokenizer, DPOOutput, NgramNaiveBayes,
                             _check_classifier_args, _check_dpo_args, _check_lora_args, accuracy, bootstrap_metric,
                             macro_f1)
from lmbook.gpt import GPT, IGNORE_INDEX
from lmbook.plot import use_book_style
from lmbook.train import train

chapter_start = time.perf_counter()
env.seed_everything(1337)
use_book_style()
device = torch.device(env.device())
torch.set_num_threads(env.pick(test=1, cpu=1, gpu=torch.get_num_threads()))  # small models: one thread, undisturbed
bf16 = trainer.bf16_native(device)  # compute in bfloat16 where the hardware does it natively (chapter 7)
print(env.describe())
print(f"torch uses {torch.get_num_threads()} thread(s); bfloat16 autocast: {bf16}")

# %% [markdown]
# ## 10.1 Who wrote this poem?
#
# The Tang poems come with their authors. Attributing a poem to its poet is a classification task
# with real labels, on text the book already has, and it is hard: the poets wrote in the same
# forms, five or seven characters to a line, about the same mountains, rivers and farewells. We
# keep the poets with at least 400 poems, so that each has a few hundred training poems and a few
# dozen test poems (the 336 poems whose author is 不詳, "unknown", are not a poet).
#
# The split matters. The pretrained model was trained on the training split of
# `data.tang_poems_split` (80% of every poet's poems); its validation and test poems were never seen.
# The classifiers train on the training poems and are selected and measured on the other two, so
# that the pretrained model has never read a poem it is tested on, and the comparison with a model
# trained from scratch is not contaminated. A classifier reads the poem's lines only, not its title
# or author line, and at most the first `MAX_CHARS` characters.

# %%
MAX_CHARS = 40
train_poems, val_poems, test_poems = data.tang_poems_split()
all_counts = Counter(p.author for p in train_poems + val_poems + test_poems)
poets = [author for author, n in all_counts.most_common() if n >= 400 and author != "不詳"]
PINYIN = {"李白": "Li Bai", "韋應物": "Wei Yingwu", "劉長卿": "Liu Changqing", "岑參": "Cen Shen",
          "張說": "Zhang Yue", "王維": "Wang Wei"}
names = [PINYIN.get(p, p) for p in poets]


def labelled(poems, fraction=1.0, seed=0):
    """(texts, labels) of the poems by our poets, optionally a stratified fraction of them."""
    kept = [p for p in poems if p.author in poets]
    labels = finetune.label_ids([p.author for p in kept], poets)
    rows = finetune.stratified_subset(labels.tolist(), fraction, seed) if fraction < 1 else range(len(kept))
    return [kept[i].text[:MAX_CHARS] for i in rows], labels[list(rows)]


# the test profile keeps a tenth of the poems, to run in seconds; cpu and gpu keep them all
train_texts, y_train = labelled(train_poems, env.pick(test=0.1, cpu=1.0, gpu=1.0))
val_texts, y_val = labelled(val_poems, env.pick(test=0.3, cpu=1.0, gpu=1.0))
test_texts, y_test = labelled(test_poems, env.pick(test=0.3, cpu=1.0, gpu=1.0))
print(f"{all_counts['不詳']} poems by 不詳 (unknown) left out; {len(poets)} poets with 400 poems or more: "
      f"{len(train_texts):,} training, {len(val_texts)} validation and {len(test_texts)} test poems")
for c, (poet, name) in enumerate(zip(poets, names)):
    print(f"  {poet} {name:14s} train {int((y_train == c).sum()):4d}  val {int((y_val == c).sum()):3d}  "
          f"test {int((y_test == c).sum()):3d}")
print("\na test poem:", test_texts[0].replace("\n", " / "), "->", names[int(y_test[0])])

# %% [markdown]
# The classes are unbalanced: Li Bai wrote a third of these poems, so always answering "Li Bai" is
# right a third of the time. Accuracy rewards that; *macro-F1*, the mean over poets of each poet's
# F1 (the harmonic mean of precision and recall), counts every poet the same, so we report both.
#
# **A baseline without a network.** Multinomial naive Bayes on character n-grams, the classic text
# classifier {cite:p}`pang2002sentiment`: each poet is a bag of n-gram counts (smoothed by adding
# `alpha` to every count), and a poem goes to the poet under whose counts its n-grams are most
# probable. Its two settings are chosen on the validation poems; the test poems are read once, at
# the end. `bootstrap_metric` resamples the test poems with replacement 2,000 times and reports the
# 2.5th and 97.5th percentiles of the metric: the 95% interval.

# %%
t0 = time.perf_counter()
grid = {(orders, alpha): NgramNaiveBayes(orders, alpha).fit(train_texts, y_train)
        for orders in [(1,), (1, 2)] for alpha in [0.1, 0.3, 1.0]}
val_acc = {key: accuracy(y_val, nb.predict(val_texts)) for key, nb in grid.items()}
best_nb = max(val_acc, key=val_acc.get)
nb_pred = grid[best_nb].predict(test_texts)
nb_seconds = time.perf_counter() - t0
print(f"best on validation: n-gram orders {best_nb[0]}, alpha {best_nb[1]} (val accuracy {val_acc[best_nb]:.1%})")


def report(label, pred):
    acc, f1 = (bootstrap_metric(m, y_test, pred) for m in (accuracy, lambda t, p: macro_f1(t, p, len(poets))))
    print(f"{label:34s} accuracy {acc[0]:6.1%} [{acc[1]:.1%}, {acc[2]:.1%}]   "
          f"macro-F1 {f1[0]:.3f} [{f1[1]:.3f}, {f1[2]:.3f}]")
    return {"accuracy": acc, "macro_f1": f1, "pred": pred}


results = {"n-gram naive Bayes": report("n-gram naive Bayes", nb_pred) | {"trainable": 0, "seconds": nb_seconds}}
majority = torch.full_like(y_test, int(torch.bincount(y_train).argmax()))
_ = report("always the most frequent poet", majority)

# %% [markdown]
# Naive Bayes on single characters and pairs of characters attributes 69.3% of the test poems to
# the right poet (95% interval 64.4% to 73.9%), against 33.0% for always answering Li Bai: the
# poets' choices of characters differ enough for a bag of characters to name the poet two times in
# three. Every network below has to beat this.

# %% [markdown]
# ## 10.2 A classifier made of a language model
#
# A GPT maps a text to a state at every position, and its LM head maps each state to next-token
# logits. A classifier keeps the body and replaces the head: a linear layer from one state to one
# logit per class. Which state? In a causal model, position $t$ has read tokens $0..t$ only: the
# first position has seen one character, and only the **last** real token's state has read the
# whole input (a poem's first `MAX_CHARS` characters, all that a classifier reads). (BERT, which
# reads in both directions, classifies from a special first token; a causal model must use the last
# one, as GPT-1 did {cite:p}`radford2018`.) Poems of different
# lengths share a batch padded on the right; because no position attends to the positions after
# it, the padding changes nothing, and we read each poem's state at its own last position.

# %%
# From lmbook/finetune.py
class GPTClassifier(nn.Module):
    """A GPT without its LM head, and a linear head on one position's final state.

        h = ln_f(Block_L(... Block_1(wte[idx] + wpe)))     (B, T, d)
        z = pool(h)                                        (B, d)
        logits = z W_cᵀ + b_c                              (B, C)

    idx is padded on the right with PAD (-1). In a causal model position t has read tokens 0..t
    only, so only the last real token's state has read the whole text: ``pool="last"`` (the
    default) classifies from it, ``"mean"`` averages the real positions, ``"first"`` reads the first
    token's state (which has seen one token: a baseline that shows why position matters).
    """

    POOLS = ("last", "mean", "first")

    def __init__(self, gpt: GPT, n_classes: int, pool: str = "last"):
        super().__init__()
        _check_classifier_args(gpt, n_classes, pool, self.POOLS)
        self.gpt, self.pool = gpt, pool
        self.head = nn.Linear(gpt.config.n_embd, n_classes)
        nn.init.normal_(self.head.weight, std=0.02)
        nn.init.zeros_(self.head.bias)

    def features(self, idx: Tensor) -> Tensor:
        """The pooled final states (B, d) of idx (B, T), padded on the right with PAD."""
        real = idx != PAD                                                    # (B, T)
        lengths = real.sum(1)                                                # (B,)
        if bool((lengths == 0).any()):
            raise ValueError("a row of idx holds no token (only PAD): every text needs at least one")
        h = final_states(self.gpt, idx.clamp(min=0))                         # (B, T, d)
        if self.pool == "last":
            return h[torch.arange(len(h), device=h.device), lengths - 1]    # (B, d)
        if self.pool == "mean":
            return (h * real[..., None]).sum(1) / lengths[:, None]
        return h[:, 0]

    def forward(self, idx: Tensor) -> Tensor:
        return self.head(self.features(idx))                                 # (B, C)


def final_states(gpt: GPT, idx: Tensor) -> Tensor:
    """The GPT's final hidden states ln_f(h_L), (B, T, d): its forward pass without the LM head."""
    t = gpt.transformer
    pos = torch.arange(idx.shape[1], device=idx.device)
    x = t.drop(t.wte(idx) + t.wpe(pos))                                      # (B, T, d)
    for block in t.h:
        x = block(x)
    return t.ln_f(x)


# %% [markdown]
# The pretrained model, and the poems as rows of character ids, padded on the right with `PAD`
# (−1, which is no character):

# %%
tang, tang_meta = models.load("tang_poems_char", device=device)
chars = tang_meta["chars"]
print(f"tang_poems_char: {tang.config.n_layer} layers of width {tang.config.n_embd}, context {tang.config.block_size}, "
      f"{len(chars):,} characters, {tang.num_params():,} parameters")


def encode_poems(texts: list[str]) -> torch.Tensor:
    return finetune.pad_right([tokens.encode_chars(t, chars).tolist() for t in texts])


X_train, X_val, X_test = encode_poems(train_texts), encode_poems(val_texts), encode_poems(test_texts)
print(f"X_train {tuple(X_train.shape)}: {int((X_train != PAD).sum()):,} characters, "
      f"{(X_train != PAD).sum(1).float().mean():.1f} per poem")

# %% [markdown]
# **Which position? A linear probe.** The cheapest use of the pretrained model trains nothing in it:
# read the final states once, and fit a linear classifier on them (a *probe*). Because it is cheap,
# it is the place to ask which position to read. We pool the states three ways, the last real
# position, the mean over positions, and the first position, and fit the same probe on each.

# %%
@torch.no_grad()
def pooled_states(gpt: GPT, X: torch.Tensor, batch_size: int = 256) -> dict[str, torch.Tensor]:
    """The final states of every poem, pooled at the last position, over all positions, at the first."""
    gpt.eval()
    pooled = {"last": [], "mean": [], "first": []}
    for i in range(0, len(X), batch_size):
        x = X[i: i + batch_size].to(device)
        real = x != PAD
        lengths = real.sum(1)
        with torch.autocast(device.type, torch.bfloat16, enabled=bf16):
            h = final_states(gpt, x.clamp(min=0)).float()                  # (B, T, d)
        pooled["last"].append(h[torch.arange(len(h)), lengths - 1])
        pooled["mean"].append((h * real[..., None]).sum(1) / lengths[:, None])
        pooled["first"].append(h[:, 0])
    return {k: torch.cat(v).cpu() for k, v in pooled.items()}


t0 = time.perf_counter()
states = {split: pooled_states(tang, X) for split, X in [("train", X_train), ("val", X_val), ("test", X_test)]}
probe_feature_seconds = time.perf_counter() - t0
print(f"final states of {len(X_train) + len(X_val) + len(X_test):,} poems in {probe_feature_seconds:.1f} s")

# %% [markdown]
# Every neural classifier in this chapter trains with chapter 2's loop (`lmbook.train.train`) under
# one budget: `EPOCHS` passes over the training poems in minibatches of 32, a learning rate that
# decays linearly to zero, an evaluation of the validation loss four times per run, and the weights
# of the best evaluation kept (early stopping on the validation poems; the test poems are read
# once, at the end). One rule sets the learning rates: weights that start from pretraining move at
# `PRETRAINED_LR`, a quarter of the rate the model was pretrained at (GPT-1's ratio for fine-tuning
# {cite:p}`radford2018`), and weights that start from scratch (a classifier head, a network trained
# from scratch) at `NEW_LR`; the probe, a linear layer on fixed features, takes steps of `PROBE_LR`.

# %%
EPOCHS = env.pick(test=1, cpu=2, gpu=4)
BATCH = 32
STEPS = EPOCHS * finetune.steps_per_epoch(len(X_train), BATCH)
PRETRAINED_LR = json.loads((models.path("tang_poems_char") / "config.json").read_text())["train"]["lr"] / 4
NEW_LR, PROBE_LR = 1e-3, 1e-2
print(f"budget: {EPOCHS} epochs = {STEPS} steps of {BATCH} poems for every method; "
      f"learning rates {PRETRAINED_LR:g} (pretrained weights), {NEW_LR:g} (new weights), {PROBE_LR:g} (probe)")


def fit(model: nn.Module, lr: float, train_set, val_set, X_eval: torch.Tensor, steps: int = STEPS, seed: int = 0):
    """Train a classifier on train_set = (X, y) for `steps` minibatches (its head, if it has one, at
    NEW_LR, the rest at lr), keep the weights of its best validation loss, and return its
    predictions for X_eval, its trainable parameters and its time."""
    pad = PAD if X_eval.dtype == torch.long else None                        # token ids, or features
    model.to(device)
    head = [p for n, p in model.named_parameters() if n.startswith("head.") and p.requires_grad]
    body = [p for n, p in model.named_parameters() if not n.startswith("head.") and p.requires_grad]
    optimizer = torch.optim.AdamW([{"params": body, "lr": lr}] + ([{"params": head, "lr": NEW_LR}] if head else []),
                                  weight_decay=0.0)
    batches = finetune.epoch_batches(*train_set, BATCH, torch.Generator().manual_seed(seed), pad=pad)
    run = Autocast(model, enabled=bf16)
    t0 = time.perf_counter()
    train(run, batches, steps=steps, optimizer=optimizer, lr_schedule=lambda t: 1 - t / steps,
          eval_sets={"val": val_set}, eval_every=max(1, steps // 4), early_stopping="val", progress=False,
          device=device)
    seconds = time.perf_counter() - t0
    pred = finetune.predict(run, X_eval, pad=pad).argmax(1)
    return pred, {"trainable": finetune.count_parameters(model)[0], "seconds": seconds}


for pool in ("first", "mean", "last"):
    probe = nn.Linear(tang.config.n_embd, len(poets))
    pred, info = fit(probe, PROBE_LR, (states["train"][pool], y_train), (states["val"][pool], y_val), states["test"][pool])
    results[f"linear probe, {pool} position"] = report(f"linear probe, {pool} position", pred) | info

# %% [markdown]
# The first position's state has read one character, and its probe (35.1%) does little better than
# always answering Li Bai (33.0%). The last position's state has read the whole input, and does much
# better (47.7%). The mean over the positions does better again in this run (54.0%), though the two
# intervals overlap, so that difference is not shown. A likely reason: a frozen model's last state
# was trained to predict the next character and keeps of the poem what that needs, while the mean
# keeps a trace of every character, as naive Bayes keeps every n-gram. None of the probes comes
# near naive Bayes. Once the body itself is trained, attention can gather into the last state
# whatever the classifier needs; fine-tuned causal models classify from it (GPT-1 did
# {cite:p}`radford2018`, and so does Hugging Face's `GPT2ForSequenceClassification`), and so does
# every classifier from here on. (Whether the mean would do better under fine-tuning too, this
# chapter does not measure.)
#
# **How much of the model to train.** Four classifiers with the same body, each trained with the
# same budget:
#
# - *from scratch*: the same network, randomly initialised: what the labels alone can teach it;
# - *last two blocks*: the pretrained body frozen below its last two blocks (the frozen blocks still
#   run forward at every step, but nothing flows back through them);
# - *full fine-tuning*: every weight of the pretrained body trained, at a small learning rate;
# - and the linear probe above, which trains the head only.
#
# Each pretrained classifier starts from a fresh copy of the pretrained model; the three that run
# the body in training use dropout 0.1 (the probe's states were read once, in evaluation mode).

# %%
def pretrained_body() -> GPT:
    return finetune.set_dropout(copy.deepcopy(tang), 0.1)


def train_only(model: nn.Module, prefixes: tuple[str, ...]) -> nn.Module:
    """Freeze every parameter whose name does not start with one of `prefixes`."""
    for name, p in model.named_parameters():
        p.requires_grad_(name.startswith(prefixes))
    return model


L = tang.config.n_layer
torch.manual_seed(0)
scratch = GPTClassifier(finetune.set_dropout(GPT(tang.config), 0.1), len(poets))
last_two = train_only(GPTClassifier(pretrained_body(), len(poets)),
                      ("head", "gpt.transformer.ln_f", f"gpt.transformer.h.{L - 2}.", f"gpt.transformer.h.{L - 1}."))
full = GPTClassifier(pretrained_body(), len(poets))
for label, model, lr in [("from scratch", scratch, NEW_LR), ("last two blocks", last_two, PRETRAINED_LR),
                         ("full fine-tuning", full, PRETRAINED_LR)]:
    pred, info = fit(model, lr, (X_train, y_train), (X_val, y_val), X_test)
    results[label] = report(label, pred) | info

# %% [markdown]
# Full fine-tuning against the model trained from scratch, the n-gram baseline and the best probe,
# as *paired* intervals: the same resampled test poems for both models, so that the poems' own
# difficulty cancels out of the difference.

# %%
def paired(a: str, b: str, metric=accuracy):
    diff, low, high = bootstrap_metric(metric, y_test, results[a]["pred"], baseline=results[b]["pred"])
    print(f"{a} − {b}: {diff:+.1%} [{low:+.1%}, {high:+.1%}]")
    return diff, low, high


gain_over_scratch = paired("full fine-tuning", "from scratch")
gain_over_ngram = paired("full fine-tuning", "n-gram naive Bayes")
best_probe = max((k for k in results if k.startswith("linear probe")), key=lambda k: results[k]["accuracy"][0])
gain_over_probe = paired("full fine-tuning", best_probe)
print(f"the model trained from scratch answers {names[0]} for "
      f"{(results['from scratch']['pred'] == 0).double().mean():.1%} of the test poems")

# %% [markdown]
# Pretraining is what makes the network useful here. Fine-tuned in full, the pretrained model gets
# 63.2% of the test poems right: 30.2 points more than the same network trained from scratch, which
# at this budget never gets past the majority class (it answers Li Bai for every test poem, as
# printed), and 9.2 points more than the best probe, both intervals well clear of zero. Training
# only the last two blocks lands between the best probe and full fine-tuning (57.5%, an interval
# that overlaps both of theirs; no paired interval was computed for it). But full
# fine-tuning does not beat the n-gram baseline: it is 6.0 points behind it, an interval from 11.2
# to 0.9 points behind. A 4.7-million-parameter model pretrained on 680,000 characters of poems,
# fine-tuned for 174 steps, knows less about who wrote what than the counts of each poet's
# characters.
#
# Where the fine-tuned classifier goes wrong: its confusion matrix on the test poems, one row per
# true poet (the colour is the share of the row, the number the count of poems).

# %%
cm = finetune.confusion_matrix(y_test, results["full fine-tuning"]["pred"], len(poets))
share = cm / cm.sum(1, keepdim=True)
fig, ax = plt.subplots(figsize=(5.5, 4.5))
ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
for i in range(len(poets)):
    for j in range(len(poets)):
        ax.text(j, i, int(cm[i, j]), ha="center", va="center", color="white" if share[i, j] > 0.5 else "black")
ax.set(xticks=range(len(poets)), yticks=range(len(poets)), xticklabels=names, yticklabels=names,
       xlabel="predicted poet", ylabel="true poet", title="Full fine-tuning: test poems by true and predicted poet")
ax.grid(False)
plt.setp(ax.get_xticklabels(), rotation=40, ha="right")
plt.show()
print("recall per poet:", ", ".join(f"{n} {cm[c, c] / cm[c].sum():.0%}" for c, n in enumerate(names)))

# %% [markdown]
# Li Bai, a third of the poems, is found most often (81% of his test poems); Wang Wei least (22%).
# Macro-F1, which counts every poet the same, is correspondingly lower than accuracy for every
# classifier above.

# %% [markdown]
# ## 10.3 LoRA: training a few parameters instead of all of them
#
# Full fine-tuning trains every weight, and keeps a full copy of the model for every task it is
# adapted to, along with an optimizer state twice its size. Hu et al. {cite:p}`hu2022lora` observed
# that the change fine-tuning makes to a weight matrix, $\Delta W$, can be restricted to a low rank
# with little loss. LoRA freezes $W$ ($d_\text{out} \times d_\text{in}$) and learns
#
# $$
# \Delta W = \frac{\alpha}{r}\, B A, \qquad A \in \mathbb{R}^{r \times d_\text{in}},\ B \in \mathbb{R}^{d_\text{out} \times r},
# $$
#
# so a layer computes $y = xW^\top + b + \frac{\alpha}{r}\, x A^\top B^\top$, and trains
# $r(d_\text{in} + d_\text{out})$ numbers instead of $d_\text{in} d_\text{out}$. $B$ starts at zero,
# so the adapted model starts as exactly the pretrained one; $A$ starts random (as in `peft`, the
# library most people use, and `tests/test_finetune.py` checks that our layer and `peft`'s give the
# same outputs to 1e-6 with the same $A$ and $B$). The scale $\alpha/r$ lets one learning rate serve
# several ranks; after training, $\Delta W$ can be added into $W$, and the adapter disappears.

# %%
# From lmbook/finetune.py
class LoRALinear(nn.Module):
    """A frozen Linear plus a trainable low-rank update (Hu et al. 2021):

        y = x Wᵀ + b + (α/r) · x Aᵀ Bᵀ,     A (r, d_in), B (d_out, r)

    so the weight the layer uses is W + ΔW with ΔW = (α/r)·B·A, of rank at most r. A starts random
    (peft's Kaiming-uniform), B at zero: at the start the layer is exactly the pretrained one.
    Training updates r·(d_in + d_out) numbers instead of d_in·d_out. `merge` adds ΔW into W, so
    that generating costs no more than with the plain Linear; `unmerge` takes it out again.
    """

    def __init__(self, base: nn.Linear, rank: int, alpha: float | None = None, dropout: float = 0.0):
        super().__init__()
        alpha = float(rank) if alpha is None else alpha
        _check_lora_args(base, rank, alpha, dropout)
        self.base, self.rank, self.alpha, self.scaling = base, rank, alpha, alpha / rank
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features, device=base.weight.device))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank, device=base.weight.device))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.dropout = nn.Dropout(dropout)
        self.merged = False
        for p in base.parameters():
            p.requires_grad_(False)

    def forward(self, x: Tensor) -> Tensor:
        y = self.base(x)
        if self.merged:
            return y
        return y + (self.dropout(x) @ self.lora_A.T @ self.lora_B.T) * self.scaling   # (…, d_in) -> (…, r) -> (…, d_out)

    def delta_weight(self) -> Tensor:
        """ΔW = (α/r)·B·A, (d_out, d_in)."""
        return (self.lora_B @ self.lora_A) * self.scaling

    @torch.no_grad()
    def merge(self) -> None:
        if not self.merged:
            self.base.weight += self.delta_weight().to(self.base.weight.dtype)
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        if self.merged:
            self.base.weight -= self.delta_weight().to(self.base.weight.dtype)
            self.merged = False

# %% [markdown]
# `finetune.inject_lora(model, rank, alpha, targets)` freezes the model and wraps each Linear whose
# name ends with one of the targets; by default all four projections of every block (the attention's
# `c_attn` and `c_proj`, the MLP's `c_fc` and `c_proj`). The classification head stays trainable.
# What this saves, counted and measured after one optimizer step (AdamW keeps two moments per
# trainable parameter, and a gradient is kept per trainable parameter too):

# %%
def lora_classifier(rank: int) -> GPTClassifier:
    clf = GPTClassifier(pretrained_body(), len(poets))
    finetune.inject_lora(clf.gpt, rank=rank, alpha=2.0 * rank)           # freezes the body, not the head
    return clf


def memory_after_one_step(model: nn.Module) -> tuple[int, int]:
    """(gradient bytes, optimizer state bytes) after one AdamW step on 32 poems."""
    model.to(device)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    F.cross_entropy(model(X_train[:32].to(device)), y_train[:32].to(device)).backward()
    optimizer.step()
    grads = sum(p.grad.numel() * p.grad.element_size() for p in model.parameters() if p.grad is not None)
    return grads, finetune.optimizer_state_bytes(optimizer)


RANK = 8
print(f"{'':22s} {'trainable':>11s} {'of all':>7s} {'gradients':>10s} {'AdamW state':>12s}")
for label, model in [("full fine-tuning", GPTClassifier(pretrained_body(), len(poets))),
                     (f"LoRA r={RANK}", lora_classifier(RANK))]:
    trainable, total = finetune.count_parameters(model)
    grads, state = memory_after_one_step(model)
    print(f"{label:22s} {trainable:11,} {trainable / total:7.2%} {grads / 2**20:8.2f} MB {state / 2**20:10.2f} MB")
embedding = tang.transformer.wte.weight.numel()
print(f"of which the token embedding: {embedding:,} parameters, {embedding / total:.0%} of the model")

# %% [markdown]
# At rank 8, LoRA trains 132,614 parameters, 2.72% of the adapted model's parameters (2.79% of the
# number full fine-tuning trains, the share in the table below); their gradients take 0.51 MB
# instead of 18.11 MB, and AdamW's two moments 1.01 MB instead of 36.22 MB (MB here are 2²⁰ bytes).
# (The activations kept for the backward pass, not measured here, are about the same for both: the
# gradient still flows through every block.) A
# third of the full model's parameters are the token embedding of its 6,114 characters, which full
# fine-tuning trains (only the rows of characters in the training poems get gradients) and LoRA
# leaves frozen. Now accuracy against rank, each LoRA trained with the budget of every other
# classifier, with $\alpha = 2r$; its adapters and head are new weights, trained at `NEW_LR`:

# %%
ranks = env.pick(test=[2, 8], cpu=[2, 8], gpu=[1, 2, 4, 8, 16, 32, 64])
lora_models = {}
for rank in ranks:
    lora_models[rank] = lora_classifier(rank)
    pred, info = fit(lora_models[rank], NEW_LR, (X_train, y_train), (X_val, y_val), X_test)
    results[f"LoRA r={rank}"] = report(f"LoRA r={rank}", pred) | info

# %%
full_trainable = results["full fine-tuning"]["trainable"]
print(f"{'method':34s} {'trainable':>10s} {'share':>7s} {'accuracy':>9s} {'vs full fine-tuning (paired)':>30s}  time")
for label, r in results.items():
    if label.startswith(("LoRA", "full")):
        diff = bootstrap_metric(accuracy, y_test, r["pred"], baseline=results["full fine-tuning"]["pred"])
        print(f"{label:34s} {r['trainable']:10,} {r['trainable'] / full_trainable:7.2%} {r['accuracy'][0]:9.1%} "
              f"{diff[0]:+8.1%} [{diff[1]:+.1%}, {diff[2]:+.1%}]   {r['seconds']:5.0f} s")

# %% [markdown]
# At this budget LoRA does not match full fine-tuning: rank 8 is 5.7 points behind it and rank 2 is
# 8.9 points behind, both paired intervals clear of zero. Rank 8 scores 3.2 points above rank 2,
# but the two intervals overlap and no paired interval between them was computed, so this run does
# not show that the higher rank is better. Hu et al. found LoRA on a par with full fine-tuning for
# models of hundreds of millions of parameters and more {cite:p}`hu2022lora`; ours is small, trained
# for 174 steps, and its frozen
# embedding cannot adapt. Nor is LoRA faster here: each step still runs the whole model forward
# and backward, plus the adapters' small products, and in this run each LoRA took longer than full
# fine-tuning (88 and 87 s against 69 s; one run each on a shared machine, so not a ratio to rely
# on). What it saves is memory, and a copy of the model per task.
#
# **Merging.** After training, $\Delta W$ can be added into $W$ (`LoRALinear.merge`, and
# `finetune.merge_lora`, which also puts the plain `nn.Linear` back): the merged model is an
# ordinary GPT, with the adapted model's outputs, and costs exactly what the pretrained model costs
# to run. Unmerged, every adapted layer does two extra small products.

# %%
adapted = lora_models[RANK].eval()


def timed_logits(model: nn.Module) -> tuple[torch.Tensor, float]:
    t0 = time.perf_counter()
    logits = finetune.predict(model, X_test)                                   # float32, no autocast
    return logits, time.perf_counter() - t0


unmerged_logits, unmerged_seconds = timed_logits(adapted)
finetune.merge_lora(adapted.gpt)
merged_logits, merged_seconds = timed_logits(adapted)
print(f"largest difference between merged and unmerged logits: {(merged_logits - unmerged_logits).abs().max():.1e}")
print(f"LoRA modules left: {sum(isinstance(m, LoRALinear) for m in adapted.modules())}; "
      f"parameters {finetune.count_parameters(adapted)[1]:,} (the pretrained classifier: "
      f"{finetune.count_parameters(GPTClassifier(tang, len(poets)))[1]:,})")
print(f"classifying the test poems: unmerged {unmerged_seconds:.2f} s, merged {merged_seconds:.2f} s")

# %% [markdown]
# The merged model gives the adapted model's logits (to float32 rounding), has no LoRA module left
# and exactly the pretrained classifier's parameter count: an ordinary GPT. The two timings come
# from one run each on a shared machine, so they show the direction, not a ratio to rely on.

# %% [markdown]
# ## 10.4 What pretraining buys: a learning curve
#
# The gap between the pretrained and the from-scratch classifier is what pretraining buys on this
# task with this many labels; the gap to naive Bayes is what it buys over counting. With fewer
# labelled poems the labels have less to teach, and what the pretrained model learned from
# unlabelled text should count for more. We train both networks again on stratified fractions of
# the training poems (every poet keeps its share), each run with the same number of passes over its
# poems as before and at least `MIN_STEPS` steps, and refit naive Bayes on the same poems.

# %%
fractions = env.pick(test=[0.5], cpu=[1 / 16, 1 / 4], gpu=[1 / 16, 1 / 8, 1 / 4, 1 / 2])
MIN_STEPS = env.pick(test=4, cpu=30, gpu=100)
curve = {label: {len(X_train): results[label]["accuracy"]}
         for label in ("from scratch", "full fine-tuning", "n-gram naive Bayes")}
for fraction in fractions:
    rows = finetune.stratified_subset(y_train.tolist(), fraction, seed=1)
    subset = (X_train[rows], y_train[rows])
    steps = max(MIN_STEPS, EPOCHS * finetune.steps_per_epoch(len(rows), BATCH))
    torch.manual_seed(0)
    runs = [("from scratch", GPTClassifier(finetune.set_dropout(GPT(tang.config), 0.1), len(poets)), NEW_LR),
            ("full fine-tuning", GPTClassifier(pretrained_body(), len(poets)), PRETRAINED_LR)]
    preds = {}
    for label, model, lr in runs:
        preds[label], _ = fit(model, lr, subset, (X_val, y_val), X_test, steps=steps)
    preds["n-gram naive Bayes"] = NgramNaiveBayes(*best_nb).fit([train_texts[i] for i in rows], y_train[rows]).predict(test_texts)
    for label, pred in preds.items():
        curve[label][len(rows)] = bootstrap_metric(accuracy, y_test, pred)
    print(f"{len(rows):5d} labelled poems, {steps} steps: " + ", ".join(
        f"{label} {curve[label][len(rows)][0]:.1%}" for label in curve))
    for other in ("from scratch", "n-gram naive Bayes"):
        d = bootstrap_metric(accuracy, y_test, preds["full fine-tuning"], baseline=preds[other])
        print(f"      full fine-tuning − {other}: {d[0]:+.1%} [{d[1]:+.1%}, {d[2]:+.1%}]")

# %%
fig, ax = plt.subplots()
for label, points in curve.items():
    n = sorted(points)
    acc = np.array([points[k] for k in n])
    ax.errorbar(n, acc[:, 0], yerr=[acc[:, 0] - acc[:, 1], acc[:, 2] - acc[:, 0]], marker="o", capsize=3, label=label)
ax.axhline(accuracy(y_test, majority), color="gray", ls=":", label="always Li Bai")
ax.set(xscale="log", xlabel="labelled training poems", ylabel="test accuracy (95% interval)",
       title="Poet attribution: what pretraining buys")
ax.legend()
plt.show()

# %% [markdown]
# The network trained from scratch scores 33.0% at every size, the accuracy of always answering Li
# Bai (at full size it answers Li Bai for every test poem, as printed above; at the two smaller
# sizes its predictions were not counted). So the gap to it does not shrink as labels are added:
# 18.7, 20.7 and 30.2 points, every interval clear of zero (the first two intervals overlap, so
# the rise from 172 to 693 poems is not shown). Note that the budget grows with the labels (30, 44
# and 174 steps), the same for both networks at each size. Without pretraining, the same labels and
# steps teach this network nothing it can show on the test poems. Against
# naive Bayes the picture turns the other way: with the fewest labels, 172 poems, fine-tuning is
# level with it (3.2 points ahead, an interval from 2.3 behind to 8.6 ahead, so no difference is
# shown), and with 693 poems or all of them naive Bayes is ahead (by 9.5 and 6.0 points, intervals
# clear of zero). Pretraining buys most, relative to counting, when labels are fewest.

# %% [markdown]
# ## 10.5 Prompting instead of training
#
# A language model can classify without any training: score each possible label by how probable
# the model finds the text with it. The Tang model was pretrained on poems laid out as a title, the
# poet's name and the lines, so it has learned, for the training poems, which lines follow which
# name. By Bayes' rule, the most probable poet of a poem $x$ is
#
# $$
# \hat c = \arg\max_c \; \log p(c) + \log p_\text{LM}(x \mid \text{a newline, the name } c\text{, a newline}),
# $$
#
# the prior $p(c)$ (each poet's share of the training poems) times the probability of the lines
# after the poet's name. No labelled example is used beyond what the pretraining text held; the
# test poems, again, were never seen.

# %%
@torch.no_grad()
def poet_logprobs(lm: GPT, texts: list[str]) -> torch.Tensor:
    """(N, C): log p(lines | newline, poet's name, newline) under the language model, for every poet."""
    pairs = []
    for text in texts:
        ids = tokens.encode_chars(text, chars).tolist()
        for poet in poets:
            context = tokens.encode_chars("\n" + poet + "\n", chars).tolist()
            full_ids = context + ids
            targets = [-100] * (len(context) - 1) + full_ids[len(context):]  # score the lines only
            pairs.append((full_ids[:-1], targets))
    T = max(len(x) for x, _ in pairs)
    X = torch.tensor([x + [0] * (T - len(x)) for x, _ in pairs])
    Y = torch.tensor([y + [-100] * (T - len(y)) for _, y in pairs])
    return finetune.batched_sequence_logprobs(Autocast(lm, enabled=bf16), X, Y).view(len(texts), len(poets))


t0 = time.perf_counter()
log_prior = torch.bincount(y_train, minlength=len(poets)).double().log()
prompt_pred = (poet_logprobs(tang, test_texts).double() + log_prior).argmax(1)
results["prompting: p(lines | poet)"] = (report("prompting: p(lines | poet)", prompt_pred)
                                         | {"trainable": 0, "seconds": time.perf_counter() - t0})

# %% [markdown]
# With no training at all, the pretrained model names the poet of 53.4% of the test poems (interval
# 48.0% to 58.6%): about as many as the best probe trained on its states (54.0%), fewer than naive
# Bayes (69.3%), fewer than full fine-tuning (63.2%) by a margin that the two intervals, which just
# overlap, do not settle, and far more than always answering Li Bai. It learned which lines go with which name from the
# training poems' author lines alone.
#
# **Few examples: in the prompt, or in the weights?** Large models learn a task from a few
# examples placed in their prompt {cite:p}`brown2020gpt3`. Does ours? We take the smallest task
# there is, copying a word, give the Shakespeare model $k$ examples in its prompt
# (`"honour: honour\nsweet: sweet\n...\nword: "`), and compare with fine-tuning it on the same $k$
# examples (the loss on the answer only, `FT_STEPS` steps of up to 32 examples at the learning rate
# it was pretrained at) and then prompting it with none.
# Its context holds 256 characters, so only a few examples fit in a prompt; fine-tuning has no such
# limit. The test words are words of the training text that none of the examples use.

# %%
shakespeare, shakespeare_meta = models.load("shakespeare_char_gpu", device=device)
sh_chars = shakespeare_meta["chars"]
newline = sh_chars.index("\n")
sh_train, sh_val = data.shakespeare_split()
word_pool = sorted({w for w in re.findall(r"\b[a-z]{4,8}\b", sh_train)})
random.Random(0).shuffle(word_pool)
shots_pool, copy_test = word_pool[:512], word_pool[512: 512 + env.pick(test=20, cpu=100, gpu=200)]


def sh_encode(text: str) -> list[int]:
    return tokens.encode_chars(text, sh_chars).tolist()


def copy_accuracy(model: GPT, prefix: str) -> tuple[tuple[float, float, float], list[str]] | None:
    """(exact match of the model's greedy answer after prefix + 'word: ' on the held-out words, with its
    interval; the answers), or None when the prompt and the answer do not fit in the model's context."""
    longest = max(len(w) for w in copy_test)
    if len(prefix) + 2 * longest + 3 > model.config.block_size:
        return None
    idx, mask = generate.left_pad([sh_encode(prefix + f"{w}: ") for w in copy_test], pad_id=newline)
    out = generate.generate(model, idx.to(device), 10, greedy=True, attention_mask=mask.to(device), eos_id=newline)
    answers = [tokens.decode_chars(row, sh_chars).split("\n")[0] for row in out[:, idx.shape[1]:].tolist()]
    hits = torch.tensor([a == w for a, w in zip(answers, copy_test)], dtype=torch.float64)
    return evaluate.bootstrap_interval(hits, segments=len(hits)), answers


def fine_tuned_on(shots: list[str], steps: int) -> GPT:
    """The Shakespeare model fine-tuned on 'word: word' lines, the loss on the answer only."""
    model = finetune.set_dropout(copy.deepcopy(shakespeare), 0.0)
    rows = [sh_encode(f"{w}: {w}\n") for w in shots]
    X = finetune.pad_right([r[:-1] for r in rows], pad=0)
    Y = finetune.pad_right([[-100] * (len(w) + 1) + r[len(w) + 2:] for w, r in zip(shots, rows)], pad=-100)
    batches = finetune.epoch_batches(X, Y, min(len(shots), 32), torch.Generator().manual_seed(0), pad=None)
    train(model, batches, steps=steps, lr=SH_LR, progress=False, device=device)
    return model.eval()


SH_LR = json.loads((models.path("shakespeare_char_gpu") / "config.json").read_text())["train"]["lr"]  # pretraining's
FT_STEPS = env.pick(test=5, cpu=40, gpu=60)
print(f"{'examples':>8s} {'in the prompt':>26s} {f'fine-tuned on them, {FT_STEPS} steps':>30s}   its first answers")
icl = {}
for k in env.pick(test=[0, 4], cpu=[0, 2, 8, 512], gpu=[0, 2, 4, 8, 32, 128, 512]):
    shots = shots_pool[:k]
    prompted = copy_accuracy(shakespeare, "".join(f"{w}: {w}\n" for w in shots))
    tuned = copy_accuracy(fine_tuned_on(shots, steps=FT_STEPS), "") if k else None
    icl[k] = (prompted, tuned)
    show = lambda r, why: f"{r[0][0]:6.1%} [{r[0][1]:.1%}, {r[0][2]:.1%}]" if r else why
    print(f"{k:8d} {show(prompted, '(does not fit)'):>26s} {show(tuned, '-'):>30s}   "
          f"{', '.join(tuned[1][:4]) if tuned else ''}")
print(f"the first test words: {', '.join(copy_test[:4])}; the answers the pretrained model writes with no "
      f"example: {', '.join(icl[0][0][1][:4])}")

# %% [markdown]
# Our model does not learn in context: with no example it answers "the senate" to each of the four
# test words printed (and gets none of the 100 right), and
# two or eight examples in the prompt leave it at 0 of the 100 test words. (In-context learning grew
# with model size in GPT-3's measurements {cite:p}`brown2020gpt3`, and ours is small.)
# Fine-tuning on the same two or eight examples does no better: the model writes the same few words
# whatever it is asked ("stirring" twice in its first four answers after two examples, "date" twice
# after eight), not the word it was given; the examples themselves are not printed, so that these
# are the examples' words is likely but not shown. Only with 512 examples does fine-tuning begin to
# teach the rule, 28.0% of the test words copied exactly, and its first mistakes are near misses
# ("thist" for "this", "quartly" for "quaintly"). Few examples are not enough for either route at
# this scale; 512 in the weights are a start.

# %% [markdown]
# ## 10.6 Instruction tuning
#
# A pretrained model continues text; an assistant answers. *Instruction tuning* (supervised
# fine-tuning, SFT) bridges the two with examples of instructions and the answers wanted
# {cite:p}`wei2022flan,ouyang2022instructgpt`. Ours come from code that can check them
# (`lmbook.instructions`): five tasks, each with its own generator and checker, three with one right
# answer and two open ones.

# %%
sft_sizes = env.pick(
    test={"dates": (300, 20), "reverse": (150, 20), "add": (150, 20), "continue": (75, 20), "starts_with": (75, 20)},
    cpu={"dates": (2000, 64), "reverse": (1000, 64), "add": (1000, 64), "continue": (500, 64), "starts_with": (500, 64)},
    gpu={"dates": (8000, 500), "reverse": (4000, 500), "add": (4000, 500), "continue": (2000, 500), "starts_with": (2000, 500)})
sft_data = instructions.make_splits(sft_sizes, seed=0)
print(f"{len(sft_data['train']):,} training examples, {len(sft_data['test']):,} held out")
for task in instructions.TASKS:
    ex = next(e for e in sft_data["test"] if e.task == task)
    print(f"  {task:12s} {ex.prompt!r:60s} -> {ex.answer!r}")

# %% [markdown]
# The held-out examples never share their payload with a training example: test dates are calendar
# days no training example uses, test digit strings and pairs of numbers are not training ones, and
# test lines come from Shakespeare's validation text. The open tasks are checked by rule: one line
# of at least three words (two for a continuation), each a word of Shakespeare's training text,
# starting with the word asked for where one is asked for.
#
# **A chat template and new tokens.** The model must know where the instruction ends and where its
# answer does. A template lays them out with *special tokens*, strings that are one token each and
# occur in no text. The Shakespeare model's 65 characters have no digits but 3 and no slash either;
# the new characters and the three special tokens get new rows of the (tied) embedding matrix,
# initialised to the mean of the old rows {cite:p}`hewitt2021initializing`, so that a new token starts
# as an average one and barely moves the model's predictions.

# %%
template = ChatTemplate()
print(template.render("What is 2 plus 3?", "5"))
sft_text = "".join(e.prompt + e.answer for e in sft_data["train"] + sft_data["test"])
new_chars = sorted(set(sft_text) - set(sh_chars))
tok = CharTokenizer(sh_chars + new_chars, template.special_tokens)
base = finetune.set_dropout(finetune.resize_embeddings(copy.deepcopy(shakespeare), tok.vocab_size), 0.0)
print(f"new characters {''.join(new_chars)!r} and {len(template.special_tokens)} special tokens: "
      f"vocabulary {len(sh_chars)} -> {tok.vocab_size}")

# %% [markdown]
# **The loss on the answer only.** Each example becomes one row of inputs and next-token targets.
# The model should learn to *write* answers, not instructions: the targets inside the prompt are set
# to −100, which the cross-entropy leaves out (`tests/test_finetune.py` checks on a hand-built batch
# that exactly the prompt's tokens are left out). With `mask_prompt=False` the loss counts
# everything, as in pretraining.

# %%
# From lmbook/finetune.py
def sft_tensors(pairs: Sequence[tuple[str, str]], tokenizer: CharTokenizer, template: ChatTemplate,
                mask_prompt: bool = True, pad_id: int = 0) -> tuple[Tensor, Tensor]:
    """(X, Y), each (N, T): the inputs and next-token targets of rendered (prompt, answer) pairs,
    padded on the right (X with pad_id, Y with -100). With mask_prompt the targets of the prompt's
    tokens are -100, so the loss counts the answer and its end marker only:

        tokens   <u> A d d   2 … <a> 5 <e>
        x        <u> A d d   2 … <a> 5          (the last token is never an input)
        y         -100 … -100   5 <e>           (the prompt is read, not learned)
    """
    rows_x, rows_y = [], []
    for prompt, answer in pairs:
        p, a = tokenizer.encode(template.prompt_part(prompt)), tokenizer.encode(template.answer_part(answer))
        ids = p + a
        y = ids[1:]
        if mask_prompt:
            y = [IGNORE_INDEX] * (len(p) - 1) + y[len(p) - 1:]
        rows_x.append(ids[:-1])
        rows_y.append(y)
    if not rows_x:
        raise ValueError("pairs is empty: sft_tensors needs at least one (prompt, answer) pair")
    T = max(len(r) for r in rows_x)
    X = torch.tensor([r + [pad_id] * (T - len(r)) for r in rows_x])
    Y = torch.tensor([r + [IGNORE_INDEX] * (T - len(r)) for r in rows_y])
    return X, Y

# %%
X_one, Y_one = sft_tensors([("What is 2 plus 3?", "5")], tok, template)
print("inputs :", [tok.itos[i] for i in X_one[0].tolist()])
print("targets:", [tok.itos[i] if i >= 0 else "·" for i in Y_one[0].tolist()])

# %% [markdown]
# **Before.** The pretrained model, given the template, on the held-out instructions. Each task's
# success rate is the share of answers its checker accepts (exact match for the first three), with
# a 95% bootstrap interval over the held-out examples. An answer is the greedy continuation up to
# the end marker, or up to two tokens more than the task's longest training answer. Exact matches
# move only when whole answers come right, so we also measure the loss of the held-out answers given
# their prompts (teacher forcing: nats per answer token, the end marker included), which shows
# progress before the answers are right.

# %%
MAX_ANSWER = {task: max(len(tok.encode(e.answer)) for e in sft_data["train"] if e.task == task) + 2
              for task in instructions.TASKS}


def task_success(model: GPT, examples: list) -> tuple[dict[str, torch.Tensor], list[str]]:
    """({task: a 0/1 tensor, one entry per example}, the answers): whether each task's checker accepts
    the model's greedy answer."""
    hits, answers = {}, [""] * len(examples)
    for task in dict.fromkeys(e.task for e in examples):
        rows = [i for i, e in enumerate(examples) if e.task == task]
        got = finetune.generate_answers(model, tok, template, [examples[i].prompt for i in rows], MAX_ANSWER[task])
        for i, a in zip(rows, got):
            answers[i] = a
        hits[task] = torch.tensor([float(instructions.check(examples[i], a)) for i, a in zip(rows, got)],
                                  dtype=torch.float64)
    return hits, answers


X_held, Y_held = sft_tensors([(e.prompt, e.answer) for e in sft_data["test"]], tok, template)  # answer targets only
held_rows = {task: [i for i, e in enumerate(sft_data["test"]) if e.task == task] for task in instructions.TASKS}


def answer_nats(model: GPT) -> dict[str, torch.Tensor]:
    """{task: nats per answer token of each held-out example}, each answer read after its prompt."""
    logp = finetune.batched_sequence_logprobs(Autocast(model, enabled=bf16), X_held, Y_held)
    nats = -logp / (Y_held != IGNORE_INDEX).sum(1)
    return {task: nats[rows] for task, rows in held_rows.items()}


def show_success(label: str, hits: dict[str, torch.Tensor]) -> None:
    cells = []
    for task, h in hits.items():
        mean, low, high = evaluate.bootstrap_interval(h, segments=len(h))
        cells.append(f"{task} {mean:6.1%} [{low:.0%}, {high:.0%}]")
    print(f"{label:26s} " + "  ".join(cells))


def show_nats(label: str, nats: dict[str, torch.Tensor]) -> None:
    print(f"{label:26s} " + "  ".join(f"{task} {n.mean():.3f}" for task, n in nats.items()) + "  (answer nats per token)")


base_hits, base_answers = task_success(base, sft_data["test"])
base_nats = answer_nats(base)
show_success("pretrained", base_hits)
show_nats("pretrained", base_nats)
for e, a in list(zip(sft_data["test"], base_answers))[::len(sft_data["test"]) // 5][:5]:
    print(f"  {e.prompt!r} -> {a[:50]!r}")

# %% [markdown]
# The pretrained model answers none of the held-out instructions: it carries on with a speaker's
# name or a line of verse. The loss of the right answers says more. It is high for dates, digits
# and sums (8.687, 8.966 and 9.679 nats per token: the digits are new tokens), lower for the lines
# of verse (2.536 and 1.855), which are Shakespeare's own kind of text.
#
# **Training.** The same loop again, on minibatches of `SFT_BATCH` examples of similar length (little
# padding), for `SFT_STEPS` steps with a learning rate that warms up for 5% of the run and then
# decays linearly to zero from `SFT_LR`, a quarter of the rate the model was pretrained at (the rule
# of section 10.2). Three runs of the
# same budget, on the same minibatches: the loss on the answers only; the loss on everything; and
# the answers-only loss with a small *replay* of the pretraining text, 2 windows of 64 characters of
# Shakespeare added to every minibatch.

# %%
SFT_STEPS = env.pick(test=6, cpu=150, gpu=3000)
SFT_BATCH = env.pick(test=12, cpu=12, gpu=32)
SFT_LR = SH_LR / 4
replay_tokens = torch.tensor(tok.encode(sh_train))


def warmup_then_linear(steps: int):
    warm = max(1, steps // 20)
    return lambda t: min((t + 1) / warm, (steps - t) / (steps - warm))


def sft_run(mask_prompt: bool = True, replay_rows: int = 0) -> tuple[GPT, float]:
    model = copy.deepcopy(base)
    X, Y = sft_tensors([(e.prompt, e.answer) for e in sft_data["train"]], tok, template, mask_prompt=mask_prompt)
    batches = finetune.sft_batches(X, Y, SFT_BATCH, torch.Generator().manual_seed(0), replay=replay_tokens,
                                   replay_rows=replay_rows, block_size=64)
    t0 = time.perf_counter()
    train(Autocast(model, enabled=bf16), batches, steps=SFT_STEPS, lr=SFT_LR,
          lr_schedule=warmup_then_linear(SFT_STEPS), progress=False, device=device)
    return model.eval(), time.perf_counter() - t0


sft_model, sft_seconds = sft_run(mask_prompt=True)
sft_hits, sft_answers = task_success(sft_model, sft_data["test"])
print(f"{SFT_STEPS} steps of {SFT_BATCH} examples ({SFT_STEPS * SFT_BATCH / len(sft_data['train']):.1f} epochs) "
      f"at a peak learning rate of {SFT_LR:g}, in {sft_seconds:.0f} s")
sft_nats = answer_nats(sft_model)
show_success("pretrained", base_hits)
show_success("instruction-tuned", sft_hits)
show_nats("pretrained", base_nats)
show_nats("instruction-tuned", sft_nats)
for task in instructions.TASKS:
    e, a = next((e, a) for e, a in zip(sft_data["test"], sft_answers) if e.task == task)
    print(f"  {e.prompt!r} -> {a!r}")

# %% [markdown]
# After 150 steps of 12 examples, 0.4 of a pass over the training set, the model has learned the
# format and one of the open tasks: it answers the exact tasks briefly and stops, and 76.6% of its continuations of
# a line pass the checker. It has not learned the exact tasks: not one date, reversal or sum is
# right, and its answers are short strings of digits ("11", "1111"). The loss of the right answers
# fell from about 9 nats per token to about 2 for those tasks, so the model is on its way, but at
# this budget no whole answer comes out right; how many more steps it needs, this run cannot say.
# Writing a line that starts with a given word, which needs the word copied, succeeds 6.2% of the
# time.
#
# **Answers only, or everything?** The same budget with the loss on every token, prompts included,
# compared on both measures:

# %%
unmasked_model, _ = sft_run(mask_prompt=False)
unmasked_hits, _ = task_success(unmasked_model, sft_data["test"])
unmasked_nats = answer_nats(unmasked_model)
show_success("loss on answers only", sft_hits)
show_success("loss on everything", unmasked_hits)
print(f"{'answers-only − everything:':14s} {'success rate':>28s} {'answer loss (nats per token)':>36s}")
for task in instructions.TASKS:
    diff = evaluate.paired_bootstrap(sft_hits[task], unmasked_hits[task], segments=len(sft_hits[task]))
    nats = evaluate.paired_bootstrap(sft_nats[task], unmasked_nats[task], segments=len(sft_nats[task]))
    print(f"  {task:12s} {diff[0]:+9.1%} [{diff[1]:+.1%}, {diff[2]:+.1%}]   "
          f"{sft_nats[task].mean():.3f} vs {unmasked_nats[task].mean():.3f}: {nats[0]:+.3f} [{nats[1]:+.3f}, {nats[2]:+.3f}]")

# %% [markdown]
# The loss on the answers only wins on every measure that moves: 50.0 points more continuations
# pass (an interval from 35.9 to 64.1), 6.2 points more lines start with the right word, and the
# held-out answers cost 0.083 to 0.100 nats per token less in every task, every interval clear of
# zero. A likely reason, not measured here: with the loss on everything, much of each minibatch's
# loss is spent on predicting the instructions (most prompts above are longer than their answers),
# which the model never has to write.
#
# **Forgetting, and replay.** Fine-tuning moves the weights toward the new task and away from
# whatever they held before {cite:p}`mccloskey1989`. We measure how much: the loss of each model
# on Shakespeare's validation text, the pretraining task, scored with chapter 8's sliding windows,
# with paired intervals over 100 segments of the text. The pretrained model is scored with its new
# (unused) tokens, so all models spread their probability over the same vocabulary.

# %%
replay_model, _ = sft_run(mask_prompt=True, replay_rows=2)
replay_hits, _ = task_success(replay_model, sft_data["test"])
val_ids = torch.tensor(tok.encode(sh_val[: env.pick(test=3_000, cpu=12_800, gpu=111_540)]))
val_logp = {label: evaluate.token_logprobs(Autocast(m, enabled=bf16), val_ids, block_size=m.config.block_size,
                                           stride=m.config.block_size // 2).logprob
            for label, m in [("pretrained", base), ("instruction-tuned", sft_model), ("with replay", replay_model)]}
for label, logp in val_logp.items():
    mean, low, high = evaluate.bootstrap_interval(-logp)
    line = f"{label:18s} Shakespeare validation loss {mean:.4f} [{low:.4f}, {high:.4f}]"
    if label != "pretrained":
        d = evaluate.paired_bootstrap(-logp, -val_logp["pretrained"])
        line += f"   rise {d[0]:+.4f} [{d[1]:+.4f}, {d[2]:+.4f}]"
    print(line)
show_success("instruction-tuned", sft_hits)
show_success("with replay", replay_hits)
show_nats("instruction-tuned", sft_nats)
show_nats("with replay", answer_nats(replay_model))

# %% [markdown]
# Instruction tuning cost the model 0.1612 nats per character of Shakespeare (from 1.2727 to
# 1.4338, an interval from 0.1419 to 0.1843). Two windows of Shakespeare in every minibatch halve
# that rise, to 0.0816, while the answers' loss stays about where it was; the success rates with replay
# are a little lower (68.8% of continuations against 76.6%), within the intervals' overlap, so that
# cost is not shown.

# %% [markdown]
# ## 10.7 Preference tuning: DPO
#
# Instruction tuning shows the model good answers. Preference tuning shows it pairs, a better
# answer $y_w$ and a worse one $y_l$ to the same prompt $x$, and asks it to prefer the first. The
# classic recipe {cite:p}`christiano2017,ouyang2022instructgpt` fits a reward model $r(x, y)$ to the
# pairs with the Bradley–Terry model {cite:p}`bradley1952`,
#
# $$
# p(y_w \succ y_l \mid x) = \sigma\big(r(x, y_w) - r(x, y_l)\big),
# $$
#
# then trains the policy $\pi$ with reinforcement learning to maximise the reward while staying
# close to the instruction-tuned model $\pi_\text{ref}$: maximise
# $\mathbb{E}[r(x, y)] - \beta\,\mathrm{KL}(\pi \,\|\, \pi_\text{ref})$. That objective has a closed-form
# optimum, $\pi^*(y \mid x) \propto \pi_\text{ref}(y \mid x)\, e^{r(x, y)/\beta}$, which can be solved for
# the reward: $r(x, y) = \beta \log \frac{\pi^*(y \mid x)}{\pi_\text{ref}(y \mid x)} + \beta \log Z(x)$.
# Put that into the Bradley–Terry loss and $Z(x)$, the same for both answers, cancels. What is left
# is a loss on the policy itself, with no reward model and no reinforcement learning: **DPO**,
# direct preference optimisation {cite:p}`rafailov2023dpo`,
#
# $$
# \mathcal{L}_\text{DPO} = -\log \sigma\Big(\beta \log \frac{\pi(y_w \mid x)}{\pi_\text{ref}(y_w \mid x)}
# - \beta \log \frac{\pi(y_l \mid x)}{\pi_\text{ref}(y_l \mid x)}\Big).
# $$
#
# $\beta \log \frac{\pi}{\pi_\text{ref}}$ is the *implicit reward*; at the start, $\pi = \pi_\text{ref}$,
# both rewards are zero and the loss is $\log 2$. $\beta$ sets how far the policy may move: small
# $\beta$ needs large changes in log-probability to reach the same margin. Our function equals `trl`'s
# DPO loss to 1e-12 on random log-probabilities, for several $\beta$ (`tests/test_finetune.py`).

# %%
# From lmbook/finetune.py
def dpo_loss(policy_chosen: Tensor, policy_rejected: Tensor, ref_chosen: Tensor, ref_rejected: Tensor,
             beta: float = 0.1) -> DPOOutput:
    """The DPO loss (Rafailov et al. 2023) of a batch of preference pairs, from sequence
    log-probabilities under the policy π and the frozen reference π_ref:

        r(x, y) = β·log(π(y|x) / π_ref(y|x))           the implicit reward
        loss    = -log σ(r(x, y_w) - r(x, y_l))        y_w preferred to y_l

    It is the reward model's Bradley-Terry loss with the reward written in terms of the policy. At
    the start (π = π_ref) every reward is 0 and the loss is log 2.
    """
    _check_dpo_args(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta)
    chosen = beta * (policy_chosen - ref_chosen)
    rejected = beta * (policy_rejected - ref_rejected)
    loss = -F.logsigmoid(chosen - rejected).mean()
    return DPOOutput(loss, chosen.detach(), rejected.detach())


def sequence_logprobs(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """log p(targets | inputs) of each row (B,): the sum of log-probabilities of the targets y (B, T)
    that are not -100, given the inputs x (B, T), as `sft_tensors` lays them out."""
    out = model(x)
    logits = out[0] if isinstance(out, tuple) else out                      # (B, T, V)
    logp = logits.float().log_softmax(-1)
    keep = y != IGNORE_INDEX
    token_logp = logp.gather(-1, y.clamp(min=0)[..., None])[..., 0]          # (B, T)
    return (token_logp * keep).sum(1)

# %% [markdown]
# The pairs are built from new training instructions of the same tasks. The preferred answer is
# the correct one. The rejected answer is, where the instruction-tuned model gets the instruction
# wrong, the model's own greedy answer: real preference data ranks a model's own samples, and its
# own mistakes are the answers it needs to learn to avoid. Where the model is right (or writes
# nothing), the task's generator makes a plausible wrong answer instead (a date with day and month
# swapped or a day off, the digits left in order or with two swapped, a sum off by one or by ten, a
# line with the letters of each word shuffled or one that starts with the wrong word). The held-out
# pairs are made the same way from the held-out instructions and the answers above. The reference is
# the instruction-tuned model,
# frozen; its log-probabilities of every pair are computed once, before training.

# %%
dpo_sizes = {task: (n // 10, 0) for task, (n, _) in sft_sizes.items()}
dpo_examples = instructions.make_splits(dpo_sizes, seed=1)["train"]
_, sft_train_answers = task_success(sft_model, dpo_examples)
dpo_train = instructions.preference_pairs(dpo_examples, seed=1, answers=sft_train_answers)
dpo_test = instructions.preference_pairs(sft_data["test"], seed=2, answers=sft_answers)
for label, pairs, answers in [("training", dpo_train, sft_train_answers), ("held-out", dpo_test, sft_answers)]:
    own, total = Counter(e.task for (e, _, r), a in zip(pairs, answers) if r == a), Counter(e.task for e, _, _ in pairs)
    print(f"{len(pairs):,} {label} pairs; the rejected answer is the model's own mistake in "
          + ", ".join(f"{task} {own[task]}/{total[task]}" for task in total))
for e, chosen, rejected in dpo_test[::len(dpo_test) // 5][:5]:
    print(f"  {e.prompt!r}: chosen {chosen!r}, rejected {rejected!r}")


def pair_tensors(pairs):
    return (sft_tensors([(e.prompt, c) for e, c, _ in pairs], tok, template),
            sft_tensors([(e.prompt, r) for e, _, r in pairs], tok, template))


(train_chosen, train_rejected), (test_chosen, test_rejected) = pair_tensors(dpo_train), pair_tensors(dpo_test)
reference = Autocast(sft_model, enabled=bf16)
ref_train = (finetune.batched_sequence_logprobs(reference, *train_chosen),
             finetune.batched_sequence_logprobs(reference, *train_rejected))
ref_test = (finetune.batched_sequence_logprobs(reference, *test_chosen),
            finetune.batched_sequence_logprobs(reference, *test_rejected))
ref_prefers = (ref_test[0] > ref_test[1]).double()
print(f"the instruction-tuned model already gives the chosen answer the higher probability in "
      f"{ref_prefers.mean():.1%} of the {len(dpo_test)} held-out pairs")

# %% [markdown]
# The instruction-tuned model gets none of the held-out exact-task instructions right, and there the
# rejected answer is almost always its own (in every held-out pair of those tasks, and in training
# in all but 2 of the 100 sums, where its answer was right or empty); on the continuations it is
# mostly right, and the rejected answer is mostly a scrambled line. Its own mistakes are likely to
# it: held out, it gives the chosen answer
# the higher probability in only 26.2% of the pairs.
#
# One DPO run per $\beta$, each `DPO_EPOCHS` passes over the training pairs in minibatches of 16,
# from the instruction-tuned model, at one constant learning rate for every $\beta$ (`DPO_LR`, a
# fifth of instruction tuning's peak rate). Held out, we measure how the policy moved from the
# reference: the change of $\log \pi$ of the chosen and of the rejected
# answers, the implicit reward margin
# $\beta[\log\frac{\pi(y_w)}{\pi_\text{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_\text{ref}(y_l)}]$, and the
# share of pairs in which the policy gives the chosen answer the higher probability. Then what
# matters, the answers the model writes: each task's success rate, and the *win rate* against the
# instruction-tuned model, judged by the checkers (a win when the DPO model's answer is right and
# the reference's wrong, a loss the other way round, a tie otherwise; the win rate counts a tie as
# half, so 50% means no change).

# %%
betas = env.pick(test=[0.1, 1.0], cpu=[0.1, 1.0], gpu=[0.02, 0.05, 0.1, 0.2, 0.5, 1.0])
DPO_EPOCHS, DPO_LR = 1, SFT_LR / 5
DPO_STEPS = DPO_EPOCHS * finetune.steps_per_epoch(len(dpo_train), 16)
dpo_results = {}
for beta in betas:
    policy = copy.deepcopy(sft_model)
    t0 = time.perf_counter()
    history = finetune.train_dpo(Autocast(policy, enabled=bf16), train_chosen, train_rejected, ref_train, beta=beta,
                                 steps=DPO_STEPS, batch_size=16, lr=DPO_LR, generator=torch.Generator().manual_seed(0))
    seconds = time.perf_counter() - t0
    policy.eval()
    run = Autocast(policy, enabled=bf16)
    d_chosen = finetune.batched_sequence_logprobs(run, *test_chosen) - ref_test[0]
    d_rejected = finetune.batched_sequence_logprobs(run, *test_rejected) - ref_test[1]
    margin = beta * (d_chosen - d_rejected)
    hits, _ = task_success(policy, sft_data["test"])
    dpo_results[beta] = {"margin": margin, "chosen_shift": d_chosen, "rejected_shift": d_rejected, "hits": hits,
                         "history": history, "seconds": seconds}
    print(f"β = {beta}: {DPO_STEPS} steps in {seconds:.0f} s, training loss {history.loss[0]:.3f} -> "
          f"{np.mean(history.loss[-10:]):.3f}")

# %%
def win_rate(hits: dict, reference_hits: dict) -> tuple[float, float, float]:
    """(win rate, low, high) over all held-out instructions: 1 for a win, 0 for a loss, 0.5 for a tie."""
    a, b = torch.cat(list(hits.values())), torch.cat(list(reference_hits.values()))
    score = 0.5 + 0.5 * (a - b)                                            # 1, 0.5 or 0
    return evaluate.bootstrap_interval(score, segments=len(score))


def interval(x: torch.Tensor, fmt: str = ".2f") -> str:
    mean, low, high = evaluate.bootstrap_interval(x.double(), segments=len(x))
    return f"{mean:{fmt}} [{low:{fmt}}, {high:{fmt}}]"


print(f"held out, {len(dpo_test)} pairs; the reference prefers the chosen answer in {interval(ref_prefers, '.1%')}")
print(f"{'β':>5s} {'Δlog π(chosen)':>22s} {'Δlog π(rejected)':>24s} {'reward margin':>20s} "
      f"{'prefers chosen':>22s} {'win rate vs SFT':>22s}")
for beta, r in dpo_results.items():
    prefers = ((ref_test[0] + r["chosen_shift"]) > (ref_test[1] + r["rejected_shift"])).double()
    w = win_rate(r["hits"], sft_hits)
    print(f"{beta:5.2f} {interval(r['chosen_shift']):>22s} {interval(r['rejected_shift']):>24s} "
          f"{interval(r['margin']):>20s} {interval(prefers, '.1%'):>22s} {w[0]:8.1%} [{w[1]:.1%}, {w[2]:.1%}]")
show_success("instruction-tuned", sft_hits)
for beta, r in dpo_results.items():
    show_success(f"DPO, β = {beta}", r["hits"])

# %% [markdown]
# DPO did what its loss asks: on the held-out pairs the margin between chosen and rejected rewards
# is positive (3.79 at $\beta = 0.1$, 16.84 at $\beta = 1$), and with $\beta = 0.1$ the policy
# prefers the chosen answer in 55.3% of the pairs, against 26.2% for the reference (with $\beta = 1$,
# in 50.3%): both well above the reference, though neither interval is clear of one half, so
# neither policy is shown to prefer the chosen answer in most pairs (the margin measures how far
# each pair moved from the reference, which preferred the rejected answer in most of them). But it
# did not raise the preferred answers: it lowered the log-probability of the rejected ones by 44.74
# nats and of the chosen ones too, by 6.86 (by 19.85 and 3.01 with $\beta = 1$). The loss sees only the
# difference, so pushing everything down, the rejected faster, satisfies it. The answers the model
# writes got worse: its continuations pass the checker 25.0% and 34.4% of the time against 76.6%
# before, and its win rate against the instruction-tuned model is below one half for both $\beta$
# (44.2% and 45.2%, intervals below 50%). Here the preferred answers of the exact tasks are ones the
# model cannot yet write, and the cheapest way to widen the margin was to make every answer less
# likely, the continuations it wrote well included. The larger $\beta$ kept the policy closer to the
# reference, as the leash should: both log-probabilities moved less than half as far (3.01 against
# 6.86 nats, 19.85 against 44.74). Preference tuning refines a model that already writes good
# answers some of the time; it cannot stand in for the instruction tuning this one still needs.

# %% [markdown]
# ## 10.8 The applications the source articles list
#
# The articles this book grew from end with a list of applications: text generation, machine
# translation, summarisation, question answering, sentiment analysis, recommendation. Each is a
# pretrained language model adapted in one of the ways of this chapter, or something close to it:
#
# | application | what it is, for a language model | where the book answers it |
# |---|---|---|
# | text generation | sampling from the model, one token at a time | chapter 8: decoding, the KV cache, GPT-2 itself |
# | translation | a sequence-to-sequence map, input text to output text | chapter 4's dates (an LSTM encoder–decoder with attention) and chapter 5's encoder–decoder Transformer; here, the date task as an instruction to a decoder-only model |
# | sentiment and topic classification | a head on the last state, fine-tuned | section 10.2 on poets; sentiment is the same recipe with other labels {cite:p}`pang2002sentiment,howard2018ulmfit` |
# | question answering | reading a passage and answering from it | here only its simplest form: an instruction with a checkable answer (section 10.6). Reading comprehension needs question–passage–answer data such as SQuAD {cite:p}`rajpurkar2016squad` and a longer context; open-domain questions need retrieval {cite:p}`lewis2020rag` |
# | summarisation | a long input, a short output that keeps what matters | the encoder–decoder of chapter 5, or instruction tuning on document–summary pairs {cite:p}`see2017pointer,raffel2020t5`; it needs contexts far longer than our 128 to 256 characters |
# | recommendation | ranking items for a user | not a language-model task in itself; a language model can embed item descriptions (the pooled states of section 10.2) or rank them by likelihood, as section 10.5 ranks poets |
#
# Two questions of the articles' FAQs belong here. *Should I fine-tune a pretrained model or train
# my own?* Of those two, fine-tune: at every size of section 10.4 the pretrained network beat the
# same network trained from scratch, which learned nothing at our budget. But first measure a
# baseline that needs no network: on our task, counting each poet's characters beat our small
# pretrained model, except with the fewest labels, where the two were level. A larger model pretrained on more text changes
# that answer {cite:p}`howard2018ulmfit`, and LoRA (section 10.3) makes fine-tuning a large one cheap in
# memory. *How do I choose a pretrained
# model?* One trained on text like yours (the Tang model for Tang poems; the Shakespeare model knows
# no Chinese), with a tokenizer that covers your text (new tokens start as an average token and must be learned, section 10.6), and
# the largest your budget can fine-tune and serve.

# %%
print(f"this notebook ran in {time.perf_counter() - chapter_start:.0f} s ({time.process_time():.0f} s of CPU time) "
      f"at the {env.profile()} profile")

# %% [markdown]
# What to take away:
#
# - A fine-tuned causal language model classifies from the **last** real position's state, the only
#   one that has read the whole input; a frozen one was read at least as well by the mean of its
#   states.
# - Compare adaptations at an equal budget, against a baseline without a network, and with paired
#   intervals: on a few hundred test examples, differences of a few points are within the noise.
# - Pretraining made the network: from scratch it learned nothing at our budget, fine-tuned it beat
#   every probe. It did not beat naive Bayes on character counts. LoRA trained 2.72% of the
#   parameters with a fraction of the optimizer memory, for less accuracy than full fine-tuning at
#   this size, and merged away at no cost.
# - Instruction tuning is fine-tuning on a template with special tokens; the loss belongs on the
#   answers. In 150 steps it taught the format and one open task, not the exact ones. It cost some
#   of the pretraining skill, and a little replay bought half of that back.
# - DPO turns preference pairs into a classification loss on the policy's own log-probabilities;
#   β is the leash that keeps it near the instruction-tuned model. Run on a model that cannot yet
#   write the preferred answers, it pushed every answer down and made the model worse.

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (autograded).** Preference labels are noisy: people disagree, and a generator can be
# wrong. *Conservative DPO* {cite:p}`mitchell2023cdpo` assumes each label is flipped with
# probability $\varepsilon$ and minimises the expected loss under that noise,
# $-(1-\varepsilon)\log\sigma(\beta h) - \varepsilon \log\sigma(-\beta h)$, where
# $h = \log\frac{\pi(y_w)}{\pi_\text{ref}(y_w)} - \log\frac{\pi(y_l)}{\pi_\text{ref}(y_l)}$. Write
# `cdpo_loss(policy_chosen, policy_rejected, ref_chosen, ref_rejected, beta, epsilon)`, the mean over
# pairs. With $\varepsilon = 0$ it is DPO; the hidden tests take `dpo_loss` away.

# %%
def cdpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
              ref_rejected: torch.Tensor, beta: float, epsilon: float) -> torch.Tensor:
    ### BEGIN SOLUTION
    h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return (-(1 - epsilon) * F.logsigmoid(beta * h) - epsilon * F.logsigmoid(-beta * h)).mean()
    ### END SOLUTION

# %%
# Autograded test: ex1_cdpo (2 points)
_z = torch.zeros(4, dtype=torch.float64)
assert abs(cdpo_loss(_z, _z, _z, _z, 0.1, 0.2).item() - math.log(2)) < 1e-12, \
    "when the policy equals the reference, h = 0 and the loss is log 2 whatever epsilon is"
_pc, _pr = torch.tensor([-3.0, -5.0], dtype=torch.float64), torch.tensor([-6.0, -4.0], dtype=torch.float64)
_rc, _rr = torch.tensor([-4.0, -5.0], dtype=torch.float64), torch.tensor([-5.0, -5.0], dtype=torch.float64)
assert abs(cdpo_loss(_pc, _pr, _rc, _rr, 0.5, 0.0).item() - dpo_loss(_pc, _pr, _rc, _rr, 0.5).loss.item()) < 1e-12, \
    "with epsilon = 0, conservative DPO is DPO"
### BEGIN HIDDEN TESTS
from lmbook import grading

_g = torch.Generator().manual_seed(7)
_lp = [-30 * torch.rand(50, generator=_g, dtype=torch.float64) for _ in range(4)]
_h = (_lp[0] - _lp[2]) - (_lp[1] - _lp[3])
_expected = {(b, e): float((-(1 - e) * torch.log(torch.sigmoid(b * _h)) - e * torch.log(torch.sigmoid(-b * _h))).mean())
             for b in (0.05, 0.5) for e in (0.0, 0.1, 0.3)}
with grading.without("dpo_loss", "lmbook.finetune.dpo_loss"):
    for (b, e), value in _expected.items():
        assert abs(cdpo_loss(*_lp, b, e).item() - value) < 1e-9, f"beta={b}, epsilon={e}: expected {value:.6f}"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2 (autograded).** Count LoRA's trainable parameters by formula, without building a
# model: `lora_parameter_count(config, rank, targets)` for a `GPTConfig`, where `targets` is a subset
# of `("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")` (each adapted layer adds
# $r(d_\text{in} + d_\text{out})$; find each projection's shape in chapter 5's block). Then: which rank
# gives the Tang model's LoRA 1% of the model's parameters with all four targets? The hidden tests
# take `inject_lora`, `count_parameters` and `LoRALinear` away.

# %%
def lora_parameter_count(config, rank: int, targets: tuple[str, ...]) -> int:
    ### BEGIN SOLUTION
    d = config.n_embd
    shapes = {"attn.c_attn": (d, 3 * d), "attn.c_proj": (d, d), "mlp.c_fc": (d, 4 * d), "mlp.c_proj": (4 * d, d)}
    return config.n_layer * sum(rank * sum(shapes[t]) for t in targets)
    ### END SOLUTION


### BEGIN SOLUTION
_all = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")
_per_rank = lora_parameter_count(tang.config, 1, _all)
print(f"one rank of all four targets: {_per_rank:,} parameters; 1% of {tang.num_params():,} is rank "
      f"{0.01 * tang.num_params() / _per_rank:.1f}")
### END SOLUTION

# %%
# Autograded test: ex2_lora_count (2 points)
from lmbook.gpt import GPTConfig

_cfg = GPTConfig(vocab_size=100, block_size=16, n_layer=2, n_head=2, n_embd=32)
assert lora_parameter_count(_cfg, 1, ("attn.c_proj",)) == 2 * (32 + 32), "attn.c_proj is d -> d, in each of n_layer blocks"
assert lora_parameter_count(_cfg, 4, ("attn.c_attn",)) == 2 * 4 * (32 + 96), "c_attn maps d -> 3d (queries, keys, values)"
### BEGIN HIDDEN TESTS
from lmbook import grading

_cases = []
for _c in [GPTConfig(vocab_size=50, block_size=8, n_layer=3, n_head=4, n_embd=48),
           GPTConfig(vocab_size=70, block_size=8, n_layer=1, n_head=1, n_embd=20)]:
    for _r, _t in [(2, ("mlp.c_fc",)), (3, ("mlp.c_proj", "attn.c_attn")),
                   (5, ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"))]:
        _m = GPT(_c)
        finetune.inject_lora(_m, _r, targets=_t)
        _cases.append((_c, _r, _t, finetune.count_parameters(_m)[0]))
with grading.without("lmbook.finetune.inject_lora", "lmbook.finetune.count_parameters", "lmbook.finetune.LoRALinear",
                     "LoRALinear"):
    for _c, _r, _t, _n in _cases:
        assert lora_parameter_count(_c, _r, _t) == _n, f"n_embd={_c.n_embd}, rank {_r}, targets {_t}: expected {_n:,}"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 3 (autograded).** Add an instruction task with its checker: *sort the digits*. Write
# `make_sort(rng, split)`, returning an `instructions.Example` with task `"sort"`, a prompt that
# contains the digits (4 to 8 of them, drawn with `rng`), the digits sorted in increasing order as
# the answer, and the digits as its `key`. The splits must never share a digit string: a string
# belongs to the test split when the sum of its digits is a multiple of 7, to the training split
# otherwise (draw again until it belongs to the split asked for). And write
# `check_sort(example, answer)`: whether `answer` (surrounding spaces aside) is the right one.

# %%
def make_sort(rng: random.Random, split: str) -> instructions.Example:
    ### BEGIN SOLUTION
    while True:
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(4, 8)))
        if (sum(map(int, digits)) % 7 == 0) == (split == "test"):
            break
    return instructions.Example("sort", f"Sort the digits {digits}.", "".join(sorted(digits)), key=digits)
    ### END SOLUTION


def check_sort(example: instructions.Example, answer: str) -> bool:
    ### BEGIN SOLUTION
    return answer.strip() == "".join(sorted(example.key))
    ### END SOLUTION

# %%
# Autograded test: ex3_sort_task (2 points)
_rng = random.Random(0)
_ex = [make_sort(_rng, "train") for _ in range(200)]
assert all(e.task == "sort" and 4 <= len(e.key) <= 8 and e.key in e.prompt for e in _ex), \
    "each example: task 'sort', 4 to 8 digits as its key, the digits in the prompt"
assert all(check_sort(e, e.answer) and e.answer == "".join(sorted(e.key)) for e in _ex), "the answer is the sorted digits"
assert not check_sort(_ex[0], _ex[0].answer[::-1] + "0"), "a wrong answer must fail the checker"
### BEGIN HIDDEN TESTS
for _seed in (1, 2):
    _r = random.Random(_seed)
    _train = [make_sort(_r, "train") for _ in range(3000)]
    _test = [make_sort(_r, "test") for _ in range(300)]
    assert not {e.key for e in _train} & {e.key for e in _test}, "a test digit string occurs in training"
    assert all(sum(map(int, e.key)) % 7 == 0 for e in _test), "a test string's digits must sum to a multiple of 7"
    assert all(sum(map(int, e.key)) % 7 != 0 for e in _train), "a training string's digit sum must not be a multiple of 7"
    assert len({e.key for e in _test}) > 250, "the test strings should be drawn at random, not repeated"
    for _e in _test[:50]:
        assert check_sort(_e, " " + "".join(sorted(_e.key)) + " ")
        _wrong = "".join(sorted(_e.key, reverse=True))
        assert check_sort(_e, _wrong) == (_wrong == "".join(sorted(_e.key))), "only the sorted digits pass"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 4.** From the rank table of section 10.3, find the smallest rank whose accuracy is
# within 1 point of full fine-tuning, and say whether the paired interval lets you claim it. How
# would you find it more precisely, and what would it cost?

# %%
### BEGIN SOLUTION
_full = results["full fine-tuning"]["accuracy"][0]
_within = [r for r in ranks if results[f"LoRA r={r}"]["accuracy"][0] >= _full - 0.01]
print(f"full fine-tuning {_full:.1%}; ranks within 1 point: {_within or 'none'}")
for _r in ranks:
    _d = bootstrap_metric(accuracy, y_test, results[f"LoRA r={_r}"]["pred"], baseline=results["full fine-tuning"]["pred"])
    print(f"  r={_r}: {_d[0]:+.1%} [{_d[1]:+.1%}, {_d[2]:+.1%}]")
# The paired intervals are several points wide on a few hundred test poems: "within 1 point" cannot be
# claimed from one run of each. More test poems (there are none: use the validation poems too, or
# cross-validation over the training poems) and several seeds per rank narrow them; each LoRA run
# costs about as much as full fine-tuning's forward and backward passes through the activations.
### END SOLUTION

# %% [markdown]
# **Exercise 5.** Do the n-gram baseline and the fine-tuned classifier make the same mistakes?
# Compute the baseline's confusion matrix on the test poems and its recall per poet, and for each of
# the two models the pair of poets most often mistaken for each other. On how many test poems are
# both wrong, and how many would that be if their mistakes were independent?

# %%
### BEGIN SOLUTION
_preds = {"naive Bayes": results["n-gram naive Bayes"]["pred"], "fine-tuned": results["full fine-tuning"]["pred"]}
for _label, _pred in _preds.items():
    _cm = finetune.confusion_matrix(y_test, _pred, len(poets))
    _off = (_cm + _cm.T).float().fill_diagonal_(0)
    _i, _j = divmod(int(_off.argmax()), len(poets))
    print(f"{_label:12s} recall " + ", ".join(f"{n} {_cm[c, c] / _cm[c].sum():.0%}" for c, n in enumerate(names))
          + f"; most confused: {names[_i]} and {names[_j]} ({int(_off[_i, _j])} poems)")
_wrong = {k: (p != y_test).double() for k, p in _preds.items()}
_both = int((_wrong["naive Bayes"] * _wrong["fine-tuned"]).sum())
_independent = float(_wrong["naive Bayes"].mean() * _wrong["fine-tuned"].mean() * len(y_test))
print(f"both wrong on {_both} test poems; {_independent:.0f} if their mistakes were independent")
# More shared mistakes than independence predicts: some poems are hard for any reader of their first
# characters, whether it counts n-grams or was pretrained on the poems.
### END SOLUTION

# %% [markdown]
# **Exercise 6.** Does the instruction-tuned model follow a phrasing it never saw? Ask it for the
# held-out dates as `"Convert ... to ISO 8601."` and compare the success rate, and the loss of the
# right answers (as `answer_nats` measures it), with the trained phrasings.

# %%
### BEGIN SOLUTION
_dates = [e for e in sft_data["test"] if e.task == "dates"]
_human = [(re.fullmatch(r"Write (.*) as YYYY-MM-DD\.", e.prompt) or re.fullmatch(r"Normalise the date (.*)\.", e.prompt))[1]
          for e in _dates]
_new = [instructions.Example("dates", f"Convert {h} to ISO 8601.", e.answer, e.key) for h, e in zip(_human, _dates)]
_answers = finetune.generate_answers(sft_model, tok, template, [e.prompt for e in _new], 16)
_rate = np.mean([instructions.check(e, a) for e, a in zip(_new, _answers)])
_nats = {}
for _label, _examples in [("trained phrasings", _dates), ("a new phrasing", _new)]:
    _X, _Y = sft_tensors([(e.prompt, e.answer) for e in _examples], tok, template)
    _logp = finetune.batched_sequence_logprobs(Autocast(sft_model, enabled=bf16), _X, _Y)
    _nats[_label] = -_logp / (_Y != IGNORE_INDEX).sum(1)
_d = evaluate.paired_bootstrap(_nats["a new phrasing"], _nats["trained phrasings"], segments=len(_dates))
print(f"exact match: trained phrasings {sft_hits['dates'].mean():.1%}, a new phrasing {_rate:.1%}")
print(f"loss of the right answer: trained phrasings {_nats['trained phrasings'].mean():.3f}, a new phrasing "
      f"{_nats['a new phrasing'].mean():.3f} nats per token (new − trained {_d[0]:+.3f} [{_d[1]:+.3f}, {_d[2]:+.3f}])")
# Exact matches need the whole date right; the loss of the right answer moves before that. A new
# phrasing that makes the right answer less likely means the model learned the phrasings it saw
# more than it learned to read an instruction: generalising to new wordings takes many tasks and
# many phrasings of each (Wei et al. 2022).
### END SOLUTION

# %% [markdown]
# **Exercise 7.** $\beta$ as a leash. For each $\beta$ of section 10.7, how far did the policy move
# from the reference: the mean change of $\log\pi$ on the chosen and on the rejected held-out answers?
# Which runs lowered the probability of the *chosen* answers, and why can DPO do that while its
# loss falls?

# %%
### BEGIN SOLUTION
for _b, _r in dpo_results.items():
    print(f"β = {_b}: Δlog π chosen {_r['chosen_shift'].mean():+.2f}, rejected {_r['rejected_shift'].mean():+.2f}, "
          f"margin / β {(_r['margin'] / _b).mean():+.2f}")
# The loss depends only on the difference of the two log-ratios: pushing the rejected answers down faster
# than the chosen ones lowers it even when both go down. A larger β reaches a given margin with a smaller
# change of log-probability, so it leaves the model closer to the reference.
### END SOLUTION
