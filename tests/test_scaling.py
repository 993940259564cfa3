"""lmbook.scaling: the approach-3 fit recovers the exponents of a law it did not see, from runs drawn
from that law with noise, on a grid shaped like chapter 9's sweep; the Huber loss shrugs off one bad
run; the compute-optimal allocation equals a numerical search; the IsoFLOP parabola finds a known
vertex and says when it extrapolates; bad input is a clear error. Also the training helper the sweep
and the chapter share."""

import math

import pytest
import torch

from lmbook import scaling
from lmbook.scaling import ScalingLaw, bootstrap, compute_optimal, fit_law, isoflop_vertex, power_law

# a law in the range of a character-level model (Chinchilla's own fit is E=1.69, A=406.4, B=410.7,
# alpha=0.34, beta=0.28 for BPE tokens at far larger N and D)
TRUE = ScalingLaw(E=1.1, A=30.0, B=60.0, alpha=0.36, beta=0.30)
SIZES = [7e3, 2.5e4, 5.5e4, 1.5e5, 3.1e5, 6.6e5]
BUDGETS = [1.6e5, 4e5, 1e6, 2.5e6]


def synthetic_runs(law: ScalingLaw, noise: float, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    N = torch.tensor(SIZES, dtype=torch.float64).repeat_interleave(len(BUDGETS))
    D = torch.tensor(BUDGETS, dtype=torch.float64).repeat(len(SIZES))
    L = law(N, D) * torch.exp(noise * torch.randn(len(N), generator=g, dtype=torch.float64))
    return N, D, L


def test_fit_recovers_the_law_without_noise():
    fit = fit_law(*synthetic_runs(TRUE, noise=0.0))
    for name in ("E", "A", "B", "alpha", "beta"):
        assert math.isclose(getattr(fit, name), getattr(TRUE, name), rel_tol=1e-3), (name, fit)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_fit_recovers_the_exponents_from_noisy_runs(seed):
    """0.5% multiplicative noise, about the seed-to-seed spread of chapter 9's runs."""
    N, D, L = synthetic_runs(TRUE, noise=0.005, seed=seed)
    fit = fit_law(N, D, L)
    assert abs(fit.alpha - TRUE.alpha) < 0.1 and abs(fit.beta - TRUE.beta) < 0.05, fit
    assert abs(fit.E - TRUE.E) < 0.15, fit
    # what the chapter uses the fit for: a prediction for a larger model, outside the grid
    assert abs(fit(1.5e6, 4e5) - TRUE(1.5e6, 4e5)) < 0.03, fit


def test_one_bad_run_does_not_drag_the_huber_fit():
    N, D, L = synthetic_runs(TRUE, noise=0.0)
    L[5] *= 1.5  # a run that diverged
    huber = fit_law(N, D, L)
    squares = fit_law(N, D, L, delta=10.0)  # δ far above every residual: least squares
    huber_error = abs(huber(1.5e6, 4e5) - TRUE(1.5e6, 4e5))
    assert huber_error < 0.01 < abs(squares(1.5e6, 4e5) - TRUE(1.5e6, 4e5)), (huber, squares)


def test_compute_optimal_equals_a_numerical_search():
    for C in (1e12, 1e15, 1e21):
        N_opt, D_opt = compute_optimal(TRUE, C)
        assert math.isclose(6 * N_opt * D_opt, C, rel_tol=1e-9)
        grid = torch.logspace(math.log10(N_opt) - 2, math.log10(N_opt) + 2, 40001, dtype=torch.float64)
        best = grid[torch.argmin(TRUE(grid, C / (6 * grid)))].item()
        assert math.isclose(best, N_opt, rel_tol=1e-3), (C, best, N_opt)


def test_isoflop_vertex_finds_a_parabolas_vertex_and_says_when_it_extrapolates():
    logN = torch.linspace(math.log(1e4), math.log(1e6), 5, dtype=torch.float64)
    loss = 0.2 * (logN - math.log(1e5)) ** 2 + 1.5
    N_opt, info = isoflop_vertex(logN.exp(), loss)
    assert math.isclose(N_opt, 1e5, rel_tol=1e-9) and info["inside"] and math.isclose(info["loss_at_vertex"], 1.5)
    _, outside = isoflop_vertex(logN.exp(), 0.2 * (logN - math.log(5e6)) ** 2 + 1.5)
    assert not outside["inside"]
    with pytest.raises(ValueError, match="do not curve upward"):
        isoflop_vertex(logN.exp(), -loss + 5)


def test_isoflop_vertices_of_the_law_follow_compute_optimal():
    """Approach 2 on runs of the law itself lands on approach 3's closed form."""
    vertices = []
    for C in (1e12, 1e13, 1e14):
        N_opt, _ = compute_optimal(TRUE, C)
        N = N_opt * torch.logspace(-0.6, 0.6, 7, dtype=torch.float64)
        vertex, _ = isoflop_vertex(N, TRUE(N, C / (6 * N)))
        assert math.isclose(vertex, N_opt, rel_tol=0.05)
        vertices.append(vertex)
    _, a = power_law([1e12, 1e13, 1e14], vertices)
    assert abs(a - TRUE.beta / (TRUE.alpha + TRUE.beta)) < 0.01


def test_power_law_recovers_exponent():
    k, a = power_law([1, 10, 100, 1000], [3 * x ** 0.5 for x in (1, 10, 100, 1000)])
    assert math.isclose(k, 3) and math.isclose(a, 0.5)


def test_bootstrap_spread_shrinks_with_less_noise():
    spreads = []
    for noise in (0.02, 0.002):
        fits = bootstrap(*synthetic_runs(TRUE, noise=noise), n=8, seed=0)
        spreads.append(torch.tensor([f(1.5e6, 4e5) for f in fits]).std().item())
    assert spreads[1] < spreads[0]


@pytest.mark.parametrize("args, match", [
    (([1e4, 2e4], [1e5, 1e5], [2.0, 1.9]), "at least 5 runs"),
    (([1e4] * 5, [1e5, 2e5, 3e5, 4e5, 5e5], [2.0] * 5), "at least 2 distinct N and 2 distinct D"),
    (([1e4, 2e4, 3e4, 4e4, 5e4], [1e5] * 4, [2.0] * 5), "one entry per run"),
    (([1e4, 2e4, 3e4, 4e4, -5e4], [1e5] * 5, [2.0] * 5), "every N must be a finite number > 0"),
    (([1e4, 2e4, 3e4, 4e4, 5e4], [1e5, 2e5, 3e5, 4e5, 5e5], [2.0, 2, 2, 2, float("nan")]),
     "every loss must be a finite number > 0"),
    (("abc", [1e5] * 5, [2.0] * 5), "N must be a sequence of numbers"),
])
def test_bad_runs_are_clear_errors(args, match):
    with pytest.raises((ValueError, TypeError), match=match):
        fit_law(*args)


def test_other_bad_arguments():
    with pytest.raises(ValueError, match="needs A, B, alpha, beta > 0"):
        compute_optimal(ScalingLaw(1.0, 1.0, 1.0, -0.1, 0.3), 1e12)
    with pytest.raises(ValueError, match="at least 3 distinct model sizes"):
        isoflop_vertex([1e4, 1e4, 2e4], [2.0, 2.1, 1.9])
    with pytest.raises(ValueError, match="n must be an int >= 1"):
        bootstrap(*synthetic_runs(TRUE, 0.0), n=0)


def test_train_and_evaluate_runs_the_trainers_recipe():
    from lmbook.llama import Llama, LlamaConfig

    ids = (torch.arange(3000) % 7).numpy()
    torch.manual_seed(0)
    model = Llama(LlamaConfig(7, 16, 1, 2, 8))
    result = scaling.train_and_evaluate(model, (ids[:2500], ids[2500:]), steps=40, batch_size=8, block_size=16,
                                        lr=1e-2, seed=0, device="cpu")
    assert result["tokens"] == 40 * 8 * 16 and len(result["train_loss"]) == 40
    assert result["val"] < 0.5 * math.log(7), result["val"]  # it learned the period-7 text
    torch.manual_seed(0)
    again = scaling.train_and_evaluate(Llama(LlamaConfig(7, 16, 1, 2, 8)), (ids[:2500], ids[2500:]), steps=40,
                                       batch_size=8, block_size=16, lr=1e-2, seed=0, device="cpu")
    assert again["val"] == result["val"], "the same seed and settings give the same run on a CPU"


# ---- the committed sweep (bench/scaling.py): what chapter 9 says about it holds ----------------------

def _committed(profile: str = "cpu") -> dict:
    from pathlib import Path
    import json

    path = Path(__file__).resolve().parent.parent / "bench" / "results" / f"scaling_{profile}.json"
    if not path.is_file():
        pytest.skip(f"{path.name} has not been measured")
    return json.loads(path.read_text())


def test_committed_sweep_spans_two_orders_of_magnitude_and_three_budgets_per_size():
    sweep = _committed()
    points = sweep["points"]
    sizes = sorted({p["N"] for p in points})
    assert len(sizes) >= 6 and sizes[-1] / sizes[0] >= 95, sizes
    for N in sizes:
        assert len({p["D"] for p in points if p["N"] == N}) >= 3, f"N = {N} has fewer than 3 token budgets"
    for p in points:
        runs = [r for r in sweep["runs"] if tuple(r["size"]) == tuple(p["size"]) and r["steps"] == p["steps"]]
        assert math.isclose(p["val"], sum(r["val"] for r in runs) / len(runs)) and len(runs) == p["seeds"]


def test_committed_prediction_was_made_before_the_held_out_model_was_trained():
    sweep = _committed()
    prediction, held = sweep["prediction"], sweep["held_out"]
    assert prediction["predicted_at"] < held["trained_at"], "the prediction is written before the run"
    assert prediction["N"] > max(p["N"] for p in sweep["points"]), "the held-out model is larger than any in the sweep"
    assert len(held["runs"]) >= 3
    assert math.isclose(held["error"], prediction["predicted"] - held["mean"])
    law = ScalingLaw(**sweep["fit"])
    assert math.isclose(law(prediction["N"], prediction["D"]), prediction["predicted"], rel_tol=1e-12)


def test_committed_fit_is_the_fit_of_its_points():
    sweep = _committed()
    points = sweep["points"]
    refit = fit_law([p["N"] for p in points], [p["D"] for p in points], [p["val"] for p in points])
    committed = ScalingLaw(**sweep["fit"])
    for N, D in [(1e4, 1e5), (1e6, 3e6), (sweep["prediction"]["N"], sweep["prediction"]["D"])]:
        assert abs(refit(N, D) - committed(N, D)) < 1e-3
