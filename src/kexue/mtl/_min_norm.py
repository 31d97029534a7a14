"""Minimum-norm point of the convex hull of task gradients: MGDA's inner problem (spec 07 §2.4).

    min_{α ∈ simplex} ½‖Σᵢ αᵢ gᵢ‖² = ½ αᵀMα,   M = GGᵀ (the Gram matrix),   u* = Gᵀα*   (q-3)

Solvers (spec 07 §3.1; ``method=``), all in float64 on small NumPy arrays (the problem is n × n):

* ``"closed2"`` — the two-task closed form (MGDA Algorithm 1), exact 1/0 at the ends, ½ for
  identical gradients;
* ``"wolfe"`` — Wolfe's minimum-norm-point algorithm (an exact active-set method over affinely
  independent "corrals"; finite termination). kexue's addition: it is what ``"auto"`` uses for
  n ≥ 3, because the spec requires the default to reach the exact optimum and Frank–Wolfe does not;
* ``"fw"`` — Frank–Wolfe with exact line search in Gram form (the post's solution 2);
* ``"fw_fixed"`` — Frank–Wolfe with the open-loop step ``γₖ = 2/(k+2)`` from ``α⁰ = 1/n``;
* ``"averaging"`` — the post's averaging iteration (sol-1): ``u ← (k·u + g_τ)/(k+1)`` from the
  mean gradient;
* ``"sener"`` — the official-code family: start from the best pair (closed form over all pairs),
  then projected-gradient steps with a two-point exact line search;
* ``"softmax_gd"`` — the post's unconstrained parametrisation ``α = softmax(β)``, Adam on β;
* ``"qp"`` — the exact reference: enumerate every support (n ≤ 12; solve its KKT system, keep the
  feasible minimum), else an exact reduction to non-negative least squares (SciPy's
  Lawson–Hanson ``nnls``, lazily imported; see :func:`_solve_qp_nnls`) polished on its support;
* ``"auto"`` — n = 1: [1]; n = 2: ``closed2``; else ``wolfe``.

Every solver runs either on the Gram matrix or on explicit gradient vectors (``grads=``), so the
two forms can be checked against each other (C7.5). Degenerate inputs are handled before the
solver: one task, all-zero gradients (uniform α, Pareto stationary), a zero task gradient (that
task alone, u = 0) and identical gradients (uniform α).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Literal, Protocol

import numpy as np
import numpy.typing as npt
import torch

__all__ = ["MIN_NORM_METHODS", "MinNormInfo", "MinNormMethod", "min_norm_weights"]

MinNormMethod = Literal[
    "auto", "closed2", "wolfe", "fw", "fw_fixed", "averaging", "sener", "softmax_gd", "qp"
]
MIN_NORM_METHODS: tuple[str, ...] = (
    "auto",
    "closed2",
    "wolfe",
    "fw",
    "fw_fixed",
    "averaging",
    "sener",
    "softmax_gd",
    "qp",
)

Array = npt.NDArray[np.float64]

_EPS = float(np.finfo(np.float64).eps)
_DEFAULT_MAX_ITER = {
    "wolfe": 1000,
    "fw": 250,
    "fw_fixed": 20_000,
    "averaging": 20_000,
    "sener": 250,
    "softmax_gd": 2000,
}
_DEFAULT_TOL = {"fw": 1e-5, "sener": 1e-5, "wolfe": 1e-12}
_DEFAULT_GAP_TOL = 1e-10
#: Wolfe: corral vertices whose share wᵢ‖gᵢ‖ of the point (relative) is below this are dropped
_WEIGHT_FLOOR = 1e-12
_QP_ENUMERATION_MAX = 12


@dataclasses.dataclass(frozen=True)
class MinNormInfo:
    """Diagnostics of one :func:`min_norm_weights` call (spec 07 §3.2 step 6), original scale.

    ``norm_sq`` = ‖u*‖² = αᵀMα; ``min_inner`` = minᵢ⟨gᵢ, u*⟩ = minᵢ (Mα)ᵢ (≥ ½‖u*‖² at the optimum,
    ‖u*‖² exactly by KKT, C7.2); ``gap`` = the Frank–Wolfe duality gap αᵀMα − minᵢ(Mα)ᵢ (0 at
    the optimum); ``pareto_stationary`` when ‖u*‖ < ``stationary_tol``·maxᵢ‖gᵢ‖ (u* = 0 within
    tolerance: no common descent direction), when u is below float64's resolution (with vectors
    ‖u‖ ≤ 64√n·ε·Σⱼαⱼ‖gⱼ‖, the rounding of Gᵀα; in Gram form ‖u‖² ≤ 16nε·maxᵢ‖gᵢ‖², that of
    αᵀMα), or when some ⟨gᵢ,u⟩ is negative beyond its rounding, 8ε‖gᵢ‖(nΣⱼαⱼ‖gⱼ‖ + √d‖u‖)
    with vectors, 8nε‖gᵢ‖Σⱼαⱼ‖gⱼ‖ in Gram form (at the optimum ⟨gᵢ,u*⟩ ≥ ‖u*‖² ≥ 0: the
    direction would raise a loss, issue 20);
    ``degenerate`` names an input handled before the
    solver (``"single_task"``, ``"all_zero"``, ``"zero_gradient"``, ``"identical"``) or is None.
    """

    method: str
    iterations: int
    converged: bool
    norm_sq: float
    min_inner: float
    gap: float
    pareto_stationary: bool
    degenerate: str | None = None
    #: the certificate (issue 20): the FW duality gap relative to ‖u‖² (inf when u = 0 and the
    #: gap is not), the support of α, and the KKT residual on it, maxᵢ∈S |⟨gᵢ,u⟩ − ‖u‖²| / ‖u‖²
    #: (0 at the optimum: every active gradient has the same inner product ‖u*‖² with u*)
    relative_gap: float = 0.0
    active: tuple[int, ...] = ()
    kkt_residual: float = 0.0


class _Oracle(Protocol):
    """Inner products of the task gradients, from the Gram matrix or from explicit vectors."""

    n: int
    diag: Array

    def column(self, j: int) -> Array: ...  # (M)_{:, j} = ⟨gᵢ, gⱼ⟩ for all i

    def matvec(self, alpha: Array) -> Array: ...  # Mα = (⟨gᵢ, Gᵀα⟩)ᵢ

    def sub(self, index: list[int]) -> Array: ...  # M restricted to rows/columns ``index``

    def full(self) -> Array: ...  # the whole Gram matrix

    def resolution(self, xx: float) -> float: ...  # rounding of the inner products at ‖x‖² = xx


class _GramOracle:
    def __init__(self, gram: Array) -> None:
        self.m = gram
        self.n = gram.shape[0]
        self.diag: Array = np.ascontiguousarray(np.diag(gram))

    def column(self, j: int) -> Array:
        return self.m[:, j]

    def matvec(self, alpha: Array) -> Array:
        return self.m @ alpha

    def sub(self, index: list[int]) -> Array:
        sub: Array = self.m[index][:, index]
        return sub

    def full(self) -> Array:
        return self.m

    def resolution(self, xx: float) -> float:
        """The Gram form's absolute floor in the scaled problem (max diagonal 1): its entries
        carry O(ε) each, so ‖x‖² below O(nε) is not resolved (``pareto_stationary`` reports it);
        4ε keeps Wolfe's progress test as tight as the arithmetic allows."""
        return 4.0 * _EPS


