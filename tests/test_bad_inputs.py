"""Bad input, tried as a careless or unlucky user would: wrong types, empty inputs, NaN and inf,
negative and zero sizes, wrong shapes and dtypes, out-of-range ids (negative ones too), non-UTF-8
bytes, missing and corrupt files, across the public functions of every module.

Each case either raises an error whose message names the argument (or file) that was wrong, or
gives a result its docstring documents. No case may return a silently wrong answer. A case is
``(thunk, expected)``: the thunk takes a scratch folder; `expected` is ``(ErrorType, regex)`` or
``DOC(check)``, a documented result that `check` verifies.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import json
import math
import os
import random
import re
from functools import cache
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lmbook import attention, batching, bpe, checkpoint, data, dates, env, gpt, mlp, ngram, rnn, seq2seq, tokens, train
from lmbook import trainer as trainer_mod
from lmbook.checkpoint import CheckpointError

NAN, INF = float("nan"), float("inf")
CASES: list = []


class DOC:
    """A documented result: `check(result)` must hold."""

    def __init__(self, check):
        self.check = check


def case(name: str, thunk, error, pattern: str | None = None) -> None:
    """Register one bad input: `thunk(tmp)` must raise `error` matching `pattern`, or satisfy DOC."""
    CASES.append(pytest.param(thunk, error, pattern, id=f"{len(CASES):03d}-{name}"))


# ---- small objects the cases share (built once, on first use) ------------------------------------------

@cache
def vocab():
    return batching.Vocab("abc", specials=["."])


@cache
def bigram():
    return mlp.NeuralBigram(5)


@cache
def mlp_model():
    torch.manual_seed(0)
    return mlp.MLPLanguageModel(27, block_size=3, emb_dim=2, hidden=8)


@cache
def char_rnn():
    torch.manual_seed(0)
    return rnn.CharRNN(27, emb_dim=4, hidden_size=8, num_layers=1)


@cache
def gpt_model():
    torch.manual_seed(0)
    return gpt.GPT(gpt.GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))


@cache
def lm(smoothing="interpolated"):
    return ngram.NgramLM(2, smoothing).fit([list("abc"), list("abd"), list("bcd")])


@cache
def tok():
    return bpe.Tokenizer().train("hello hello world, hello there", 260, special_tokens=[bpe.ENDOFTEXT])


@cache
def custom_tok():
    return bpe.Tokenizer(r"[\s\S]{1,6}").train("hello hello world, hello there", 260)


@cache
def s2s():
    torch.manual_seed(0)
    return seq2seq.Seq2Seq(src_vocab_size=6, tgt_vocab_size=7, target_len=3, emb_dim=4, hidden=8)


@cache
def s2s_vocabs():
    return seq2seq.make_vocabs([("ab", "12"), ("ba", "21")])


def ids(*values, dtype=torch.long):
    return torch.tensor(values, dtype=dtype)


def write(tmp: Path, name: str, content: bytes | str) -> Path:
    path = tmp / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content.encode("utf-8") if isinstance(content, str) else content)
    return path


def cli_error(argv):
    """parse_args' error message (argparse prints it and exits) as a ValueError, so it can be matched."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            trainer_mod.parse_args(argv)
        except SystemExit:
            raise ValueError(err.getvalue()) from None


def with_profile(value, fn):
    old = os.environ.get("LMBOOK_PROFILE")
    os.environ["LMBOOK_PROFILE"] = value
    try:
        return fn()
    finally:
        if old is None:
            del os.environ["LMBOOK_PROFILE"]
        else:
            os.environ["LMBOOK_PROFILE"] = old


# ---- lmbook.env ----------------------------------------------------------------------------------------

case("env.pick-missing-profile", lambda t: env.pick(test=1), ValueError, r"pick\(\) needs a value for every profile")
case("env.profile-unknown", lambda t: with_profile("tpu", env.profile), ValueError, "LMBOOK_PROFILE='tpu'")
case("env.seed-negative", lambda t: env.seed_everything(-1), ValueError, "seed must be an int")
case("env.seed-str", lambda t: env.seed_everything("x"), ValueError, "seed must be an int")
case("env.seed-too-big", lambda t: env.seed_everything(2**40), ValueError, "seed must be an int in 0..2")
case("env.seed-float", lambda t: env.seed_everything(1.5), ValueError, "seed must be an int")

# ---- lmbook.data --------------------------------------------------------------------------------------

for bad in (1.5, -0.1, 0, 1, NAN, True, "0.9"):
    case(f"data.shakespeare_split-{bad!r}", lambda t, bad=bad: data.shakespeare_split(bad), ValueError,
         "train_fraction must lie strictly between 0 and 1")
case("data.names_split-seed-str", lambda t: data.names_split("x"), TypeError, "seed must be an int")
case("data.path-unknown", lambda t: data.path("nope"), data.DatasetError, "unknown dataset 'nope'")
case("data.path-not-str", lambda t: data.path(["names"]), data.DatasetError, r"unknown dataset \['names'\]")
case("data.load_text-unknown", lambda t: data.load_text(""), data.DatasetError, "unknown dataset ''")
case("data.sha256_of-missing", lambda t: data.sha256_of(t / "missing.txt"), FileNotFoundError, "missing.txt")

# ---- lmbook.ngram -------------------------------------------------------------------------------------

for kw, pattern in [
    (dict(order=0), "order must be an int >= 1"), (dict(order=2.5), "order must be an int"),
    (dict(order=True), "order must be an int"), (dict(order=-1), "order must be an int >= 1"),
    (dict(order=2, smoothing="good_turing"), "unknown smoothing 'good_turing'"),
    (dict(order=2, smoothing=None), "unknown smoothing None"),
    (dict(order=2, smoothing="add_k", k=0), "k must be > 0"), (dict(order=2, smoothing="add_k", k=-1), "k must be > 0"),
    (dict(order=2, smoothing="add_k", k=INF), "k must be > 0 and finite"),
    (dict(order=2, smoothing="add_k", k=NAN), "k must be > 0"), (dict(order=2, smoothing="add_k", k="1"), "k must be"),
    (dict(order=2, discount=1), "discount must be in the open interval"),
    (dict(order=2, discount=0), "discount must be in the open interval"),
    (dict(order=2, discount=NAN), "discount must be in the open interval"),
    (dict(order=2, min_count=0), "min_count must be an int >= 1"),
    (dict(order=2, min_count=1.5), "min_count must be an int >= 1"),
    (dict(order=2, smoothing="mle", lambdas=[0.5, 0.5]), "lambdas are only used by smoothing='interpolated'"),
    (dict(order=2, smoothing="interpolated", lambdas=[0.5, 0.5]), "lambdas must be 3 weights"),
    (dict(order=2, smoothing="interpolated", lambdas=[NAN, 0.5, 0.5]), "lambdas must be 3 weights"),
    (dict(order=2, smoothing="interpolated", lambdas=[0.5, NAN, NAN]), "lambdas must be 3 weights"),
    (dict(order=2, smoothing="interpolated", lambdas=[0.5, -0.5, 1.0]), "lambdas must be 3 weights"),
    (dict(order=2, smoothing="interpolated", lambdas=[0.3, 0.3, 0.3]), "lambdas must be 3 weights"),
    (dict(order=2, smoothing="interpolated", lambdas=[0, 0.5, 0.5]), "the uniform one > 0"),
    (dict(order=2, smoothing="interpolated", lambdas=["a", "b", "c"]), "lambdas must be a sequence of 3 numbers"),
]:
    case(f"ngram.NgramLM-{sorted(kw.items())}", lambda t, kw=kw: ngram.NgramLM(**kw), (TypeError, ValueError), pattern)

fresh = lambda: ngram.NgramLM(2, "add_k")  # noqa: E731
case("ngram.fit-str", lambda t: fresh().fit("to be or not"), TypeError, "fit expects an iterable of token sequences")
case("ngram.fit-int", lambda t: fresh().fit(5), TypeError, "fit expects an iterable of token sequences")
case("ngram.fit-empty", lambda t: fresh().fit([]), ValueError, "cannot fit on an empty corpus")
case("ngram.fit-empty-sequences", lambda t: fresh().fit([[], []]), ValueError, "cannot fit on an empty corpus")
case("ngram.fit-token-int", lambda t: fresh().fit([["a", 1]]), TypeError, "token 1 of sequence 0 is 1")
case("ngram.fit-sequence-str", lambda t: fresh().fit(["ab", "cd"]), TypeError, "sequence 0 is str")
case("ngram.fit-bos", lambda t: fresh().fit([["<s>", "a"]]), ValueError, "sequence 0 contains '<s>'")
case("ngram.fit-eos", lambda t: fresh().fit([["a"], ["b", "</s>", "c"]]), ValueError, "sequence 1 contains '</s>'")
case("ngram.prob-unfitted", lambda t: fresh().prob("a", []), ValueError, "not fitted yet")
case("ngram.prob-token-int", lambda t: lm().prob(5, ["a"]), TypeError, "token must be a str")
case("ngram.prob-context-str", lambda t: lm().prob("a", "ab"), TypeError, "context must be a list of str tokens")
case("ngram.prob-context-int", lambda t: lm().prob("a", [1]), TypeError, "context token 1 is a int")
case("ngram.probs-context-none", lambda t: lm().probs(None), TypeError, "context must be a list of str tokens")
case("ngram.token_probs-empty", lambda t: lm().token_probs([]), ValueError, "cannot score an empty corpus")
case("ngram.perplexity-str", lambda t: lm().perplexity("abc"), TypeError, "scoring expects an iterable")
case("ngram.cross_entropy-eos", lambda t: lm().cross_entropy([["a", "</s>"]]), ValueError, "contains '</s>'")
case("ngram.sample-n-negative", lambda t: lm().sample(n=-1), ValueError, "n must be >= 0")
case("ngram.sample-n-float", lambda t: lm().sample(n=1.5), TypeError, "n must be an int")
case("ngram.sample-max_len-0", lambda t: lm().sample(max_len=0), ValueError, "max_len must be >= 1")
case("ngram.sample-seed-negative", lambda t: lm().sample(seed=-1), ValueError, "seed must be None or an int >= 0")
case("ngram.sample-seed-str", lambda t: lm().sample(seed="x"), ValueError, "seed must be None or an int")
case("ngram.tune-max_iter-negative", lambda t: lm().tune_lambdas([list("ab")], max_iter=-1), ValueError,
     "max_iter must be >= 1")
case("ngram.tune-max_iter-0", lambda t: lm().tune_lambdas([list("ab")], max_iter=0), ValueError, "max_iter must be >= 1")
case("ngram.tune-empty", lambda t: lm().tune_lambdas([]), ValueError, "cannot tune on an empty corpus")
case("ngram.tune-not-interpolated", lambda t: lm("add_k").tune_lambdas([list("ab")]), ValueError,
     "tune_lambdas is for smoothing='interpolated'")
good_likelihoods = np.array([[0.5, 0.5], [0.9, 0.1]])
for kw, pattern in [
    (dict(likelihoods=good_likelihoods, max_iter=-1), "max_iter must be >= 1"),
    (dict(likelihoods=good_likelihoods, max_iter=2.5), "max_iter must be an int"),
    (dict(likelihoods=good_likelihoods, tol=0), "tol must be a finite number > 0"),
    (dict(likelihoods=good_likelihoods, tol=NAN), "tol must be a finite number > 0"),
    (dict(likelihoods=np.array([0.5, 0.5])), "likelihoods must be a non-empty 2-D array"),
    (dict(likelihoods=np.zeros((2, 0))), "likelihoods must be a non-empty 2-D array"),
    (dict(likelihoods=np.array([[0.5, NAN], [0.5, 0.5]])), "likelihoods must be finite probabilities"),
    (dict(likelihoods=np.array([[0.5, -0.1], [0.5, 0.5]])), "likelihoods must be finite probabilities"),
    (dict(likelihoods=np.array([[0.5, 0.0], [0.5, 0.0]])), "token 1 has probability 0 under every component"),
    (dict(likelihoods="abc"), "likelihoods must be a"),
]:
    case(f"ngram.em_mixture_weights-{len(CASES)}", lambda t, kw=kw: ngram.em_mixture_weights(**kw),
         (TypeError, ValueError), pattern)
