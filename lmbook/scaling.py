"""Scaling laws: how the loss falls with parameters and data, fitted and used to predict (chapter 9).

Hoffmann et al. (2022) model the final validation loss of a run with N parameters trained on D
tokens as

    L(N, D) = E + A / N^α + B / D^β

E is the loss no model reaches (the entropy of the text, plus what the model family cannot do), the
second term what a finite model costs, the third what finite data costs. The module fits it the ways
their paper does and uses it:

- `fit_law` (their approach 3): minimise the Huber loss (δ = 1e-3) of the log-loss residuals,
  log L̂ − log L with log L̂ = LSE(a − α log N, b − β log D, e), over (a, b, e, α, β) with
  L-BFGS, started from the best points of their grid of initial values; returns a `ScalingLaw`.
- `isoflop_vertex` (their approach 2, one compute budget): the losses of runs of equal compute as
  a parabola in log N, whose vertex is that budget's best model size; `power_law` fits
  N_opt ∝ C^a through the vertices of several budgets.
- `compute_optimal`: the N and D that minimise the fitted law at a compute budget C = 6ND, in
  closed form.
- `bootstrap`: refits on runs drawn with replacement, for the spread of the exponents and of a
  prediction (a fit's parameters alone say nothing about how well the data pin them down).

The fits use torch (float64), not scipy: lmbook depends on torch alone, and L-BFGS with a
strong-Wolfe line search, torch.optim.LBFGS, is the method Hoffmann et al. used.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import torch
from torch import Tensor

HUBER_DELTA = 1e-3
# Hoffmann et al.'s grid of initial values (appendix D.2): α, β, e, a, b
INIT_GRID = (tuple(x / 2 for x in range(5)), tuple(x / 2 for x in range(5)), tuple(x / 2 - 1 for x in range(5)),
             tuple(range(0, 30, 5)), tuple(range(0, 30, 5)))


@dataclass
class ScalingLaw:
    """L(N, D) = E + A / N^alpha + B / D^beta, with the fit's objective (the summed Huber loss)."""

    E: float
    A: float
    B: float
    alpha: float
    beta: float
    objective: float = float("nan")

    def __call__(self, N, D):
        """The predicted loss for N parameters and D tokens (numbers or tensors)."""
        return self.E + self.A / N ** self.alpha + self.B / D ** self.beta

    def to_dict(self) -> dict:
        return asdict(self)


def chinchilla_loss(N, D, law: ScalingLaw):
    """E + A / N^α + B / D^β for the parameters of `law`; N, D numbers or tensors."""
    return law(N, D)


def _log_predict(theta: Tensor, logN: Tensor, logD: Tensor) -> Tensor:
    """log L̂ for parameter rows theta (..., 5) = (a, b, e, α, β) and points (n,): (..., n)."""
    a, b, e, alpha, beta = theta.unbind(-1)
    terms = torch.stack(torch.broadcast_tensors(a[..., None] - alpha[..., None] * logN,
                                                b[..., None] - beta[..., None] * logD, e[..., None]))
    return torch.logsumexp(terms, dim=0)


def _objective(theta: Tensor, logN: Tensor, logD: Tensor, logL: Tensor, delta: float) -> Tensor:
    residual = _log_predict(theta, logN, logD) - logL
    return torch.nn.functional.huber_loss(residual, torch.zeros_like(residual), delta=delta,
                                          reduction="none").sum(-1)