class _VectorOracle:
    """The same inner products computed from the rows of G on demand (never forms M)."""

    def __init__(self, grads: Array) -> None:
        self.g = grads
        self.n = grads.shape[0]
        self.diag: Array = np.einsum("ij,ij->i", grads, grads)

    def column(self, j: int) -> Array:
        column: Array = self.g @ self.g[j]
        return column

    def matvec(self, alpha: Array) -> Array:
        product: Array = self.g @ (alpha @ self.g)
        return product

    def sub(self, index: list[int]) -> Array:
        rows = self.g[index]
        return rows @ rows.T

    def full(self) -> Array:
        return self.g @ self.g.T

    def resolution(self, xx: float) -> float:
        """Rounding of sᵢ = ⟨gᵢ, x⟩ (‖gᵢ‖ ≤ 1 after scaling): O(ε‖x‖) each, relative to the
        solution rather than to the largest gradient."""
        return 16.0 * _EPS * math.sqrt(max(xx, 0.0) * int(self.g.shape[1]))


# ----------------------------------------------------------------------------------------------
# Solvers. Each takes an oracle on a Gram matrix scaled to max diagonal 1 and returns
# (alpha, iterations, converged).


def _closed2_gamma(a: float, b: float, c: float) -> float:
    """γ* of min_γ ‖γg₁ + (1−γ)g₂‖² from a = ‖g₁‖², b = ⟨g₁,g₂⟩, c = ‖g₂‖² (spec 07 §2.4)."""
    denom = a + c - 2.0 * b  # ‖g₁ − g₂‖²
    if denom <= 16 * _EPS * max(a, c, 1.0):
        return 0.5  # identical gradients: any γ; the symmetric choice
    if b >= a:
        return 1.0
    if b >= c:
        return 0.0
    return (c - b) / denom