case("ngram.sample-n-0", lambda t: lm().sample(n=0), DOC(lambda r: r == []))
case("ngram.prob-of-bos", lambda t: lm().prob("<s>", ["a"]), DOC(lambda r: r == 0.0))
case("ngram.prob-unknown-token", lambda t: lm().prob("zebra", ["a"]), DOC(lambda r: r == lm().prob("<unk>", ["a"])))
case("ngram.mle-unseen-is-inf", lambda t: lm("mle").cross_entropy([list("ca")]), DOC(lambda r: r == math.inf))

# ---- lmbook.batching ----------------------------------------------------------------------------------

X10, Y10 = torch.arange(10)[:, None], torch.arange(10)
for name, thunk, error, pattern in [
    ("Vocab-int", lambda t: batching.Vocab(5), TypeError, "tokens must be an iterable of str"),
    ("Vocab-bytes", lambda t: batching.Vocab(b"abc"), TypeError, "tokens must be an iterable of str"),
    ("Vocab-int-tokens", lambda t: batching.Vocab([1, 2]), TypeError, "tokens must be strings, got int"),
    ("Vocab-specials-str", lambda t: batching.Vocab("abc", specials="."), TypeError, "specials must be a list"),
    ("Vocab-specials-repeated", lambda t: batching.Vocab("abc", specials=[".", "."]), ValueError,
     "specials must be distinct"),
    ("encode-unknown", lambda t: vocab().encode("z"), ValueError, "token 'z' is not in the vocabulary"),
    ("encode-list-token", lambda t: vocab().encode([["a"]]), TypeError, "tokens must be strings"),
    ("decode-too-big", lambda t: vocab().decode([4]), ValueError, "id 4 is out of range"),
    ("decode-negative", lambda t: vocab().decode([-1]), ValueError, "id -1 is out of range"),
    ("decode-float", lambda t: vocab().decode([1.0]), TypeError, "decode: token ids must be ints"),
    ("decode-str", lambda t: vocab().decode(["a"]), TypeError, "decode: token ids must be ints"),
    ("decode-bool", lambda t: vocab().decode([True]), TypeError, "decode: token ids must be ints, got the bool"),
    ("context_windows-block-0", lambda t: batching.context_windows([[1, 2]], 0, 0), ValueError, "block_size must be >= 1"),
    ("context_windows-block-negative", lambda t: batching.context_windows([[1, 2]], -1, 0), ValueError,
     "block_size must be >= 1"),
    ("context_windows-block-float", lambda t: batching.context_windows([[1, 2]], 2.5, 0), TypeError,
     "block_size must be an int"),
    ("context_windows-block-bool", lambda t: batching.context_windows([[1, 2]], True, 0), TypeError,
     "block_size must be an int"),
    ("context_windows-empty", lambda t: batching.context_windows([], 2, 0), ValueError, "sequences is empty"),
    ("context_windows-str", lambda t: batching.context_windows("ab", 2, 0), TypeError, "sequences must be a list"),
    ("context_windows-tensor", lambda t: batching.context_windows(torch.ones(2, 2, dtype=torch.long), 2, 0),
     TypeError, "sequences must be a list"),
    ("context_windows-negative-id", lambda t: batching.context_windows([[1, -2]], 2, 0), ValueError,
     "sequence 0: token id -2 is out of range"),
    ("context_windows-float-id", lambda t: batching.context_windows([[1, 2.0]], 2, 0), TypeError,
     "sequence 0: token ids must be ints"),
    ("context_windows-str-sequence", lambda t: batching.context_windows(["ab"], 2, 0), TypeError,
     "sequence 0 is the string"),
    ("context_windows-boundary-negative", lambda t: batching.context_windows([[1]], 2, -1), ValueError,
     "boundary_id: token id -1"),
    ("context_windows-boundary-float", lambda t: batching.context_windows([[1]], 2, 0.5), TypeError, "boundary_id"),
    ("stream_windows-block-0", lambda t: batching.stream_windows([1, 2, 3], 0), ValueError, "block_size must be >= 1"),
    ("stream_windows-too-short", lambda t: batching.stream_windows([1, 2], 2), ValueError,
     "the stream has 2 tokens; windows of block_size=2"),
    ("stream_windows-empty", lambda t: batching.stream_windows([], 1), ValueError, "the stream has 0 tokens"),
    ("stream_windows-negative", lambda t: batching.stream_windows([1, -1, 2], 1), ValueError,
     "ids: token id -1 is out of range"),
    ("stream_windows-negative-tensor", lambda t: batching.stream_windows(ids(1, -1, 2), 1), ValueError,
     "ids holds the negative token id -1"),
    ("stream_windows-float-tensor", lambda t: batching.stream_windows(ids(1, 2, 3, dtype=torch.float), 1), TypeError,
     "ids must hold integer token ids"),
    ("stream_windows-bool-tensor", lambda t: batching.stream_windows(ids(1, 0, 1, dtype=torch.bool), 1), TypeError,
     "ids must hold integer token ids"),
    ("stream_windows-2d", lambda t: batching.stream_windows(torch.zeros(2, 3, dtype=torch.long), 1), ValueError,
     "ids must be one 1-D stream"),
    ("stream_windows-str", lambda t: batching.stream_windows("abc", 1), TypeError, "ids is a string"),
    ("stream_windows-float-list", lambda t: batching.stream_windows([1.5, 2], 1), TypeError, "ids: token ids must be ints"),
    ("random_batches-batch-0", lambda t: batching.random_batches(X10, Y10, 0), ValueError, "batch_size must be >= 1"),
    ("random_batches-batch-float", lambda t: batching.random_batches(X10, Y10, 2.0), TypeError, "batch_size must be an int"),
    ("random_batches-rows-differ", lambda t: batching.random_batches(X10, Y10[:3], 2), ValueError,
     "got 10 rows in X and 3 in Y"),
    ("random_batches-X-list", lambda t: batching.random_batches([1, 2], Y10, 2), TypeError, "X must be a torch.Tensor"),
    ("random_batches-Y-0d", lambda t: batching.random_batches(X10, torch.tensor(1), 2), ValueError,
     "Y must have one row per example"),
    ("random_batches-empty", lambda t: batching.random_batches(X10[:0], Y10[:0], 2), ValueError, "X and Y are empty"),
    ("stream_batches-block-0", lambda t: batching.stream_batches(torch.arange(10), 0, 2), ValueError, "block_size"),
    ("stream_batches-batch-negative", lambda t: batching.stream_batches(torch.arange(10), 4, -1), ValueError,
     "batch_size must be >= 1"),
    ("stream_batches-float", lambda t: batching.stream_batches(torch.rand(10), 4, 2), TypeError,
     "ids must hold integer token ids"),
    ("stream_batches-too-short", lambda t: batching.stream_batches(torch.arange(4), 4, 2), ValueError,
     "block_size=4 need at least 5"),
]:
    case(f"batching.{name}", thunk, error, pattern)

# ---- lmbook.mlp ---------------------------------------------------------------------------------------

sce = mlp.softmax_cross_entropy
for name, thunk, error, pattern in [
    ("sce-logits-int", lambda t: sce(torch.zeros(2, 3, dtype=torch.long), ids(0, 1)), TypeError, "logits must be a float"),
    ("sce-logits-list", lambda t: sce([[1.0, 2.0]], ids(0)), TypeError, "logits must be a float tensor"),
    ("sce-logits-1d", lambda t: sce(torch.zeros(3), ids(0)), ValueError, "logits must be 2-D"),
    ("sce-logits-inf", lambda t: sce(torch.tensor([[INF, 0.0, 0.0]]), ids(0)), ValueError, "logits must be finite"),
    ("sce-logits-minus-inf", lambda t: sce(torch.tensor([[-INF, 0.0, 0.0]]), ids(0)), ValueError, "logits must be finite"),
    ("sce-logits-nan", lambda t: sce(torch.tensor([[NAN, 0.0, 0.0]]), ids(1)), ValueError, "logits must be finite"),
    ("sce-targets-float", lambda t: sce(torch.zeros(2, 3), torch.zeros(2)), TypeError, "targets must be an integer"),
    ("sce-targets-list", lambda t: sce(torch.zeros(2, 3), [0, 1]), TypeError, "targets must be an integer tensor"),
    ("sce-targets-shape", lambda t: sce(torch.zeros(2, 3), ids(0, 1, 2)), ValueError, r"targets must have shape \(B,\)"),
    ("sce-empty", lambda t: sce(torch.zeros(0, 3), ids()), ValueError, "logits and targets hold an empty batch"),
    ("sce-target-too-big", lambda t: sce(torch.zeros(2, 3), ids(0, 3)), ValueError, "target 3 is out of range"),
    ("sce-target-negative", lambda t: sce(torch.zeros(2, 3), ids(0, -1)), ValueError, "target -1 is out of range"),
    ("NeuralBigram-1", lambda t: mlp.NeuralBigram(1), ValueError, "vocab_size must be >= 2"),
    ("NeuralBigram-float", lambda t: mlp.NeuralBigram(2.0), TypeError, "vocab_size must be an int"),
    ("NeuralBigram-bool", lambda t: mlp.NeuralBigram(True), TypeError, "vocab_size must be an int"),
    ("bigram-two-columns", lambda t: bigram()(torch.zeros(2, 2, dtype=torch.long)), ValueError,
     "contexts of length 2, but this model reads exactly block_size=1"),
    ("bigram-id-5", lambda t: bigram()(ids(5)), ValueError, "token id 5 is out of range for a vocabulary of 5"),
    ("bigram-id-negative", lambda t: bigram()(ids(-1)), ValueError, "token id -1 is out of range"),
    ("bigram-float", lambda t: bigram()(torch.zeros(2)), TypeError, "idx must hold integer token ids"),
    ("MLP-vocab-1", lambda t: mlp.MLPLanguageModel(1, 3), ValueError, "vocab_size must be >= 2"),
    ("MLP-block-0", lambda t: mlp.MLPLanguageModel(27, 0), ValueError, "block_size must be >= 1"),
    ("MLP-block-float", lambda t: mlp.MLPLanguageModel(27, 2.5), TypeError, "block_size must be an int"),
    ("MLP-emb-0", lambda t: mlp.MLPLanguageModel(27, 3, emb_dim=0), ValueError, "emb_dim must be >= 1"),
    ("MLP-hidden-negative", lambda t: mlp.MLPLanguageModel(27, 3, hidden=-1), ValueError, "hidden must be >= 1"),
    ("MLP-norm", lambda t: mlp.MLPLanguageModel(27, 3, norm="bn"), ValueError, "norm must be one of"),
    ("MLP-norm-none-object", lambda t: mlp.MLPLanguageModel(27, 3, norm=None), ValueError, "norm must be one of"),
    ("MLP-dropout-1", lambda t: mlp.MLPLanguageModel(27, 3, dropout=1.0), ValueError, "dropout is the probability"),
    ("MLP-dropout-nan", lambda t: mlp.MLPLanguageModel(27, 3, dropout=NAN), ValueError, "dropout is the probability"),
    ("MLP-dropout-negative", lambda t: mlp.MLPLanguageModel(27, 3, dropout=-0.1), ValueError, "dropout"),
    ("mlp-idx-list", lambda t: mlp_model()([[0, 0, 1]]), TypeError, "idx must be a torch.Tensor"),
    ("mlp-idx-float", lambda t: mlp_model()(torch.zeros(1, 3)), TypeError, "idx must hold integer token ids"),
    ("mlp-idx-bool", lambda t: mlp_model()(torch.zeros(1, 3, dtype=torch.bool)), TypeError, "idx must hold integer"),
    ("mlp-idx-1d", lambda t: mlp_model()(ids(0, 0, 1)), ValueError, "idx must be 2-D"),
    ("mlp-idx-wrong-length", lambda t: mlp_model()(torch.zeros(1, 4, dtype=torch.long)), ValueError,
     "contexts of length 4, but this model reads exactly block_size=3"),
    ("mlp-idx-empty", lambda t: mlp_model()(torch.zeros(0, 3, dtype=torch.long)), ValueError, "idx is an empty batch"),
    ("mlp-id-27", lambda t: mlp_model()(torch.tensor([[0, 0, 27]])), ValueError, "token id 27 is out of range"),
    ("mlp-id-negative", lambda t: mlp_model()(torch.tensor([[0, -3, 1]])), ValueError, "token id -3 is out of range"),
    ("mlp-batchnorm-one-context", lambda t: mlp.MLPLanguageModel(27, 3, norm="batch")(torch.zeros(1, 3, dtype=torch.long)),
     ValueError, "norm='batch' in training mode needs at least 2 contexts"),
    ("mlp-generate-str", lambda t: mlp_model().generate("abc", 2), TypeError, "context must be a list of int token ids"),
    ("mlp-generate-floats", lambda t: mlp_model().generate([0.0, 0.0, 1.0], 2), TypeError, "context must be a list"),
    ("mlp-generate-short", lambda t: mlp_model().generate([0, 0], 2), ValueError, "at least block_size=3 context tokens"),
    ("mlp-generate-id-99", lambda t: mlp_model().generate([0, 0, 99], 2), ValueError, "context: token id 99"),
    ("mlp-generate-id-negative", lambda t: mlp_model().generate([0, 0, -1], 2), ValueError, "context: token id -1"),
    ("mlp-generate-n-negative", lambda t: mlp_model().generate([0, 0, 0], -1), ValueError, "max_new_tokens must be >= 0"),
    ("mlp-generate-n-float", lambda t: mlp_model().generate([0, 0, 0], 2.5), TypeError, "max_new_tokens must be an int"),
    ("mlp-generate-temperature-0", lambda t: mlp_model().generate([0, 0, 0], 2, temperature=0), ValueError,
     "temperature must be a number > 0"),
    ("mlp-generate-temperature-nan", lambda t: mlp_model().generate([0, 0, 0], 2, temperature=NAN), ValueError,
     "temperature must be a number > 0"),
    ("mlp-generate-temperature-inf", lambda t: mlp_model().generate([0, 0, 0], 2, temperature=INF), ValueError,
     "temperature must be a number > 0"),
    ("mlp-generate-stop-27", lambda t: mlp_model().generate([0, 0, 0], 2, stop_id=27), ValueError,
     "stop_id must be None or a token id in 0..26"),
    ("mlp-generate-stop-negative", lambda t: mlp_model().generate([0, 0, 0], 2, stop_id=-1), ValueError, "stop_id"),
    ("mlp-generate-stop-float", lambda t: mlp_model().generate([0, 0, 0], 2, stop_id=1.0), ValueError, "stop_id"),
    ("check_contexts-list", lambda t: mlp.check_contexts([[1, 2]], 3, 2), TypeError, "idx must be a torch.Tensor"),
]:
    case(f"mlp.{name}", thunk, error, pattern)
