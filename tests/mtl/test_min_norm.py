"""Min-norm solvers (spec 07 §2.4, §3.1): C7.2 (KKT), C7.3 (closed form), C7.4 (solver agreement
with the exact QP), C7.5 (Gram = explicit vectors), C7.6 (the proof counterexample), C7.7
(orthogonal gradients), C7.8 (zero in the hull), degenerate inputs; solver time is measured in
benchmarks/mtl.py, not asserted here."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kexue.mtl import MIN_NORM_METHODS, min_norm_weights

from .conftest import SIZES, random_grads

EXACT = ["auto", "wolfe", "qp"]
ITERATIVE = ["fw", "fw_fixed", "averaging", "sener", "softmax_gd"]
SEEDS = range(100)  # spec 07 §5: seeds 0..99


def objective(gram: torch.Tensor, alpha: torch.Tensor) -> float:
    return float(alpha @ gram @ alpha)


def assert_simplex(alpha: torch.Tensor) -> None:
    assert alpha.dtype == torch.float64
    assert bool((alpha >= 0).all())
    assert float(alpha.sum()) == pytest.approx(1.0, abs=1e-12)


def assert_kkt(grads: torch.Tensor, alpha: torch.Tensor, tol: float) -> None:
    """C7.2: ⟨gᵢ,u*⟩ = ‖u*‖² where αᵢ > 0 and ≥ ‖u*‖² elsewhere; min ≥ ½‖u*‖² (scale max‖g‖²)."""
    u = alpha @ grads
    inner = grads @ u
    norm_sq = float(u @ u)
    scale = float((grads * grads).sum(1).max())
    active = alpha > 1e-9
    assert float((inner[active] - norm_sq).abs().max()) <= tol * scale
    assert float(inner.min()) >= norm_sq - tol * scale
    assert float(inner.min()) >= 0.5 * norm_sq - tol * scale


# --- C7.3: the two-task closed form -------------------------------------------------------------


def test_closed_form_worked_example() -> None:
    """C7.3: g₁ = (1,0), g₂ = (0,2) → α = (0.8, 0.2), u* = (0.8, 0.4), ‖u*‖² = 0.8 = ⟨gᵢ,u*⟩."""
    grads = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    for kwargs in ({"gram": grads @ grads.T}, {"grads": grads}):
        for method in ("auto", "closed2", "wolfe", "qp"):
            alpha, info = min_norm_weights(method=method, **kwargs)  # type: ignore[arg-type]
            torch.testing.assert_close(alpha, torch.tensor([0.8, 0.2], dtype=torch.float64))
            u = alpha @ grads
            torch.testing.assert_close(u, torch.tensor([0.8, 0.4], dtype=torch.float64))
            assert info.norm_sq == pytest.approx(0.8, rel=1e-14)
            torch.testing.assert_close(grads @ u, torch.full((2,), 0.8, dtype=torch.float64))
            assert info.method == ("closed2" if method == "auto" else method)


def test_closed_form_matches_grid() -> None:
    """C7.3: the closed form equals the brute-force minimum over a γ-grid of step 1e-5 (1e-8)."""
    grid = torch.linspace(0, 1, 100_001, dtype=torch.float64)
    for seed in range(25):
        grads = random_grads(2, 1 + seed % 6, seed)
        gram = grads @ grads.T
        alpha, info = min_norm_weights(gram, "closed2")
        points = grid[:, None] * grads[0] + (1 - grid[:, None]) * grads[1]
        grid_min = float(points.pow(2).sum(1).min())
        assert info.norm_sq <= grid_min + 1e-12
        assert grid_min - info.norm_sq <= 1e-8
        assert_kkt(grads, alpha, 1e-12)


def test_closed_form_exact_ends_and_identical() -> None:
    """Exact 1/0 when one gradient is the min-norm point (not LibMTL's 0.999/0.001); ½ if equal."""
    g = torch.tensor([[1.0, 0.0], [2.0, 1.0]], dtype=torch.float64)  # ⟨g1,g2⟩ = 2 ≥ ‖g1‖² = 1
    alpha, _ = min_norm_weights(g @ g.T, "closed2")
    assert alpha.tolist() == [1.0, 0.0]
    alpha, _ = min_norm_weights(g.flip(0) @ g.flip(0).T, "closed2")
    assert alpha.tolist() == [0.0, 1.0]
    same = torch.tensor([[3.0, -1.0], [3.0, -1.0]], dtype=torch.float64)
    alpha, info = min_norm_weights(same @ same.T, "closed2")
    assert alpha.tolist() == [0.5, 0.5]
    assert info.degenerate == "identical"


# --- C7.4: every solver reaches the QP optimum --------------------------------------------------


@pytest.mark.parametrize(("n", "d"), SIZES)
def test_exact_solvers_reach_qp_optimum(n: int, d: int) -> None:
    """C7.4 (exact part) and C7.2 on seeds 0..99: auto/wolfe = qp to 1e-12·max‖g‖², KKT."""
    for seed in SEEDS:
        grads = random_grads(n, d, seed)
        gram = grads @ grads.T
        scale = float(gram.diagonal().max())
        _, reference = min_norm_weights(gram, "qp")
        for method in EXACT:
            alpha, info = min_norm_weights(gram, method)
            assert_simplex(alpha)
            assert info.converged
            assert abs(info.norm_sq - reference.norm_sq) <= 1e-12 * scale, (method, seed)
            assert_kkt(grads, alpha, 1e-9)
            assert info.gap <= 1e-9 * scale


# (method, max_iter, seeds, relative tolerance on ‖u*‖² when the optimum is away from 0,
#  absolute tolerance relative to max‖g‖² always). Measured worst cases in the comments.
ITERATIVE_CASES = [
    ("fw", 2000, 20, 5e-3, 1e-3),  # exact line search zig-zags: worst 2.3e-3 rel, 2.8e-4 abs
    ("fw_fixed", None, 4, 1e-6, 1e-6),  # 2·10⁴ steps γ = 2/(k+2): 2e-7 rel
    ("averaging", None, 4, 1e-4, 1e-5),  # (sol-1), 2·10⁴ steps: median 1e-8, worst 3e-5 rel
    ("sener", None, 20, 1e-7, 5e-3),  # near-singular Grams (n > d) converge slowly: 1e-3 abs
    ("softmax_gd", None, 20, 1e-3, 1e-4),  # α = softmax(β) never reaches 0: 2e-4 rel
]


@pytest.mark.parametrize(("method", "max_iter", "n_seeds", "rel_tol", "abs_tol"), ITERATIVE_CASES)
def test_iterative_solvers_approach_qp_optimum(
    method: str, max_iter: int | None, n_seeds: int, rel_tol: float, abs_tol: float
) -> None:
    """C7.4: the iterative solvers give the QP's ‖u*‖² within their (measured) accuracy."""
    for n, d in SIZES:
        for seed in range(n_seeds):
            grads = random_grads(n, d, seed)
            gram = grads @ grads.T
            scale = float(gram.diagonal().max())
            _, reference = min_norm_weights(gram, "qp")
            kwargs = {"tol": 0.0} if method == "fw" else {}
            alpha, info = min_norm_weights(gram, method, max_iter=max_iter, **kwargs)  # type: ignore[arg-type]
            assert_simplex(alpha)
            excess = info.norm_sq - reference.norm_sq
            assert excess >= -1e-12 * scale  # nobody beats the exact optimum
            assert excess <= abs_tol * scale, (method, n, d, seed, excess / scale)
            if n <= d:  # full-rank G: ‖u*‖ is bounded away from 0, relative error meaningful
                assert excess <= rel_tol * reference.norm_sq, (method, n, d, seed)


def test_averaging_matches_qp_to_1e6_on_the_median() -> None:
    """C7.4: qp vs averaging (2·10⁴ iterations) at 1e-6 relative — holds for the median instance
    (the spec's single n = 5 example); the worst of 10 seeds is within 1e-4 (measured 1e-5)."""
    errors = []
    for seed in range(10):
        grads = random_grads(5, 20, seed)
        gram = grads @ grads.T
        _, reference = min_norm_weights(gram, "qp")
        _, info = min_norm_weights(gram, "averaging")
        assert info.iterations == 20_000 or info.converged
        errors.append((info.norm_sq - reference.norm_sq) / reference.norm_sq)
    assert float(np.median(errors)) <= 1e-6
    assert max(errors) <= 1e-4


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fw_fixed", "averaging"])
def test_slow_averaging_solvers_all_seeds(method: str) -> None:
    """C7.4 over all 100 seeds for the 2·10⁴-iteration solvers (slow: ~1 min)."""
    for n, d in SIZES:
        for seed in SEEDS:
            grads = random_grads(n, d, seed)
            gram = grads @ grads.T
            _, reference = min_norm_weights(gram, "qp")
            _, info = min_norm_weights(gram, method)  # type: ignore[arg-type]
            assert info.norm_sq - reference.norm_sq <= 1e-4 * float(gram.diagonal().max())


def test_qp_scipy_path_for_large_n() -> None:
    """n > 12: the reference switches to SLSQP + KKT polish; it agrees with Wolfe."""
    grads = random_grads(14, 30, 3)
    gram = grads @ grads.T
    alpha_qp, info_qp = min_norm_weights(gram, "qp")
    alpha_w, info_w = min_norm_weights(gram, "wolfe")
    assert info_qp.norm_sq == pytest.approx(info_w.norm_sq, rel=1e-9)
    torch.testing.assert_close(alpha_qp, alpha_w, atol=1e-7, rtol=0)
    assert_kkt(grads, alpha_qp, 1e-9)


# --- C7.5: Gram form = explicit vectors --------------------------------------------------------


@pytest.mark.parametrize(("n", "d"), [(2, 5), (3, 10), (5, 20), (10, 30)])
def test_gram_and_explicit_vectors_agree(n: int, d: int) -> None:
    """C7.5: same α from M and from G (1e-10) for every solver except softmax_gd (Adam's
    normalised steps amplify rounding differences; it agrees in ‖u*‖² to its accuracy)."""
    for seed in range(8):
        grads = random_grads(n, d, seed)
        gram = grads @ grads.T
        methods = [m for m in MIN_NORM_METHODS if m != "closed2" or n == 2]
        for method in methods:
            kwargs = {"max_iter": 2000} if method in ("fw_fixed", "averaging") else {}
            a_gram, i_gram = min_norm_weights(gram, method, **kwargs)  # type: ignore[arg-type]
            a_vec, i_vec = min_norm_weights(grads=grads, method=method, **kwargs)  # type: ignore[arg-type]
            if method == "softmax_gd":
                assert i_vec.norm_sq == pytest.approx(i_gram.norm_sq, rel=1e-3)
                continue
            torch.testing.assert_close(a_vec, a_gram, atol=1e-10, rtol=0)
            assert i_vec.norm_sq == pytest.approx(i_gram.norm_sq, rel=1e-9, abs=1e-14)


def test_explicit_vectors_degenerate_hull_same_u() -> None:
    """n > d: α is not unique when 0 is in the hull, but u* (here 0) is the same in both forms."""
    for seed in range(5):
        grads = random_grads(10, 3, seed)
        for method in ("auto", "qp", "fw"):
            _, i_gram = min_norm_weights(grads @ grads.T, method)  # type: ignore[arg-type]
            _, i_vec = min_norm_weights(grads=grads, method=method)  # type: ignore[arg-type]
            assert abs(i_gram.norm_sq - i_vec.norm_sq) <= 1e-6 * float((grads**2).sum(1).max())


# --- C7.6, C7.7, C7.8 --------------------------------------------------------------------------


def test_mgda_proof_counterexample() -> None:
    """C7.6: for SPD M, xᵀy ≥ 0 ⇔ xᵀMy ≥ 0 is false: x = (1,−2), y = (1,1), M = diag(3,1)."""
    x = torch.tensor([1.0, -2.0], dtype=torch.float64)
    y = torch.tensor([1.0, 1.0], dtype=torch.float64)
    m = torch.diag(torch.tensor([3.0, 1.0], dtype=torch.float64))
    assert bool((torch.linalg.eigvalsh(m) > 0).all())
    assert float(x @ y) == -1.0
    assert float(x @ m @ y) == 1.0


@pytest.mark.parametrize("n", [2, 3, 5, 8])
def test_orthogonal_gradients_weights_inverse_square_norms(n: int) -> None:
    """C7.7: mutually orthogonal gᵢ → αᵢ ∝ 1/‖gᵢ‖² (5 decimals; exact solvers to 1e-12)."""
    rng = np.random.default_rng(n)
    q, _ = np.linalg.qr(rng.standard_normal((n + 3, n + 3)))
    norms = rng.uniform(0.1, 10.0, n)
    grads = torch.from_numpy(norms[:, None] * q[:n])
    expected = torch.from_numpy((1 / norms**2) / (1 / norms**2).sum())
    gram = grads @ grads.T
    for method in ["auto", "wolfe", "qp", *(["closed2"] if n == 2 else [])]:
        alpha, _ = min_norm_weights(gram, method)  # type: ignore[arg-type]
        torch.testing.assert_close(alpha, expected, atol=1e-12, rtol=0)
    # Iterative solvers, given enough iterations: FW and softmax to 5 decimals (measured ≤ 6e-7),
    # the slower sener/fw_fixed/averaging to 5e-4 (measured ≤ 2e-4).
    for method, atol in [("fw", 5e-6), ("softmax_gd", 5e-6), ("sener", 5e-4), ("fw_fixed", 5e-4)]:
        alpha, _ = min_norm_weights(gram, method, max_iter=20_000, tol=0.0)  # type: ignore[arg-type]
        torch.testing.assert_close(alpha, expected, atol=atol, rtol=0)
    alpha, _ = min_norm_weights(gram, "averaging")
    torch.testing.assert_close(alpha, expected, atol=5e-4, rtol=0)
    # MGDA favours the task with the smallest gradient (spec 07 pitfall 2).
    alpha, _ = min_norm_weights(grads @ grads.T)
    assert int(alpha.argmax()) == int(np.argmin(norms))


@pytest.mark.parametrize("seed", range(10))
def test_zero_in_hull_is_pareto_stationary(seed: int) -> None:
    """C7.8: n = 10, d = 3 gradients whose hull contains 0 → ‖u*‖ < 1e-8, flagged stationary."""
    grads = random_grads(10, 3, seed)
    grads = grads - grads.mean(0)  # the centroid 0 lies in the hull
    for kwargs in ({"grads": grads}, {"gram": grads @ grads.T}):
        for method in EXACT:
            alpha, info = min_norm_weights(method=method, **kwargs)  # type: ignore[arg-type]
            u = alpha @ grads
            assert float(u.norm()) < 1e-8 * float(grads.norm(dim=1).max())
            assert info.pareto_stationary


def test_pareto_stationary_flag_false_away_from_zero() -> None:
    grads = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], dtype=torch.float64)
    alpha, info = min_norm_weights(grads @ grads.T)
    torch.testing.assert_close(alpha, torch.tensor([0.5, 0.5, 0.0], dtype=torch.float64))
    assert not info.pareto_stationary
    assert info.norm_sq == pytest.approx(0.5)
    assert info.min_inner == pytest.approx(0.5)


