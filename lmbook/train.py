"""A small, readable training loop (chapter 2; chapter 7 grows it into a full GPU trainer).

Every step is the same four lines: take a minibatch, compute the mean cross-entropy of the model's
logits against the targets, backpropagate, let the optimizer update the weights. Around them,
`train` adds what a real run needs: a learning-rate schedule, gradient clipping, evaluation on
held-out sets every `eval_every` steps, early stopping that restores the best weights, a progress
bar, and a clear error the moment the loss stops being a number. It returns a `History`.

Steps are counted from 0: update t uses ``lr · lr_schedule(t)`` and records the loss of its
minibatch as ``train_loss[t]``; an evaluation at step s sees the model after s updates (so step 0
is the untrained model, and step `steps` the final one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lmbook import env


@dataclass
class History:
    """What happened during training: train loss per step (of the minibatch), and at each evaluation
    the mean loss on each eval set; `plot()` draws it."""

    step: list[int] = field(default_factory=list)
    train_loss: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval_loss: dict[str, list[float]] = field(default_factory=dict)
    best_step: int | None = None  # on the early-stopping eval set
    best_loss: float | None = None
    stopped_early: bool = False

    def plot(self, ax=None, smooth: int = 100, title: str | None = None):
        """Train loss as a running mean over the last `smooth` steps, each eval set as a line with
        markers, the early-stopping best as a star; returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        ax = ax if ax is not None else plt.subplots()[1]
        if self.step:
            w = max(1, min(smooth, len(self.step)))
            running_mean = np.convolve(self.train_loss, np.ones(w) / w, mode="valid")  # of steps t-w+1 … t
            ax.plot(self.step[w - 1 :], running_mean, lw=1, label=f"train (mean of {w} steps)" if w > 1 else "train")
        for name, losses in self.eval_loss.items():
            ax.plot(self.eval_step, losses, "o-", ms=3, label=name)
        if self.best_step is not None:
            ax.plot([self.best_step], [self.best_loss], "*", ms=12, color="k", label=f"best ({self.best_loss:.4f})")
        ax.set(xlabel="step", ylabel="loss (nats per token)", title=title)
        if ax.get_lines():
            ax.legend()
        return ax


def loss_fn(logits: Tensor, targets: Tensor, reduction: str = "mean") -> Tensor:
    """Cross-entropy of logits (B, V) against targets (B,), or of (B, T, V) against (B, T)."""
    return F.cross_entropy(logits.flatten(0, -2), targets.flatten(), reduction=reduction)  # (B·T, V), (B·T,)


@torch.no_grad()
def evaluate(model: nn.Module, X: Tensor, Y: Tensor, batch_size: int = 8192) -> float:
    """Mean cross-entropy (nats per target) of model(X) against Y over all rows, in eval mode (the
    model's previous mode is restored after); works for logits (B, V) with Y (B,) and logits
    (B, T, V) with Y (B, T). Targets equal to -100 (padding, F.cross_entropy's ignore_index) are
    left out of both the sum and the count. X and Y go to the model's device `batch_size` rows at a time.
    A model that returns (logits, loss), such as lmbook's GPT, is scored on its logits."""
    _check_evaluate_args(model, X, Y, batch_size)
    n_targets = int((Y != -100).sum())
    if n_targets == 0:
        raise ValueError("every target is -100 (ignored): there is nothing to evaluate")
    device = next(model.parameters(), torch.empty(0)).device
    was_training, total = model.training, 0.0
    model.eval()
    try:
        for i in range(0, len(X), batch_size):
            x, y = X[i : i + batch_size].to(device), Y[i : i + batch_size].to(device)
            total += loss_fn(logits_of(model(x)), y, reduction="sum").item()
    finally:
        model.train(was_training)
    return total / n_targets


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


