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
# # 8. Generating text and measuring models
#
# A trained language model is a function from a context to a probability distribution over the
# next token. Two questions remain before it is useful: how to turn those distributions into text,
# quickly, and how to say how good the model is. This chapter answers both, and measures every
# answer.
#
# The plan: (1) decoding as a choice of distribution: greedy, temperature, top-$k$, nucleus,
# min-$p$, penalties, stop strings, and what each does to the text, including why greedy decoding
# and beam search repeat themselves; (2) beam search; (3) the KV cache, the reason generation can
# be fast at all, measured against recomputing everything and against Hugging Face's `generate`;
# (4) speculative decoding, which lets a small model propose and a large one verify, with exactly the
# large model's distribution; (5) evaluation: one leaderboard of the book's models on the same
# held-out text with confidence intervals, calibration, and a multiple-choice test in the style of
# HellaSwag; (6) the source articles' first application, generating with GPT-2.
#
# The chapter starts from models trained earlier and committed with the book (`lmbook.models`), so
# nothing here needs minutes of pre-training. *The committed model* of this chapter is
# `shakespeare_char`, a character-level GPT trained in under an hour on a 2-core CPU (chapter 7,
# `make models`); where that run is not in `runs/`, the chapter uses `shakespeare_char_gpu` in its
# place, and its first output says which model it loaded. `shakespeare_char_gpu`, a larger GPT of
# nanoGPT's shape trained on one GPU in chapter 7 (it loads and runs on a CPU), is the *target* of
# speculative decoding in section 8.4 and a second entry on the leaderboard of section 8.5.

# %%
import json
import math
import os
import re
import time
import warnings
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

import lmbook
from lmbook import data, env, evaluate, generate, hf, models, ngram, tokens
from lmbook.plot import use_book_style

chapter_start = time.perf_counter()
env.seed_everything(1337)
use_book_style()
device = env.device()
# Generation with these small models is bound by memory traffic and Python overhead, not arithmetic:
# one thread runs them about as fast as two, far more steadily when other programs share the cores.
torch.set_num_threads(env.pick(test=1, cpu=1, gpu=torch.get_num_threads()))
print(env.describe())
print(f"torch uses {torch.get_num_threads()} thread(s)")
# the repository's root, where bench/results/ lives: above this notebook, or the checkout lmbook is
# installed from (`pip install -e .`) when the notebook was copied elsewhere
ROOT = next((p for p in [Path.cwd(), *Path.cwd().parents, Path(lmbook.__file__).resolve().parents[1]]
             if (p / "bench" / "results").is_dir()), None)

# %% [markdown]
# The committed models come with their tokenizer: a list of the 65 characters of tinyshakespeare.
# The validation text is nanoGPT's split (the last 10%), which none of them was trained on.

# %%
BIG = "shakespeare_char_gpu"
try:
    MODEL = models.path("shakespeare_char").name
except FileNotFoundError:
    MODEL = BIG
model, meta = models.load(MODEL, device=device)
big, big_meta = (model, meta) if MODEL == BIG else models.load(BIG, device=device)
committed = {MODEL: model, BIG: big}                 # the committed models present (one or two)
chars = meta["chars"]
assert big_meta["chars"] == chars, "the models share one tokenizer"


def encode(text: str) -> list[int]:
    return tokens.encode_chars(text, chars).tolist()


def decode(ids) -> str:
    return tokens.decode_chars(list(ids), chars)


def training_chars(name: str) -> int:
    """Characters a committed model read in training: its steps times the characters per step."""
    run = models.metrics(name)
    return run["eval_step"][-1] * run["info"]["tokens_per_step"]


train_text, val_text = data.shakespeare_split()
print(f"the committed model of this chapter: {MODEL}" + (
    "" if MODEL != BIG else " (shakespeare_char is not in runs/: the GPU-trained model stands in for it)"))
for name, m in committed.items():
    c, run = m.config, models.metrics(name)
    print(f"{name:21s} {c.n_layer} layers x {c.n_embd}, context {c.block_size}: {m.num_params():,} parameters; "
          f"validation loss {run['eval_loss']['val'][-1]:.4f} after {training_chars(name) / 1e6:.1f}M characters "
          f"({run['info']['device']})")

# %% [markdown]
# ## 8.1 Decoding is a choice of distribution
#
# At every step the model gives logits $z \in \mathbb{R}^V$ and the distribution
# $p = \mathrm{softmax}(z)$ over the next token. *Decoding* picks the token. Sampling from $p$ itself
# reproduces the model's own beliefs, unlikely tokens included; every other rule replaces $p$ by a
# modified distribution $\tilde p$ and samples from that:
#
# | rule | $\tilde p$ | knob |
# |---|---|---|
# | greedy | all mass on $\arg\max_v z_v$ | none |
# | temperature | $\mathrm{softmax}(z/\tau)$ | $\tau < 1$ sharper, $\tau > 1$ flatter |
# | top-$k$ {cite:p}`fan2018` | $p$ restricted to the $k$ most probable tokens, renormalised | $k$ |
# | nucleus, top-$p$ {cite:p}`holtzman2020` | $p$ restricted to the fewest most probable tokens whose mass reaches $p$ | $p$ |
# | min-$p$ {cite:p}`nguyen2024minp` | $p$ restricted to tokens with $p_v \ge p_{\min} \cdot \max_u p_u$ | $p_{\min}$ |
# | repetition penalty {cite:p}`keskar2019ctrl` | $z_v / \theta$ (or $z_v\theta$ if $z_v < 0$) for every token already in the text | $\theta > 1$ |
# | frequency / presence penalty | $z_v - \alpha\, c_v - \beta\, [c_v > 0]$, $c_v$ = count of $v$ generated so far | $\alpha, \beta$ |
#
# Top-$k$ keeps a fixed number of tokens whether the model is sure or not; top-$p$ and min-$p$
# adapt: a confident distribution keeps few tokens, a flat one many. Each transform is a few lines
# on a `(B, V)` tensor of logits, and each equals Hugging Face's implementation, the same
# operations in the same order (tests/test_generate.py compares them on random logits, ties and
# extreme values included, to $10^{-6}$):

# %%
# From lmbook/generate.py
def apply_temperature(logits: Tensor, temperature: float) -> Tensor:
    """softmax(z / τ): τ < 1 sharpens the distribution, τ > 1 flattens it (Hugging Face's
    ``TemperatureLogitsWarper``)."""
    return logits / temperature


def top_k_filter(logits: Tensor, k: int) -> Tensor:
    """Keep the k largest logits of each row (all those tied with the k-th), set the rest to -inf
    (``TopKLogitsWarper``)."""
    k = min(k, logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[..., -1:]                      # (B, 1) the k-th largest
    return logits.masked_fill(logits < kth, -math.inf)


def top_p_filter(logits: Tensor, p: float) -> Tensor:
    """Nucleus sampling (Holtzman et al. 2020): keep the most probable tokens whose probabilities add
    up to at least p, that is, drop the least probable tokens whose total is at most 1 - p; the most
    probable token always stays (``TopPLogitsWarper``, the same sort and the same ties).

    >>> top_p_filter(torch.log(torch.tensor([[0.5, 0.3, 0.2]])), 0.7)
    tensor([[-0.6931, -1.2040,    -inf]])
    """
    sorted_logits, order = torch.sort(logits, dim=-1)                         # ascending: least probable first
    tail_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)                  # this token and all below it
    drop_sorted = tail_mass <= 1 - p
    drop_sorted[..., -1] = False                                              # keep the most probable token
    drop = drop_sorted.scatter(-1, order, drop_sorted)                        # back to vocabulary order
    return logits.masked_fill(drop, -math.inf)


def min_p_filter(logits: Tensor, p: float) -> Tensor:
    """Keep the tokens at least p times as probable as the most probable one (Nguyen et al. 2024):
    the cut follows the model's confidence (``MinPLogitsWarper``)."""
    probs = logits.softmax(dim=-1)
    drop = probs < p * probs.amax(dim=-1, keepdim=True)
    drop.scatter_(-1, torch.topk(probs, 1, dim=-1).indices, False)           # the top token stays, even in a tie
    return logits.masked_fill(drop, -math.inf)


def repetition_penalty(logits: Tensor, seen: Tensor, penalty: float) -> Tensor:
    """CTRL's penalty (Keskar et al. 2019) on every token id in `seen` (B, t): a positive logit is
    divided by `penalty`, a negative one multiplied, so that penalty > 1 always makes a token that
    already occurred less likely, however often (``RepetitionPenaltyLogitsProcessor``)."""
    z = torch.gather(logits, -1, seen)                                        # (B, t) logits of the seen tokens
    z = torch.where(z < 0, z * penalty, z / penalty)
    return logits.scatter(-1, seen, z)


def frequency_penalty(logits: Tensor, generated: Tensor, frequency: float = 0.0, presence: float = 0.0) -> Tensor:
    """OpenAI's penalties: subtract ``frequency × count + presence × [count > 0]`` from the logit of
    each token, counting its occurrences in `generated` (B, n), the tokens generated so far (the prompt
    is not counted). Unlike the repetition penalty, a token's logit falls further each time it recurs."""
    counts = torch.zeros_like(logits).scatter_add_(-1, generated, torch.ones_like(generated, dtype=logits.dtype))
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)


# %% [markdown]
# The top-$p$ filter is written the way Hugging Face writes it: sort in *ascending* order and drop
# the tail whose cumulative mass is at most $1-p$. That is the same set as "the most probable tokens
# until their mass reaches $p$", and writing it this way makes the ties come out the same too.
# Here is what the transforms do to a real distribution: the committed model's next character after
# a passage of the validation text that stops just before a word.

# %%
context = val_text[: val_text.index("daughter\nCall'd")]
print(repr(context[-120:]))
with torch.inference_mode():
    z = model(torch.tensor([encode(context[-model.config.block_size:])], device=device))[0][:, -1].float().cpu()


def entropy_bits(logits: Tensor) -> float:
    p = logits.softmax(-1)
    return -(p * torch.log2(p.clamp(min=1e-30))).sum().item()


variants = {"the model (τ = 1)": z, "τ = 0.5": apply_temperature(z, 0.5), "τ = 1.5": apply_temperature(z, 1.5),
            "top-k, k = 5": top_k_filter(z, 5), "top-p, p = 0.9": top_p_filter(z, 0.9),
            "min-p, p = 0.1": min_p_filter(z, 0.1)}
order = z[0].argsort(descending=True)[:16]
fig, axes = plt.subplots(2, 3, figsize=(10, 4.6), sharey=True)
for ax, (label, v) in zip(axes.flat, variants.items()):
    p = v.softmax(-1)[0]
    kept = int(torch.isfinite(v).sum())
    ax.bar(range(16), p[order], color="C0" if kept == len(chars) else "C1")
    ax.set_xticks(range(16), [repr(chars[i])[1:-1] or "⏎" for i in order], fontsize=7)
    ax.set_title(f"{label}\n{kept} kept, entropy {entropy_bits(v):.2f} bits", fontsize=9)
axes[0, 0].set_ylabel("probability")
axes[1, 0].set_ylabel("probability")
plt.tight_layout()
plt.show()
for label, v in variants.items():
    top3 = ", ".join(f"{chars[i]!r} {q:.3f}" for q, i in zip(*v.softmax(-1)[0].topk(3)))
    print(f"{label:18s} kept {int(torch.isfinite(v).sum()):2d}, entropy {entropy_bits(v):.2f} bits; top 3: {top3}")
sure = context + "daughte"                               # a context where the next character is nearly certain
with torch.inference_mode():
    z_sure = model(torch.tensor([encode(sure[-model.config.block_size:])], device=device))[0][:, -1].float().cpu()
kept = {label: int(torch.isfinite(f(z_sure)).sum()) for label, f in
        [("top-k 5", lambda v: top_k_filter(v, 5)), ("top-p 0.9", lambda v: top_p_filter(v, 0.9)),
         ("min-p 0.1", lambda v: min_p_filter(v, 0.1))]}
print(f"after {sure[-15:]!r} (entropy {entropy_bits(z_sure):.2f} bits): tokens kept by", kept)

# %% [markdown]
# After "have you not a", the model spreads its belief over the first letters of many words.
# Temperature reshapes the whole distribution without removing anything; the three filters cut the
# tail and leave the shape of what remains. On this context top-$p$ at 0.9 keeps more tokens than
# top-$k$ at 5, because the model is unsure; on a context where it is sure (after "daughte"),
# top-$p$ and min-$p$ keep a single token, and top-$k$ still five. Hugging Face's warpers give the
# same numbers on this real
# distribution:

# %% tags=["nbval-check-output"]
from transformers import (MinPLogitsWarper, RepetitionPenaltyLogitsProcessor, TemperatureLogitsWarper,
                          TopKLogitsWarper, TopPLogitsWarper)

seen = torch.tensor([encode(context[-200:])])
pairs = {"temperature 0.7": (apply_temperature(z, 0.7), TemperatureLogitsWarper(0.7)(seen, z.clone())),
         "top-k 5": (top_k_filter(z, 5), TopKLogitsWarper(5)(seen, z.clone())),
         "top-p 0.9": (top_p_filter(z, 0.9), TopPLogitsWarper(0.9)(seen, z.clone())),
         "min-p 0.1": (min_p_filter(z, 0.1), MinPLogitsWarper(0.1)(seen, z.clone())),
         "repetition 1.3": (repetition_penalty(z, seen, 1.3), RepetitionPenaltyLogitsProcessor(1.3)(seen, z.clone()))}
for label, (ours, theirs) in pairs.items():
    same_cut = torch.equal(torch.isfinite(ours), torch.isfinite(theirs))
    gap = (ours[torch.isfinite(ours)] - theirs[torch.isfinite(theirs)]).abs().max().item()
    print(f"{label:15s} same tokens kept: {same_cut}, largest difference of the kept logits: {gap:.1e}")
    assert same_cut and gap < 1e-6

# %% [markdown]
# `lmbook.generate.Sampling` bundles one choice of these settings and applies them in Hugging Face's
# order (penalties, then temperature, top-$k$, top-$p$, min-$p$); `generate` runs the loop. Here are
# samples from the committed model, every one from the same prompt and the same random seed:

# %%
prompt = "PETRUCHIO:\n"
sample_chars = env.pick(test=40, cpu=250, gpu=600)
settings = {"greedy": dict(greedy=True), "τ = 0.5": dict(temperature=0.5), "τ = 1.0": dict(),
            "τ = 1.5": dict(temperature=1.5), "top-k 10": dict(top_k=10), "top-p 0.9": dict(top_p=0.9),
            "min-p 0.1": dict(min_p=0.1)}
prompt_ids = torch.tensor([encode(prompt)], device=device)
samples = {}
for label, kw in settings.items():
    out = generate.generate(model, prompt_ids, sample_chars, generator=torch.Generator(device=device).manual_seed(7), **kw)
    samples[label] = decode(out[0, len(prompt):].tolist())
    print(f"--- {label} ---\n{prompt}{samples[label]}\n")

# %% [markdown]
# The texts differ in how probable they are to the model, in how often they repeat themselves and
# in how many words they make up; the measurements below put numbers on each.
#
# ### Why greedy decoding and beam search repeat themselves
#
# Greedy decoding takes the most probable next token, every time. Once a phrase has occurred, the
# most probable continuation of it is very often the same phrase again: a Transformer can copy from
# its context (chapter 4's attention makes looking back cheap), and every repetition makes the next
# one more probable still. Greedy decoding has no way to choose a less probable token to escape.
# Beam search (section 8.2) searches for an even more probable sequence. Holtzman et al. put it as a
# paradox: text chosen to be as probable as possible is not like human text, which is *surprising*
# at a rate a good model predicts {cite:p}`holtzman2020`. We can measure it: for each sample above,
# and for a beam search of 4 beams from the same prompt (it keeps its beams inside the model's
# context, so its text is at most that long), the model's own log-likelihood per character, the
# repetition rate, and the share of its words that never occur in the training text; against the
# same numbers for real, held-out Shakespeare of the same length, the text that follows the same
# prompt in the play.

# %%
beam_chars = min(sample_chars, model.config.block_size - len(prompt))
beam_out, _ = generate.beam_search(model, prompt_ids, beam_chars, 4, length_penalty=1.0)
samples["beam, 4 beams"] = decode(beam_out[0, len(prompt):].tolist())
print(f"--- beam search, 4 beams ({beam_chars} characters) ---\n{prompt}{samples['beam, 4 beams']}\n")
train_words = set(re.findall(r"[a-z]+", train_text.lower()))


def loglik_per_char(texts: list[str], lm: nn.Module = model) -> float:
    """The model's mean log-probability per character of each text (after the prompt), τ = 1, unfiltered."""
    values = []
    for text in texts:
        ids = torch.tensor(encode(prompt + text))
        scores = evaluate.token_logprobs(lm, ids, lm.config.block_size)
        values.append(scores.logprob[len(prompt) - 1:].mean().item())
    return float(np.mean(values))


def new_words(texts: list[str]) -> float:
    """The share of the words of the texts that never occur in the training text."""
    words = [w for t in texts for w in re.findall(r"[a-z]+", t.lower())]
    return sum(w not in train_words for w in words) / max(1, len(words))


speeches = [i + len(prompt) for i in range(len(val_text)) if val_text.startswith(prompt, i)]   # where Petruchio speaks
human = [val_text[i: i + sample_chars] for i in speeches]                # what follows the prompt in the real play
print(f"{'':15s} {'characters':>10s} {'log-lik/char':>13s} {'repetition':>11s} {'new words':>10s}")
for label, texts in [*((k, [t]) for k, t in samples.items()), (f"held-out ({len(human[:8])})", human[:8])]:
    print(f"{label:15s} {len(texts[0]):10d} {loglik_per_char(texts):13.3f} "
          f"{np.mean([evaluate.repetition_rate(t, 3) for t in texts]):11.2f} {new_words(texts):10.1%}")

# %% [markdown]
# The repetition rate is the fraction of a text's word trigrams that already occurred earlier in it
# (seq-rep-3 {cite:p}`welleck2020unlikelihood`). The two searches for probable text are the ones that
# repeat themselves: greedy decoding repeats 0.13 of its word trigrams ("of the sea" over and over),
# beam search 0.06 in its 117 characters (the same few short questions), and both are far *more*
# probable to the model (-0.822 and -0.433 nats per character) than real Shakespeare (-1.250). No
# sample drawn at random repeats a word trigram in 250 characters. At the other end, $\tau = 1.5$
# makes up 15.2% of its words, five times the rate of the held-out text (2.9%: names and rare words
# the training text lacks). At full temperature, top-$p$ and min-$p$ make up fewer words than
# unfiltered sampling (5.9% and 4.1%, against 7.8%), as cutting the tail where the misspellings live
# should; top-$k$ at 10 does not (8.7%). These are single samples of 250 characters; the measurement
# below takes eight of each, for more settings.
#
# ### The diversity–likelihood trade-off, measured
#
# Each decoding rule trades how probable its text is (to the model) against how varied it is. We
# generate a batch of samples for each of a range of settings, and measure three things: the
# model's log-likelihood per character of them (at $\tau = 1$, unfiltered), distinct-2 over the
# batch (the distinct word bigrams over all word bigrams {cite:p}`li2016diversity`), and the
# repetition rate. Held-out text gives the target: a rule that matches human text on all three is
# doing what we want.

# %%
curve_rows = env.pick(test=2, cpu=8, gpu=16)
curve_chars = env.pick(test=30, cpu=250, gpu=500)
curve_settings = {"greedy": dict(greedy=True), "greedy, repetition 1.3": dict(greedy=True, repetition_penalty=1.3),
                  "τ 0.5": dict(temperature=0.5), "τ 0.7": dict(temperature=0.7), "τ 1.0": dict(),
                  "τ 1.2": dict(temperature=1.2), "top-p 0.5": dict(top_p=0.5), "top-p 0.8": dict(top_p=0.8),
                  "top-p 0.95": dict(top_p=0.95), "min-p 0.2": dict(min_p=0.2),
                  "τ 0.7, frequency 0.3": dict(temperature=0.7, frequency_penalty=0.3)}
if env.profile() == "test":
    curve_settings = {k: curve_settings[k] for k in ("greedy", "τ 1.0")}
batch_prompt = prompt_ids.repeat(curve_rows, 1)
curve = {}
start = time.perf_counter()
for label, kw in curve_settings.items():
    out = generate.generate(model, batch_prompt, curve_chars, generator=torch.Generator(device=device).manual_seed(1), **kw)
    texts = [decode(row[len(prompt):].tolist()) for row in out]
    curve[label] = (loglik_per_char(texts), evaluate.distinct_n(texts, 2),
                    np.mean([evaluate.repetition_rate(t, 3) for t in texts]), new_words(texts))
