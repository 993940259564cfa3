"""lmbook.train: it learns, it is reproducible, early stopping restores the best weights, errors."""

import math

import matplotlib

matplotlib.use("Agg")

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lmbook.batching import random_batches
from lmbook.train import History, decay_split, evaluate, train

V = 6


class Bigram(nn.Module):
    """Logits of the next token = row `previous` of a (V, V) table, zero at the start (uniform)."""

    def __init__(self, vocab_size: int = V):
        super().__init__()
        self.W = nn.Parameter(torch.zeros(vocab_size, vocab_size))

    def forward(self, idx):
        return self.W[idx[:, -1]]  # (B, V)


TABLE = torch.softmax(3 * torch.randn(V, V, generator=torch.Generator().manual_seed(0)), dim=1)  # P(next | previous)


def bigram_data(n: int, seed: int):
    """n (previous, next) pairs drawn from TABLE; X (n, 1), Y (n,)."""
    g = torch.Generator().manual_seed(seed)
    table = TABLE
    previous = torch.randint(0, V, (n,), generator=g)
    following = torch.multinomial(table[previous], 1, generator=g)[:, 0]
    return previous[:, None], following


def fit(seed: int = 0, **kwargs) -> tuple[nn.Module, History]:
    X, Y = bigram_data(2000, seed=1)
    model = Bigram()
    kwargs = dict(steps=150, lr=0.1, eval_sets={"dev": bigram_data(500, seed=2)}, eval_every=50,
                  progress=False, device="cpu") | kwargs
    return model, train(model, random_batches(X, Y, 32, torch.Generator().manual_seed(seed)), **kwargs)


def test_train_learns_a_bigram_table():
    model, history = fit()
    dev = history.eval_loss["dev"]
    assert history.eval_step == [0, 50, 100, 150]  # step 0, every 50 steps, and the end
    assert dev[0] == pytest.approx(math.log(V))    # the zero table predicts uniformly
    X_dev, Y_dev = bigram_data(500, seed=2)
    true_table_loss = F.nll_loss(TABLE[X_dev[:, 0]].log(), Y_dev).item()
    assert dev[-1] < dev[0] - 0.5
    assert dev[-1] == pytest.approx(true_table_loss, abs=0.05)  # about as good as the table itself
    assert history.step == list(range(150)) and len(history.train_loss) == len(history.lr) == 150
    assert history.lr == [0.1] * 150
    assert history.best_step is None and not history.stopped_early
    assert evaluate(model, *bigram_data(500, seed=2)) == pytest.approx(dev[-1])


def test_final_evaluation_when_steps_is_not_a_multiple_of_eval_every():
    _, history = fit(steps=120)
    assert history.eval_step == [0, 50, 100, 120]


def test_same_seed_gives_the_same_history():
    (m1, h1), (m2, h2), (_, h3) = fit(seed=0), fit(seed=0), fit(seed=5)
    assert h1 == h2
    assert torch.equal(m1.W, m2.W)
    assert h1.train_loss != h3.train_loss


def test_lr_schedule_multiplies_the_learning_rate():
    _, history = fit(steps=10, lr=0.5, lr_schedule=lambda t: 1.0 if t < 6 else 0.1)
    assert history.lr == pytest.approx([0.5] * 6 + [0.05] * 4)


def test_a_given_optimizer_is_used():
    X, Y = bigram_data(100, seed=1)
    model = Bigram()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.0)
    train(model, random_batches(X, Y, 8), steps=5, optimizer=optimizer, progress=False, device="cpu")
    assert torch.equal(model.W, torch.zeros(V, V))  # lr 0: nothing moved