case("mlp.generate-0-tokens", lambda t: mlp_model().generate([0, 0, 0], 0), DOC(lambda r: r == []))

# ---- lmbook.train -------------------------------------------------------------------------------------

linear = nn.Sequential(nn.Embedding(5, 5))
XT, YT = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
batches = lambda: batching.random_batches(XT, YT, 2)  # noqa: E731
for name, thunk, error, pattern in [
    ("evaluate-batch-negative", lambda t: train.evaluate(linear, XT, YT, batch_size=-1), ValueError,
     "batch_size must be an int >= 1"),
    ("evaluate-batch-0", lambda t: train.evaluate(linear, XT, YT, batch_size=0), ValueError, "batch_size must be an int"),
    ("evaluate-batch-float", lambda t: train.evaluate(linear, XT, YT, batch_size=2.5), ValueError, "batch_size"),
    ("evaluate-rows-differ", lambda t: train.evaluate(linear, XT, YT[:2]), ValueError, "got 4 and 2"),
    ("evaluate-empty", lambda t: train.evaluate(linear, XT[:0], YT[:0]), ValueError, "at least 1; got 0 and 0"),
    ("evaluate-X-list", lambda t: train.evaluate(linear, [0, 1], YT[:2]), TypeError, "X must be a tensor"),
    ("evaluate-model-function", lambda t: train.evaluate(lambda x: x, XT, YT), TypeError, "model must be a torch.nn.Module"),
    ("evaluate-all-ignored", lambda t: train.evaluate(linear, XT, torch.full((4,), -100)), ValueError,
     "every target is -100"),
    ("train-steps-0", lambda t: train.train(linear, batches(), steps=0, progress=False), ValueError, "steps must be an int"),
    ("train-steps-float", lambda t: train.train(linear, batches(), steps=1.5, progress=False), ValueError, "steps"),
    ("train-eval_every-0", lambda t: train.train(linear, batches(), steps=2, eval_every=0, progress=False), ValueError,
     "eval_every must be an int >= 1"),
    ("train-patience-0", lambda t: train.train(linear, batches(), steps=2, eval_sets={"dev": (XT, YT)},
                                               early_stopping="dev", patience=0, progress=False), ValueError, "patience"),
    ("train-early-stopping-unknown", lambda t: train.train(linear, batches(), steps=2, early_stopping="dev",
                                                           progress=False), ValueError, "early_stopping='dev' must name"),
    ("train-patience-without-set", lambda t: train.train(linear, batches(), steps=2, patience=3, progress=False),
     ValueError, "patience counts evaluations"),
    ("train-grad_clip-0", lambda t: train.train(linear, batches(), steps=2, grad_clip=0, progress=False), ValueError,
     "grad_clip must be a positive"),
    ("train-grad_clip-nan", lambda t: train.train(linear, batches(), steps=2, grad_clip=NAN, progress=False), ValueError,
     "grad_clip must be a positive"),
    ("train-batches-int", lambda t: train.train(linear, 5, steps=2, progress=False), TypeError,
     "batches must be an iterator"),
    ("train-batches-run-out", lambda t: train.train(linear, [], steps=2, progress=False), ValueError,
     "batches ran out after 0 steps"),
    ("train-batches-empty", lambda t: train.train(linear, [(XT[:0], YT[:0])], steps=1, progress=False), ValueError,
     "batches gave an empty batch at step 0"),
    ("train-eval_sets-list", lambda t: train.train(linear, batches(), steps=2, eval_sets=[(XT, YT)], progress=False),
     TypeError, r"eval_sets must be a dict \{name: \(X, Y\)\}"),
    ("train-model-str", lambda t: train.train("model", batches(), steps=2, progress=False), TypeError,
     "model must be a torch.nn.Module"),
    ("train-lr-negative", lambda t: train.train(linear, batches(), steps=2, lr=-1.0, progress=False), ValueError,
     "lr must be a finite number > 0"),
    ("train-weight_decay-nan", lambda t: train.train(linear, batches(), steps=2, weight_decay=NAN, progress=False),
     ValueError, "weight_decay must be a finite number >= 0"),
]:
    case(f"train.{name}", thunk, error, pattern)


def gpt_batches():
    g = torch.Generator().manual_seed(0)
    while True:
        x = torch.randint(0, 11, (2, 8), generator=g)
        yield x, x.roll(-1, 1)


case("train.train-a-GPT", lambda t: train.train(gpt_model(), gpt_batches(), steps=2, progress=False, device="cpu"),
     DOC(lambda h: len(h.train_loss) == 2 and all(map(math.isfinite, h.train_loss))))
case("train.evaluate-a-GPT", lambda t: train.evaluate(gpt_model(), torch.zeros(2, 8, dtype=torch.long),
                                                      torch.ones(2, 8, dtype=torch.long)),
     DOC(lambda r: math.isfinite(r) and r > 0))

# ---- lmbook.rnn ---------------------------------------------------------------------------------------