def fit_law(N, D, loss, delta: float = HUBER_DELTA, starts: int = 8, max_iter: int = 100,
            init: ScalingLaw | None = None) -> ScalingLaw:
    """Hoffmann et al.'s approach 3: the law through runs (N[i], D[i], loss[i]).

    Evaluates the objective at every point of their grid of initial values (4,500 points), refines
    the `starts` best (and `init`, a law to start from, if given) with L-BFGS (strong-Wolfe line
    search, float64), and returns the best fit.
    With Huber's δ = 1e-3, residuals above 0.1% of the loss count linearly, so one bad run cannot
    pull the fit far. Needs at least 5 runs with at least 2 distinct N and 2 distinct D.
    """
    logN, logD, logL = _check_runs(N, D, loss)
    grid = torch.tensor([(a, b, e, al, be) for al, be, e, a, b in itertools.product(*INIT_GRID)], dtype=torch.float64)
    order = torch.argsort(_objective(grid, logN, logD, logL, delta))
    candidates = grid[order[:starts]]
    if init is not None:
        start = torch.tensor([[math.log(init.A), math.log(init.B), math.log(init.E), init.alpha, init.beta]],
                             dtype=torch.float64)
        candidates = torch.cat([start, candidates])
    best = None
    for theta0 in candidates:
        theta = theta0.clone().requires_grad_(True)
        optimizer = torch.optim.LBFGS([theta], lr=1.0, max_iter=max_iter, tolerance_grad=1e-12,
                                      tolerance_change=1e-15, history_size=20, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            value = _objective(theta, logN, logD, logL, delta)
            value.backward()
            return value

        optimizer.step(closure)
        with torch.no_grad():
            value = _objective(theta, logN, logD, logL, delta).item()
        if math.isfinite(value) and (best is None or value < best[0]):
            best = (value, theta.detach().clone())
    value, (a, b, e, alpha, beta) = best[0], best[1].tolist()
    return ScalingLaw(E=math.exp(e), A=math.exp(a), B=math.exp(b), alpha=alpha, beta=beta, objective=value)


def compute_optimal(law: ScalingLaw, C):
    """(N_opt, D_opt) minimising `law` under a compute budget C = 6·N·D FLOPs:

        N_opt = G (C/6)^(β/(α+β)),   D_opt = (C/6)^(α/(α+β)) / G,   G = (αA / (βB))^(1/(α+β))

    (Hoffmann et al. 2022, eq. 4). C a number or a tensor.
    """
    if not (law.alpha > 0 and law.beta > 0 and law.A > 0 and law.B > 0):
        raise ValueError(f"compute_optimal needs A, B, alpha, beta > 0 (a loss that falls with both N and D), "
                         f"got {law}")
    s = law.alpha + law.beta
    G = (law.alpha * law.A / (law.beta * law.B)) ** (1 / s)
    return G * (C / 6) ** (law.beta / s), (C / 6) ** (law.alpha / s) / G


def isoflop_vertex(N, loss) -> tuple[float, dict]:
    """Approach 2 for one compute budget: fit loss = p2·(ln N)² + p1·ln N + p0 by least squares to
    runs of (roughly) equal compute, and return (N_opt, info), N_opt = exp(−p1 / (2 p2)) the size at
    the parabola's vertex. info holds the coefficients and ``inside``: whether N_opt lies within the
    sizes that were run (a vertex outside them is an extrapolation). Needs ≥ 3 distinct sizes and
    a parabola that opens upward."""
    logN, _, _ = _check_runs(N, N, loss, need=3)
    if len(torch.unique(logN)) < 3:
        raise ValueError("isoflop_vertex needs at least 3 distinct model sizes to fit a parabola")
    L = torch.as_tensor(loss, dtype=torch.float64)
    X = torch.stack([logN ** 2, logN, torch.ones_like(logN)], dim=1)          # (n, 3)
    p2, p1, p0 = torch.linalg.lstsq(X, L[:, None]).solution[:, 0].tolist()
    if not p2 > 0:
        raise ValueError(f"the losses do not curve upward around a minimum (p2 = {p2:.3g} <= 0): these sizes "
                         f"lie on one side of this budget's best size; add smaller or larger models")
    log_opt = -p1 / (2 * p2)
    inside = bool(logN.min().item() <= log_opt <= logN.max().item())
    return math.exp(log_opt), {"p2": p2, "p1": p1, "p0": p0, "inside": inside,
                               "loss_at_vertex": p0 - p1 * p1 / (4 * p2)}


def power_law(x, y) -> tuple[float, float]:
    """(k, a) with y ≈ k·x^a: a straight line through (ln x, ln y) by least squares."""
    lx, ly, _ = _check_runs(x, y, y, need=2)
    X = torch.stack([lx, torch.ones_like(lx)], dim=1)
    a, log_k = torch.linalg.lstsq(X, ly[:, None]).solution[:, 0].tolist()
    return math.exp(log_k), a


def bootstrap(N, D, loss, n: int = 100, seed: int = 0, starts: int = 2) -> list[ScalingLaw]:
    """`n` fits of the law, each on len(N) runs drawn with replacement (a draw with fewer than 5
    distinct runs, 2 sizes or 2 budgets is drawn again), each started from the fit to all runs and
    the `starts` best grid points. Their spread is how well the runs pin the law down; a
    prediction's spread is the spread of the fits' predictions."""
    _check_runs(N, D, loss)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be an int >= 1, got {n!r}")
    g = torch.Generator().manual_seed(seed)
    N, D, L = (torch.as_tensor(v, dtype=torch.float64) for v in (N, D, loss))
    full = fit_law(N, D, L)  # every refit also starts from the fit to all runs
    fits = []
    while len(fits) < n:
        i = torch.randint(len(N), (len(N),), generator=g)
        if len(torch.unique(i)) < 5 or len(torch.unique(N[i])) < 2 or len(torch.unique(D[i])) < 2:
            continue
        fits.append(fit_law(N[i], D[i], L[i], starts=starts, init=full))
    return fits


def _check_runs(N, D, loss, need: int = 5) -> tuple[Tensor, Tensor, Tensor]:
    """log N, log D, log loss as float64 tensors, or an error that names what is wrong."""
    values = {}
    for name, v in (("N", N), ("D", D), ("loss", loss)):
        try:
            t = torch.as_tensor(v, dtype=torch.float64).flatten()
        except (TypeError, ValueError, RuntimeError):
            raise TypeError(f"{name} must be a sequence of numbers, got {type(v).__name__}") from None
        if not torch.isfinite(t).all() or not (t > 0).all():
            raise ValueError(f"every {name} must be a finite number > 0 (the law is fitted in logarithms), got "
                             f"{t[~(torch.isfinite(t) & (t > 0))][:3].tolist()}")
        values[name] = t
    lengths = {k: len(v) for k, v in values.items()}
    if len(set(lengths.values())) != 1:
        raise ValueError(f"N, D and loss must have one entry per run, got lengths {lengths}")
    if lengths["N"] < need:
        raise ValueError(f"at least {need} runs are needed, got {lengths['N']}")
    if need == 5 and (len(torch.unique(values["N"])) < 2 or len(torch.unique(values["D"])) < 2):
        raise ValueError("the runs need at least 2 distinct N and 2 distinct D: with one of them fixed the "
                         "law's two terms cannot be told apart")
    return values["N"].log(), values["D"].log(), values["loss"].log()


# ---- one training run, as the sweep and the chapter run it --------------------------------------------

def train_and_evaluate(model: torch.nn.Module, data, *, steps: int, batch_size: int, block_size: int, lr: float,
                       seed: int, warmup_steps: int | None = None, eval_windows: int | None = None,
                       device: str = "auto", dtype: str = "float32", out_dir: str | None = None) -> dict:
    """Train `model` with chapter 7's trainer for `steps` steps of batch_size × block_size tokens of
    data = (train_tokens, val_tokens), then measure its loss; returns a dict with the mean loss per
    token on `eval_windows` windows spread evenly over each split ("val", "train"; default: as many
    as the validation split holds without overlap, so all of it), the tokens seen, the training
    seconds and the loss of every step.

    The recipe is the trainer's: AdamW (β = 0.9, 0.99; weight decay 0.1 on the weight matrices),
    a linear warm-up over `warmup_steps` (default steps // 20, at least 1), a cosine decay to lr / 10
    at the last step, gradient clipping at 1, no dropout. Build the model under torch.manual_seed
    first: the trainer seeds the batches with `seed`, the model's initial weights are the caller's.
    """
    import tempfile
    import time

    from lmbook.trainer import Trainer, TrainConfig

    warmup = max(1, steps // 20) if warmup_steps is None else warmup_steps
    eval_windows = eval_windows or max(1, (len(data[1]) - 1) // block_size)
    with tempfile.TemporaryDirectory() as scratch:
        # many small models: compiling each one would not pay on a CPU
        config = TrainConfig(block_size=block_size, batch_size=batch_size, max_steps=steps, lr=lr, min_lr=lr / 10,
                             warmup_steps=warmup, dropout=0.0, eval_windows=eval_windows, seed=seed, device=device,
                             dtype=dtype, progress=False, checkpoint_every=0, out_dir=out_dir or scratch,
                             compile=None if torch.cuda.is_available() and device != "cpu" else False)
        trainer = Trainer(config, model=model, data=data)
        start = time.perf_counter()
        losses = torch.stack([trainer.train_step(trainer.sampler.next_step()) for _ in range(steps)]).tolist()
        seconds = time.perf_counter() - start
        if not all(map(math.isfinite, losses)):
            raise FloatingPointError(f"a training loss is not finite (first at step "
                                     f"{next(i for i, v in enumerate(losses) if not math.isfinite(v))}); lower lr={lr}")
        result = trainer.evaluate()
    return {"val": result["val"], "train": result["train"], "tokens": steps * batch_size * block_size,
            "seconds": seconds, "train_loss": losses}