# --- degenerate inputs and validation -----------------------------------------------------------


def test_degenerate_inputs() -> None:
    # One task.
    alpha, info = min_norm_weights(torch.tensor([[4.0]], dtype=torch.float64))
    assert alpha.tolist() == [1.0]
    assert info.degenerate == "single_task"
    assert not info.pareto_stationary
    # All gradients zero: uniform α, u = 0.
    alpha, info = min_norm_weights(torch.zeros(3, 3, dtype=torch.float64))
    torch.testing.assert_close(alpha, torch.full((3,), 1 / 3, dtype=torch.float64))
    assert info.degenerate == "all_zero"
    assert info.pareto_stationary
    # One zero task gradient: that task alone, u = 0 (Pareto stationary), for every method.
    grads = torch.tensor([[1.0, 2.0], [0.0, 0.0], [-3.0, 1.0]], dtype=torch.float64)
    for method in MIN_NORM_METHODS:
        if method == "closed2":
            continue
        alpha, info = min_norm_weights(grads @ grads.T, method)  # type: ignore[arg-type]
        assert alpha.tolist() == [0.0, 1.0, 0.0]
        assert info.degenerate == "zero_gradient"
        assert info.pareto_stationary
    # Identical gradients: uniform α, u = g.
    same = torch.tensor([[1.0, -2.0, 0.5]] * 4, dtype=torch.float64)
    alpha, info = min_norm_weights(grads=same)
    torch.testing.assert_close(alpha, torch.full((4,), 0.25, dtype=torch.float64))
    assert info.degenerate == "identical"
    assert info.norm_sq == pytest.approx(5.25)