lstm = rnn.LSTM(4, 6, num_layers=1)
for name, thunk, error, pattern in [
    ("RNN-input-0", lambda t: rnn.RNN(0, 4), ValueError, "input_size must be >= 1"),
    ("RNN-hidden-0", lambda t: rnn.RNN(4, 0), ValueError, "hidden_size must be >= 1"),
    ("RNN-layers-0", lambda t: rnn.RNN(4, 4, num_layers=0), ValueError, "num_layers must be >= 1"),
    ("RNN-hidden-float", lambda t: rnn.RNN(4, 4.0), TypeError, "hidden_size must be an int"),
    ("RNN-nonlinearity", lambda t: rnn.RNN(4, 4, nonlinearity="sigmoid"), ValueError, "nonlinearity must be"),
    ("RNN-bias-str", lambda t: rnn.RNN(4, 4, bias="yes"), TypeError, "bias must be True or False"),
    ("LSTM-batch_first-int", lambda t: rnn.LSTM(4, 4, batch_first=1), TypeError, "batch_first must be True or False"),
    ("GRU-dropout-1", lambda t: rnn.GRU(4, 4, dropout=1), ValueError, "dropout is the probability"),
    ("GRU-dropout-nan", lambda t: rnn.GRU(4, 4, dropout=NAN), ValueError, "dropout is the probability"),
    ("lstm-input-int", lambda t: lstm(torch.zeros(3, 2, 4, dtype=torch.long)), TypeError,
     "input must be a float tensor"),
    ("lstm-input-list", lambda t: lstm([[0.0] * 4]), TypeError, "input must be a torch.Tensor"),
    ("lstm-input-4d", lambda t: lstm(torch.zeros(1, 3, 2, 4)), ValueError, "input must be 3-D"),
    ("lstm-input-features", lambda t: lstm(torch.zeros(3, 2, 5)), ValueError, "input has 5 features"),
    ("lstm-input-empty", lambda t: lstm(torch.zeros(0, 2, 4)), ValueError, "input is empty"),
    ("lstm-input-float64", lambda t: lstm(torch.zeros(3, 2, 4, dtype=torch.float64)), TypeError,
     "input has dtype torch.float64"),
    ("lstm-hx-tensor", lambda t: lstm(torch.zeros(3, 2, 4), torch.zeros(1, 2, 6)), TypeError, r"tuple \(h_0, c_0\)"),
    ("lstm-hx-shape", lambda t: lstm(torch.zeros(3, 2, 4), (torch.zeros(1, 3, 6), torch.zeros(1, 3, 6))), ValueError,
     r"h_0 must have shape \(1, 2, 6\)"),
    ("CharRNN-vocab-1", lambda t: rnn.CharRNN(1), ValueError, "vocab_size must be >= 2"),
    ("CharRNN-emb-0", lambda t: rnn.CharRNN(27, emb_dim=0), ValueError, "emb_dim must be >= 1"),
    ("CharRNN-hidden-0", lambda t: rnn.CharRNN(27, hidden_size=0), ValueError, "hidden_size must be >= 1"),
    ("CharRNN-layers-negative", lambda t: rnn.CharRNN(27, num_layers=-1), ValueError, "num_layers must be >= 1"),
    ("CharRNN-cell", lambda t: rnn.CharRNN(27, cell="transformer"), ValueError, "cell must be one of"),
    ("CharRNN-impl", lambda t: rnn.CharRNN(27, impl="jax"), ValueError, "impl must be 'torch'"),
    ("CharRNN-dropout-1.5", lambda t: rnn.CharRNN(27, dropout=1.5), ValueError, "dropout is the probability"),
    ("CharRNN-dropout-nan", lambda t: rnn.CharRNN(27, dropout=NAN), ValueError, "dropout is the probability"),
    ("charrnn-float", lambda t: char_rnn()(torch.zeros(1, 3)), TypeError, "idx must hold integer token ids"),
    ("charrnn-list", lambda t: char_rnn()([[1, 2]]), TypeError, "idx must be a torch.Tensor"),
    ("charrnn-1d", lambda t: char_rnn()(ids(1, 2)), ValueError, r"idx must be a non-empty 2-D tensor \(B, T\)"),
    ("charrnn-empty", lambda t: char_rnn()(torch.zeros(1, 0, dtype=torch.long)), ValueError, "idx must be a non-empty"),
    ("charrnn-id-27", lambda t: char_rnn()(torch.tensor([[1, 27]])), ValueError, "token id 27 is out of range"),
    ("charrnn-id-negative", lambda t: char_rnn()(torch.tensor([[1, -1]])), ValueError, "token id -1 is out of range"),
    ("charrnn-generate-str", lambda t: char_rnn().generate("ab", 2), TypeError, "prompt must be a list of int token ids"),
    ("charrnn-generate-empty", lambda t: char_rnn().generate([], 2), ValueError, "prompt must hold at least one token"),
    ("charrnn-generate-id-99", lambda t: char_rnn().generate([99], 2), ValueError, "prompt: token id 99"),
    ("charrnn-generate-id-negative", lambda t: char_rnn().generate([-1], 2), ValueError, "prompt: token id -1"),
    ("charrnn-generate-n-negative", lambda t: char_rnn().generate([0], -1), ValueError, "max_new_tokens must be >= 0"),
    ("charrnn-generate-temperature", lambda t: char_rnn().generate([0], 2, temperature=0), ValueError, "temperature"),
    ("charrnn-generate-stop", lambda t: char_rnn().generate([0], 2, stop_id=27), ValueError, "stop_id must be None"),
    ("tbptt-float", lambda t: rnn.tbptt_batches(torch.rand(20), 2, 3), TypeError, "ids must be a 1-D tensor of token ids"),
    ("tbptt-2d", lambda t: rnn.tbptt_batches(torch.zeros(4, 5, dtype=torch.long), 2, 3), TypeError, "ids must be a 1-D"),
    ("tbptt-list", lambda t: rnn.tbptt_batches(list(range(20)), 2, 3), TypeError, "ids must be a 1-D tensor"),
    ("tbptt-negative", lambda t: rnn.tbptt_batches(torch.arange(20) - 5, 2, 3), ValueError, "negative token id -5"),
    ("tbptt-batch-0", lambda t: rnn.tbptt_batches(torch.arange(20), 0, 3), ValueError, "batch_size must be >= 1"),
    ("tbptt-seq-0", lambda t: rnn.tbptt_batches(torch.arange(20), 2, 0), ValueError, "seq_len must be >= 1"),
    ("tbptt-too-short", lambda t: rnn.tbptt_batches(torch.arange(20), 4, 8), ValueError, "fewer than seq_len=8"),
    ("evaluate_stream-float", lambda t: rnn.evaluate_stream(char_rnn(), torch.rand(100)), TypeError,
     "ids must be a 1-D tensor of token ids"),
    ("evaluate_stream-short", lambda t: rnn.evaluate_stream(char_rnn(), torch.arange(10), num_streams=16), ValueError,
     "ids must hold at least 2·num_streams = 32"),
    ("evaluate_stream-streams-0", lambda t: rnn.evaluate_stream(char_rnn(), torch.arange(10), num_streams=0), ValueError,
     "num_streams must be >= 1"),
    ("evaluate_stream-chunk-0", lambda t: rnn.evaluate_stream(char_rnn(), torch.arange(10), chunk=0), ValueError,
     "chunk must be >= 1"),
    ("evaluate_stream-negative", lambda t: rnn.evaluate_stream(char_rnn(), torch.arange(40) - 1, num_streams=2),
     ValueError, "negative token id -1"),
    ("evaluate_stream-out-of-range", lambda t: rnn.evaluate_stream(char_rnn(), torch.arange(40), num_streams=2),
     ValueError, r"token id \d+ is out of range for a vocabulary of 27"),
    ("evaluate_stream-model", lambda t: rnn.evaluate_stream(rnn.TruncatedBPTT(char_rnn()), torch.arange(40)), TypeError,
     "model must be a CharRNN"),
]:
    case(f"rnn.{name}", thunk, error, pattern)

# ---- lmbook.attention ---------------------------------------------------------------------------------

add = attention.AdditiveAttention(4, 6, 5)
mha = attention.MultiHeadAttention(8, 2)
sdpa = attention.scaled_dot_product_attention
q4 = torch.zeros(2, 3, 4)
x8 = torch.zeros(2, 3, 8)
for name, thunk, error, pattern in [
    ("Additive-d_query-negative", lambda t: attention.AdditiveAttention(-1, 4, 4), ValueError, "d_query must be an int"),
    ("Additive-d_key-0", lambda t: attention.AdditiveAttention(4, 0, 4), ValueError, "d_key must be an int >= 1"),
    ("Additive-d_attn-float", lambda t: attention.AdditiveAttention(4, 4, 2.5), ValueError, "d_attn must be an int"),
    ("additive-query-int", lambda t: add(torch.zeros(2, 4, dtype=torch.long), torch.zeros(2, 3, 6)), TypeError,
     "query must be a float tensor"),
    ("additive-query-list", lambda t: add([[0.0] * 4], torch.zeros(1, 3, 6)), TypeError, "query must be a float torch"),
    ("additive-query-3d", lambda t: add(torch.zeros(2, 1, 4), torch.zeros(2, 3, 6)), ValueError, "query must be 2-D"),
    ("additive-keys-2d", lambda t: add(torch.zeros(2, 4), torch.zeros(2, 6)), ValueError, "keys must be 3-D"),
    ("additive-batch-differs", lambda t: add(torch.zeros(2, 4), torch.zeros(3, 3, 6)), ValueError,
     r"expects query \(B, d_query=4\) and keys"),
    ("additive-d_query-differs", lambda t: add(torch.zeros(2, 5), torch.zeros(2, 3, 6)), ValueError, "d_query=4"),
    ("additive-keys-empty", lambda t: add(torch.zeros(2, 4), torch.zeros(2, 0, 6)), ValueError, "keys is empty"),
    ("additive-mask-float", lambda t: add(torch.zeros(2, 4), torch.zeros(2, 3, 6), torch.ones(2, 3)), ValueError,
     "mask must be a bool tensor"),
    ("additive-mask-shape", lambda t: add(torch.zeros(2, 4), torch.zeros(2, 3, 6), torch.ones(2, 4, dtype=torch.bool)),
     ValueError, r"mask must be a bool tensor \(B, T\) = \(2, 3\)"),
    ("additive-projected-shape", lambda t: add(torch.zeros(2, 4), torch.zeros(2, 3, 6), None, torch.zeros(2, 3, 4)),
     ValueError, "projected_keys must be project_keys"),
    ("additive-query-float64", lambda t: add(torch.zeros(2, 4, dtype=torch.float64), torch.zeros(2, 3, 6)), TypeError,
     "query has dtype torch.float64"),
    ("causal_mask-0", lambda t: attention.causal_mask(0), ValueError, "T must be an int >= 1"),
    ("causal_mask-float", lambda t: attention.causal_mask(2.0), ValueError, "T must be an int >= 1"),
    ("padding_mask-list", lambda t: attention.padding_mask([1, 2], 3), TypeError, "lengths must be a 1-D integer tensor"),
    ("padding_mask-float", lambda t: attention.padding_mask(torch.tensor([1.0]), 3), ValueError,
     "lengths must be a 1-D integer tensor"),
    ("padding_mask-too-long", lambda t: attention.padding_mask(ids(1, 4), 3), ValueError, "lengths must lie in 0..T=3"),
    ("padding_mask-negative", lambda t: attention.padding_mask(ids(-1, 2), 3), ValueError, "lengths must lie in 0..T=3"),
    ("padding_mask-T-0", lambda t: attention.padding_mask(ids(0), 0), ValueError, "T must be an int >= 1"),
    ("sdpa-q-int", lambda t: sdpa(torch.zeros(2, 3, 4, dtype=torch.long), q4, q4), TypeError, "q must be a float tensor"),
    ("sdpa-q-list", lambda t: sdpa([[0.0]], q4, q4), TypeError, "q must be a float tensor"),
    ("sdpa-k-1d", lambda t: sdpa(q4, torch.zeros(4), q4), ValueError, "k must have at least 2 dimensions"),
    ("sdpa-d-differs", lambda t: sdpa(q4, torch.zeros(2, 3, 5), q4), ValueError, "q and k must have the same head dim"),
    ("sdpa-T_k-differs", lambda t: sdpa(q4, q4, torch.zeros(2, 4, 4)), ValueError, "k and v must have one row per key"),
    ("sdpa-dtype-differs", lambda t: sdpa(q4, q4.double(), q4), TypeError, "q, k, v must have one dtype"),
    ("sdpa-batch-differs", lambda t: sdpa(q4, torch.zeros(3, 3, 4), torch.zeros(3, 3, 4)), ValueError,
     "leading .* do not broadcast"),
    ("sdpa-dropout-1", lambda t: sdpa(q4, q4, q4, dropout_p=1.0), ValueError, "dropout_p must lie in"),
    ("sdpa-dropout-nan", lambda t: sdpa(q4, q4, q4, dropout_p=NAN), ValueError, "dropout_p must lie in"),
    ("sdpa-mask-and-causal", lambda t: sdpa(q4, q4, q4, attn_mask=torch.ones(3, 3, dtype=torch.bool), is_causal=True),
     ValueError, "either attn_mask or is_causal=True"),
    ("sdpa-mask-int", lambda t: sdpa(q4, q4, q4, attn_mask=torch.ones(3, 3, dtype=torch.long)), TypeError,
     "attn_mask must be a bool tensor"),
    ("sdpa-mask-shape", lambda t: sdpa(q4, q4, q4, attn_mask=torch.ones(4, 4, dtype=torch.bool)), ValueError,
     r"attn_mask of shape \(4, 4\) does not broadcast"),
    ("sdpa-scale-nan", lambda t: sdpa(q4, q4, q4, scale=NAN), ValueError, "scale must be a finite number"),
    ("sdpa-scale-inf", lambda t: sdpa(q4, q4, q4, scale=INF), ValueError, "scale must be a finite number"),
    ("sdpa-is_causal-str", lambda t: sdpa(q4, q4, q4, is_causal="yes"), TypeError, "is_causal must be True or False"),
    ("MHA-not-multiple", lambda t: attention.MultiHeadAttention(32, 5), ValueError, "d_model must be a positive multiple"),
    ("MHA-heads-0", lambda t: attention.MultiHeadAttention(32, 0), ValueError, "n_heads must be an int >= 1"),
    ("MHA-d_model-negative", lambda t: attention.MultiHeadAttention(-8, 2), ValueError, "d_model must be a positive"),
    ("MHA-dropout-1", lambda t: attention.MultiHeadAttention(8, 2, dropout=1.0), ValueError, "dropout must lie in"),
    ("MHA-dropout-nan", lambda t: attention.MultiHeadAttention(8, 2, dropout=NAN), ValueError, "dropout must lie in"),
    ("mha-int64", lambda t: mha(x8.long(), x8.long(), x8.long()), TypeError, "query must be a float tensor"),
    ("mha-list", lambda t: mha([[[0.0] * 8]], x8, x8), TypeError, "query must be a float torch.Tensor"),
    ("mha-d_model", lambda t: mha(torch.zeros(2, 3, 16), x8, x8), ValueError, r"query must be \(B, T, d_model=8\)"),
    ("mha-2d", lambda t: mha(torch.zeros(3, 8), x8, x8), ValueError, "query must be 3-D"),
    ("mha-batch-differs", lambda t: mha(x8, torch.zeros(3, 3, 8), torch.zeros(3, 3, 8)), ValueError, "must share B"),
    ("mha-float64", lambda t: mha(x8.double(), x8.double(), x8.double()), TypeError, "query has dtype torch.float64"),
    ("mha-mask-shape", lambda t: mha(x8, x8, x8, attn_mask=torch.ones(2, 4, dtype=torch.bool)), ValueError,
     "attn_mask of shape"),
    ("sinusoidal-T-0", lambda t: attention.sinusoidal_positions(0, 4), ValueError, "T must be an int >= 1"),
    ("sinusoidal-d-0", lambda t: attention.sinusoidal_positions(4, 0), ValueError, "d must be an int >= 1"),
    ("sinusoidal-d-float", lambda t: attention.sinusoidal_positions(4, 2.5), ValueError, "d must be an int"),
]:
    case(f"attention.{name}", thunk, error, pattern)