def _solve_closed2(o: _Oracle) -> tuple[Array, int, bool]:
    m = o.sub([0, 1])
    gamma = _closed2_gamma(float(m[0, 0]), float(m[0, 1]), float(m[1, 1]))
    return np.array([gamma, 1.0 - gamma]), 1, True


def _affine_minimizer(m_sub: Array, norms: Array | None = None) -> Array:
    """argmin ‖Σ wᵢ pᵢ‖ over Σwᵢ = 1 (the affine hull): the bordered KKT system
    ``[[M, 1], [1ᵀ, 0]] [w; −ν] = [0; 1]``, non-singular iff the points are affinely independent
    (least squares otherwise). Solved equilibrated (issue 20): with D = diag(‖pᵢ‖) (``norms``,
    from M's diagonal by default), M = DCD and w = D⁻¹z, the system becomes
    ``[[C, r], [rᵀ, 0]]`` with C the unit-diagonal cosine matrix and r = D⁻¹1 / max(D⁻¹1), so
    gradients whose norms differ by 10¹² (where the raw system's condition number is 10²⁴) give
    each weight to relative accuracy, not to ε·max wᵢ."""
    k = m_sub.shape[0]
    if k == 1:
        return np.ones(1)
    if norms is None:
        norms = np.sqrt(np.maximum(np.diag(m_sub), 0.0))
    system = np.zeros((k + 1, k + 1))
    low, high = float(norms.min()), float(norms.max())
    if low > 1e-3 * high or low == 0.0:  # norms within 10³ (or a zero vertex): unscaled
        inverse = None
        system[:k, :k] = m_sub
        system[k, :k] = 1.0
        system[:k, k] = 1.0
    else:
        inverse = 1.0 / norms
        border = inverse * (1.0 / inverse.max())
        system[:k, :k] = m_sub * inverse[:, None] * inverse[None, :]
        system[k, :k] = border
        system[:k, k] = border
    rhs = np.zeros(k + 1)
    rhs[k] = 1.0
    try:
        solution = np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError:
        solution = np.linalg.lstsq(system, rhs, rcond=None)[0]
    if not np.isfinite(solution).all():
        solution = np.linalg.lstsq(system, rhs, rcond=None)[0]
    if inverse is None:
        plain: Array = solution[:k]
        return plain
    w: Array = solution[:k] * inverse
    total = float(w.sum())
    return w / total if total != 0.0 and math.isfinite(total) else w


def _kept(weights: Array, norms: Array) -> npt.NDArray[np.bool_]:
    """Vertices whose share wᵢ‖pᵢ‖ of the point Σwᵢpᵢ exceeds ``_WEIGHT_FLOOR`` of the largest
    share: the scale on which a weight is negligible (an absolute floor on wᵢ drops the small
    gradients that carry the minimum-norm point when norms spread over many decades)."""
    share = weights * norms
    kept: npt.NDArray[np.bool_] = share > _WEIGHT_FLOOR * float(share.max())
    return kept


def _solve_wolfe(o: _Oracle, max_iter: int, tol: float) -> tuple[Array, int, bool]:
    """Wolfe's (1976) nearest point in a polytope, in inner-product form.

    Major step: add the vertex j = argminᵢ⟨gᵢ, x⟩ unless ‖x‖² − ⟨g_j, x⟩ ≤ ``tol`` (the FW gap:
    x is optimal). Minor steps: move to the affine minimizer of the corral; while it leaves the
    simplex, step to the boundary and drop the vertices whose weight hit 0.
    """
    n = o.n
    start = int(np.argmin(o.diag))
    support = [start]
    lam = np.ones(1)
    s = np.array(o.column(start), dtype=np.float64)  # s = Mα = (⟨gᵢ, x⟩)ᵢ
    iterations = 0
    visited: set[tuple[int, ...]] = set()
    while iterations < max_iter:
        iterations += 1
        xx = float(lam @ s[support])
        j = int(np.argmin(s))
        # Stop at the optimum: FW gap ≤ tol relative to ‖x‖² (scale-invariant: near a Pareto-
        # stationary point ‖x‖² ≪ max‖gᵢ‖², issue 20) plus the inner products' rounding; or when
        # rounding stalls progress: the vertex is already in the corral, or the corral repeats
        # one seen before (in exact arithmetic ‖x‖² falls strictly, so corrals never repeat;
        # near-duplicate gradients make the affine system ill-conditioned and can cycle). Not
        # on a small decrease of ‖x‖²: a gradient 10⁶ times smaller than the corral's can change
        # ‖x‖² by 10⁻¹⁵ relative and still turn the direction by degrees (issue 20).
        resolution = o.resolution(xx)
        if xx - float(s[j]) <= tol * xx + resolution:
            return _embed(n, support, lam), iterations, True
        corral = tuple(sorted(support))
        if j in support or corral in visited:
            return _embed(n, support, lam), iterations, xx - float(s[j]) <= 1e3 * resolution
        visited.add(corral)
        support.append(j)
        lam = np.append(lam, 0.0)
        while True:  # minor cycle
            norms = np.sqrt(o.diag[support])
            w = _affine_minimizer(o.sub(support), norms)
            inside = _kept(w, norms)
            if inside.all():
                lam = w
                break
            iterations += 1
            if iterations >= max_iter:
                break
            outside = ~inside
            step = lam[outside] - w[outside]
            ratios = np.where(step > 0, lam[outside] / np.where(step > 0, step, 1.0), np.inf)
            theta = min(1.0, float(np.min(ratios)))
            lam = (1.0 - theta) * lam + theta * w
            keep = _kept(lam, norms)
            if bool(np.all(keep)):
                keep[int(np.argmin(lam))] = False
            support = [index for index, kept in zip(support, keep, strict=True) if kept]
            lam = lam[keep]
            lam = lam / lam.sum()
        s = o.matvec(_embed(n, support, lam))
    return _embed(n, support, lam), iterations, False