def test_weight_decay_follows_decay_split():
    """train(weight_decay=...) decays the weight matrices only, not embeddings, biases or norm gains
    (decay_split: the rule lmbook.trainer uses too)."""
    model = nn.Sequential(nn.Embedding(V, 4), nn.Flatten(), nn.LayerNorm(4), nn.Linear(4, V))
    assert decay_split(model) == (["3.weight"], ["0.weight", "2.weight", "2.bias", "3.bias"])
    X, Y = torch.zeros(64, 1, dtype=torch.long), torch.ones(64, dtype=torch.long)  # only token 0 is read
    unused_rows = model[0].weight[1:].detach().clone()
    head = model[3].weight.detach().clone()
    train(model, random_batches(X, Y, 8), steps=5, lr=1e-2, weight_decay=0.5, progress=False, device="cpu")
    assert torch.equal(model[0].weight[1:], unused_rows), "embedding rows without gradient must not decay"
    assert not torch.equal(model[3].weight, head)


def test_grad_clip_bounds_the_update():
    X, Y = bigram_data(100, seed=1)
    model = Bigram()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    train(model, random_batches(X, Y, 8), steps=1, optimizer=optimizer, grad_clip=1e-3, progress=False, device="cpu")
    assert 0 < model.W.norm() <= 1e-3 * (1 + 1e-6)  # one SGD step of lr 1 on a gradient of norm <= 1e-3


# ---- early stopping ----------------------------------------------------------------------------
# Training data always continue 0 with 1; the dev set continues 0 with 1 or with 2, half the time
# each. From the uniform start, plain gradient descent first moves mass from the other tokens to 1
# (dev loss falls), then from 2 to 1 as well (dev loss rises): the best dev loss lies in between.

def overfitting_setup():
    X_train, Y_train = torch.zeros(64, 1, dtype=torch.long), torch.ones(64, dtype=torch.long)
    X_dev, Y_dev = torch.zeros(2, 1, dtype=torch.long), torch.tensor([1, 2])
    return random_batches(X_train, Y_train, 16), {"dev": (X_dev, Y_dev)}


def sgd_train(steps: int, **kwargs):
    batches, eval_sets = overfitting_setup()
    model = Bigram()
    history = train(model, batches, steps=steps, optimizer=torch.optim.SGD(model.parameters(), lr=1.0),
                    eval_sets=eval_sets, eval_every=1, progress=False, device="cpu", **kwargs)
    return model, history, eval_sets["dev"]


def test_early_stopping_stops_and_restores_the_best_weights():
    model, history, dev = sgd_train(100, early_stopping="dev", patience=3)
    losses = history.eval_loss["dev"]
    assert history.stopped_early
    assert 0 < history.best_step < 20
    assert history.best_loss == min(losses) == losses[history.best_step]
    assert history.eval_step[-1] == history.best_step + 3  # three evaluations without improvement
    assert len(history.step) == history.best_step + 3
    assert evaluate(model, *dev) == pytest.approx(history.best_loss)
    reference, _, _ = sgd_train(history.best_step)  # the same run, stopped at the best step
    assert torch.equal(model.W, reference.W)


def test_early_stopping_without_patience_trains_to_the_end_and_restores_the_best():
    model, history, dev = sgd_train(30, early_stopping="dev")
    assert not history.stopped_early and history.eval_step[-1] == 30
    assert history.eval_loss["dev"][-1] > history.best_loss
    assert evaluate(model, *dev) == pytest.approx(history.best_loss)


# ---- evaluate ----------------------------------------------------------------------------------

def test_evaluate_matches_cross_entropy_and_restores_the_mode():
    model = nn.Sequential(nn.Embedding(V, 4), nn.Flatten(), nn.Linear(12, V), nn.Dropout(0.5))
    X = torch.randint(0, V, (100, 3), generator=torch.Generator().manual_seed(0))
    Y = torch.randint(0, V, (100,), generator=torch.Generator().manual_seed(1))
    model.eval()
    expected = F.cross_entropy(model(X), Y).item()
    model.train()
    assert evaluate(model, X, Y, batch_size=7) == pytest.approx(expected, rel=1e-6)  # dropout off inside
    assert model.training
    model.eval()
    evaluate(model, X, Y)
    assert not model.training