case("attention.softmax-all-minus-inf", lambda t: attention.softmax(torch.full((2, 3), -INF)),
     DOC(lambda r: torch.equal(r, torch.zeros(2, 3))))
case("attention.softmax-nan-propagates", lambda t: attention.softmax(torch.tensor([NAN, 0.0])),
     DOC(lambda r: torch.isnan(r).all()))  # as torch.softmax: a NaN score makes the whole row NaN, never hidden
case("attention.sdpa-fully-masked-row", lambda t: sdpa(q4, q4, q4 + 1, attn_mask=torch.zeros(3, 3, dtype=torch.bool)),
     DOC(lambda r: torch.equal(r, torch.zeros(2, 3, 4))))

# ---- lmbook.gpt ---------------------------------------------------------------------------------------

C = dict(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8)
for kw, error, pattern in [
    (dict(vocab_size=0), ValueError, "GPTConfig.vocab_size must be >= 1"),
    (dict(block_size=-1), ValueError, "GPTConfig.block_size must be >= 1"),
    (dict(n_layer=1.5), TypeError, "GPTConfig.n_layer must be an int"),
    (dict(n_head=True), TypeError, "GPTConfig.n_head must be an int"),
    (dict(n_embd=9), ValueError, "n_embd=9 must be divisible by n_head=2"),
    (dict(dropout=1.0), ValueError, "GPTConfig.dropout is a probability"),
    (dict(dropout=NAN), ValueError, "GPTConfig.dropout is a probability"),
    (dict(bias="yes"), TypeError, "GPTConfig.bias must be True or False"),
    (dict(attention="flash"), ValueError, "GPTConfig.attention must be one of"),
]:
    case(f"gpt.GPTConfig-{sorted(kw.items())}", lambda t, kw=kw: gpt.GPTConfig(**(C | kw)), error, pattern)
g = gpt_model
for name, thunk, error, pattern in [
    ("from_dict-list", lambda t: gpt.GPTConfig.from_dict([1, 2]), TypeError, "GPTConfig.from_dict needs a dict"),
    ("from_dict-unknown", lambda t: gpt.GPTConfig.from_dict(C | {"n_heads": 2}), ValueError,
     r"unknown GPTConfig keys \['n_heads'\]"),
    ("from_dict-missing", lambda t: gpt.GPTConfig.from_dict({"vocab_size": 3}), ValueError, "missing"),
    ("GPT-dict", lambda t: gpt.GPT(C), TypeError, "GPT needs a GPTConfig"),
    ("forward-list", lambda t: g()([[1, 2]]), TypeError, "idx must be a torch.Tensor"),
    ("forward-float", lambda t: g()(torch.zeros(1, 3)), TypeError, "idx must hold integer token ids as torch.long"),
    ("forward-uint8", lambda t: g()(torch.zeros(1, 3, dtype=torch.uint8)), TypeError, "idx must hold integer token ids"),
    ("forward-int16", lambda t: g()(torch.zeros(1, 3, dtype=torch.int16)), TypeError, "got dtype torch.int16"),
    ("forward-bool", lambda t: g()(torch.zeros(1, 3, dtype=torch.bool)), TypeError, "idx must hold integer"),
    ("forward-1d", lambda t: g()(ids(1, 2)), ValueError, r"idx must be 2-D \(B, T\).*idx\[None\]"),
    ("forward-too-long", lambda t: g()(torch.zeros(1, 9, dtype=torch.long)), ValueError,
     "sequence of length 9 is longer than block_size=8"),
    ("forward-empty", lambda t: g()(torch.zeros(1, 0, dtype=torch.long)), ValueError, "idx is empty"),
    ("forward-id-11", lambda t: g()(torch.tensor([[1, 11]])), ValueError, "token id 11 is out of range for a vocabulary"),
    ("forward-id-negative", lambda t: g()(torch.tensor([[-1, 1]])), ValueError, "token id -1 is out of range"),
    ("forward-targets-shape", lambda t: g()(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 2, dtype=torch.long)),
     ValueError, "targets must have the shape of idx"),
    ("forward-targets-11", lambda t: g()(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0, 11]])), ValueError,
     "target 11 is out of range"),
    ("forward-targets-negative", lambda t: g()(torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0, -5]])),
     ValueError, "target -5 is out of range"),
    ("forward-targets-int32", lambda t: g()(torch.zeros(1, 2, dtype=torch.long), torch.zeros(1, 2, dtype=torch.int32)),
     TypeError, "targets must hold integer token ids as torch.long"),
    ("forward-targets-all-ignored", lambda t: g()(torch.zeros(1, 2, dtype=torch.long), torch.full((1, 2), -100)),
     ValueError, "every target is -100"),
    ("generate-n-negative", lambda t: g().generate(torch.zeros(1, 1, dtype=torch.long), -1), ValueError,
     "max_new_tokens must be an int >= 0"),
    ("generate-temperature-0", lambda t: g().generate(torch.zeros(1, 1, dtype=torch.long), 2, temperature=0),
     ValueError, "temperature must be a number > 0"),
    ("generate-top_k-0", lambda t: g().generate(torch.zeros(1, 1, dtype=torch.long), 2, top_k=0), ValueError,
     "top_k must be None or an int >= 1"),
    ("generate-top_k-float", lambda t: g().generate(torch.zeros(1, 1, dtype=torch.long), 2, top_k=2.5), TypeError,
     "top_k must be None or an int"),
    ("generate-idx-float", lambda t: g().generate(torch.zeros(1, 1), 2), TypeError, "idx must hold integer token ids"),
    ("generate-idx-out-of-range", lambda t: g().generate(torch.tensor([[99]]), 2), ValueError, "token id 99"),
    ("flops_per_token-0", lambda t: gpt.flops_per_token(gpt.GPTConfig(**C), 0), ValueError, "seq_len must be an int"),
    ("save_gpt-linear", lambda t: gpt.save_gpt(nn.Linear(2, 2), t), TypeError, "save_gpt saves an lmbook.gpt.GPT"),
    ("load_gpt-missing", lambda t: gpt.load_gpt(t / "nothing"), FileNotFoundError, "nothing is not a saved GPT"),
]:
    case(f"gpt.{name}", thunk, error, pattern)


def saved_gpt(tmp: Path, damage: str) -> Path:
    folder = tmp / "gpt"
    gpt.save_gpt(gpt_model(), folder)
    weights, config = folder / "model.safetensors", folder / "config.json"
    if damage == "flip":
        data_ = bytearray(weights.read_bytes())
        for i in range(len(data_) - 100, len(data_)):
            data_[i] ^= 0xFF
        weights.write_bytes(bytes(data_))
    elif damage == "no-hash":
        info = json.loads(config.read_text())
        del info["weights_sha256"]
        config.write_text(json.dumps(info))
    elif damage == "config-not-json":
        config.write_bytes(b"\xff\xfe not json")
    elif damage == "config-list":
        config.write_text("[]")
    elif damage == "garbage-with-its-hash":
        weights.write_bytes(b"not a safetensors file")
        info = json.loads(config.read_text())
        config.write_text(json.dumps(info | {"weights_sha256": data.sha256_of(weights)}))
    elif damage == "config-unknown-key":
        info = json.loads(config.read_text())
        config.write_text(json.dumps(info | {"n_heads": 3}))
    return folder


for damage, pattern in [("flip", "does not match the sha256 recorded"), ("no-hash", "no sha256 is recorded for"),
                        ("config-not-json", r"config\.json cannot be read as JSON"),
                        ("config-list", r"config\.json must hold a JSON object"),
                        ("garbage-with-its-hash", r"model\.safetensors cannot be loaded"),
                        ("config-unknown-key", r"config\.json does not describe a GPT")]:
    case(f"gpt.load_gpt-{damage}", lambda t, damage=damage: gpt.load_gpt(saved_gpt(t, damage)), CheckpointError, pattern)
case("gpt.generate-0-tokens", lambda t: g().generate(torch.zeros(1, 2, dtype=torch.long), 0),
     DOC(lambda r: r.tolist() == [[0, 0]]))

# ---- lmbook.dates -------------------------------------------------------------------------------------

D = datetime.date(1999, 3, 3)
for name, thunk, error, pattern in [
    ("ordinal-negative", lambda t: dates.ordinal(-1), ValueError, "n must be an int >= 0"),
    ("ordinal-float", lambda t: dates.ordinal(1.5), TypeError, "n must be an int"),
    ("ordinal-str", lambda t: dates.ordinal("3"), TypeError, "n must be an int"),
    ("ordinal-bool", lambda t: dates.ordinal(True), TypeError, "n must be an int"),
    ("ordinal_words-0", lambda t: dates.ordinal_words(0), ValueError, r"n must be an int 1..31 \(a day of the month\)"),
    ("ordinal_words-32", lambda t: dates.ordinal_words(32), ValueError, "n must be an int 1..31"),
    ("ordinal_words-float", lambda t: dates.ordinal_words(3.0), TypeError, "n must be an int"),
    ("format_date-format", lambda t: dates.format_date(D, "nope"), ValueError, "unknown date format 'nope'"),
    ("format_date-str", lambda t: dates.format_date("1999-03-03", "compact"), TypeError, "d must be a datetime.date"),
    ("format_date-datetime", lambda t: dates.format_date(datetime.datetime(1999, 3, 3), "compact"), TypeError,
     "d must be a datetime.date"),
    ("format_date-range", lambda t: dates.format_date(datetime.date(1900, 1, 1), "compact"), ValueError,
     "dates run from 1950-01-01"),
    ("format_date-case", lambda t: dates.format_date(D, "words", case="camel"), ValueError, "case must be"),
    ("random_example-formats-empty", lambda t: dates.random_example(D, random.Random(0), ()), ValueError,
     "formats must be a non-empty tuple"),
    ("random_example-formats-unknown", lambda t: dates.random_example(D, random.Random(0), ("nope",)), ValueError,
     "formats must be a non-empty tuple of names from FORMATS"),
    ("make_splits-negative", lambda t: dates.make_splits(-1, 1, 1), ValueError, "n_train must be an int >= 0"),
    ("make_splits-float", lambda t: dates.make_splits(1, 1.5, 1), ValueError, "n_val must be an int >= 0"),
    ("make_splits-held_out-big", lambda t: dates.make_splits(1, 1, 1, held_out=0.6), ValueError, "held_out is the"),
    ("make_splits-held_out-nan", lambda t: dates.make_splits(1, 1, 1, held_out=NAN), ValueError, "held_out is the"),
]:
    case(f"dates.{name}", thunk, error, pattern)