def _embed(n: int, support: list[int], lam: Array) -> Array:
    alpha = np.zeros(n)
    alpha[support] = lam
    return alpha


def _solve_fw(o: _Oracle, max_iter: int, tol: float, gap_tol: float) -> tuple[Array, int, bool]:
    """Frank–Wolfe with exact line search in Gram form (spec 07 §3.1): s = Mα, τ = argmin s,
    γ* = clip((αᵀMα − s_τ)/(αᵀMα − 2s_τ + M_ττ), 0, 1); stop on Σ|Δα| < tol or gap < gap_tol."""
    n = o.n
    alpha = np.full(n, 1.0 / n)
    s = o.matvec(alpha)
    xx = float(alpha @ s)
    for iteration in range(1, max_iter + 1):
        tau = int(np.argmin(s))
        s_tau = float(s[tau])
        gap = xx - s_tau
        if gap < gap_tol:
            return alpha, iteration, True
        denom = xx - 2.0 * s_tau + float(o.diag[tau])  # ‖u − g_τ‖² > 0 since gap > 0
        gamma = min(1.0, max(0.0, gap / denom)) if denom > 0 else 1.0
        change = 2.0 * gamma * (1.0 - float(alpha[tau]))  # Σ|Δα| for α ← (1−γ)α + γe_τ
        alpha = (1.0 - gamma) * alpha
        alpha[tau] += gamma
        column = o.column(tau)
        xx = (
            (1.0 - gamma) ** 2 * xx
            + 2.0 * gamma * (1.0 - gamma) * s_tau
            + gamma**2 * float(o.diag[tau])
        )
        s = (1.0 - gamma) * s + gamma * column
        if change < tol:
            return alpha, iteration, True
    return alpha, max_iter, False


def _solve_fw_fixed(o: _Oracle, max_iter: int, gap_tol: float) -> tuple[Array, int, bool]:
    """Frank–Wolfe with the open-loop step γₖ = 2/(k+2) from α⁰ = 1/n (no line search)."""
    n = o.n
    alpha = np.full(n, 1.0 / n)
    s = o.matvec(alpha)
    for k in range(max_iter):
        tau = int(np.argmin(s))
        if float(alpha @ s) - float(s[tau]) < gap_tol:
            return alpha, k + 1, True
        gamma = 2.0 / (k + 2.0)
        alpha *= 1.0 - gamma
        alpha[tau] += gamma
        s = (1.0 - gamma) * s + gamma * o.column(tau)
    return alpha, max_iter, False


def _solve_averaging(o: _Oracle, max_iter: int, gap_tol: float) -> tuple[Array, int, bool]:
    """The post's (sol-1): u⁽⁰⁾ = mean gradient, u⁽ᵏ⁺¹⁾ = (k·u⁽ᵏ⁾ + g_τ)/(k+1),
    τ = argminᵢ⟨gᵢ, u⁽ᵏ⁾⟩, k = 1, 2, … (so u⁽⁰⁾ keeps weight 1 in the running average)."""
    n = o.n
    alpha = np.full(n, 1.0 / n)
    s = o.matvec(alpha)
    for k in range(1, max_iter + 1):
        tau = int(np.argmin(s))
        if float(alpha @ s) - float(s[tau]) < gap_tol:
            return alpha, k, True
        keep = k / (k + 1.0)
        alpha *= keep
        alpha[tau] += 1.0 - keep
        s = keep * s + (1.0 - keep) * o.column(tau)
    return alpha, max_iter, False