def test_evaluate_handles_a_logit_per_position():
    model = nn.Sequential(nn.Embedding(V, 4), nn.Linear(4, V))  # (B, T) -> (B, T, V)
    X = torch.randint(0, V, (10, 5), generator=torch.Generator().manual_seed(0))
    Y = torch.randint(0, V, (10, 5), generator=torch.Generator().manual_seed(1))
    expected = F.cross_entropy(model(X).reshape(-1, V), Y.reshape(-1)).item()
    assert evaluate(model, X, Y, batch_size=3) == pytest.approx(expected, rel=1e-6)
    history = train(model, random_batches(X, Y, 4), steps=3, progress=False, device="cpu")
    assert len(history.train_loss) == 3


def test_evaluate_leaves_padded_targets_out_of_the_mean():
    model = nn.Sequential(nn.Embedding(V, 4), nn.Linear(4, V))  # (B, T) -> (B, T, V)
    X = torch.randint(0, V, (10, 5), generator=torch.Generator().manual_seed(0))
    Y = torch.randint(0, V, (10, 5), generator=torch.Generator().manual_seed(1))
    Y[:, 3:] = -100  # padding: the same mean as F.cross_entropy(ignore_index=-100), not diluted by it
    expected = F.cross_entropy(model(X).reshape(-1, V), Y.reshape(-1)).item()
    assert evaluate(model, X, Y, batch_size=3) == pytest.approx(expected, rel=1e-6)


def test_evaluate_errors():
    with pytest.raises(ValueError, match="same number of rows"):
        evaluate(Bigram(), torch.zeros(3, 1, dtype=torch.long), torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="every target is -100"):
        evaluate(Bigram(), torch.zeros(3, 1, dtype=torch.long), torch.full((3,), -100))


# ---- errors ------------------------------------------------------------------------------------

class NanAfter(nn.Module):
    """Logits of a linear model, replaced by nan from the `bad_call`-th forward pass in training on."""

    def __init__(self, bad_call: int):
        super().__init__()
        self.linear, self.calls, self.bad_call = nn.Linear(1, V), 0, bad_call

    def forward(self, x):
        logits = self.linear(x.float())
        if self.training:
            self.calls += 1
            if self.calls > self.bad_call:
                logits = logits * float("nan")
        return logits


def test_nan_loss_names_the_step_and_the_learning_rate():
    X, Y = bigram_data(100, seed=1)
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 3: lower the learning rate \(lr=0.003\)"):
        train(NanAfter(bad_call=3), random_batches(X, Y, 8), steps=10, lr=3e-3, progress=False, device="cpu")


def test_a_huge_learning_rate_is_caught():
    X, Y = bigram_data(200, seed=1)
    model = nn.Sequential(nn.Embedding(V, 8), nn.Flatten(), nn.Linear(8, V))
    with pytest.raises(FloatingPointError, match=r"loss is (nan|inf) at step \d+: lower the learning rate"):
        train(model, random_batches(X, Y, 32), steps=200, optimizer=torch.optim.SGD(model.parameters(), lr=1e30),
              progress=False, device="cpu")


def test_argument_errors():
    X, Y = bigram_data(100, seed=1)
    model = Bigram()
    for bad in [0, -1, 2.0]:
        with pytest.raises(ValueError, match=f"steps must be an int >= 1, got {bad}"):
            train(model, random_batches(X, Y, 8), steps=bad, progress=False)
    with pytest.raises(ValueError, match=r"early_stopping='val' must name one of the eval sets; eval_sets has \['dev'\]"):
        train(model, random_batches(X, Y, 8), steps=5, eval_sets={"dev": (X, Y)}, early_stopping="val", progress=False)
    with pytest.raises(ValueError, match="eval_sets has none"):
        train(model, random_batches(X, Y, 8), steps=5, early_stopping="dev", progress=False)
    with pytest.raises(ValueError, match="patience counts evaluations"):
        train(model, random_batches(X, Y, 8), steps=5, patience=3, progress=False)
    with pytest.raises(ValueError, match="grad_clip must be a positive"):
        train(model, random_batches(X, Y, 8), steps=5, grad_clip=0, progress=False)