case("dates.ordinal-0", lambda t: dates.ordinal(0), DOC(lambda r: r == "0th"))
case("dates.make_splits-empty", lambda t: dates.make_splits(0, 0, 0), DOC(lambda r: r == {"train": [], "val": [], "test": []}))

# ---- lmbook.seq2seq -----------------------------------------------------------------------------------

src_v, tgt_v = s2s_vocabs()
m = s2s
x_ok = lambda: torch.cat([torch.tensor([[1, 2, 0]]), torch.tensor([[1, 3, 4]])], dim=1)  # noqa: E731
for name, thunk, error, pattern in [
    ("make_vocabs-str", lambda t: seq2seq.make_vocabs("ab"), ValueError, "pairs must be a non-empty list"),
    ("make_vocabs-empty", lambda t: seq2seq.make_vocabs([]), ValueError, "pairs must be a non-empty list"),
    ("make_vocabs-single", lambda t: seq2seq.make_vocabs([("a",)]), ValueError, r"pair 0 must be \(source text"),
    ("make_vocabs-int", lambda t: seq2seq.make_vocabs([("a", 1)]), ValueError, "pair 0 must be"),
    ("encode_sources-str", lambda t: seq2seq.encode_sources("ab", src_v), ValueError, "texts must be a non-empty list"),
    ("encode_sources-empty-text", lambda t: seq2seq.encode_sources([""], src_v), ValueError, "texts must be"),
    ("encode_sources-unknown-char", lambda t: seq2seq.encode_sources(["z"], src_v), ValueError,
     "token 'z' is not in the vocabulary"),
    ("encode_sources-vocab", lambda t: seq2seq.encode_sources(["a"], "vocab"), TypeError, "src_vocab must be a Vocab"),
    ("encode_pairs-lengths", lambda t: seq2seq.encode_pairs([("a", "1"), ("b", "22")], src_v, tgt_v), ValueError,
     "every target must have the same length"),
    ("encode_pairs-empty", lambda t: seq2seq.encode_pairs([], src_v, tgt_v), ValueError, "pairs must be a non-empty"),
    ("encode_pairs-tgt_vocab", lambda t: seq2seq.encode_pairs([("a", "1")], src_v, src_v), ValueError,
     "tgt_vocab must be a Vocab whose specials"),
    ("Seq2Seq-src-0", lambda t: seq2seq.Seq2Seq(0, 5, 3), ValueError, "src_vocab_size must be an int >= 1"),
    ("Seq2Seq-target_len-0", lambda t: seq2seq.Seq2Seq(5, 5, 0), ValueError, "target_len must be an int >= 1"),
    ("Seq2Seq-bos-99", lambda t: seq2seq.Seq2Seq(5, 5, 3, bos_id=99), ValueError, "bos_id must be a target token id"),
    ("Seq2Seq-bos-negative", lambda t: seq2seq.Seq2Seq(5, 5, 3, bos_id=-1), ValueError, "bos_id"),
    ("Seq2Seq-attention-str", lambda t: seq2seq.Seq2Seq(5, 5, 3, attention="yes"), TypeError,
     "attention must be True or False"),
    ("forward-list", lambda t: m()([[1, 2, 3, 4]]), ValueError, r"x must be \(B, S \+ T\)"),
    ("forward-short", lambda t: m()(torch.zeros(1, 3, dtype=torch.long)), ValueError, r"x must be \(B, S \+ T\)"),
    ("forward-float", lambda t: m()(x_ok().float()), ValueError, "the decoder inputs .* must be a LongTensor"),
    ("forward-src-out-of-range", lambda t: m()(torch.tensor([[1, 9, 0, 1, 3, 4]])), ValueError,
     "src: token id 9 is out of range for a vocabulary of 6"),
    ("forward-src-negative", lambda t: m()(torch.tensor([[1, -2, 0, 1, 3, 4]])), ValueError, "src: token id -2"),
    ("forward-decoder-out-of-range", lambda t: m()(torch.tensor([[1, 2, 0, 1, 3, 7]])), ValueError,
     "the decoder inputs .*: token id 7 is out of range for a vocabulary of 7"),
    ("forward-all-padding", lambda t: m()(torch.tensor([[0, 0, 0, 1, 3, 4]])), ValueError,
     "every source must have at least one character"),
    ("greedy-float", lambda t: m().greedy_decode(torch.ones(1, 3)), ValueError, "src must be a LongTensor"),
    ("greedy-negative", lambda t: m().greedy_decode(torch.tensor([[1, -1]])), ValueError, "src: token id -1"),
    ("translate-batch-0", lambda t: seq2seq.translate(m(), ["ab"], src_v, tgt_v, batch_size=0), ValueError,
     "batch_size must be an int >= 1"),
    ("translate-tgt_vocab", lambda t: seq2seq.translate(m(), ["ab"], src_v, src_v), ValueError, "tgt_vocab must be"),
    ("exact_match-empty", lambda t: seq2seq.exact_match([], []), ValueError, "need as many predictions as targets"),
    ("exact_match-lengths", lambda t: seq2seq.exact_match(["a"], []), ValueError, "need as many predictions"),
]:
    case(f"seq2seq.{name}", thunk, error, pattern)

# ---- lmbook.bpe ---------------------------------------------------------------------------------------

for name, thunk, error, pattern in [
    ("split_pattern-int", lambda t: bpe.split_pattern(5), TypeError, "pattern must be 'gpt2', 'gpt4', a regex"),
    ("split_pattern-bad-regex", lambda t: bpe.split_pattern("(("), ValueError, "pattern '\\(\\(' is neither"),
    ("word_counts-bytes", lambda t: bpe.word_counts(b"abc"), TypeError, "text must be a str"),
    ("train_merges-str", lambda t: bpe.train_merges("abc", 3), TypeError, r"words must be a dict \{word: count\}"),
    ("train_merges-negative", lambda t: bpe.train_merges({"ab": 1}, -1), ValueError, "num_merges must be an int >= 0"),
    ("train_merges-float", lambda t: bpe.train_merges({"ab": 1}, 2.5), ValueError, "num_merges must be an int"),
    ("train_merges-first_id", lambda t: bpe.train_merges({"ab": 1}, 2, first_id=10), ValueError,
     "first_id must be an int >= 256"),
    ("train_merges-count-0", lambda t: bpe.train_merges({"ab": 0}, 2), ValueError, "words must map each word to its count"),
    ("train_merges_naive-negative", lambda t: bpe.train_merges_naive({"ab": 1}, -1), ValueError, "num_merges"),
    ("train_merges_naive-list", lambda t: bpe.train_merges_naive(["ab"], 1), TypeError, "words must be a dict"),
    ("Tokenizer-pattern-int", lambda t: bpe.Tokenizer(pattern=5), TypeError, "pattern must be"),
    ("Tokenizer-byte_ids", lambda t: bpe.Tokenizer(byte_ids=[0] * 256), ValueError, "byte_ids must give 256 distinct"),
    ("Tokenizer-merge-undefined", lambda t: bpe.Tokenizer(merges={(1, 999): 256}), ValueError,
     "uses an id that no byte or earlier merge defines"),
    ("Tokenizer-merge-negative-id", lambda t: bpe.Tokenizer(merges={(1, 2): -5}), ValueError,
     "merge 0's new id must be a non-negative int"),
    ("Tokenizer-special-empty", lambda t: bpe.Tokenizer(special_tokens={"": 300}), ValueError,
     "special tokens must be non-empty strings"),
    ("train-bytes", lambda t: bpe.Tokenizer().train(b"text", 300), TypeError, "text must be a str"),
    ("train-vocab-small", lambda t: bpe.Tokenizer().train("text", 100), ValueError, "vocab_size must be an int >= 256"),
    ("train-vocab-float", lambda t: bpe.Tokenizer().train("text", 300.0), ValueError, "vocab_size must be an int"),
    ("train-special-str", lambda t: bpe.Tokenizer().train("text", 300, special_tokens="<|e|>"), TypeError,
     "special_tokens must be a collection of strings"),
    ("train-special-repeated", lambda t: bpe.Tokenizer().train("text", 300, special_tokens=["<a>", "<a>"]), ValueError,
     "special_tokens must be distinct"),
    ("train-algorithm", lambda t: bpe.Tokenizer().train("text", 300, algorithm="slow"), ValueError,
     "algorithm must be one of"),
    ("encode-bytes", lambda t: tok().encode(b"hello"), TypeError, "text must be a str"),
    ("encode-surrogate", lambda t: tok().encode("a\ud800b"), ValueError, "text is not valid Unicode"),
    ("encode-special-not-allowed", lambda t: tok().encode("hi <|endoftext|>"), ValueError,
     "text contains the special token"),
    ("encode-allowed_special-int", lambda t: tok().encode("hi", allowed_special=5), TypeError,
     "allowed_special must be 'all', 'none'"),
    ("encode-allowed_special-unknown", lambda t: tok().encode("hi", allowed_special={"<|x|>"}), ValueError,
     r"allowed_special names \['<\|x\|>'\]"),
    ("encode_ordinary-list", lambda t: tok().encode_ordinary(["hi"]), TypeError, "text must be a str"),
    ("encode_stream-bytes", lambda t: list(tok().encode_stream([b"hi"])), TypeError, "chunks must be strings"),
    ("encode_stream-custom-pattern", lambda t: list(custom_tok().encode_stream(["hello hello\nworld"])), ValueError,
     "streaming needs the 'gpt2' or 'gpt4' split pattern"),
    ("encode_stream-no-pattern", lambda t: list(bpe.Tokenizer(pattern=None).encode_stream(["hi"])), ValueError,
     "streaming needs a split pattern"),
    ("encode_file-missing", lambda t: list(tok().encode_file(t / "missing.txt")), FileNotFoundError, "missing.txt"),
    ("encode_file-not-utf8", lambda t: list(tok().encode_file(write(t, "latin1.txt", "héllo\n".encode("latin-1")))),
     ValueError, r"latin1\.txt is not valid UTF-8 text"),
    ("encode_file-block-0", lambda t: tok().encode_file(write(t, "a.txt", "hi"), block_chars=0), ValueError,
     "block_chars must be an int >= 1"),
    ("decode-float", lambda t: tok().decode([104.0, 105.0]), ValueError, r"cannot decode 104\.0 \(float\)"),
    ("decode-bool", lambda t: tok().decode([True]), ValueError, r"cannot decode True \(bool\)"),
    ("decode-negative", lambda t: tok().decode([-1]), ValueError, "cannot decode -1"),
    ("decode-too-big", lambda t: tok().decode([99999]), ValueError, "cannot decode 99999"),
    ("decode-str", lambda t: tok().decode(["a"]), ValueError, "cannot decode 'a'"),
    ("decode-tensor", lambda t: tok().decode([torch.tensor(104)]), ValueError, "cannot decode tensor"),
    ("decode-errors-bogus", lambda t: tok().decode([104], errors="bogus"), ValueError, "errors must be 'replace'"),
    ("decode-errors-int", lambda t: tok().decode([104], errors=5), ValueError, "errors must be"),
    ("decode_bytes-float", lambda t: tok().decode_bytes([104.5]), ValueError, "cannot decode 104.5"),
    ("load-missing", lambda t: bpe.Tokenizer.load(t / "missing.json"), FileNotFoundError, "missing.json"),
    ("load-not-utf8", lambda t: bpe.Tokenizer.load(write(t, "tok.json", b"\xff\xfe\x00")), ValueError,
     r"tok\.json is not a JSON file written by Tokenizer.save"),
    ("load-corrupt", lambda t: bpe.Tokenizer.load(write(t, "tok.json", "{\"format\": ")), ValueError,
     "is not a JSON file written by Tokenizer.save"),
    ("load-list", lambda t: bpe.Tokenizer.load(write(t, "tok.json", "[]")), ValueError, "not a saved lmbook tokenizer"),
    ("load-unknown-key", lambda t: bpe.Tokenizer.load(write(t, "tok.json", json.dumps(tok().to_dict() | {"extra": 1}))),
     ValueError, r"tok\.json: saved tokenizer has unknown field\(s\) \['extra'\]"),
    ("load-missing-key", lambda t: bpe.Tokenizer.load(write(t, "tok.json", json.dumps(
        {k: v for k, v in tok().to_dict().items() if k != "merges"}))), ValueError, r"lacks the field\(s\) \['merges'\]"),
    ("load-merges-dict", lambda t: bpe.Tokenizer.load(write(t, "tok.json", json.dumps(tok().to_dict() | {"merges": {}}))),
     ValueError, "merges must be a list"),
    ("load-merge-bool", lambda t: bpe.Tokenizer.load(write(t, "tok.json", json.dumps(
        tok().to_dict() | {"merges": [[True, 2, 256]]}))), ValueError, r"merge 0 must be a list \[id_a, id_b, new_id\]"),
    ("from_gpt2_files-missing", lambda t: bpe.Tokenizer.from_gpt2_files(t / "enc.json", t / "vocab.bpe"),
     FileNotFoundError, r"enc\.json"),
    ("from_gpt2_files-corrupt", lambda t: bpe.Tokenizer.from_gpt2_files(write(t, "enc.json", "{"),
                                                                        write(t, "vocab.bpe", "#version\n")),
     ValueError, r"enc\.json is not a valid encoder\.json"),
    ("from_gpt2_files-list", lambda t: bpe.Tokenizer.from_gpt2_files(write(t, "enc.json", "[]"),
                                                                     write(t, "vocab.bpe", "#version\n")),
     ValueError, r"enc\.json: encoder\.json must be a JSON object"),
    ("from_gpt2_files-vocab-not-utf8", lambda t: bpe.Tokenizer.from_gpt2_files(
        write(t, "enc.json", json.dumps({c: i for i, c in bpe.bytes_to_unicode().items()})),
        write(t, "vocab.bpe", b"\xff\xfe")), ValueError, r"vocab\.bpe is not valid UTF-8"),
]:
    case(f"bpe.{name}", thunk, error, pattern)