def _project_simplex(v: Array) -> Array:
    """Euclidean projection onto the probability simplex (sort-based)."""
    u = np.sort(v)[::-1]
    cumulative = np.cumsum(u) - 1.0
    index = np.arange(1, v.shape[0] + 1)
    rho = int(np.nonzero(u - cumulative / index > 0)[0][-1])
    theta = cumulative[rho] / (rho + 1.0)
    projected: Array = np.maximum(v - theta, 0.0)
    return projected


def _line_search(uu: float, uv: float, vv: float) -> float:
    """t* of min_{t∈[0,1]} ‖(1−t)u + tv‖² from the three inner products."""
    denom = uu - 2.0 * uv + vv
    if denom <= 0.0:
        return 0.0
    return min(1.0, max(0.0, (uu - uv) / denom))


def _solve_sener(o: _Oracle, max_iter: int, tol: float) -> tuple[Array, int, bool]:
    """Best pair by the closed form, then projected-gradient steps (step 1/λ_max(M)) each followed
    by an exact two-point line search; stop on Σ|Δα| < tol (spec 07 §3.1, "sener")."""
    n = o.n
    m = o.full()
    best = math.inf
    alpha = np.zeros(n)
    for i, j in itertools.combinations(range(n), 2):
        gamma = _closed2_gamma(float(m[i, i]), float(m[i, j]), float(m[j, j]))
        value = gamma**2 * m[i, i] + 2 * gamma * (1 - gamma) * m[i, j] + (1 - gamma) ** 2 * m[j, j]
        if value < best:
            best = float(value)
            alpha = np.zeros(n)
            alpha[i], alpha[j] = gamma, 1.0 - gamma
    lipschitz = float(np.linalg.eigvalsh(m)[-1])
    step = 1.0 / max(lipschitz, _EPS)
    for iteration in range(1, max_iter + 1):
        s = o.matvec(alpha)
        candidate = _project_simplex(alpha - step * s)
        sc = o.matvec(candidate)
        t = _line_search(float(alpha @ s), float(alpha @ sc), float(candidate @ sc))
        new = (1.0 - t) * alpha + t * candidate
        change = float(np.abs(new - alpha).sum())
        alpha = new
        if change < tol:
            return alpha, iteration, True
    return alpha, max_iter, False


def _solve_softmax_gd(o: _Oracle, max_iter: int, gap_tol: float) -> tuple[Array, int, bool]:
    """The post's unconstrained form α = softmax(β), β⁰ = 0, Adam (lr 0.1) on ½α(β)ᵀMα(β);
    ∇_β = α ⊙ (Mα − αᵀMα). Returns the best iterate seen (the objective is not monotone)."""
    n = o.n
    beta = np.zeros(n)
    first = np.zeros(n)
    second = np.zeros(n)
    lr, b1, b2, adam_eps = 0.1, 0.9, 0.999, 1e-8
    best_alpha = np.full(n, 1.0 / n)
    best_value = math.inf
    for iteration in range(1, max_iter + 1):
        z = np.exp(beta - beta.max())
        alpha = z / z.sum()
        s = o.matvec(alpha)
        xx = float(alpha @ s)
        if xx < best_value:
            best_value, best_alpha = xx, alpha
        if xx - float(s.min()) < gap_tol:
            return alpha, iteration, True
        grad = alpha * (s - xx)
        first = b1 * first + (1 - b1) * grad
        second = b2 * second + (1 - b2) * grad * grad
        step = (
            lr * (first / (1 - b1**iteration)) / (np.sqrt(second / (1 - b2**iteration)) + adam_eps)
        )
        beta = beta - step
    return best_alpha, max_iter, False


def _solve_qp(o: _Oracle) -> tuple[Array, int, bool]:
    """Exact reference: for every support S solve the affine-minimizer KKT system on S (batched,
    pseudo-inverse so singular supports are harmless), keep feasible (w ≥ 0) candidates and
    return the one of least αᵀMα. Any feasible candidate's value is ≥ the optimum, so the
    minimum over candidates is the optimum. n > 12: :func:`_solve_qp_nnls`."""
    n = o.n
    m = o.full()
    if n > _QP_ENUMERATION_MAX:
        return _solve_qp_nnls(m)
    best_value = math.inf
    best = np.full(n, 1.0 / n)
    count = 0
    for k in range(1, n + 1):
        supports = np.array(list(itertools.combinations(range(n), k)), dtype=np.intp)
        count += supports.shape[0]
        systems = np.zeros((supports.shape[0], k + 1, k + 1))
        systems[:, :k, :k] = m[supports[:, :, None], supports[:, None, :]]
        systems[:, k, :k] = 1.0
        systems[:, :k, k] = 1.0
        rhs = np.zeros(k + 1)
        rhs[k] = 1.0
        solutions = np.linalg.pinv(systems) @ rhs
        residual = np.abs(np.einsum("bij,bj->bi", systems, solutions) - rhs).max(axis=1)
        w = solutions[:, :k]
        feasible = (w.min(axis=1) >= -1e-12) & (residual <= 1e-9)
        if not bool(feasible.any()):
            continue
        w = np.clip(w[feasible], 0.0, None)
        w = w / w.sum(axis=1, keepdims=True)
        idx = supports[feasible]
        sub = m[idx[:, :, None], idx[:, None, :]]
        values = np.einsum("bi,bij,bj->b", w, sub, w)
        b = int(np.argmin(values))
        if float(values[b]) < best_value:
            best_value = float(values[b])
            best = np.zeros(n)
            best[idx[b]] = w[b]
    return best, count, True