def test_batch_errors():
    X, Y = bigram_data(100, seed=1)
    empty = iter([(X[:0], Y[:0])])
    with pytest.raises(ValueError, match=r"empty batch at step 0 \(x \(0, 1\), y \(0,\)\)"):
        train(Bigram(), empty, steps=5, progress=False, device="cpu")
    finite = [(X[:8], Y[:8])] * 3
    with pytest.raises(ValueError, match="batches ran out after 3 steps; pass an endless iterator"):
        train(Bigram(), finite, steps=5, progress=False, device="cpu")


def test_progress_bar_runs(capsys):
    fit(steps=5, progress=True)  # smoke test: the bar and its postfix do not break training


def test_history_plot_returns_axes():
    import matplotlib.pyplot as plt

    _, history = fit(steps=120, early_stopping="dev")
    ax = history.plot(smooth=10, title="bigram")
    assert isinstance(ax, matplotlib.axes.Axes)
    assert ax.get_title() == "bigram" and ax.get_xlabel() == "step"
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels[:2] == ["train (mean of 10 steps)", "dev"]
    train_line = ax.get_lines()[0]
    assert list(train_line.get_xdata()) == history.step[9:]
    assert train_line.get_ydata()[0] == pytest.approx(sum(history.train_loss[:10]) / 10)
    assert train_line.get_ydata()[-1] == pytest.approx(sum(history.train_loss[-10:]) / 10)
    assert History(step=[0, 1], train_loss=[1.0, 2.0]).plot().get_lines()[0].get_ydata() == pytest.approx([1.5])
    _, given = plt.subplots()
    assert History().plot(ax=given) is given  # an empty history draws an empty plot
    plt.close("all")


def test_a_model_that_returns_logits_and_loss_trains_and_evaluates_like_one_that_returns_logits():
    """lmbook's GPT returns (logits, loss); train and evaluate use its logits, as for any other model."""
    from lmbook.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    stream = torch.arange(12).repeat(40) % 12                          # 0, 1, …, 11, 0, 1, …
    X, Y = stream[:-1].unfold(0, 8, 1)[:200], stream[1:].unfold(0, 8, 1)[:200]  # (200, 8) each
    gpt = GPT(GPTConfig(vocab_size=12, block_size=8, n_layer=1, n_head=2, n_embd=16))
    before = evaluate(gpt, X, Y)
    logits, _ = gpt(X)
    assert before == pytest.approx(F.cross_entropy(logits.flatten(0, 1), Y.flatten()).item(), rel=1e-6)
    history = train(gpt, random_batches(X, Y, 16, torch.Generator().manual_seed(0)), steps=60, lr=1e-2,
                    eval_sets={"train": (X, Y)}, eval_every=30, progress=False, device="cpu")
    assert history.eval_loss["train"][-1] < before / 3


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=float("nan")), "lr must be a finite number > 0"), (dict(lr=0.0), "lr must be a finite number > 0"),
    (dict(weight_decay=float("nan")), "weight_decay must be a finite number >= 0"),
    (dict(weight_decay=float("inf")), "weight_decay must be a finite number >= 0"),
])
def test_non_finite_optimizer_settings_are_refused(kwargs, message):
    X, Y = bigram_data(32, 0)
    with pytest.raises(ValueError, match=message):
        train(Bigram(), random_batches(X, Y, 8), steps=2, progress=False, **kwargs)


@pytest.mark.parametrize("batch_size", [-1, 0, 2.5])
def test_evaluate_refuses_a_batch_size_that_is_not_a_positive_int(batch_size):
    X, Y = bigram_data(32, 0)
    with pytest.raises(ValueError, match="batch_size must be an int >= 1"):
        evaluate(Bigram(), X, Y, batch_size=batch_size)  # -1 used to return 0.0: no batch was evaluated