human_texts = [val_text[i: i + curve_chars] for i in speeches[:: len(speeches) // curve_rows][:curve_rows]]
curve["held-out text"] = (loglik_per_char(human_texts), evaluate.distinct_n(human_texts, 2),
                          np.mean([evaluate.repetition_rate(t, 3) for t in human_texts]), new_words(human_texts))
print(f"{len(curve_settings)} settings x {curve_rows} samples x {curve_chars} characters in {time.perf_counter() - start:.0f} s\n")
print(f"{'setting':22s} {'log-lik/char':>12s} {'distinct-2':>10s} {'repetition':>10s} {'new words':>10s}")
for label, (ll, d2, rep, new) in curve.items():
    print(f"{label:22s} {ll:12.3f} {d2:10.2f} {rep:10.2f} {new:10.1%}")

# %%
fig, ax = plt.subplots(figsize=(6.4, 4))
for label, (ll, d2, rep, _) in curve.items():
    style = dict(marker="*", s=160, color="k") if label == "held-out text" else dict(s=30 + 300 * rep, alpha=0.7)
    ax.scatter(ll, d2, **style)
    ax.annotate(label, (ll, d2), fontsize=7, xytext=(4, 3), textcoords="offset points")
ax.set(xlabel="model's log-likelihood per character of the text (nats)", ylabel="distinct-2 over the samples",
       title="Decoding settings: likelihood vs diversity (marker size: repetition)")
plt.show()

# %% [markdown]
# Along each family of settings, the more probable the text (to the right), the less varied the
# samples: distinct-2 falls from 1.00 at $\tau = 1.2$ and $\tau = 1$ to 0.87 at $\tau = 0.5$ and
# 0.84 at top-$p$ 0.5, and to 0.08 for greedy decoding, whose eight "samples" are one looping text
# eight times (greedy decoding ignores the seed). The held-out text, at -1.211 nats per character,
# lies between the samples at $\tau = 1$ (-1.158) and at $\tau = 1.2$ (-1.406), with the diversity
# of top-$p$ 0.95 (0.96 against 0.97). So the model's own samples at $\tau = 1$ are a little more
# probable to it than real text, by 0.05 nats per character, too small a gap for eight samples and
# one seed to establish; it is the direction of a model slightly over-confident, which section 8.5
# measures directly. Penalties move a rule off the curve: the repetition penalty breaks greedy
# decoding's loop (repetition 0.13 to 0.00), and its text is even *more* probable to the model
# (-0.650 against -0.822): the loop is not the most probable text, only the one greedy decoding
# commits to. The frequency penalty at $\tau = 0.7$ costs likelihood (-1.196 against -0.953, less
# probable than $\tau = 1$'s samples) for a small gain in diversity (distinct-2 0.99 against 0.95).
# (Eight samples a setting, one seed, and no interval: the spread between seeds was not measured, so
# read only the large differences, the ends of the curve and the penalties' effects, not the order of
# neighbouring settings; the share of made-up words, for one, is no lower at $\tau = 0.5$ than at
# $\tau = 0.7$: 2.1% against 2.0%.)
#
# ### Stop strings
#
# Generation needs a stopping rule. A model with an end-of-text token stops when it emits it
# (`generate(..., eos_id=...)` fills a finished row with padding, as Hugging Face does); a
# character model has none, so we stop on a *stop string*: here the blank line that ends a speech.
# `generate_text` decodes as it goes and cuts the text before the first stop string. A stop string
# that never occurs leaves the whole budget of text; one the vocabulary cannot spell could never
# occur, and is an error.

# %%
speech = generate.generate_text(model, encode, decode, prompt, env.pick(test=100, cpu=400, gpu=400), stop=["\n\n"], temperature=0.8,
                                generator=torch.Generator(device=device).manual_seed(3))
print(f"{prompt}{speech}\n--- {len(speech)} characters, stopped before the blank line")
never = generate.generate_text(model, encode, decode, prompt, env.pick(test=20, cpu=60, gpu=60), stop=["XYZZY"], temperature=0.8,
                               generator=torch.Generator(device=device).manual_seed(3))
print(f"--- stop string 'XYZZY' never occurs: {len(never)} characters, the whole budget")
try:
    generate.generate_text(model, encode, decode, prompt, 60, stop=["<|end|>"])
except ValueError as err:
    print("ValueError:", err)

# %% [markdown]
# Bad settings are errors that say what is allowed, not silent surprises. In particular a
# temperature of 0 is not greedy decoding by another name (it would divide by zero); greedy decoding
# is its own setting:

# %% tags=["nbval-check-output"]
for bad in [dict(temperature=0), dict(top_p=1.5), dict(top_k=0), dict(top_p=0.0)]:
    try:
        generate.generate(model, prompt_ids, 5, **bad)
    except (ValueError, TypeError) as err:
        print(f"{bad}: {type(err).__name__}: {err}")
try:
    generate.generate(model, torch.zeros(1, 0, dtype=torch.long), 5)
except ValueError as err:
    print("empty prompt:", err)

# %% [markdown]
# ## 8.2 Beam search
#
# Greedy decoding commits to one token at a time. *Beam search* keeps the $b$ most probable
# partial sequences (the beams) instead: at each step it extends every beam by every token, ranks
# the $b \cdot V$ candidates by their total log-probability $\sum_t \log p(x_t \mid x_{<t})$, and keeps
# the best $b$. A beam that emits the end-of-sequence token is *finished* and competes with the
# others by its score divided by $(\text{length})^{\alpha}$, the *length penalty*: without it
# ($\alpha = 0$), shorter sequences always win, since every token can only lower a sum of
# log-probabilities; $\alpha > 0$ favours longer ones. `lmbook.generate.beam_search` is Hugging
# Face's algorithm, step for step (the 2$b$ candidates ranked per step, when a beam counts as
# finished, the `early_stopping` rules), and gives the same token ids as `transformers`'
# `generate` on the same weights. Our committed models have no biases and GPT-2 always has them, so
# `with_biases` makes the same function with zero biases before exporting it:

# %% tags=["nbval-check-output"]
theirs = hf.to_hf(generate.with_biases(model.cpu())).eval()
model.to(device)
newline = encode("\n")[0]
beam_prompt = torch.tensor([encode("PETRUCHIO:\nI will ")])
beam_new = env.pick(test=10, cpu=60, gpu=60)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # transformers' notes about generation flags
    hf_greedy = theirs.generate(beam_prompt, attention_mask=torch.ones_like(beam_prompt), do_sample=False,
                                max_new_tokens=beam_new, pad_token_id=newline)
    hf_beams = theirs.generate(beam_prompt, attention_mask=torch.ones_like(beam_prompt), do_sample=False, num_beams=4,
                               max_new_tokens=beam_new, length_penalty=1.0, early_stopping=True,
                               eos_token_id=newline, pad_token_id=newline)
ours_greedy = generate.generate(model.cpu(), beam_prompt, beam_new, greedy=True)
ours_beams, _ = generate.beam_search(model, beam_prompt, beam_new, num_beams=4, length_penalty=1.0,
                                     early_stopping=True, eos_id=newline)
model.to(device)
print("greedy, same ids as transformers:", torch.equal(ours_greedy, hf_greedy))
print("beam search (4 beams, end of line as end of sequence), same ids as transformers:", torch.equal(ours_beams, hf_beams))
assert torch.equal(ours_greedy, hf_greedy) and torch.equal(ours_beams, hf_beams)

# %% [markdown]
# What does the length penalty do? With the end of a line as the end of the sequence, beam search
# completes a line of verse; we count the characters of the line it returns, for a few prompts and
# three penalties, and compare the model's log-likelihood per character with the greedy line's:

# %%
line_prompts = ["PETRUCHIO:\nI will ", "KATHARINA:\nThe ", "MIRANDA:\nO, "]
line_new = env.pick(test=25, cpu=80, gpu=80)
if env.profile() == "test":
    line_prompts = line_prompts[:1]
print(f"{'prompt':16s} {'greedy':>24s} " + " ".join(f"{'beam, α=' + str(a):>24s}" for a in (0.0, 1.0, 2.0)))
for p in line_prompts:
    x = torch.tensor([encode(p)], device=device)
    cells = []
    greedy_line = generate.generate(model, x, line_new, greedy=True, eos_id=newline)[0, x.shape[1]:].tolist()
    for ids in [greedy_line] + [generate.beam_search(model, x, line_new, 4, length_penalty=a, eos_id=newline)[0][0, x.shape[1]:].tolist()
                                for a in (0.0, 1.0, 2.0)]:
        ids = ids[: ids.index(newline) + 1] if newline in ids else ids
        with torch.inference_mode():
            full = torch.tensor(encode(p) + ids)
            ll = evaluate.token_logprobs(model, full, model.config.block_size).logprob[-len(ids):].mean().item()
        cells.append(f"{len(ids):3d} chars, {ll:6.3f}/char")
    print(f"{p.replace(chr(10), ' / '):16s} " + " ".join(f"{c:>24s}" for c in cells))
print("\n", repr(decode(greedy_line)))

# %% [markdown]
# Beam search finds lines the model finds more probable per character than the greedy line, for
# every prompt and penalty. The penalty moves the length: with $\alpha = 0$ the sum of
# log-probabilities favours short complete lines, and $\alpha = 1$ gave a longer line for every
# prompt (14 to 45 characters, 31 to 33, 9 to 18); $\alpha = 2$ lengthened only the third (to 48),
# and for the other two returned the same line as $\alpha = 1$. For open-ended text, this search
# for the most
# probable sequence is exactly what we do *not* want (the loops above); beam search earns its place
# where there is one right output and the model is conditioned on it, as in translation or speech
# recognition.
#
# ## 8.3 The KV cache
#
# Generating token $t+1$ needs the model's output at position $t$. Without a cache, `GPT.generate`
# (chapter 5, nanoGPT's loop) runs the whole context through the model again: at step $t$ it
# recomputes the keys and values of tokens $1..t-1$, which it already computed at step $t-1$ and
# which have not changed, because attention is causal: a token's keys and values depend only on the
# token itself and the tokens before it. The *KV cache* keeps them. Each layer stores the keys and
# values of the tokens
# read so far, $(B, h, t, d_{\text{head}})$; a step then feeds only the new token, computes its
# query, key and value, appends the key and value, and attends over all of them. Generation has two
# phases: the *prefill* reads the prompt in one forward pass (every position at once, as in
# training) and fills the cache; each *decode* step processes one token {cite:p}`pope2023inference`.
#
# The GPT of chapter 5 gains one argument, `cache`, and the attention three lines: with a cache, the
# new keys and values are appended to the cached ones and a mask says which keys each new query may
# see (all of them, for one new token; causal within a prefill):

# %%
from lmbook.gpt import GPT, GPTConfig, param_count  # GPTConfig: a name the definitions below use

# %%
# From lmbook/gpt.py
class CausalSelfAttention(nn.Module):
    """Multi-head self-attention in which position t sees positions 0..t only.

    One Linear makes the queries, keys and values of all heads at once, (B, T, 3d); a reshape
    splits them into heads, (B, n_head, T, d_head); attention runs on all heads as one batched
    product; the heads are concatenated back to (B, T, d) and mixed by the output projection.
    With ``causal=False`` every position sees every other one (an encoder, as in BERT).
    """

    def __init__(self, config: GPTConfig, causal: bool = True):
        super().__init__()
        self.n_head, self.causal, self.attention = config.n_head, causal, config.attention
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # W_Q, W_K, W_V
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)      # W_O
        self.dropout = config.dropout
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x: Tensor, cache=None) -> Tensor:
        B, T, C = x.shape                                                    # (B, T, d)
        q, k, v = self.c_attn(x).split(C, dim=2)                             # 3 × (B, T, d)
        q, k, v = (z.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
                   for z in (q, k, v))                                       # 3 × (B, nh, T, hs)
        mask, causal = None, self.causal
        if cache is not None:  # generation (chapter 8): the new tokens also attend to the cached ones
            k, v, mask = cache.update(k, v)                                  # 2 × (B, nh, T_past + T, hs)
            causal = False                                                   # the mask says who sees whom
        dropout_p = self.dropout if self.training else 0.0
        if self.attention == "sdpa":
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal, dropout_p=dropout_p)
        else:
            from lmbook import attention  # chapter 4's code: the same formula, written out
            y = attention.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal,
                                                       dropout_p=dropout_p)
        y = y.transpose(1, 2).contiguous().view(B, T, C)                     # concatenate heads: (B, T, d)
        return self.resid_dropout(self.c_proj(y))


# %% [markdown]
# `GPT.forward(idx, cache=...)` asks the cache for the new tokens' positions (they continue after
# the cached ones) and hands each block its layer of the cache. The cache itself is small:

# %%
# From lmbook/generate.py
class KVCache:
    """What a GPT keeps between generation steps: each layer's keys and values of the tokens read so far.

    ``model(idx, cache=cache)`` reads idx as the continuation of the cached tokens: its positions
    come after theirs, its queries attend to the cached keys, and its own keys and values are
    appended, one (k, v) pair per layer, each (B, n_head, T_past, d_head).

    `pad` (B, P) marks left padding in the first P tokens (batched prompts of different lengths):
    no token attends to a padding token, and positions count real tokens only, so each row computes
    what it would alone. `crop` forgets the last tokens (speculative decoding), `reorder` picks rows
    (beam search).
    """

    def __init__(self, config, pad: Tensor | None = None):
        self.block_size = config.block_size
        self.layers = [_LayerCache(self) for _ in range(config.n_layer)]
        self.length = 0                       # tokens cached
        self.pad = pad                        # (B, P) bool, True where the prompt is padding; or None
        self.mask = None                      # the attention mask of the current step (None: see everything)

    def next_positions(self, T: int, device: torch.device) -> Tensor:
        """Begin a step of T new tokens: their positions, (T,), or (B, T) with padding; and the mask."""
        start, end = self.length, self.length + T
        if end > self.block_size:
            raise ValueError(f"the cache holds {start} tokens and {T} more would exceed block_size={self.block_size}, "
                             f"the longest context this model has positions for; start a new cache from the "
                             f"last tokens (lmbook.generate.Decoder does this)")
        self.length = end
        query = torch.arange(start, end, device=device)[:, None]             # (T, 1) absolute index of each query
        key = torch.arange(end, device=device)[None, :]                       # (1, end) of each key
        if self.pad is None:
            self.mask = None if T == 1 else key <= query                     # (T, end) causal
            return query[:, 0]
        real = torch.ones(self.pad.shape[0], end, dtype=torch.bool, device=device)   # (B, end)
        real[:, : self.pad.shape[1]] = ~self.pad[:, :end]
        self.mask = ((key <= query) & real[:, None, :]) | (key == query)     # (B, T, end); padding sees itself
        self.mask = self.mask[:, None]                                        # (B, 1, T, end): every head alike
        return (real.cumsum(1) - 1).clamp(min=0)[:, start:end]               # (B, T) real tokens before each

    def crop(self, length: int) -> None:
        """Forget every token after the first `length`."""
        for layer in self.layers:
            layer.k, layer.v = layer.k[:, :, :length], layer.v[:, :, :length]
        self.length = length

    def reorder(self, rows: Tensor) -> None:
        """Keep rows `rows` of the batch, in that order (rows may repeat)."""
        for layer in self.layers:
            layer.k, layer.v = layer.k[rows], layer.v[rows]
        if self.pad is not None:
            self.pad = self.pad[rows]

    def nbytes(self) -> int:
        """Bytes held by the cached keys and values."""
        return sum(t.untyped_storage().nbytes() for layer in self.layers for t in (layer.k, layer.v) if t is not None)