def _solve_qp_nnls(m: Array) -> tuple[Array, int, bool]:
    """Exact min-norm weights for large n through non-negative least squares.

    With A any square root of M (AᵀA = M, from ``eigh``), minimise ‖Aβ‖² + (1ᵀβ − 1)² over
    β ≥ 0 (Lawson–Hanson, an exact active-set method). Writing β = sα with α on the simplex and
    q = αᵀMα, the objective s²q + (s − 1)² is minimised at s = 1/(1 + q) with value q/(1 + q),
    increasing in q — so α = β/1ᵀβ minimises αᵀMα over the simplex. (SciPy's SLSQP, used before,
    stopped up to 98 % above the optimum on ill-scaled 40-task problems while reporting
    success.) The result is polished on its support with the affine-minimiser KKT system.
    """
    from scipy.optimize import nnls  # lazy: SciPy only for the large reference case

    n = m.shape[0]
    eigenvalues, vectors = np.linalg.eigh((m + m.T) / 2)
    root = np.sqrt(np.clip(eigenvalues, 0.0, None))[:, None] * vectors.T  # rootᵀroot = M
    design = np.vstack([root, np.ones((1, n))])
    target = np.zeros(n + 1)
    target[n] = 1.0
    beta, _ = nnls(design, target, maxiter=50 * n)
    total = float(beta.sum())
    if not math.isfinite(total) or total <= 0.0:
        return np.full(n, 1.0 / n), 0, False
    alpha = beta / total
    support = [int(i) for i in np.nonzero(alpha > 0.0)[0]]
    w = _affine_minimizer(m[np.ix_(support, support)])
    if bool(np.all(w >= 0)):
        polished = _embed(n, support, w)
        if float(polished @ m @ polished) <= float(alpha @ m @ alpha) * (1 + 1e-12) + 1e-18:
            alpha = polished
    return alpha, len(support), True


# ----------------------------------------------------------------------------------------------


def _to_numpy(value: object, name: str) -> tuple[Array, torch.device]:
    if isinstance(value, torch.Tensor):
        device = value.device
        array = value.detach().to(device="cpu", dtype=torch.float64).numpy()
    elif isinstance(value, np.ndarray):
        device = torch.device("cpu")
        array = np.asarray(value, dtype=np.float64)
    else:
        raise TypeError(
            f"{name} must be a torch.Tensor or a numpy array, got {type(value).__name__}"
        )
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {tuple(array.shape)}")
    if array.shape[0] == 0:
        raise ValueError(f"{name} has no rows (no tasks)")
    if not bool(np.all(np.isfinite(array))):
        raise ValueError(
            f"{name} contains NaN or infinite values: a task gradient is not finite (check the "
            "losses and the model; mtl_backward rejects NaN losses before this point)"
        )
    return array, device


def _check_gram(gram: Array) -> Array:
    n, n2 = gram.shape
    if n != n2:
        raise ValueError(f"gram must be square (n_tasks × n_tasks), got shape {(n, n2)}")
    diag = np.diag(gram)
    scale = float(diag.max()) if n else 0.0
    if float(diag.min()) < -1e-12 * max(scale, 1e-300):
        raise ValueError(
            f"gram has a negative diagonal entry ({float(diag.min())}): it is not a Gram matrix "
            "(M_ii = ‖g_i‖² ≥ 0); build it with kexue.mtl.gram_matrix"
        )
    asymmetry = float(np.abs(gram - gram.T).max())
    if asymmetry > 1e-6 * max(scale, 1e-300):
        raise ValueError(
            f"gram is not symmetric (max |M - Mᵀ| = {asymmetry:.3g}, max diagonal {scale:.3g}); "
            "a Gram matrix GGᵀ is symmetric"
        )
    symmetric: Array = 0.5 * (gram + gram.T)
    return symmetric