case("bpe.decode-half-a-character", lambda t: tok().decode(list("é".encode())[:1]), DOC(lambda r: r == "\ufffd"))
case("bpe.encode-empty", lambda t: tok().encode(""), DOC(lambda r: r == []))
case("bpe.decode-empty", lambda t: tok().decode([]), DOC(lambda r: r == ""))
case("bpe.encode_stream-equals-encode", lambda t: list(tok().encode_stream(["hello wor", "ld\nthere\nhello"])),
     DOC(lambda r: r == tok().encode("hello world\nthere\nhello")))

# ---- lmbook.tokens ------------------------------------------------------------------------------------

CH = ["a", "b", "c"]
TOKS = np.arange(20, dtype=np.uint16) % 3
for name, thunk, error, pattern in [
    ("char_vocab-empty", lambda t: tokens.char_vocab(""), ValueError, "text must be a non-empty string"),
    ("char_vocab-int", lambda t: tokens.char_vocab(5), ValueError, "text must be a non-empty string"),
    ("encode_chars-int", lambda t: tokens.encode_chars(5, CH), TypeError, "text must be a str"),
    ("encode_chars-unknown", lambda t: tokens.encode_chars("abz", CH), ValueError, "characters outside the vocabulary"),
    ("encode_chars-chars-str", lambda t: tokens.encode_chars("a", "abc"), TypeError, "chars must be a non-empty list"),
    ("encode_chars-chars-empty", lambda t: tokens.encode_chars("a", []), TypeError, "chars must be a non-empty list"),
    ("decode_chars-float", lambda t: tokens.decode_chars([1.5], CH), TypeError, "ids must be integers"),
    ("decode_chars-float-whole", lambda t: tokens.decode_chars([1.0], CH), TypeError, "ids must be integers"),
    ("decode_chars-negative", lambda t: tokens.decode_chars([-1], CH), ValueError,
     "ids holds -1, outside 0..2 .negative values would index from the end"),
    ("decode_chars-too-big", lambda t: tokens.decode_chars([3], CH), ValueError, "ids holds 3, outside 0..2"),
    ("decode_chars-float-tensor", lambda t: tokens.decode_chars(torch.tensor([0.0, 1.0]), CH), TypeError,
     "ids must be integers"),
    ("decode_chars-str", lambda t: tokens.decode_chars("ab", CH), TypeError, "ids must be integers"),
    ("decode_chars-2d", lambda t: tokens.decode_chars([[0, 1]], CH), ValueError, "ids must be 1-D"),
    ("decode_chars-bool", lambda t: tokens.decode_chars([True], CH), TypeError, "ids must be integers"),
    ("write_tokens-empty", lambda t: tokens.write_tokens([], t / "x.bin"), ValueError, "ids must be a non-empty 1-D"),
    ("write_tokens-float", lambda t: tokens.write_tokens([1.5], t / "x.bin"), ValueError, "ids must be a non-empty 1-D integer"),
    ("write_tokens-negative", lambda t: tokens.write_tokens([-1, 2], t / "x.bin"), ValueError,
     r"token ids must lie in \[0, 65536\)"),
    ("write_tokens-too-big", lambda t: tokens.write_tokens([70000], t / "x.bin"), ValueError, "token ids must lie in"),
    ("write_tokens-2d", lambda t: tokens.write_tokens([[1, 2]], t / "x.bin"), ValueError, "ids must be a non-empty 1-D"),
    ("read_tokens-missing", lambda t: tokens.read_tokens(t / "none.bin"), FileNotFoundError, r"no token file at .*none\.bin"),
    ("read_tokens-odd", lambda t: tokens.read_tokens(write(t, "odd.bin", b"\x00\x01\x02")), ValueError,
     r"odd\.bin holds 3 bytes"),
    ("read_tokens-empty", lambda t: tokens.read_tokens(write(t, "empty.bin", b"")), ValueError, r"empty\.bin holds 0 bytes"),
    ("prepare_chars-fraction-1.5", lambda t: tokens.prepare_chars("abcdefgh", t, 1.5), ValueError,
     "train_fraction must lie strictly between 0 and 1"),
    ("prepare_chars-fraction-0", lambda t: tokens.prepare_chars("abcdefgh", t, 0), ValueError, "train_fraction"),
    ("prepare_chars-fraction-nan", lambda t: tokens.prepare_chars("abcdefgh", t, NAN), ValueError, "train_fraction"),
    ("prepare_chars-short", lambda t: tokens.prepare_chars("ab", t), ValueError, "text of 2 characters is too short"),
    ("prepare_chars-empty", lambda t: tokens.prepare_chars("", t), ValueError, "text must be a non-empty string"),
    ("prepare_chars-too-many-chars", lambda t: tokens.prepare_chars("".join(map(chr, range(0x4E00, 0x4E00 + 70_000))), t),
     ValueError, "text holds 70,000 distinct characters, more than the 65,536"),
    ("read_meta-missing", lambda t: tokens.read_meta(t / "nowhere"), FileNotFoundError, "no meta.json in"),
    ("read_meta-corrupt", lambda t: tokens.read_meta(write(t, "d/meta.json", "{").parent), CheckpointError,
     r"meta\.json cannot be read as JSON"),
    ("read_meta-not-utf8", lambda t: tokens.read_meta(write(t, "d/meta.json", b"\xff").parent), CheckpointError,
     r"meta\.json cannot be read"),
    ("read_meta-list", lambda t: tokens.read_meta(write(t, "d/meta.json", "[]").parent), ValueError,
     r"meta\.json must be a JSON object whose vocab_size"),
    ("read_meta-no-vocab", lambda t: tokens.read_meta(write(t, "d/meta.json", "{}").parent), ValueError,
     "vocab_size is an int"),
    ("windows-negative-offset", lambda t: tokens.windows(TOKS, np.array([-1]), 4), ValueError,
     "offsets holds -1, outside 0..15"),
    ("windows-offset-past-end", lambda t: tokens.windows(TOKS, np.array([17]), 4), ValueError,
     "offsets holds 17, outside 0..15"),
    ("windows-float-offset", lambda t: tokens.windows(TOKS, np.array([1.5]), 4), TypeError, "offsets must be integers"),
    ("windows-block-0", lambda t: tokens.windows(TOKS, np.array([0]), 0), ValueError, "block_size must be an int >= 1"),
    ("windows-tokens-2d", lambda t: tokens.windows(TOKS.reshape(4, 5), np.array([0]), 2), ValueError,
     "tokens must be a 1-D array"),
    ("windows-no-offsets", lambda t: tokens.windows(TOKS, np.array([], dtype=np.int64), 4), ValueError,
     "offsets is empty"),
    ("BatchSampler-block-0", lambda t: tokens.BatchSampler(TOKS, 0, 2), ValueError, "block_size must be an int >= 1"),
    ("BatchSampler-batch-float", lambda t: tokens.BatchSampler(TOKS, 4, 2.0), ValueError, "batch_size must be an int"),
    ("BatchSampler-rank", lambda t: tokens.BatchSampler(TOKS, 4, 2, rank=2, world_size=2), ValueError,
     r"rank must lie in \[0, world_size=2\)"),
    ("BatchSampler-short", lambda t: tokens.BatchSampler(TOKS, 20, 2), ValueError,
     "holds 20 tokens, fewer than block_size \\+ 1 = 21"),
]:
    case(f"tokens.{name}", thunk, error, pattern)
case("tokens.decode_chars-empty", lambda t: tokens.decode_chars([], CH), DOC(lambda r: r == ""))
case("tokens.decode_chars-tensor", lambda t: tokens.decode_chars(torch.tensor([2, 0]), CH), DOC(lambda r: r == "ca"))

# ---- lmbook.checkpoint --------------------------------------------------------------------------------


def damaged_checkpoint(tmp: Path, damage: str) -> Path:
    model = nn.Linear(2, 2)
    path = checkpoint.save_checkpoint(tmp / "run", 1, model, {"x": torch.ones(2)}, {"note": 1})
    manifest = path / "manifest.json"
    if damage == "empty-manifest":
        manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"files": {}}))
    elif damage == "manifest-not-json":
        manifest.write_text("{")
    elif damage == "manifest-format":
        manifest.write_text(json.dumps(json.loads(manifest.read_text()) | {"format": "other"}))
    elif damage == "manifest-one-file":
        info = json.loads(manifest.read_text())
        del info["files"]["state.safetensors"]
        manifest.write_text(json.dumps(info))
    elif damage == "missing-file":
        (path / "state.safetensors").unlink()
    elif damage == "truncated":
        (path / "model.safetensors").write_bytes((path / "model.safetensors").read_bytes()[:40])
    elif damage == "flipped":
        b = bytearray((path / "state.safetensors").read_bytes())
        b[-1] ^= 1
        (path / "state.safetensors").write_bytes(bytes(b))
    return tmp / "run"


for damage, pattern in [("empty-manifest", r"manifest\.json must list the size and sha256 .* is corrupt"),
                        ("manifest-one-file", r"manifest\.json must list the size and sha256"),
                        ("manifest-not-json", r"manifest\.json cannot be read as JSON"),
                        ("manifest-format", "has format 'other'"),
                        ("missing-file", r"state\.safetensors is missing"),
                        ("truncated", r"model\.safetensors holds \d+ bytes but was written with"),
                        ("flipped", r"state\.safetensors does not match the sha256")]:
    case(f"checkpoint.load-{damage}", lambda t, damage=damage: checkpoint.load_checkpoint(
        damaged_checkpoint(t, damage), nn.Linear(2, 2)), CheckpointError, pattern)