class _LayerCache:
    """One layer's keys and values: `update` appends the new ones and returns all of them with the mask."""

    def __init__(self, cache: KVCache):
        self.cache, self.k, self.v = cache, None, None

    def update(self, k: Tensor, v: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        if self.k is None:
            k, v = k.contiguous(), v.contiguous()  # their own memory: k and v are views of the qkv product
        else:
            k, v = torch.cat([self.k, k], dim=2), torch.cat([self.v, v], dim=2)  # (B, nh, T_past + T, hs)
        self.k, self.v = k, v
        return k, v, self.cache.mask


# %% [markdown]
# ### Past the end of the context
#
# Our GPT has a learned position embedding for positions $0..T_{\max}-1$ only. Once the text is
# longer than the context, nanoGPT's loop feeds the last $T_{\max}$ tokens at every step, which
# shifts every token's position by one at every step: every cached key and value is then stale
# (each was computed with its old position added), so a cache cannot survive it. (Models with
# rotary positions, chapter 9, encode only *relative* positions in attention and can keep theirs.)
# `lmbook.generate.Decoder` therefore reads the text in *windows*: windows start at
# $0, S, 2S, \dots$ with a stride $S = T_{\max} - \text{keep}$, and the token after position $j$ is
# predicted from the first window that has room for $j$. Moving to the next window costs one
# prefill of its first keep + 1 tokens (keep is half the context by default), then decoding goes
# on from the cache. The windows depend only on positions, so feeding the text token by token or in
# chunks, with the cache or without, gives the same logits: `use_cache=False` recomputes the whole
# window at every step, the reference for checking and the baseline for timing. Checked on the
# committed model, past the end of its context:

# %%
check_steps, room = env.pick(test=8, cpu=100, gpu=300), env.pick(test=4, cpu=20, gpu=20)
with torch.inference_mode():
    cached, plain = generate.Decoder(model), generate.Decoder(model, use_cache=False)
    start_ids = torch.tensor([encode(val_text[: model.config.block_size - room])], device=device)  # full after `room` steps
    a, b = cached.feed(start_ids)[:, -1], plain.feed(start_ids)[:, -1]
    worst, same = 0.0, True
    for _ in range(check_steps):
        worst = max(worst, (a - b).abs().max().item())
        same &= bool((a.argmax(-1) == b.argmax(-1)).all())
        token = a.argmax(-1, keepdim=True)
        a, b = cached.feed(token)[:, -1], plain.feed(token)[:, -1]
print(f"{check_steps} greedy steps (context {model.config.block_size}, text {cached.tokens.shape[1]} tokens): "
      f"same tokens: {same}; largest logit difference {worst:.1e}; windows now start at {cached.cache_start}")
assert same and worst < 1e-4

# %% [markdown]
# ### The cache's memory
#
# Per token, each of the $L$ layers keeps a key and a value of $n_{\text{embd}} = h \cdot
# d_{\text{head}}$ numbers: the cache of a batch of $B$ sequences of $T$ tokens holds
#
# $$
# L \cdot 2 \cdot h \cdot d_{\text{head}} \cdot T \cdot B \cdot (\text{bytes per number})
# $$
#
# bytes. `generate.kv_cache_bytes` is this formula; the storage that the cache's tensors actually
# hold, measured after a prefill and some decode steps, is the same number:

# %% tags=["nbval-check-output"]
for name, m in committed.items():
    for T, B in [(32, 1), (m.config.block_size, 1), (m.config.block_size, 4)]:
        dec = generate.Decoder(m)
        with torch.inference_mode():
            dec.feed(torch.zeros(B, T - 4, dtype=torch.long, device=device))
            for _ in range(4):
                dec.feed(torch.zeros(B, 1, dtype=torch.long, device=device))
        formula = generate.kv_cache_bytes(m.config, T, batch=B, bytes_per_value=4)
        print(f"{name:21s} T={T:4d} B={B}: formula {formula / 2**20:7.3f} MiB, measured {dec.cache.nbytes() / 2**20:7.3f} MiB")
        assert dec.cache.nbytes() == formula

# %% [markdown]
# Our models are small, so their caches are too. The formula is what limits large models: the
# cache grows with the context and the batch, and for long contexts or large batches it outgrows
# the weights (exercise 3 works out from which batch size, for GPT-2 small at its full context).
# That is why newer models share keys and values between heads
# (grouped-query attention, chapter 9) and why serving systems store the cache in 8 or even 4 bits.
#
# ### Prefill and decode, and tokens per second
#
# The prefill processes its tokens in parallel, one large matrix product per layer; a decode step
# processes one token per sequence, a matrix–vector product that reads every weight to do two
# operations with it. So on any hardware the prefill runs at many more tokens per second than
# decoding. On the committed model:

# %%
def timed(fn, repeats: int = 1) -> float:
    """The median wall time of fn() over `repeats` runs, in seconds."""
    times = []
    for _ in range(repeats):
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


n_prefill = env.pick(test=32, cpu=model.config.block_size - 1, gpu=model.config.block_size - 1)
text_ids = torch.tensor([encode(val_text[:n_prefill + 1])], device=device)
with torch.inference_mode():
    t_prefill = timed(lambda: model(text_ids[:, :n_prefill], cache=generate.KVCache(model.config)), repeats=5)

    def decode_loop():
        cache = generate.KVCache(model.config)
        model(text_ids[:, :1], cache=cache)
        for i in range(1, n_prefill):
            model(text_ids[:, i:i + 1], cache=cache)
    t_decode = timed(decode_loop, repeats=env.pick(test=1, cpu=3, gpu=3))
print(f"{n_prefill} tokens: prefill in one pass {n_prefill / t_prefill:,.0f} tokens/s; "
      f"one decode step at a time {n_prefill / t_decode:,.0f} tokens/s ({t_decode / t_prefill:.0f}x slower)")

# %% [markdown]
# Now the cache's effect on generation speed, for continuations of different lengths from a
# one-character prompt, greedy, in three ways: with the cache; without it (the same windows,
# recomputed at every step: the same tokens); and nanoGPT's loop, `GPT.generate` (chapter 5), which
# crops to the last $T_{\max}$ tokens at every step, each the median of three runs. The three run
# interleaved, length by length, so that a change in the machine's load hits them alike (this
# machine's cores are shared; the load average is printed). `bench/bench_generate.py` repeats this several times and stores the
# results.

# %%
lengths = env.pick(test=[8, 16], cpu=[32, 64, 128, 256], gpu=[64, 128, 256, 512, 1024])
speed_repeats = env.pick(test=1, cpu=3, gpu=3)                    # the median of 3 runs of each
one = torch.tensor([encode("\n")], device=device)
speed = {"with the cache": [], "without (same windows)": [], "nanoGPT's loop (crop every step)": []}
load_before = os.getloadavg()[0]
for n in lengths:
    t_cached = timed(lambda: generate.generate(model, one, n, greedy=True), speed_repeats)
    t_plain = timed(lambda: generate.generate(model, one, n, greedy=True, use_cache=False), speed_repeats)
    with torch.inference_mode():
        t_nano = timed(lambda: model.generate(one, n, top_k=1), speed_repeats)
    for key, t in zip(speed, (t_cached, t_plain, t_nano)):
        speed[key].append(n / t)
    print(f"{n:5d} tokens: cache {n / t_cached:7.1f} tokens/s, without {n / t_plain:6.1f}, nanoGPT's loop "
          f"{n / t_nano:6.1f}; speed-up {t_plain / t_cached:5.1f}x (same windows), {t_nano / t_cached:5.1f}x (nanoGPT's loop)")
print(f"load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
assert torch.equal(generate.generate(model, one, lengths[-1], greedy=True),
                   generate.generate(model, one, lengths[-1], greedy=True, use_cache=False))

# %%
fig, ax = plt.subplots(figsize=(5.6, 3.4))
for key, values in speed.items():
    ax.plot(lengths, values, "o-", label=key)
ax.axvline(model.config.block_size, color="grey", lw=0.8, ls=":")
ax.set(xscale="log", yscale="log", xlabel="tokens generated", ylabel="tokens per second",
       title=f"{MODEL}, context {model.config.block_size} (dotted)")
ax.set_xticks(lengths, [str(n) for n in lengths])
ax.legend(fontsize=8)
plt.show()

# %% [markdown]
# Without the cache, each step costs a forward pass over the whole window, so tokens per second
# fall as the text grows, until the context is full; nanoGPT's loop then pays for a full context at
# every step, our uncached windows for between half and all of it. With the cache each step costs
# one position, plus a prefill of half a context each time a window fills up: its speed does not
# fall steadily with the length (in this run it dipped at 64 tokens, to 315.9 tokens/s, and was back
# at 541.6 at 256: noise from the shared cores, whose load average is printed). The cache's advantage
# grows with the length past 64 tokens: from about two times at 32 and 64 tokens to 5.2 times the
# uncached windows and 7.1 times nanoGPT's loop at 256 tokens, twice this model's context.
#
# `bench/bench_generate.py` makes the same measurement up to 512 tokens, several times over,
# interleaved, with the load average recorded, and compares our loop with `transformers` and
# speculative decoding with the target alone (sections below). It measures the larger model,
# `shakespeare_char_gpu` (3.4 times the parameters, context 256), at a higher load (a load average
# of 4 to 6), so every speed is lower than in the run above; what carries over is the ratios. The
# cached speed stays between 61.9 and 66.3 tokens/s from 64 to 512
# tokens while the uncached one falls to 6.8, 9.1 times slower at 512 tokens:

# %%
bench_results = ROOT / "bench" / "results" / "bench_generate.txt" if ROOT else None
print(bench_results.read_text() if bench_results and bench_results.is_file()
      else "not measured yet: python bench/bench_generate.py writes bench/results/bench_generate.txt")

# %% [markdown]
# How does our loop compare with the one people use, `transformers`' `generate`
# {cite:p}`wolf2020transformers` with its cache, on
# the same weights (the zero-bias export above), with the same greedy settings, inside the
# context? Interleaved again, tokens checked equal:

# %%
hf_new = env.pick(test=16, cpu=model.config.block_size - 1, gpu=model.config.block_size - 1)
cpu_model = model.cpu()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    one_cpu = one.cpu()
    hf_kw = dict(attention_mask=torch.ones_like(one_cpu), do_sample=False, max_new_tokens=hf_new,
                 pad_token_id=newline, use_cache=True)
    assert torch.equal(theirs.generate(one_cpu, **hf_kw), generate.generate(cpu_model, one_cpu, hf_new, greedy=True))
    rounds = {"lmbook.generate": [], "transformers generate": []}
    for _ in range(env.pick(test=1, cpu=3, gpu=3)):
        rounds["lmbook.generate"].append(timed(lambda: generate.generate(cpu_model, one_cpu, hf_new, greedy=True)))
        with torch.inference_mode():
            rounds["transformers generate"].append(timed(lambda: theirs.generate(one_cpu, **hf_kw)))
model.to(device)
ours_tps, hf_tps = (hf_new / float(np.median(v)) for v in rounds.values())
print(f"{hf_new} greedy tokens on the CPU: lmbook {ours_tps:.1f} tokens/s, transformers {hf_tps:.1f} tokens/s: "
      f"ratio {ours_tps / hf_tps:.2f}")

# %% [markdown]
# Our loop is faster, 1.34 times `transformers`' tokens per second here (1.17 in the bench, on the
# larger `shakespeare_char_gpu`), with the same tokens. For a model this small a decode step is a
# few small matrix
# products, so the work around them counts: `transformers` prepares inputs, updates its cache
# object and runs its logits processors and stopping criteria at every step, for features a small
# loop does not need.
#
# ### Batches of prompts of different lengths
#
# A batch generates several sequences for the price of about one when decoding is bound by reading
# the weights. Prompts of different lengths are padded *on the left*, so that every row's next token
# goes in the same column, and an attention mask (1 for real tokens, 0 for padding) keeps every
# query away from the padding; the positions count real tokens only, so each row computes exactly
# what it would alone:

# %% tags=["nbval-check-output"]
batch_prompts = ["PETRUCHIO:\n", "MIRANDA:\nO, I have suffered\n", "KATHARINA:\nA pretty peat!", "\n"]
idx, attention_mask = generate.left_pad([encode(p) for p in batch_prompts], pad_id=newline)
print("left-padded batch", tuple(idx.shape), "| attention mask of the last row:", attention_mask[-1].tolist()[-8:])
batch_new = env.pick(test=10, cpu=60, gpu=60)
together = generate.generate(model, idx.to(device), batch_new, greedy=True, attention_mask=attention_mask.to(device))
alone = [generate.generate(model, torch.tensor([encode(p)], device=device), batch_new, greedy=True)[0, -batch_new:]
         for p in batch_prompts]
print("batched = one at a time:", all(torch.equal(row[-batch_new:], a) for row, a in zip(together, alone)))
assert all(torch.equal(row[-batch_new:], a) for row, a in zip(together, alone))

# %%
reps = env.pick(test=1, cpu=3, gpu=3)
t_batch = timed(lambda: generate.generate(model, idx.to(device), batch_new, greedy=True, attention_mask=attention_mask.to(device)), reps)
t_single = timed(lambda: [generate.generate(model, torch.tensor([encode(p)], device=device), batch_new, greedy=True)
                          for p in batch_prompts], reps)
print(f"{len(batch_prompts)} prompts x {batch_new} tokens: batched {len(batch_prompts) * batch_new / t_batch:.0f} tokens/s, "
      f"one at a time {len(batch_prompts) * batch_new / t_single:.0f} tokens/s")

# %% [markdown]
# Four prompts together ran about 3.4 times as fast as one at a time (862 against 256 tokens per
# second): on one CPU thread a batch is not quite free, but most of a step's cost is shared.
#
# ## 8.4 Speculative decoding
#
# A decode step of a large model reads all its weights to produce one token per sequence, and the
# prefill shows that the same pass could score many tokens for little more. Speculative decoding
# {cite:p}`leviathan2023speculative,chen2023speculative` uses that spare capacity: a small *draft*
# model $q$ proposes $k$ tokens, one at a time (cheap), then the large *target* model $p$ scores all
# $k$ in one forward pass, and an accept/reject rule keeps a prefix of them:
#
# - draft token $x_i$ is accepted with probability $\min\!\left(1, \frac{p_i(x_i)}{q_i(x_i)}\right)$;
# - at the first rejection, the next token is drawn from the *residual* distribution
#   $r_i(x) \propto \max(0,\, p_i(x) - q_i(x))$ and the round ends;
# - if all $k$ are accepted, the target's pass has also given $p_{k}$, the distribution after the
#   last draft token: one more token is drawn from it for free.
#
# So every target pass emits between 1 and $k+1$ tokens. The rule keeps the output distributed
# *exactly* as the target's own samples. For one position: the token $x$ is emitted either because
# the draft proposed it and it was accepted, with probability $q(x) \min(1, p(x)/q(x)) =
# \min(p(x), q(x))$, or because some proposal was rejected and $x$ was drawn from the residual. The
# total rejection probability is $\sum_y q(y)\left(1 - \min(1, p(y)/q(y))\right) = 1 - \sum_y
# \min(p(y), q(y)) = \sum_y \max(0, p(y) - q(y))$, exactly the normaliser of the residual. So
#
# $$
# P(\text{emit } x) = \min(p(x), q(x)) + \sum_y \max(0, p(y)-q(y)) \cdot \frac{\max(0, p(x) - q(x))}{\sum_y \max(0, p(y)-q(y))}
# = \min(p(x), q(x)) + \max(0, p(x) - q(x)) = p(x).
# $$
#
# Accepted tokens continue the text exactly as the target would have, so the argument repeats
# position by position. With greedy decoding the rule becomes: accept a draft token if it is the
# target's most probable token, and at the first mismatch emit the target's choice: the output is
# then exactly the target's greedy text.
#
# The expected number of draft tokens accepted depends on the *acceptance rate*
# $\alpha = \mathbb{E}\left[\sum_x \min(p(x), q(x))\right]$ (how much the two distributions overlap):
# with independent acceptances, a round emits $\frac{1 - \alpha^{k+1}}{1 - \alpha}$ tokens on
# average. If a draft step costs a fraction $c$ of a target step, and a target pass over $k+1$
# tokens costs about one step (as on a GPU, where a few more tokens cost no more time), the
# speed-up is about $\frac{1 - \alpha^{k+1}}{(1 - \alpha)(k c + 1)}$: a good draft must be both
# cheap and close. Where the pass over $k+1$ tokens costs $v$ steps, $k c + 1$ becomes $k c + v$.

# %%
# From lmbook/generate.py
def speculative_accept(p: Tensor, q: Tensor, drafts: Tensor, greedy: bool = False,
                       generator: torch.Generator | None = None) -> tuple[int, int]:
    """The acceptance rule of speculative sampling: (number of draft tokens accepted, the next token).

    p (k + 1, V): the target's distributions after the prefix and after each draft token; q (k, V):
    the draft's, from which drafts (k,) were drawn. Draft token i is accepted with probability
    min(1, p_i(x) / q_i(x)); at the first rejection the next token is drawn from the residual
    max(0, p_i - q_i), renormalised; if all k are accepted, a bonus token is drawn from p_k. Every
    emitted token is then distributed exactly as the target's own sample (Leviathan et al. 2023).
    greedy: accept a draft token if it is the target's most probable one, else emit that one.
    """
    k = drafts.shape[0]
    for i in range(k):
        x = drafts[i]
        if greedy:
            accepted = bool(p[i].argmax() == x)
        else:
            u = torch.rand((), generator=generator, device=p.device)
            accepted = bool(u * q[i, x] < p[i, x])                           # u < p/q, without dividing by 0
        if not accepted:
            if greedy:
                return i, int(p[i].argmax())
            residual = (p[i] - q[i]).clamp(min=0)
            residual = residual / residual.sum() if residual.sum() > 0 else p[i]
            return i, int(torch.multinomial(residual, 1, generator=generator))
    if greedy:
        return k, int(p[k].argmax())
    return k, int(torch.multinomial(p[k], 1, generator=generator))


# %% [markdown]
# The target is the larger committed model, `shakespeare_char_gpu`. The first draft is a small GPT
# trained here for the purpose, in the time printed below: cheap to run, and much further from the
# target than a good model would be (section 8.5 puts it on the leaderboard). When the CPU-trained
# `shakespeare_char` is in `runs/`, it is the second: closer to the target, but each of its steps
# costs a good part of a target step.

# %%
from lmbook.batching import stream_batches
from lmbook.train import train

train_ids = torch.tensor(encode(train_text))
draft_steps = env.pick(test=8, cpu=200, gpu=2000)
draft_batch, draft_T = 16, 128                    # windows of the draft's whole context
torch.manual_seed(1337)
tiny = GPT(GPTConfig(vocab_size=len(chars), block_size=128, n_layer=2, n_head=4, n_embd=128, bias=False))
t0 = time.perf_counter()
train(tiny, stream_batches(train_ids, draft_T, draft_batch, torch.Generator().manual_seed(1337)), steps=draft_steps,
      lr=3e-3, weight_decay=0.1, lr_schedule=lambda t: min(1.0, (t + 1) / 20) * (0.1 + 0.9 * (1 - t / draft_steps)),
      grad_clip=1.0, progress=False, device=device)
tiny_seconds = time.perf_counter() - t0
tiny.eval()
tiny_chars = draft_steps * draft_batch * draft_T
drafts = {"2 x 128 trained here": tiny} | ({f"{MODEL} (committed)": model} if MODEL != BIG else {})
print(f"draft: 2 layers x 128, {tiny.num_params():,} parameters, {draft_steps} steps x {draft_batch} x {draft_T} = "
      f"{tiny_chars:,} training characters in {tiny_seconds:.0f} s; drafts: {', '.join(drafts)}")

# %% [markdown]
# The derivation can be checked by drawing. On the real next-character distributions of the target
# ($p$) and of the draft trained here ($q$) after the passage of section 8.1, we run the rule many
# times with $k = 1$ and count the emitted tokens:

# %%
with torch.inference_mode():
    ctx = torch.tensor([encode(context[-tiny.config.block_size:])], device=device)
    p_next = big(ctx)[0][0, -1].float().softmax(-1).cpu()
    q_next = tiny(ctx)[0][0, -1].float().softmax(-1).cpu()
draws = env.pick(test=2000, cpu=20000, gpu=20000)
g = torch.Generator().manual_seed(0)
emitted, accepted = torch.zeros(len(chars)), 0
for _ in range(draws):
    x = torch.multinomial(q_next, 1, generator=g)
    n, token = speculative_accept(torch.stack([p_next, p_next]), q_next[None], x, generator=g)
    accepted += n
    emitted[x[0] if n == 1 else token] += 1
tv = lambda a, b: 0.5 * (a - b).abs().sum().item()  # noqa: E731  (total variation distance)
print(f"{draws:,} draws: acceptance {accepted / draws:.3f} (Σ min(p, q) = {torch.minimum(p_next, q_next).sum():.3f})")
print(f"total variation distance of the emitted tokens from the target p: {tv(emitted / draws, p_next):.3f}; "
      f"from the draft q: {tv(emitted / draws, q_next):.3f}; between p and q: {tv(p_next, q_next):.3f}")

# %% [markdown]
# The emitted tokens follow the target, not the draft: their distance from $p$ is the sampling noise
# of this many draws, while $p$ and $q$ themselves differ by more. (tests/test_generate.py makes
# the same check with a chi-square test, end to end, and checks that greedy speculative decoding
# returns the target's greedy tokens exactly.) Now the speed, with sampling at $\tau = 1$: the
# target alone and each draft take turns for each $k$.

# %%
spec_new = env.pick(test=12, cpu=150, gpu=300)
ks = env.pick(test=[2], cpu=[1, 2, 3, 5], gpu=[1, 2, 3, 4, 6, 8])
spec_repeats = env.pick(test=1, cpu=2, gpu=3)
spec_prompt = torch.tensor([encode(prompt)], device=device)
seeded = lambda seed: torch.Generator(device=device).manual_seed(seed)  # noqa: E731
base_times, alone = [], {name: [] for name in drafts}
runs = {name: {k: [] for k in ks} for name in drafts}
load_before = os.getloadavg()[0]
for r in range(spec_repeats):
    for k in ks:                              # interleaved: the target alone, each draft alone, each draft speculating
        seed = 100 * r + k
        base_times.append(timed(lambda: generate.generate(big, spec_prompt, spec_new, generator=seeded(seed))))
        for name, d in drafts.items():
            alone[name].append(timed(lambda: generate.generate(d, spec_prompt, spec_new, generator=seeded(seed))))
            result = {}

            def run():
                result["stats"] = generate.speculative_generate(big, d, spec_prompt, spec_new, k, generator=seeded(seed))[1]
            runs[name][k].append((timed(run), result["stats"]))
t_base = float(np.median(base_times))
print(f"target alone: {spec_new / t_base:.1f} tokens/s (median of {len(base_times)} runs, sampling at τ = 1)")
cost = {name: float(np.median(alone[name])) / t_base for name in drafts}   # c: a draft step in target steps
for name in drafts:
    print(f"draft {name} alone: {spec_new / np.median(alone[name]):.1f} tokens/s, so c = {cost[name]:.2f} of a target step")
with torch.inference_mode():                 # v: the target's pass over k + 1 new tokens, in single-token passes
    verify_cache = generate.KVCache(big.config)
    big(torch.tensor([encode(val_text[:64])], device=device), cache=verify_cache)
    block = torch.tensor([encode(val_text[64: 65 + max(ks)])], device=device)

    def one_pass(T: int):
        big(block[:, :T], cache=verify_cache)
        verify_cache.crop(64)
    pass_time = {T: timed(lambda: one_pass(T), repeats=25) for T in [1] + [k + 1 for k in ks]}
verify = {k: pass_time[k + 1] / pass_time[1] for k in ks}
print("a target pass over k + 1 tokens costs v = " + ", ".join(f"{v:.2f} (k = {k})" for k, v in verify.items())
      + " single-token passes")
spec = {name: {} for name in drafts}          # (speed-up, α, tokens per target pass, the formula's speed-up)
print(f"\n{'draft':22s} {'k':>2s} {'α':>6s} {'tokens/pass':>11s} {'tokens/s':>9s} {'speed-up':>9s} {'formula':>8s}")
for name in drafts:
    for k in ks:
        t = float(np.median([t for t, _ in runs[name][k]]))
        stats = [st for _, st in runs[name][k]]
        accepted = sum(st.accepted for st in stats)
        alpha = accepted / (accepted + sum(st.rejected for st in stats))
        per_pass = sum(st.emitted for st in stats) / sum(st.target_calls for st in stats)
        per_round = k * cost[name] + verify[k]                               # in target steps
        formula = ((1 - alpha ** (k + 1)) / (1 - alpha) if alpha < 1 else k + 1) / per_round
        spec[name][k] = (t_base / t, alpha, per_pass, formula)
        print(f"{name:22s} {k:2d} {alpha:6.2f} {per_pass:11.2f} {spec_new / t:9.1f} {t_base / t:8.2f}x {formula:7.2f}x")
print(f"load average (1 min) {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 3.2))
for name in drafts:
    axes[0].plot(ks, [spec[name][k][0] for k in ks], "o-", label=name)
    axes[0].plot(ks, [spec[name][k][3] for k in ks], ":", color=axes[0].lines[-1].get_color())
    alpha = np.mean([spec[name][k][1] for k in ks])
    axes[1].plot(ks, [spec[name][k][2] for k in ks], "o-", label=f"{name} (α ≈ {alpha:.2f})")
    expected = [(1 - alpha ** (k + 1)) / (1 - alpha) if alpha < 1 else k + 1 for k in ks]
    axes[1].plot(ks, expected, ":", color=axes[1].lines[-1].get_color())
axes[0].axhline(1, color="grey", lw=0.8)
axes[0].set(xlabel="draft tokens per round k", ylabel="speed-up over the target alone",
            title="dotted: (1 - α^(k+1)) / ((1 - α)(kc + v))")
axes[1].set(xlabel="draft tokens per round k", ylabel="tokens per target pass", title="dotted: (1 - α^(k+1)) / (1 - α)")
axes[0].legend(fontsize=8)
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# The measured tokens per target pass follow $\frac{1 - \alpha^{k+1}}{1 - \alpha}$ with the
# measured $\alpha$ (right). The speed does not follow the formula (left). The draft trained
# here is cheap, $c$ = 0.09 of a target step, but it is accepted less than half the time ($\alpha$
# from 0.36 to 0.44), so a round emits only 1.42 to 1.69 tokens. The committed `shakespeare_char`
# is close to the target ($\alpha$ from 0.87 to 0.91, 1.90 to 4.23 tokens a round) but costs
# $c$ = 0.40 of a target step. The target's pass over $k + 1$ tokens measured $v$ = 0.77 to 1.24
# single-token passes: values below 1 are noise on these shared cores (a pass over more tokens
# does not really cost less), so read $v$ as about one pass, and the formula's predictions, which
# divide by it, as optimistic. Every measured speed stays below the formula's (0.82 to 0.95 times
# the target's speed against 1.16 to 1.65 predicted for the small draft; 0.96 to 1.20 against 1.29
# to 1.66 for the committed one), because the formula leaves out each round's own work (sampling
# the drafts, the acceptance test, trimming the caches). With the small draft, speculative decoding
# is *slower* than the target alone at every $k$. With the committed draft it is faster at three of
# the four $k$, by 1.04, 1.20 and 1.05 times; each of these is the median of only two runs, against
# a target timed eight times, without an interval. The bench above, with the small draft trained
# three times as long (600 steps,
# $\alpha \approx 0.6$), measures a speed-up of 1.16 at $k = 3$ and 1.18 at $k = 4$ (the formula
# says 1.34 and 1.49), but only 1.02 at $k = 1$ and 2 and 0.93 at $k = 6$. Those are medians of three
# runs on loaded, shared cores, without an interval, and the best of five $k$ is the one most
# flattered by noise: read them as a small speed-up, not a precise one. A draft has to be both cheap
# and close, and on a CPU the margin is thin.
# Greedy speculative decoding returns the target's greedy text exactly:

# %% tags=["nbval-check-output"]
greedy_spec, st = generate.speculative_generate(big, tiny, spec_prompt, env.pick(test=12, cpu=60, gpu=60), 3, greedy=True)
print("greedy speculative = the target's greedy text:",
      torch.equal(greedy_spec, generate.generate(big, spec_prompt, greedy_spec.shape[1] - spec_prompt.shape[1], greedy=True)))

# %% [markdown]
# ## 8.5 Measuring models
#
# How good is a language model? The source articles answer with precision, recall and F1; those
# measure a classifier's decisions against labels, and a language model makes no decisions: it
# assigns probabilities. Its natural measure is the one it was trained on: the average negative
# log-likelihood of text it has not seen, in nats per token (perplexity is its exponential). Three
# refinements make the number trustworthy:
#
# - **the same text and the same unit for everyone.** Nats per *character* compare our character
#   models; *bits per byte*, the total in bits divided by the UTF-8 bytes of the text, compares
#   models with any tokenizer (a BPE model's nats per token say nothing until divided by the
#   characters per token). On ASCII Shakespeare one character is one byte.
# - **context.** A GPT reads at most $T_{\max}$ tokens; scoring the text in non-overlapping windows
#   gives the first tokens of every window almost no context. `evaluate.token_logprobs` slides
#   windows by half a context, so every token after the first window has at least half a context
#   (the test of `lmbook.evaluate` checks each score against its promised context). The LSTM reads
#   the text in order, carrying its state, and the n-grams need only their $n-1$ characters.
# - **uncertainty.** A loss measured on a finite text is an estimate. Neighbouring characters are not
#   independent (a hard passage is hard for many characters in a row), so we resample *segments* of
#   the text, not characters (a block bootstrap): 100 segments, 2,000 resamples, the 2.5th and 97.5th
#   percentiles. For two models on the same text, the *paired* bootstrap resamples the same segments
#   for both, and the text's own difficulty cancels.
#
# The leaderboard: every kind of model in the book, on the same held-out text, the first characters
# of the validation split (at the `cpu` profile the first 20,000, to fit the chapter's time
# budget; its intervals say how much that costs in precision). The count models are fitted on the
# whole training text (at the `cpu` profile). Chapter 2's MLP and chapter 3's LSTM are trained here at the same budget of
# training characters as the small GPT trained above, so those three compare at an equal,
# stated budget; the committed models have their own, much larger budgets, printed beside them.

# %%
from lmbook.mlp import MLPLanguageModel
from lmbook.rnn import CharRNN, TruncatedBPTT, tbptt_batches

eval_text = val_text[: env.pick(test=1000, cpu=20000, gpu=len(val_text))]
eval_ids = torch.tensor(encode(eval_text))
scored_text = eval_text[1:]                        # every model scores characters 1..N-1 given what precedes
budget = tiny_chars                                # training characters (targets) of the small GPT above

torch.manual_seed(1337)
lstm = CharRNN(len(chars), emb_dim=64, hidden_size=256, num_layers=1)
t0 = time.perf_counter()
train(TruncatedBPTT(lstm), tbptt_batches(train_ids, draft_batch, draft_T), steps=budget // (draft_batch * draft_T),
      lr=3e-3, lr_schedule=lambda t: 1.0, grad_clip=1.0, progress=False, device=device)
lstm_seconds = time.perf_counter() - t0

mlp_batch = 512
Xs = train_ids.unfold(0, 17, 1)                     # (N - 16, 17): 16 characters of context and the next one
torch.manual_seed(1337)
mlp = MLPLanguageModel(len(chars), block_size=16, emb_dim=24, hidden=512, norm="layer")
g = torch.Generator().manual_seed(1337)


def mlp_batches():
    while True:
        rows = Xs[torch.randint(0, len(Xs), (mlp_batch,), generator=g)]
        yield rows[:, :16], rows[:, 16]


t0 = time.perf_counter()
train(mlp, mlp_batches(), steps=budget // mlp_batch, lr=3e-3, weight_decay=0.01, grad_clip=1.0, progress=False, device=device)
mlp_seconds = time.perf_counter() - t0
print(f"equal budget {budget:,} training characters: LSTM 1 x 256 in {lstm_seconds:.0f} s, "
      f"MLP (context 16) in {mlp_seconds:.0f} s, GPT 2 x 128 in {tiny_seconds:.0f} s")

# %%
baselines = ROOT / "bench" / "results" / "ngram_baselines.json" if ROOT else None
baselines = baselines if baselines and baselines.is_file() else None
kn_order = json.loads(baselines.read_text())["tinyshakespeare"]["best_order"] if baselines else 6
t0 = time.perf_counter()
count_text = train_text[: env.pick(test=100_000, cpu=None, gpu=None)]   # the whole training text, except at `test`
bigram = ngram.NgramLM(2, "add_k", k=1.0).fit([list(count_text)])
kneser_ney = ngram.NgramLM(kn_order, "kneser_ney").fit([list(count_text)])
count_seconds = time.perf_counter() - t0
print(f"Kneser-Ney order {kn_order} ({'the best order in bench/results/ngram_baselines.json' if baselines else 'chapter 1'}); "
      f"both count models fitted in {count_seconds:.0f} s")

# %%
t0 = time.perf_counter()
with torch.inference_mode():
    board = {
        "count bigram, add-one (ch. 1)": (evaluate.ngram_logprobs(bigram, eval_text), len(count_text), "counts"),
        f"Kneser-Ney {kn_order}-gram (ch. 1)": (evaluate.ngram_logprobs(kneser_ney, eval_text), len(count_text), "counts"),
        "MLP, context 16 (ch. 2)": (evaluate.token_logprobs(evaluate.FixedContext(mlp, 16, newline), eval_ids, 64, 48),
                                    budget, "trained here"),
        "LSTM 1 x 256 (ch. 3)": (evaluate.stream_logprobs(lstm, eval_ids), budget, "trained here"),
        "GPT 2 x 128 (the draft)": (evaluate.token_logprobs(tiny, eval_ids, 128), budget, "trained here"),
    } | {f"{name} (committed)": (evaluate.token_logprobs(m, eval_ids, m.config.block_size), training_chars(name),
                                 models.metrics(name)["info"]["device"]) for name, m in committed.items()}
print(f"{len(eval_text):,} held-out characters scored by {len(board)} models in {time.perf_counter() - t0:.0f} s\n")
print(f"{'model':34s} {'nats/char':>9s} {'95% interval':>17s} {'bits/byte':>9s} {'training chars':>15s}")
rows = []
for label, (scores, chars_seen, where) in board.items():
    _, low, high = evaluate.bootstrap_interval(scores.logprob)   # the interval from 100 segments
    nll = -scores.logprob.double().mean().item()                   # the point: every scored character
    rows.append((label, nll, -high, -low, evaluate.bits_per_byte(scores.logprob, scored_text), chars_seen, where))
for label, nll, low, high, bpb, seen, where in sorted(rows, key=lambda r: -r[1]):
    print(f"{label:34s} {nll:9.4f} [{low:.4f}, {high:.4f}] {bpb:9.4f} {seen / 1e6:13.2f}M  {where}")

# %%
fig, ax = plt.subplots(figsize=(6.4, 3.4))
ordered = sorted(rows, key=lambda r: -r[1])
ax.errorbar([r[1] for r in ordered], range(len(ordered)), xerr=[[r[1] - r[2] for r in ordered], [r[3] - r[1] for r in ordered]],
            fmt="o", capsize=3)
ax.set_yticks(range(len(ordered)), [r[0] for r in ordered], fontsize=8)
ax.set(xlabel="nats per character on the held-out text (95% interval)", title="The book's models, one text")
plt.show()

# %% [markdown]
# At the equal budget of 409,600 training characters, the LSTM is the best of the three models
# trained here and the small GPT the worst, level with counting bigrams within their intervals
# (2.4515 against 2.4929 nats per character; that pair is not tested below, so no difference between
# them is claimed). After 200 steps the GPT is still early in its training, and the LSTM, as in
# chapter 5's running table, wins at this small budget. The Kneser–Ney 6-gram,
# counted on the whole training text (1.00 million characters), comes within 0.08 nats of the
# committed GPT, which read 17.2 million characters in training, its training text about
# seventeen times over; the
# GPU-trained model, which read it about fifty times (52.4 million characters) with 3.4 times the
# parameters, is ahead of the committed one by only 0.02 nats.
#
# Two details of the table. The MLP is scored in windows of 64 characters that overlap by 16 (a
# stride of 48), so that every character it predicts, except the first 16 of the text, sees its full
# context of 16 characters. And both columns count every scored character, so on this ASCII text
# (one byte per character) bits per byte is the first column divided by $\ln 2$; the interval comes
# from resampling 100 equal segments, which leave out the last few characters.
#
# The intervals of single models are wide because the text varies more than the models do: some
# passages are easy for all of them, some hard. The two committed GPTs' intervals overlap almost
# entirely, and both overlap the Kneser–Ney model's. The paired bootstrap asks the sharper
# question, model against model on the same
# segments:

# %%
pairs = ([(f"{BIG} (committed)", f"{MODEL} (committed)")] if MODEL != BIG else []) + [
         (f"{MODEL} (committed)", f"Kneser-Ney {kn_order}-gram (ch. 1)"),
         ("LSTM 1 x 256 (ch. 3)", "GPT 2 x 128 (the draft)"),
         ("GPT 2 x 128 (the draft)", "MLP, context 16 (ch. 2)")]
for a, b in pairs:
    diff, low, high = evaluate.paired_bootstrap(-board[a][0].logprob, -board[b][0].logprob)
    verdict = "better" if high < 0 else "worse" if low > 0 else "no difference shown"
    print(f"{a:34s} minus {b:34s} {diff:+.4f} nats/char [{low:+.4f}, {high:+.4f}]: {verdict}")

# %% [markdown]
# All four differences are beyond their intervals, although the single models' intervals overlap:
# the GPU-trained GPT is better than the committed one by 0.0239 nats per character [0.0107,
# 0.0371], the committed GPT better than the Kneser–Ney 6-gram by 0.0819, the LSTM better than the
# small GPT by 0.4852, and the MLP better than the small GPT by 0.3820.
#
# ### Calibration
#
# A model can have a good loss and still be over- or under-confident. A *reliability diagram*
# {cite:p}`guo2017calibration` bins the positions by the probability the model gave its most probable
# character, and compares each bin's average probability with how often that character was right.
# A calibrated model lies on the diagonal; the expected calibration error (ECE) is the average gap,
# weighted by the bins' sizes.

# %%
fig, ax = plt.subplots(figsize=(4.6, 4.2))
ax.plot([0, 1], [0, 1], color="grey", lw=0.8)
for label in [f"{name} (committed)" for name in committed] + ["LSTM 1 x 256 (ch. 3)", "GPT 2 x 128 (the draft)"]:
    scores = board[label][0]
    cal = evaluate.calibration(scores.top_prob, scores.hit, bins=10)
    used = cal.count > 0
    ax.plot(cal.confidence[used], cal.accuracy[used], "o-", ms=3, label=f"{label.split(' (')[0]}: ECE {cal.ece:.3f}")
    print(f"{label:34s} ECE {cal.ece:.4f}; top character right {scores.hit.float().mean():.1%} of the time, "
          f"mean top probability {scores.top_prob.mean():.1%}")
ax.set(xlabel="probability of the top character", ylabel="how often it was right", title="Reliability")
ax.legend(fontsize=7)
plt.show()

# %% [markdown]
# The two small models trained here lie on the diagonal (ECE 0.0095 and 0.0184). The committed
# models do not: `shakespeare_char`'s top character is right 58.8% of the time, but it gives it
# 63.5% on average (ECE 0.0470); the GPU-trained model's is right 60.2% of the time and given
# 66.6% (ECE 0.0642). Training by maximum likelihood pushes a model toward calibration on the
# text it is
# trained on (the log-loss is a *proper* scoring rule: it is minimised by the true probabilities),
# and the committed models read their training text many times (about seventeen and fifty): on
# held-out text they are surer than they should be, and here the one that read it more often is the
# surer of the two (one pair of models, which also differ in size, cannot say which difference
# causes it). Guo et al. found such over-confidence in networks trained long. It is the gap of
# section 8.1 seen from the other side: the model's own samples are a little more probable to it
# than real text. Exercise 6 fits one temperature that halves the committed model's ECE.
#
# ### A multiple-choice test, scored by likelihood
#
# Benchmarks for language models ask questions. HellaSwag {cite:p}`zellers2019hellaswag` gives the
# beginning of a description and four endings; the model "answers" by the ending it finds most
# probable. We build the same kind of test from held-out Shakespeare: a passage of up to 200
# characters, and four candidate next lines, the true one and three lines drawn from elsewhere in
# the held-out text (not speakers' names, at least 20 characters). Chance is 25%. Each choice is
# scored by its total log-probability given the passage; or per character ("acc_norm"), which
# removes the total's preference for short lines; or by how much the passage *raises* its
# log-probability, $\log p(\text{line} \mid \text{passage}) - \log p(\text{line} \mid
# \text{a bare newline})$, a pointwise mutual information {cite:p}`holtzman2021surface`
# (`evaluate.pmi_scorer`), which removes how probable a line is on its own, whatever precedes it.

# %%
questions = evaluate.multiple_choice_questions(val_text, env.pick(test=5, cpu=120, gpu=1000), seed=0)
q = questions[0]
print("passage:", repr(q.context[-120:]))
for i, c in enumerate(q.choices):
    print(f"  {'*' if i == q.answer else ' '} {c!r}")

# %%
scorers = {f"Kneser-Ney {kn_order}-gram": evaluate.ngram_scorer(kneser_ney),
           "LSTM 1 x 256": evaluate.causal_scorer(lstm, encode),
           "GPT 2 x 128 (the draft)": evaluate.causal_scorer(tiny, encode, tiny.config.block_size)} | {
           name: evaluate.causal_scorer(m, encode, m.config.block_size) for name, m in committed.items()}
rules = ("total", "per char", "PMI")
hits = {label: {rule: [] for rule in rules} for label in scorers}
t0 = time.perf_counter()
for q in questions:
    lengths = torch.tensor([len(c) for c in q.choices], dtype=torch.float64)
    for label, score in scorers.items():
        given = score(q.context, q.choices)                  # log p(choice | passage), each choice
        alone = score("\n", q.choices)                      # log p(choice | a bare newline)
        for rule, ranked in zip(rules, (given, given / lengths, given - alone)):
            hits[label][rule].append(int(ranked.argmax()) == q.answer)
print(f"{len(questions)} questions, {len(scorers)} models, in {time.perf_counter() - t0:.0f} s; chance 25%\n")
print(f"{'model':26s} " + " ".join(f"{'accuracy (' + rule + ')':>22s}" for rule in rules))
for label in scorers:
    cells = []
    for rule in rules:
        h = torch.tensor(hits[label][rule], dtype=torch.float64)
        boot = h[torch.randint(0, len(h), (2000, len(h)), generator=torch.Generator().manual_seed(0))].mean(1)
        cells.append(f"{h.mean():.1%} [{boot.quantile(0.025):.0%}, {boot.quantile(0.975):.0%}]")
    print(f"{label:26s} " + " ".join(f"{c:>22s}" for c in cells))

# %% [markdown]
# Scored by the total log-probability of a line, or per character, the models answer 20.8% to
# 34.2% of the questions, and every interval but one contains chance (`shakespeare_char` per
# character, 34.2% [26%, 42%], clears it by a point): the committed GPT, far better by its loss,
# shows no advantage at this test over counting (29.2% and 34.2%, against 23.3% and 30.8% for the
# Kneser–Ney 6-gram, intervals overlapping). Scored by PMI, the committed GPT answers 47.5% of the
# questions [38%, 57%], the GPU-trained one 55.0% [46%, 64%], the Kneser–Ney 6-gram 38.3% [29%,
# 48%]: all three above chance, in the order of their losses, but with overlapping intervals, so
# this test does not establish that order. The two small models stay near chance. Why can
# perplexity and task accuracy disagree?
#
# - **A line's probability mixes two things**: how probable the line is on its own (its length,
#   its common words) and how well it fits the passage. Between four lines of Shakespeare the first
#   varies far more than the second, and the question is about the second; PMI subtracts the
#   first. The scoring rule is part of the benchmark: the same model scores 29.2% or 47.5%.
# - **A loss averages over every character; a question is decided by a few.** Most characters of
#   English are easy to predict from spelling alone (the "ughter" of "daughter"); a model wins most
#   of its loss there. The choice between four lines turns on whether the line *fits the passage*:
#   who speaks, the metre, the subject: a few characters of each line, so a small part of the
#   loss. The committed GPT has learned some of it (47.5% by PMI); its loss could not have said
#   how much.
# - **Noise.** A difference of a few points on 120 questions is within the intervals, which are
#   eight to ten points either side. The LSTM, 0.49 nats per character better than the small GPT,
#   scores below it in every column, within those intervals. A benchmark number without an interval
#   cannot rank two models that are close.
#
# ## 8.6 GPT-2 itself
#
# The source articles' first application is text generation with a pretrained GPT-2 from Hugging
# Face, in code like this:
#
# ```python
# tokenizer = GPT2Tokenizer.from_pretrained("gpt2")
# model = GPT2LMHeadModel.from_pretrained("gpt2")
# input_ids = tokenizer.encode("Once upon a time", return_tensors="pt")
# output = model.generate(input_ids, max_length=50, num_return_sequences=1)
# print(tokenizer.decode(output[0], skip_special_tokens=True))
# ```
#
# It runs, and it answers the question readers ask next ("why does GPT-2 repeat itself?") without
# saying so: `generate` decodes *greedily* unless told `do_sample=True`, so this prints the most
# probable continuation, which for GPT-2 soon loops {cite:p}`holtzman2020`, as our model's
# greedy text did in section 8.1 (and does below). `max_length=50` counts the
# prompt's tokens too (`max_new_tokens` counts only new ones). Asking for `num_return_sequences=3`
# without sampling or beams is refused: greedy decoding has only one answer. And it passes no
# attention mask: harmless for one prompt, wrong for a padded batch (section 8.3). Our package runs
# the same generation on GPT-2's published weights, loaded into our `GPT` (chapter 5), with our
# tokenizer of GPT-2 (chapter 6): the code below does it on a machine that can download the weights
# once (about 0.5 GB). Offline, `hf.from_pretrained` says so in seconds, and the chapter falls back
# to the committed character model with the same calls.

# %%
from lmbook.bpe import Tokenizer

try:
    lm = hf.from_pretrained("gpt2").to(device).eval()
    gpt2_tokenizer = Tokenizer.from_gpt2_files(data.path("gpt2_encoder"), data.path("gpt2_vocab"))
    lm_encode, lm_decode, lm_name = gpt2_tokenizer.encode, gpt2_tokenizer.decode, "GPT-2 (124M)"
except hf.PretrainedUnavailable as err:
    print("offline:", err)
    lm, lm_encode, lm_decode, lm_name = model, encode, decode, "the committed character model"
print(f"generating with {lm_name}")
for label, kw in [("greedy, as the articles' code does", dict(greedy=True)),
                  ("sampling, top-p 0.9, τ 0.8", dict(top_p=0.9, temperature=0.8)),
                  ("greedy with a repetition penalty of 1.3", dict(greedy=True, repetition_penalty=1.3))]:
    text = generate.generate_text(lm, lm_encode, lm_decode, "Once upon a time", env.pick(test=15, cpu=120, gpu=120),
                                  generator=torch.Generator(device=device).manual_seed(0), **kw)
    print(f"--- {label} ---\nOnce upon a time{text}\n")

# %% [markdown]
# Which pretrained model should one choose, another of the articles' questions? For generating
# text, a decoder-only model (GPT-2 and its successors), not BERT, which has no left-to-right
# distribution to sample from (chapter 5); then the largest one whose weights and KV cache fit the
# memory at hand (section 8.3's formula), measured on text like yours with the tools of section 8.5.
#
# What to take away:
#
# - Decoding is a choice of distribution: temperature reshapes it, top-$k$, top-$p$ and min-$p$ cut
#   its tail, penalties push down what was said. Greedy decoding and beam search look for the most
#   probable text, which is not what human text is, and they loop.
# - The KV cache turns each generation step from a pass over the whole context into a pass over one
#   token; learned positions need windows to go past the context. Prefill is parallel, decoding is
#   not.
# - Speculative decoding trades cheap draft steps for fewer target steps, with exactly the target's
#   distribution; its speed-up is set by the acceptance rate, the draft's cost and the cost of the
#   target's checking pass, and it has to be measured on the hardware that will run it.
# - Measure models on the same text, in a unit that ignores the tokenizer, with intervals from
#   segments and paired comparisons; likelihood and task accuracy measure different things, and a
#   task's scoring rule can matter as much as the model.

# %%
print(f"this notebook ran in {time.perf_counter() - chapter_start:.0f} s at the {env.profile()} profile")

# %% [markdown]
# ## Exercises
#
# **Exercise 1 (autograded).** *Locally typical sampling* {cite:p}`meister2023typical` keeps the
# tokens whose surprise $-\log p(x)$ is closest to the distribution's entropy $H$, rather than the
# most probable ones: sort the tokens by $|{-\log p(x)} - H|$, ascending, and keep the shortest
# prefix of that order whose probabilities add up to at least `mass` (at least one token); the
# others get $-\infty$. Write `typical_filter(logits, mass)` for a `(B, V)` tensor. The hidden tests
# compare it with Hugging Face's `TypicalLogitsWarper` on random logits, and take that class away.

# %%
def typical_filter(logits: Tensor, mass: float) -> Tensor:
    ### BEGIN SOLUTION
    logp = logits.log_softmax(dim=-1)
    p = logp.exp()
    entropy = -(p * logp).nansum(dim=-1, keepdim=True)
    shifted = (-logp - entropy).abs()                              # distance of each surprise from H
    sorted_shift, order = shifted.sort(dim=-1)
    cumulative = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cumulative < mass).sum(dim=-1, keepdim=True).clamp(max=logits.shape[-1] - 1)   # index of the last kept
    drop_sorted = sorted_shift > sorted_shift.gather(-1, last)
    drop_sorted[..., 0] = False                                    # at least one token
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, -math.inf)
    ### END SOLUTION


# %%
# Autograded test: ex1_typical (2 points)
_z = torch.log(torch.tensor([[0.4, 0.3, 0.2, 0.1]]))
_H = -(torch.tensor([0.4, 0.3, 0.2, 0.1]) * torch.log(torch.tensor([0.4, 0.3, 0.2, 0.1]))).sum()
_out = typical_filter(_z, 0.45)
assert _out.shape == _z.shape, "return logits of the same shape"
assert torch.equal(torch.isfinite(_out), torch.tensor([[False, True, True, False]])), \
    (f"H = {_H:.3f} nats; |surprise - H| is 0.36, 0.08, 0.33, 1.02 for p = 0.4, 0.3, 0.2, 0.1: the closest two "
     f"(0.3, then 0.2) reach mass 0.45, and the most probable token is dropped")
assert torch.equal(_out[torch.isfinite(_out)], _z[torch.isfinite(_out)]), "kept logits stay unchanged"
### BEGIN HIDDEN TESTS
from lmbook import grading

_g = torch.Generator().manual_seed(0)
_cases = [torch.randn(20, 30, generator=_g) * s for s in (0.5, 2.0, 6.0)]
with grading.without("transformers.TypicalLogitsWarper", "transformers.generation.TypicalLogitsWarper",
                     "transformers.generation.logits_process.TypicalLogitsWarper"):
    _ours = {(i, m): typical_filter(c.clone(), m) for i, c in enumerate(_cases) for m in (0.2, 0.9, 0.99)}
from transformers.generation.logits_process import TypicalLogitsWarper as _Typical  # noqa: E402

for (i, m), _o in _ours.items():
    _t = _Typical(mass=m)(None, _cases[i].clone())
    assert torch.equal(torch.isfinite(_o), torch.isfinite(_t)), f"mass {m}: not the tokens transformers keeps"
    assert torch.allclose(_o[torch.isfinite(_o)], _t[torch.isfinite(_t)]), "kept logits stay unchanged"
### END HIDDEN TESTS

# %% [markdown]
# **Exercise 2 (autograded).** Write `bits_per_byte_from_nats(nats_per_char, text)`: a model scored
# `nats_per_char` on average over the characters of `text`; return its bits per UTF-8 byte. Then:
# the committed Tang-poem model (`tang_poems_char`) and the committed Shakespeare model both report a
# loss in nats per character; which one compresses its text better, per byte? (A Chinese character
# is 3 bytes in UTF-8.) The hidden tests take `evaluate.bits_per_byte` away.

# %%
def bits_per_byte_from_nats(nats_per_char: float, text: str) -> float:
    ### BEGIN SOLUTION
    return nats_per_char * len(text) / math.log(2) / len(text.encode("utf-8"))
    ### END SOLUTION


# %%
# Autograded test: ex2_bits_per_byte (2 points)
assert abs(bits_per_byte_from_nats(math.log(2), "abcd") - 1.0) < 1e-12, "ASCII: one byte per character, ln 2 nats = 1 bit"
assert abs(bits_per_byte_from_nats(3 * math.log(2), "春眠不覺曉") - 1.0) < 1e-12, \
    "each of these characters is 3 bytes: 3 bits per character is 1 bit per byte"
### BEGIN HIDDEN TESTS
from lmbook import grading

with grading.without("lmbook.evaluate.bits_per_byte"):
    _mixed = "Père 春 é!"
    _expected = 1.7 * len(_mixed) / math.log(2) / len(_mixed.encode("utf-8"))
    assert abs(bits_per_byte_from_nats(1.7, _mixed) - _expected) < 1e-12, "count the UTF-8 bytes of the text"
### END HIDDEN TESTS

# %%
### BEGIN SOLUTION
for name in (MODEL, "tang_poems_char"):
    try:
        dataset = json.loads((models.path(name) / "config.json").read_text())["train"]["dataset"]
    except FileNotFoundError:
        print(f"{name} is not in runs/ (`make models` trains it)")
        continue
    loss = models.metrics(name)["eval_loss"]["val"][-1]
    held_out = data.lm_split(dataset)[1]
    print(f"{name}: {loss:.4f} nats/char = {bits_per_byte_from_nats(loss, held_out):.3f} bits/byte "
          f"({len(held_out.encode('utf-8')) / len(held_out):.2f} bytes per character)")
# Per character the Tang model's loss is far higher (each of thousands of Chinese characters carries
# more information than a letter); per byte, 3 bytes a Chinese character, the printed gap all but
# closes: the unit decides how two models on different texts compare.
### END SOLUTION

# %% [markdown]
# **Exercise 3.** Derive the KV cache of GPT-2 small (12 layers, 12 heads of 64 dimensions) for one
# sequence of its full context, 1,024 tokens {cite:p}`radford2019`, in float16, with the formula of
# section 8.3, and check it with `generate.kv_cache_bytes`. At what batch size does the cache of such
# sequences take more memory than the model's weights in float16? And for a model with grouped-query
# attention that keeps 4 key/value heads instead of 12?

# %%
### BEGIN SOLUTION
gpt2_small = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
per_sequence = 12 * 2 * 12 * 64 * 1024 * 2
assert per_sequence == generate.kv_cache_bytes(gpt2_small, 1024, bytes_per_value=2)
weights = param_count(gpt2_small) * 2                    # chapter 5's count, in float16
print(f"one sequence: {per_sequence / 2**20:.0f} MiB; weights {weights / 2**20:.0f} MiB; the cache is larger from a batch "
      f"of {math.floor(weights / per_sequence) + 1}; with 4 key/value heads, from "
      f"{math.floor(weights / (per_sequence * 4 / 12)) + 1}")
### END SOLUTION

# %% [markdown]
# **Exercise 4.** Find decoding settings that repeat least at a fixed likelihood. Fix a target
# log-likelihood per character (that of $\tau = 0.3$ sampling, say), and for each of the repetition,
# frequency and presence penalties search the temperature that brings the likelihood back within
# 0.05 nats of the target. Which penalty lowers the repetition rate most for the same likelihood?

# %%
### BEGIN SOLUTION
def measure(kw, rows=4, n=env.pick(test=20, cpu=300, gpu=300), seed=11):
    out = generate.generate(model, prompt_ids.repeat(rows, 1), n, generator=torch.Generator(device=device).manual_seed(seed), **kw)
    texts = [decode(r[len(prompt):].tolist()) for r in out]
    return loglik_per_char(texts), np.mean([evaluate.repetition_rate(t, 3) for t in texts])


def matched(penalty: dict, target: float, low=0.05, high=1.0, steps=5):
    """Bisect the temperature until the likelihood is within 0.05 of the target: (τ, log-lik, repetition)."""
    for _ in range(steps):
        t = (low + high) / 2
        ll, rep = measure(penalty | dict(temperature=t))
        if abs(ll - target) <= 0.05:
            break
        low, high = (t, high) if ll > target else (low, t)       # too probable: a higher temperature
    return t, ll, rep


target_ll, target_rep = measure(dict(temperature=0.3))
print(f"τ 0.3, no penalty: log-lik/char {target_ll:.3f}, repetition {target_rep:.3f}")
for penalty in [dict(repetition_penalty=1.1), dict(frequency_penalty=0.02), dict(presence_penalty=0.3)]:
    t, ll, rep = matched(penalty, target_ll)
    print(f"{penalty}, τ {t:.3f}: log-lik/char {ll:.3f} ({ll - target_ll:+.3f}"
          f"{'' if abs(ll - target_ll) <= 0.05 else ', not matched'}), repetition {rep:.3f}")
# Only settings matched within 0.05 compare fairly. On a character model every penalty acts on
# characters, not words: the repetition and presence penalties push down every letter already used
# (all the common ones), and counts of common letters grow fast, so the frequency penalty must be
# tiny. Over the words or tokens of a BPE model the same penalties act on what actually repeats.
# Here τ = 0.3 repeats few word trigrams in 300 characters (0.012); at matched likelihood the
# repetition and frequency penalties bring that to 0.000 and the presence penalty does not (0.021).
# With so few repeats to start from, one sample per setting cannot rank the penalties: for this
# model the loops come from greedy decoding and beam search more than from sampling.
### END SOLUTION

# %% [markdown]
# **Exercise 5.** Extend the multiple-choice test to the Tang poems: questions from the held-out
# poems (`data.tang_poems_split`), where a candidate line is a line of a poem (not a title or an
# author), and the committed model `tang_poems_char`. Compare its accuracy with that of a
# Kneser–Ney model fitted on the training poems. Is choosing the next line of a poem easier than
# choosing the next line of a play?

# %%
### BEGIN SOLUTION
try:
    tang, tang_meta = models.load("tang_poems_char", device=device)
    tang_train, tang_val = data.lm_split("tang_poems")
    poem_lines = {line for poem in data.tang_poems_split()[1] for line in poem.text.split("\n")}
    tang_questions = evaluate.multiple_choice_questions(tang_val, env.pick(test=5, cpu=150, gpu=500), context_chars=60,
                                                        min_chars=5, is_candidate=lambda line: line in poem_lines, seed=0)
    tang_encode = lambda s: tokens.encode_chars(s, tang_meta["chars"]).tolist()  # noqa: E731
    tang_scorers = {"tang_poems_char": evaluate.causal_scorer(tang, tang_encode, tang.config.block_size),
                    "Kneser-Ney 3-gram": evaluate.ngram_scorer(ngram.NgramLM(3, "kneser_ney").fit([list(tang_train)]))}
    for label, score in tang_scorers.items():
        total = evaluate.multiple_choice_accuracy(score, tang_questions)[0].float().mean()
        pmi = evaluate.multiple_choice_accuracy(evaluate.pmi_scorer(score), tang_questions)[0].float().mean()
        print(f"{label}: {total:.1%} by total log-probability, {pmi:.1%} by PMI "
              f"({len(tang_questions)} questions, chance 25%)")
except FileNotFoundError:
    print("tang_poems_char is not in runs/ (`make models` trains it)")
# Lines of a regular poem have the same length (5 or 7 characters), so length gives nothing away, and
# rhyme and parallelism tie a line to the one before it: both help a model that has learned them.
### END SOLUTION

# %% [markdown]
# **Exercise 6.** *Temperature scaling* {cite:p}`guo2017calibration`: divide a model's logits by one
# number $\tau$ chosen to minimise the log-loss on held-out text, and the model's probabilities
# become better calibrated without changing which token is the most probable. Fit $\tau$ for the
# committed model on the first half of the held-out text of section 8.5 and measure the ECE on the
# second half, before and after.

# %%
### BEGIN SOLUTION
with torch.inference_mode():
    T_ = model.config.block_size
    rows_ = eval_ids[: (len(eval_ids) - 1) // T_ * T_ + 1]
    x_, y_ = rows_[:-1].view(-1, T_), rows_[1:].view(-1, T_)
    logits_ = torch.cat([model(x_[i:i + 16].to(device))[0].float().cpu() for i in range(0, len(x_), 16)])
half = len(logits_) // 2
taus = torch.linspace(0.7, 1.5, 33)
nll = [F.cross_entropy((logits_[:half] / t).flatten(0, 1), y_[:half].flatten()).item() for t in taus]
best = taus[int(np.argmin(nll))].item()
for t in (1.0, best):
    p_ = (logits_[half:] / t).softmax(-1)
    top_, arg_ = p_.max(-1)
    cal_ = evaluate.calibration(top_.flatten(), (arg_ == y_[half:]).flatten())
    print(f"τ = {t:.3f}: ECE {cal_.ece:.4f}, held-out loss {F.cross_entropy((logits_[half:] / t).flatten(0, 1), y_[half:].flatten()):.4f}")
### END SOLUTION

# %% [markdown]
# **Exercise 7.** How much does the evaluation's context matter? Score the committed model on the
# held-out text of section 8.5 with windows moved by a whole context (non-overlapping), by half a
# context and by an eighth, and report the nats per character and the time each takes. Which stride
# would you report, and why must it be stated with the number?

# %%
### BEGIN SOLUTION
for stride in (model.config.block_size, model.config.block_size // 2, model.config.block_size // 8):
    t0 = time.perf_counter()
    s_ = evaluate.token_logprobs(model, eval_ids[: env.pick(test=600, cpu=4000, gpu=8000)], model.config.block_size, stride)
    print(f"stride {stride:3d}: {evaluate.nats_per_token(s_.logprob):.4f} nats/char in {time.perf_counter() - t0:.1f} s")
# Non-overlapping windows give the first characters of each window almost no context, so the loss is
# higher; smaller strides give every character more context at a higher cost, with diminishing returns.
### END SOLUTION