def test_duplicate_and_dominated_gradients() -> None:
    """Duplicates among other gradients and near-collinear sets still reach the optimum."""
    base = random_grads(4, 6, 11)
    grads = torch.cat([base, base[:2], 2 * base[2:3]])
    gram = grads @ grads.T
    _, reference = min_norm_weights(gram, "qp")
    alpha, info = min_norm_weights(gram)
    assert info.norm_sq == pytest.approx(reference.norm_sq, rel=1e-10)
    assert_kkt(grads, alpha, 1e-9)
    collinear = torch.tensor([[1.0, 0.0], [1.0, 1e-9], [1.0, -1e-9]], dtype=torch.float64)
    alpha, info = min_norm_weights(grads=collinear)
    assert info.norm_sq == pytest.approx(1.0, rel=1e-12)
    assert_simplex(alpha)


def test_scale_invariance_and_device_dtype() -> None:
    grads = random_grads(5, 8, 2)
    gram = grads @ grads.T
    alpha, _ = min_norm_weights(gram)
    for c in (1e-12, 1e-3, 7.0, 1e9):
        scaled, info = min_norm_weights(gram * c)
        torch.testing.assert_close(scaled, alpha, atol=1e-10, rtol=0)
        assert info.norm_sq == pytest.approx(c * float(alpha @ gram @ alpha), rel=1e-10)
    alpha32, _ = min_norm_weights(gram.float())
    assert alpha32.dtype == torch.float64
    torch.testing.assert_close(alpha32, alpha, atol=1e-5, rtol=0)
    alpha_np, _ = min_norm_weights(gram.numpy())
    torch.testing.assert_close(alpha_np, alpha)