def _relative(value: float, norm_sq: float) -> float:
    if norm_sq > 0.0:
        return value / norm_sq
    return 0.0 if value == 0.0 else math.inf


def min_norm_weights(
    gram: torch.Tensor | npt.NDArray[np.floating] | None = None,
    method: MinNormMethod = "auto",
    *,
    grads: torch.Tensor | npt.NDArray[np.floating] | None = None,
    max_iter: int | None = None,
    tol: float | None = None,
    gap_tol: float | None = None,
    stationary_tol: float = 1e-8,
) -> tuple[torch.Tensor, MinNormInfo]:
    """Weights α on the simplex minimising ‖Σᵢαᵢgᵢ‖² (MGDA, spec 07 (q-3), §3.1).

    Give either ``gram`` (the ``n × n`` Gram matrix M = GGᵀ, e.g. from
    :func:`kexue.mtl.gram_matrix`) or ``grads`` (the ``n × d`` matrix G of task gradients; the
    solver then works with the vectors, never forming M — the explicit form of C7.5). Returns
    ``(alpha, info)``: ``alpha`` a float64 tensor ``[n]`` on the input's device (non-negative, sums
    to 1; the minimum-norm point u* = Gᵀα is unique, α need not be), ``info`` a
    :class:`MinNormInfo`.

    ``method`` (module docstring): ``"auto"`` (closed form for n = 2, else Wolfe's exact
    algorithm; the default reaches the optimum), ``"closed2"``, ``"wolfe"``, ``"fw"``,
    ``"fw_fixed"``, ``"averaging"``, ``"sener"``, ``"softmax_gd"``, ``"qp"``. ``max_iter``
    (defaults: fw 250, sener 250, softmax_gd 2000, fw_fixed/averaging 2·10⁴, wolfe 1000), ``tol``
    (fw/sener: stop when Σ|Δα| < tol, default 10⁻⁵; wolfe: the FW-gap stop, default 10⁻¹²) and
    ``gap_tol`` (FW-gap stop of the iterative solvers, default 10⁻¹⁰) are relative to
    maxᵢ‖gᵢ‖² — M is rescaled to unit max diagonal first, which leaves α unchanged — except
    Wolfe's, which is relative to the solution: gap ≤ tol·‖u‖² plus the inner products' rounding
    (O(ε‖u‖) with ``grads=``, O(ε) in Gram form), so near a Pareto-stationary point with
    ill-scaled gradients it does not stop at a wrong direction (issue 20; cos(u, u*) ≥ 1 − 1e-9
    against a 50-digit reference wherever float64 resolves u*, tests/mtl/
    test_min_norm_certified.py).

    Degenerate inputs (handled before any solver, ``info.degenerate``): one task → [1]; all
    gradients zero → uniform α; a task with ‖gᵢ‖ ≤ ``stationary_tol``·maxⱼ‖gⱼ‖ → that task alone
    (u* ≈ 0); all gradients identical (‖gᵢ − g₁‖ ≤ 10⁻⁷·max‖g‖) → uniform α. ``info.
    pareto_stationary`` is set when ‖u*‖ < ``stationary_tol``·maxᵢ‖gᵢ‖ (spec 07 §3.2); in Gram
    form ‖u*‖² = αᵀMα carries a rounding error of order n·ε·max M_ii, so the test there is
    ‖u*‖² ≤ max(stationary_tol², 16nε)·max M_ii.
    """
    if (gram is None) == (grads is None):
        raise TypeError("give exactly one of gram= (the Gram matrix) or grads= (task gradients)")
    if not isinstance(method, str) or method not in MIN_NORM_METHODS:
        raise ValueError(f"method must be one of {list(MIN_NORM_METHODS)}, got {method!r}")
    if max_iter is not None and (
        isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1
    ):
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    for name, value in (("tol", tol), ("gap_tol", gap_tol), ("stationary_tol", stationary_tol)):
        if value is not None and (not isinstance(value, (int, float)) or not value >= 0):
            raise ValueError(f"{name} must be a real number >= 0, got {value!r}")

    oracle: _Oracle
    if gram is not None:
        m, device = _to_numpy(gram, "gram")
        m = _check_gram(m)
        n = m.shape[0]
        diag = np.diag(m).copy()
        explicit = None
    else:
        explicit, device = _to_numpy(grads, "grads")
        n = explicit.shape[0]
        diag = np.einsum("ij,ij->i", explicit, explicit)
    scale = float(diag.max())
    stationary_sq = stationary_tol**2

    def finish(
        alpha: Array, used: str, iterations: int, converged: bool, degenerate: str | None = None
    ) -> tuple[torch.Tensor, MinNormInfo]:
        alpha = np.clip(alpha, 0.0, None)
        total = float(alpha.sum())
        alpha = alpha / total if total > 0 else np.full(n, 1.0 / n)
        norms = np.sqrt(np.maximum(diag, 0.0))
        carried = float(alpha @ norms)  # Σⱼαⱼ‖gⱼ‖: the scale of u's rounding
        if explicit is not None:
            u = alpha @ explicit
            s = explicit @ u
            norm_sq = float(u @ u)
            # u = Gᵀα carries ε·Σⱼαⱼ‖gⱼ‖ per term: below 64√n times that, u is not resolved
            limit = max(stationary_sq * scale, (64 * math.sqrt(n) * _EPS * carried) ** 2)
            # rounding of sᵢ = ⟨gᵢ, Gᵀα⟩: ‖gᵢ‖·ε·(n Σⱼαⱼ‖gⱼ‖ + √d ‖u‖), with a factor 8
            rounding = 8 * _EPS * (n * carried + math.sqrt(explicit.shape[1] * norm_sq))
        else:
            s = m @ alpha
            norm_sq = max(float(alpha @ s), 0.0)
            limit = max(stationary_sq, 16 * n * _EPS) * scale
            rounding = 8 * n * _EPS * carried
        min_inner = float(s.min())
        # a task whose loss u raises to first order beyond the rounding of ⟨gᵢ, u⟩, ‖gᵢ‖ times
        # ``rounding`` (a solver stopped early; at the optimum every ⟨gᵢ, u*⟩ ≥ ‖u*‖² ≥ 0)
        ascent = min_inner < 0.0 and bool(np.any(s < -rounding * norms))
        gap = max(norm_sq - min_inner, 0.0)
        support = alpha > 0
        active = tuple(np.flatnonzero(support).tolist())
        spread = float(np.abs(s[support] - norm_sq).max()) if active else 0.0
        info = MinNormInfo(
            method=used,
            iterations=iterations,
            converged=converged,
            norm_sq=norm_sq,
            min_inner=min_inner,
            gap=gap,
            # at the optimum minᵢ⟨gᵢ,u*⟩ = ‖u*‖² ≥ 0: a negative value means u is below float64's
            # resolution and would raise a task's loss: report stationarity (issue 20)
            pareto_stationary=bool(norm_sq <= limit or ascent),
            degenerate=degenerate,
            relative_gap=_relative(gap, norm_sq),
            active=active,
            kkt_residual=_relative(spread, norm_sq),
        )
        return torch.from_numpy(alpha).to(device), info

    if method == "closed2" and n != 2:
        raise ValueError(f"method='closed2' is the two-task closed form, got {n} tasks")
    if n == 1:
        return finish(np.ones(1), method, 0, True, "single_task")
    if scale <= 0.0:
        return finish(np.full(n, 1.0 / n), method, 0, True, "all_zero")
    zero = int(np.argmin(diag))
    if float(diag[zero]) <= stationary_sq * scale:
        alpha = np.zeros(n)
        alpha[zero] = 1.0
        return finish(alpha, method, 0, True, "zero_gradient")
    if explicit is not None:
        distance_sq = np.einsum("ij,ij->i", explicit - explicit[0], explicit - explicit[0])
    else:
        distance_sq = diag - 2.0 * m[:, 0] + m[0, 0]
    if float(distance_sq.max()) <= 1e-14 * scale:
        return finish(np.full(n, 1.0 / n), method, 0, True, "identical")

    if explicit is not None:
        oracle = _VectorOracle(explicit / math.sqrt(scale))
    else:
        oracle = _GramOracle(m / scale)
    used = method
    if method == "auto":
        used = "closed2" if n == 2 else "wolfe"
    iters = max_iter if max_iter is not None else _DEFAULT_MAX_ITER.get(used, 0)
    step_tol = tol if tol is not None else _DEFAULT_TOL.get(used, 0.0)
    gap = gap_tol if gap_tol is not None else _DEFAULT_GAP_TOL
    if used == "closed2":
        result = _solve_closed2(oracle)
    elif used == "wolfe":
        result = _solve_wolfe(oracle, iters, step_tol)
    elif used == "fw":
        result = _solve_fw(oracle, iters, step_tol, gap)
    elif used == "fw_fixed":
        result = _solve_fw_fixed(oracle, iters, gap)
    elif used == "averaging":
        result = _solve_averaging(oracle, iters, gap)
    elif used == "sener":
        result = _solve_sener(oracle, iters, step_tol)
    elif used == "softmax_gd":
        result = _solve_softmax_gd(oracle, iters, gap)
    else:
        result = _solve_qp(oracle)
    return finish(result[0], used, result[1], result[2])