def train(model: nn.Module, batches: Iterator[tuple[Tensor, Tensor]], *, steps: int,
          optimizer: torch.optim.Optimizer | None = None, lr: float = 1e-3, weight_decay: float = 0.0,
          lr_schedule: Callable[[int], float] | None = None,
          eval_sets: dict[str, tuple[Tensor, Tensor]] | None = None, eval_every: int = 500,
          early_stopping: str | None = None, patience: int | None = None,
          grad_clip: float | None = None, progress: bool = True, device: str | None = None) -> History:
    """Train `model` for `steps` minibatches from `batches` and return its `History`.

    - optimizer: default AdamW(lr), with `weight_decay` on the parameters `decay_split` names (the
      weight matrices) and none on the others; lr_schedule(t) multiplies each group's lr at step t.
    - eval_sets: {name: (X, Y)}, evaluated at step 0, every `eval_every` steps and at the end.
    - early_stopping: the eval set to watch. Training stops after `patience` evaluations without a
      new best (never, with patience=None), and the weights of the best evaluation are restored.
    - grad_clip: clip the gradients' global norm to this value.
    The model stays on `device` (default: lmbook.env.device()); each batch is moved there. The model
    returns logits, or (logits, loss) as lmbook's GPT does (the loss is then computed here, on the logits).
    """
    from tqdm.auto import tqdm

    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    eval_sets = eval_sets or {}
    if not isinstance(eval_sets, dict) or not all(isinstance(v, (tuple, list)) and len(v) == 2 for v in eval_sets.values()):
        raise TypeError("eval_sets must be a dict {name: (X, Y)}")
    for name, value in {"steps": steps, "eval_every": eval_every, "patience": 1 if patience is None else patience}.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if early_stopping is not None and early_stopping not in eval_sets:
        raise ValueError(f"early_stopping={early_stopping!r} must name one of the eval sets; "
                         f"eval_sets has {sorted(eval_sets) or 'none'}")
    if patience is not None and early_stopping is None:
        raise ValueError("patience counts evaluations without improvement on an eval set: "
                         "name that set with early_stopping='dev' (say)")
    if optimizer is None:
        for name, value, low in (("lr", lr, "> 0"), ("weight_decay", weight_decay, ">= 0")):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                    or not (value > 0 if low == "> 0" else value >= 0):
                raise ValueError(f"{name} must be a finite number {low}, got {value!r}")
    if grad_clip is not None and not grad_clip > 0:
        raise ValueError(f"grad_clip must be a positive gradient norm or None, got {grad_clip!r}")
    model.to(device or env.device())
    device = next(model.parameters()).device
    if optimizer is None:
        decay, no_decay = decay_split(model)
        params = dict(model.named_parameters())
        groups = [{"params": [params[n] for n in names], "weight_decay": wd}
                  for names, wd in ((decay, weight_decay), (no_decay, 0.0)) if names]
        optimizer = torch.optim.AdamW(groups, lr=lr)
    base_lrs = [group["lr"] for group in optimizer.param_groups]
    history, best_state, bad_evals = History(eval_loss={name: [] for name in eval_sets}), None, 0
    try:
        batches = iter(batches)  # a list of batches works too
    except TypeError:
        raise TypeError(f"batches must be an iterator of (x, y) minibatches, such as random_batches(X, Y, "
                        f"batch_size), got {type(batches).__name__}") from None
    was_training = model.training
    bar = tqdm(total=steps, disable=not progress, dynamic_ncols=True)

    def show_progress(refresh: bool = True) -> None:  # the latest minibatch and eval losses
        latest = {"batch": history.train_loss} | history.eval_loss
        bar.set_postfix({f"{n} loss": f"{v[-1]:.4f}" for n, v in latest.items() if v}, refresh=refresh)

    def run_evaluation(step: int) -> bool:
        """Evaluate every set at `step`; True when early stopping has run out of patience."""
        nonlocal best_state, bad_evals
        history.eval_step.append(step)
        for name, (X, Y) in eval_sets.items():
            history.eval_loss[name].append(evaluate(model, X, Y))
        show_progress()
        if early_stopping is None:
            return False
        loss = history.eval_loss[early_stopping][-1]
        if history.best_loss is None or loss < history.best_loss:
            history.best_step, history.best_loss, bad_evals = step, loss, 0
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            return False
        bad_evals += 1
        return patience is not None and bad_evals >= patience

    model.train()
    try:
        for step in range(steps):
            if step % eval_every == 0 and run_evaluation(step):
                history.stopped_early = True
                break
            for group, base_lr in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base_lr * (1.0 if lr_schedule is None else lr_schedule(step))
            x, y = _next_batch(batches, step)
            loss = loss_fn(logits_of(model(x.to(device, non_blocking=True))), y.to(device, non_blocking=True))
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"loss is {loss_value} at step {step}: lower the learning rate "
                                         f"(lr={optimizer.param_groups[0]['lr']:g}) or clip the gradients (grad_clip=1.0)")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            history.step.append(step)
            history.train_loss.append(loss_value)
            history.lr.append(optimizer.param_groups[0]["lr"])
            bar.update()
            if step % 100 == 0:
                show_progress(refresh=False)
        else:
            run_evaluation(steps)
    finally:
        bar.close()
        model.train(was_training)
    if best_state is not None:
        model.load_state_dict(best_state)
    return history


def logits_of(output) -> Tensor:
    """The logits of a model's output: the output itself, or the first of (logits, loss)."""
    return output[0] if isinstance(output, tuple) else output


def _check_evaluate_args(model, X, Y, batch_size) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    for name, t in (("X", X), ("Y", Y)):
        if not isinstance(t, Tensor) or t.dim() == 0:
            raise TypeError(f"{name} must be a tensor with one row per example, got "
                            f"{type(t).__name__ if not isinstance(t, Tensor) else 'a 0-d tensor'}")
    if len(X) != len(Y) or len(X) == 0:
        raise ValueError(f"X and Y must have the same number of rows, at least 1; got {len(X)} and {len(Y)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1 (rows per forward pass), got {batch_size!r}")


def _next_batch(batches: Iterator[tuple[Tensor, Tensor]], step: int) -> tuple[Tensor, Tensor]:
    """The next (x, y) from `batches`, or an error that says why there is none."""
    try:
        x, y = next(batches)
    except StopIteration:
        raise ValueError(f"batches ran out after {step} steps; pass an endless iterator such as "
                         f"random_batches(X, Y, batch_size), or fewer steps") from None
    if len(x) == 0 or len(y) == 0:
        raise ValueError(f"batches gave an empty batch at step {step} (x {tuple(x.shape)}, y {tuple(y.shape)})")
    return x, y