for name, thunk, error, pattern in [
    ("load-empty-folder", lambda t: checkpoint.load_checkpoint(t, nn.Linear(2, 2)), CheckpointError,
     "neither a checkpoint folder"),
    ("load-other-model", lambda t: checkpoint.load_checkpoint(damaged_checkpoint(t, "none"), nn.Linear(3, 3)),
     CheckpointError, "does not fit this model"),
    ("load_weights-garbage", lambda t: checkpoint.load_weights(nn.Linear(2, 2), write(t, "w.safetensors", b"garbage")),
     CheckpointError, r"w\.safetensors is not a readable safetensors file"),
    ("save-step-negative", lambda t: checkpoint.save_checkpoint(t, -1, nn.Linear(2, 2), {}, {}), ValueError,
     "step must be an int >= 0"),
    ("save-step-float", lambda t: checkpoint.save_checkpoint(t, 1.5, nn.Linear(2, 2), {}, {}), ValueError,
     "step must be an int"),
    ("save-keep-0", lambda t: checkpoint.save_checkpoint(t, 1, nn.Linear(2, 2), {}, {}, keep=0), ValueError,
     "keep must be an int >= 1"),
    ("save-keep-float", lambda t: checkpoint.save_checkpoint(t, 1, nn.Linear(2, 2), {}, {}, keep=1.5), ValueError,
     "keep must be an int"),
    ("verify_weights-no-hash", lambda t: checkpoint.verify_weights(write(t, "w.bin", b"x"), None, "fix it"),
     CheckpointError, r"no sha256 is recorded for .*w\.bin.*fix it"),
    ("verify_weights-mismatch", lambda t: checkpoint.verify_weights(write(t, "w.bin", b"x"), "0" * 64, "fix it"),
     CheckpointError, r"w\.bin does not match the sha256 recorded"),
]:
    case(f"checkpoint.{name}", thunk, error, pattern)

# ---- lmbook.trainer -----------------------------------------------------------------------------------

TC = trainer_mod.TrainConfig


def fake_run(tmp: Path, config) -> Path:
    """A run folder holding `config` as its config.json and a few bytes as its weights."""
    write(tmp, "r/model.safetensors", b"x")
    return write(tmp, "r/config.json", json.dumps(config)).parent

for kw, pattern in [
    (dict(grad_clip=NAN), "grad_clip must be a finite number >= 0"), (dict(grad_clip=INF), "grad_clip must be a finite"),
    (dict(grad_clip=-1.0), "grad_clip must be a finite number >= 0"),
    (dict(weight_decay=NAN), "weight_decay must be a finite number >= 0"),
    (dict(weight_decay=INF), "weight_decay must be a finite"), (dict(weight_decay=-0.1), "weight_decay must be"),
    (dict(lr=0.0), "need 0 < lr"), (dict(lr=NAN), "need 0 < lr"), (dict(lr=INF), "need 0 < lr"),
    (dict(min_lr=0.1, lr=0.01), "min_lr <= lr"), (dict(min_lr=NAN), "min_lr"),
    (dict(dropout=1.0), "dropout must lie in"), (dict(dropout=NAN), "dropout must lie in"),
    (dict(beta1=1.0), "beta1 and beta2 must lie in"), (dict(beta2=NAN), "beta1 and beta2"),
    (dict(n_layer=0), "n_layer must be >= 1"), (dict(batch_size=0), "batch_size must be >= 1"),
    (dict(grad_accum=-1), "grad_accum must be >= 1"), (dict(max_steps=0), "max_steps must be >= 1"),
    (dict(eval_every=0), "eval_every must be >= 1"), (dict(eval_windows=0), "eval_windows must be >= 1"),
    (dict(log_every=0), "log_every must be >= 1"), (dict(checkpoint_every=-1), "checkpoint_every must be >= 0"),
    (dict(keep_checkpoints=0), "keep_checkpoints must be >= 1"), (dict(warmup_steps=-1), "warmup_steps must be >= 0"),
    (dict(n_embd=10, n_head=3), "n_embd=10 must be a multiple of n_head=3"),
    (dict(warmup_steps=10, max_steps=5), "warmup_steps=10 must not exceed max_steps=5"),
    (dict(dtype="fp8"), "dtype must be one of"), (dict(export_dtype="int8"), "export_dtype must be one of"),
    (dict(device="tpu"), "device must be 'auto'"), (dict(attention="flash"), "attention must be 'sdpa'"),
    (dict(peak_tflops=0.0), "peak_tflops must be a finite number > 0"), (dict(peak_tflops=INF), "peak_tflops"),
    (dict(out_dir=""), "out_dir must name a folder"), (dict(batch_size=2.5), "'batch_size' must be int"),
    (dict(compile="yes"), "'compile' must be bool or None"), (dict(resume_allow_changes="yes"), "resume_allow_changes"),
    (dict(lr="fast"), "'lr' must be float"),
]:
    case(f"trainer.TrainConfig-{sorted(kw.items())}", lambda t, kw=kw: TC(**kw).validate(), (TypeError, ValueError), pattern)
for name, thunk, error, pattern in [
    ("from_dict-list", lambda t: TC.from_dict([1]), TypeError, "a config must be a JSON object of settings"),
    ("from_dict-unknown", lambda t: TC.from_dict({"max_step": 1}), ValueError, "unknown setting 'max_step'"),
    ("cli-config-list", lambda t: cli_error(["--config", str(write(t, "c.json", "[1, 2]"))]), ValueError,
     r"--config .*c\.json must hold a JSON object of settings"),
    ("cli-config-not-json", lambda t: cli_error(["--config", str(write(t, "c.json", "{max_steps: 1}"))]), ValueError,
     r"--config .*c\.json is not valid JSON"),
    ("cli-config-missing", lambda t: cli_error(["--config", str(t / "none.json")]), ValueError,
     r"--config .*none\.json: no such file"),
    ("cli-flag-type", lambda t: cli_error(["--max_steps", "many"]), ValueError, "--max_steps: invalid int value"),
    ("cli-flag-nan", lambda t: cli_error(["--grad_clip", "nan"]), ValueError, "grad_clip must be a finite number"),
    ("load_run-missing", lambda t: trainer_mod.load_run(t / "norun"), FileNotFoundError, "holds no exported run"),
    ("load_run-config-list", lambda t: trainer_mod.load_run(fake_run(t, [])), CheckpointError,
     r"config\.json is not the config\.json of an exported run"),
    ("load_run-no-hash", lambda t: trainer_mod.load_run(fake_run(t, {"model": C, "tokenizer": {}})), CheckpointError,
     r"no sha256 is recorded .*export it again from the run's last checkpoint"),
    ("load_run-hash-mismatch", lambda t: trainer_mod.load_run(fake_run(t, {"model": C, "tokenizer": {},
                                                                           "weights_sha256": "0" * 64})),
     CheckpointError, "does not match the sha256 recorded"),
]:
    case(f"trainer.{name}", thunk, error, pattern)


def tiny_trainer(tmp: Path, data_=None, **kw):
    values = dict(out_dir=str(tmp / "run"), n_layer=1, n_head=2, n_embd=8, block_size=8, batch_size=2, max_steps=2,
                  warmup_steps=0, eval_windows=4, progress=False, device="cpu")
    good = (np.arange(40) % 5, np.arange(20) % 5)
    return trainer_mod.Trainer(TC(**(values | kw)), data=good if data_ is None else data_)


for name, data_, error, pattern in [
    ("val-too-short", (np.arange(40) % 5, np.arange(8) % 5), ValueError,
     r"the val split of data holds 8 tokens, fewer than block_size \+ 1 = 9 .* NaN"),
    ("train-too-short", (np.arange(5) % 5, np.arange(20) % 5), ValueError, "the train split of data holds 5 tokens"),
    ("val-empty", (np.arange(40) % 5, np.array([], dtype=np.int64)), ValueError, "the val split of data holds 0 tokens"),
    ("negative-id", (np.arange(40) % 5 - 1, np.arange(20) % 5), ValueError, "the train tokens of data hold the negative id -1"),
    ("float-tokens", (np.arange(40) / 2, np.arange(20) % 5), TypeError, "the train tokens of data must be a 1-D array of "
                                                                         "integer token ids"),
    ("2d-tokens", (np.zeros((4, 10), dtype=np.int64), np.arange(20) % 5), TypeError, "must be a 1-D array"),
    ("not-a-pair", (np.arange(40) % 5,), TypeError, r"data must be a pair \(train_tokens, val_tokens\)"),
]:
    case(f"trainer.Trainer-data-{name}", lambda t, data_=data_: tiny_trainer(t, data_), error, pattern)
case("trainer.Trainer-val-split-too-short-on-disk", lambda t: trainer_mod.Trainer(TC(
    data_dir=str(t / "data") if tokens.prepare_chars("to be or not to be, " * 30, t / "data") else "",
    out_dir=str(t / "run"), n_layer=1, n_head=2, n_embd=8, block_size=256, progress=False, device="cpu")),
    ValueError, r"the val split of the token files in .*data holds 60 tokens, fewer than block_size \+ 1 = 257")
case("trainer.Trainer-resume-nothing", lambda t: tiny_trainer(t, resume="latest"), CheckpointError,
     r"resume='latest', but .*run holds no complete checkpoint")
case("trainer.Trainer-resume-missing-folder", lambda t: tiny_trainer(t, resume=str(t / "nowhere")), CheckpointError,
     "neither a checkpoint folder")
case("trainer.Trainer-fp16-on-cpu", lambda t: tiny_trainer(t, dtype="float16"), ValueError, "float16 .* CUDA")

# ---- lmbook.hf (transformers is imported only here) -------------------------------------------------------

from lmbook import hf  # noqa: E402  (transformers itself is imported inside its functions)

for name, thunk, error, pattern in [
    ("gpt2_config-dict", lambda t: hf.gpt2_config(C), TypeError, "gpt2_config needs a GPTConfig"),
    ("gpt2_config-no-bias", lambda t: hf.gpt2_config(gpt.GPTConfig(**C, bias=False)), ValueError,
     "a GPTConfig with bias=False has no GPT2LMHeadModel counterpart"),
    ("from_hf-gpt", lambda t: hf.from_hf(gpt_model()), TypeError, "from_hf converts a transformers GPT2LMHeadModel"),
    ("to_hf-linear", lambda t: hf.to_hf(nn.Linear(2, 2)), TypeError, "to_hf converts an lmbook.gpt.GPT"),
    ("from_pretrained-name", lambda t: hf.from_pretrained("gpt5"), ValueError, "from_pretrained loads one of"),
]:
    case(f"hf.{name}", thunk, error, pattern)


# ---- the sweep ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("thunk, expected, pattern", CASES)
def test_bad_input_is_a_clear_error_or_a_documented_result(tmp_path, thunk, expected, pattern):
    if isinstance(expected, DOC):
        result = thunk(tmp_path)
        assert expected.check(result), f"undocumented result {result!r:.200}"
        return
    with pytest.raises(expected) as caught:
        thunk(tmp_path)
    message = str(caught.value)
    assert re.search(pattern, message, flags=re.S), f"the message does not say what was wrong: {message!r}"


def test_the_sweep_covers_every_module():
    names = {p.id.split("-", 1)[1].split(".", 1)[0] for p in CASES}
    assert names >= {"env", "data", "ngram", "batching", "mlp", "train", "rnn", "attention", "gpt", "dates", "seq2seq",
                     "bpe", "tokens", "checkpoint", "trainer", "hf"}
    documented = sum(isinstance(p.values[1], DOC) for p in CASES)
    assert len(CASES) >= 500 and documented >= 15, (len(CASES), documented)