def test_bad_inputs() -> None:
    good = torch.eye(2, dtype=torch.float64)
    with pytest.raises(TypeError, match="exactly one"):
        min_norm_weights()
    with pytest.raises(TypeError, match="exactly one"):
        min_norm_weights(good, grads=good)
    with pytest.raises(ValueError, match="method must be one of"):
        min_norm_weights(good, "newton")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="square"):
        min_norm_weights(torch.ones(2, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match="2-D"):
        min_norm_weights(torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        min_norm_weights(torch.tensor([[1.0, float("nan")], [float("nan"), 1.0]]))
    with pytest.raises(ValueError, match="negative diagonal"):
        min_norm_weights(torch.tensor([[1.0, 0.0], [0.0, -1.0]]))
    with pytest.raises(ValueError, match="not symmetric"):
        min_norm_weights(torch.tensor([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="two-task"):
        min_norm_weights(torch.eye(3), "closed2")
    with pytest.raises(ValueError, match="max_iter"):
        min_norm_weights(good, "fw", max_iter=0)
    with pytest.raises(TypeError, match="numpy"):
        min_norm_weights([[1.0]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="no rows"):
        min_norm_weights(grads=torch.zeros(0, 3))


# --- properties (hypothesis) -------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 10),
    d=st.integers(1, 12),
    seed=st.integers(0, 2**32 - 1),
    log_scale=st.floats(-6, 6),
    rank_drop=st.booleans(),
)
def test_property_auto_is_exact(
    n: int, d: int, seed: int, log_scale: float, rank_drop: bool
) -> None:
    """auto (Wolfe/closed form) = exact QP, KKT (C7.2), permutation invariance of u*."""
    grads = random_grads(n, d, seed) * 10**log_scale
    if rank_drop and n >= 3:
        grads[-1] = 0.3 * grads[0] + 0.7 * grads[1]  # a point inside an edge of the hull
    gram = grads @ grads.T
    scale = float(gram.diagonal().max())
    alpha, info = min_norm_weights(gram)
    _, reference = min_norm_weights(gram, "qp")
    assert_simplex(alpha)
    assert abs(info.norm_sq - reference.norm_sq) <= 1e-11 * scale
    if info.degenerate is None:
        assert_kkt(grads, alpha, 1e-9)
    perm = torch.from_numpy(np.random.default_rng(seed).permutation(n))
    alpha_p, info_p = min_norm_weights(gram[perm][:, perm])
    assert abs(info_p.norm_sq - info.norm_sq) <= 1e-11 * scale
    u, u_p = alpha @ grads, alpha_p @ grads[perm]
    assert float((u - u_p).norm()) <= 1e-6 * math.sqrt(scale)


@pytest.mark.parametrize("n", [13, 20, 40])
def test_qp_reference_is_exact_beyond_enumeration_on_ill_scaled_gradients(n: int) -> None:
    # Gradient norms over four decades: SLSQP stopped up to 98 % above the optimum here.
    for seed in range(5):
        rng = np.random.default_rng(seed)
        grads = rng.standard_normal((n, 30)) * 10 ** rng.uniform(-2, 2, size=(n, 1))
        gram = torch.from_numpy(grads @ grads.T)
        alpha_qp, info_qp = min_norm_weights(gram, "qp")
        alpha_wolfe, _ = min_norm_weights(gram, "wolfe")
        value_qp = float(alpha_qp @ gram @ alpha_qp)
        value_wolfe = float(alpha_wolfe @ gram @ alpha_wolfe)
        assert info_qp.converged
        assert value_qp == pytest.approx(value_wolfe, rel=1e-10)
        assert info_qp.gap <= 1e-10 * float(gram.diagonal().max())
