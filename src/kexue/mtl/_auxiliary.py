"""Primary and auxiliary tasks: the projection of the main gradient (spec 08, post 8907).

One task is the goal, the others must not get worse (to first order). The update is Δθ = −ηu with

    max_u ⟨u, g₀⟩ − ½‖u‖²   s.t.  ⟨u, gᵢ⟩ ≥ 0  (i = 1..n)                      (spec 08 §2)

whose dual is non-negative least squares, min_{λ≥0} ½‖g₀ + Gᵀλ‖², u* = g₀ + Gᵀλ*: u* is the
Euclidean projection of g₀ onto the cone C = {u : Gu ≥ 0} (spec 08 §3). In Gram form, with
M = GGᵀ, b = Gg₀ and s = b + Mλ = (⟨gᵢ, u⟩)ᵢ, the optimum is characterised by the KKT conditions
λ ≥ 0, s ≥ 0, λᵢsᵢ = 0.

Solvers of :func:`primary_auxiliary_direction` (``solver=``; all in float64 on NumPy arrays, the
problem is n × n):

* ``"closed1"`` — one auxiliary task: γ = relu(−⟨g₀,g₁⟩)/‖g₁‖², formula (gamma);
* ``"kkt"`` — coordinate descent with the KKT-violation selection rule of spec 08 §4
  (vᵢ = |sᵢ| if λᵢ > 0 else relu(−sᵢ), τ = argmax v), finished by an active-set Newton step
  (solve M_SS λ_S = −b_S on the support S, accepted only when the result satisfies the KKT
  conditions), so it ends at the exact optimum; should the coordinate phase not reach the KKT
  tolerance within ``max_iter`` (a near-singular Gram matrix: the Gram form squares the condition
  number of G), SciPy's NNLS finishes (``info.solver == "kkt+nnls"``); the default for n ≥ 2
  (``"auto"``);
* ``"cyclic"`` — cyclic sweeps of the same exact coordinate update (spec 08 §4), same finish;
* ``"post"`` — the post's literal rule τ = argminᵢ sᵢ, λ_τ ← relu(−(s_τ − λ_τM_ττ))/M_ττ, with no
  finishing step: it can stop at a fixed point that violates the KKT conditions (spec 08 §4, C8.4),
  reported as ``info.stalled``; kept to reproduce the post;
* ``"nnls"`` — the reference :func:`scipy.optimize.nnls` (Lawson–Hanson), on ``(Gᵀ, −g₀)`` in the
  vector form and on a square-root factor of M in the Gram form.

``"kkt"`` and ``"cyclic"`` run on the diagonally normalised problem (unit-norm auxiliary gradients,
‖g₀‖ = 1), so the selection and the stopping test max vᵢ ≤ ``tol``·max(1, ‖λ‖₁) are
scale-invariant (the cone does not depend on the lengths of the gᵢ; the spec's absolute test
max vᵢ < 1e-13·max(1, max M_ii) would accept λ = 0 for gradients of norm below ~3e-7); in the
vector form one step of iterative refinement on the vectors follows. ``"post"`` runs on the raw
problem (scaled by one power of two) so that its selection is the post's.

Degenerate inputs (spec 08 pitfall 2): an auxiliary gradient with ‖gᵢ‖² ≤ ``zero_tol`` is skipped
(λᵢ = 0, no division by zero); g₀ = 0 gives u = 0; no conflict (all ⟨gᵢ, g₀⟩ ≥ 0) gives u = g₀
exactly; NaN/inf raise ValueError.

Also here: the mixed case (several main tasks on the simplex plus auxiliary tasks,
:func:`project_mixed`), the strategies :class:`PrimaryAuxiliary` and :class:`GradCosine` for
:func:`kexue.mtl.mtl_backward`, L2 regularisation as an auxiliary task without a coefficient
(:class:`L2AsAuxiliary`, spec 08 §5.3) and the baselines of spec 08 §5.5
(:func:`gradient_cosine_gate`, :func:`gglm_mask` with :func:`per_sample_gradients`).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Callable, Iterable, Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

from ._checks import LossesLike, check_choice, check_tensor_list
from ._gradients import (
    JACOBIAN_METHODS,
    JacobianMethod,
    gram_weighted_loss,
)

__all__ = [
    "L2_MODES",
    "PRIMARY_AUX_SOLVERS",
    "GradCosine",
    "L2AsAuxiliary",
    "PrimaryAuxInfo",
    "PrimaryAuxSolver",
    "PrimaryAuxiliary",
    "gglm_mask",
    "gradient_cosine_gate",
    "l2_parameters",
    "per_sample_gradients",
    "primary_auxiliary_direction",
    "project_mixed",
]

PrimaryAuxSolver = Literal["auto", "closed1", "kkt", "cyclic", "post", "nnls"]
PRIMARY_AUX_SOLVERS: tuple[str, ...] = ("auto", "closed1", "kkt", "cyclic", "post", "nnls")
L2_MODES: tuple[str, ...] = ("coupled", "decoupled")
HeadScaling = Literal["alpha", "none"]

Array = npt.NDArray[np.float64]
ArrayLike = torch.Tensor | npt.NDArray[np.floating]

_EPS = float(np.finfo(np.float64).eps)
_DEFAULT_TOL = 1e-13  # spec 08 §4 (here on the normalised problem)
_DEFAULT_MAX_ITER = 10_000  # spec 08 §4: coordinate updates
_ZERO_TOL = 1e-30  # spec 08 §2: γ = 0 when ‖g₁‖² < 1e-30
_MIXED_ENUMERATION_MAX = 10  # spec 08 §5.1: exact support enumeration for n + m ≤ 10


@dataclasses.dataclass(frozen=True)
class PrimaryAuxInfo:
    """Diagnostics of one projection (spec 08 §5.2 step 4), in the original scale unless noted.

    ``solver`` — the solver that ran (``"none"`` when a degenerate input was handled before any
    solver); ``iterations`` — coordinate updates (kkt/cyclic/post), 1 (closed1), candidate supports
    (mixed enumeration), 0 (nnls, shortcuts); ``converged`` — the KKT conditions hold to ``tol``;
    ``stalled`` — the post's rule reached a fixed point that is not optimal (spec 08 §4);
    ``feasibility`` = max(0, −minᵢ⟨gᵢ,u⟩); ``complementarity`` = maxᵢ|λᵢ⟨gᵢ,u⟩|;
    ``kkt_residual`` = maxᵢ vᵢ/(‖gᵢ‖‖g₀‖) (scale-free; for the mixed case the residual of its KKT
    system over the largest ‖gᵢ‖²); ``min_inner`` = minᵢ⟨gᵢ,u⟩ over the auxiliary tasks not
    skipped (+inf if none); ``n_active`` — auxiliary tasks with λᵢ > 0 (an active constraint);
    ``norm_sq`` = ‖u‖², ``main_inner`` = ⟨u,g₀⟩, ``main_norm_sq`` = ‖g₀‖² (None when unknown:
    Gram form without ``main_sq``, or the mixed case); ``skipped`` — auxiliary tasks whose
    gradient was (numerically) zero; ``degenerate``: ``"zero_main"`` (u = 0), ``"zero_aux"``
    (every auxiliary gradient is zero: u = g₀), ``"no_conflict"`` (all ⟨gᵢ,g₀⟩ ≥ 0: u = g₀),
    ``"no_aux"`` (a strategy with no auxiliary task), ``"all_zero"`` (mixed: every gradient zero)
    or None.
    """

    solver: str
    iterations: int
    converged: bool
    stalled: bool
    feasibility: float
    complementarity: float
    kkt_residual: float
    min_inner: float
    n_active: int
    norm_sq: float | None = None
    main_inner: float | None = None
    main_norm_sq: float | None = None
    skipped: tuple[int, ...] = ()
    degenerate: str | None = None

    @property
    def norm_ratio(self) -> float | None:
        """‖u‖/‖g₀‖ (spec 08 pitfall 3: near 0 under strong conflict); None when unknown."""
        if self.norm_sq is None or self.main_norm_sq is None or self.main_norm_sq <= 0:
            return None
        return math.sqrt(max(self.norm_sq, 0.0) / self.main_norm_sq)

    @property
    def cosine(self) -> float | None:
        """cos(u, g₀) (= ‖u‖/‖g₀‖ at the optimum, spec 08 §3); None when unknown or u = 0."""
        if self.norm_sq is None or self.main_norm_sq is None or self.main_inner is None:
            return None
        denominator = math.sqrt(max(self.norm_sq, 0.0) * self.main_norm_sq)
        return self.main_inner / denominator if denominator > 0 else None


# ----------------------------------------------------------------------------------------------
# Input validation


def _check_options(tol: float | None, max_iter: int | None, zero_tol: float) -> tuple[float, int]:
    if max_iter is not None and (
        isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1
    ):
        raise ValueError(f"max_iter must be a positive int, got {max_iter!r}")
    for name, value in (("tol", tol), ("zero_tol", zero_tol)):
        if value is not None and (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or value < 0
        ):
            raise ValueError(f"{name} must be a finite real number >= 0, got {value!r}")
    return (
        _DEFAULT_TOL if tol is None else float(tol),
        _DEFAULT_MAX_ITER if max_iter is None else max_iter,
    )


def _as_tensor(value: object, name: str) -> torch.Tensor:
    """A floating-point, finite, non-empty tensor (NumPy arrays are converted)."""
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating):
            raise TypeError(f"{name} must be floating point, got dtype {value.dtype}")
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or a numpy array, got {type(value).__name__}"
        )
    if not value.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {value.dtype}")
    if value.numel() == 0:
        raise ValueError(f"{name} is empty (shape {tuple(value.shape)})")
    if not bool(torch.isfinite(value).all()):
        raise ValueError(
            f"{name} contains NaN or infinite values: a gradient is not finite (check the losses "
            "and the model before projecting)"
        )
    return value


def _gram_array(value: object, name: str = "gram") -> Array:
    """A finite, square, symmetric float64 matrix with a non-negative diagonal."""
    tensor = _as_tensor(value, name)
    if tensor.ndim != 2 or tensor.shape[0] != tensor.shape[1]:
        raise ValueError(f"{name} must be a square 2-D matrix, got shape {tuple(tensor.shape)}")
    array: Array = tensor.detach().to(device="cpu", dtype=torch.float64).numpy()
    diag = np.diag(array)
    scale = max(float(np.abs(diag).max()), 1e-300)
    if float(diag.min()) < -1e-12 * scale:
        raise ValueError(
            f"{name} has a negative diagonal entry ({float(diag.min())}): it is not a Gram "
            "matrix (M_ii = ‖g_i‖² >= 0); build it with kexue.mtl.gram_matrix"
        )
    asymmetry = float(np.abs(array - array.T).max())
    if asymmetry > 1e-6 * scale:
        raise ValueError(
            f"{name} is not symmetric (max |M - Mᵀ| = {asymmetry:.3g}, max diagonal "
            f"{scale:.3g}); a Gram matrix GGᵀ is symmetric"
        )
    symmetric: Array = 0.5 * (array + array.T)
    np.fill_diagonal(symmetric, np.maximum(diag, 0.0))
    return symmetric


def _check_main_sq(main_sq: object) -> float | None:
    if main_sq is None:
        return None
    if isinstance(main_sq, torch.Tensor) and main_sq.numel() == 1:
        main_sq = float(main_sq)
    if isinstance(main_sq, bool) or not isinstance(main_sq, (int, float)):
        raise TypeError(f"main_sq must be a real number (‖g₀‖²), got {type(main_sq).__name__}")
    value = float(main_sq)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"main_sq must be finite and >= 0 (it is ‖g₀‖²), got {value}")
    return value


# ----------------------------------------------------------------------------------------------
# Solvers on (M, b): s = b + Mλ, minimise ½λᵀMλ + bᵀλ over λ ≥ 0.


def _violation(lam: Array, s: Array) -> Array:
    """KKT violation vᵢ = |sᵢ| where λᵢ > 0, relu(−sᵢ) elsewhere (spec 08 §4)."""
    out: Array = np.where(lam > 0, np.abs(s), np.maximum(-s, 0.0))
    return out


def _polish(m: Array, b: Array, lam: Array) -> Array | None:
    """Active-set Newton step: on the support S of ``lam`` solve M_SS λ_S = −b_S (least squares if
    M_SS is singular); while that leaves the orthant, drop the most negative coordinate from S and
    re-solve. None if S empties. The caller checks the KKT conditions of the result."""
    support = [int(i) for i in np.nonzero(lam > 0)[0]]
    while support:
        sub = m[np.ix_(support, support)]
        rhs = -b[support]
        try:
            x = np.linalg.solve(sub, rhs)
        except np.linalg.LinAlgError:
            x = np.linalg.lstsq(sub, rhs, rcond=None)[0]
        if not bool(np.all(np.isfinite(x))):
            x = np.linalg.lstsq(sub, rhs, rcond=None)[0]
        worst = int(np.argmin(x))
        if float(x[worst]) >= 0:
            candidate = np.zeros_like(lam)
            candidate[support] = x
            return candidate
        del support[worst]
    return None


def _solve_coordinate(
    m: Array, b: Array, rule: str, tol: float, max_iter: int
) -> tuple[Array, int, bool, bool]:
    """Exact coordinate descent from λ = 0 (spec 08 §2 iteration, §3 Gram form, §4 rules).

    ``rule``: ``"kkt"`` (τ = argmax v), ``"cyclic"`` (sweeps i = 1..n) or ``"post"``
    (τ = argmin s). Every coordinate update re-solves λ_τ exactly:
    λ_τ ← relu(−(s_τ − λ_τM_ττ))/M_ττ. kkt/cyclic try the active-set finish once per n updates
    (when the support changed) and at the end. Returns ``(λ, updates, converged, stalled)``.
    """
    n = b.shape[0]
    diag = np.diag(m).copy()
    lam = np.zeros(n)
    s = b.copy()
    updates = 0
    tried: tuple[int, ...] | None = None

    def limit(x: Array) -> float:
        # rounding in s = b + Mλ grows with ‖λ‖₁ (unit diagonal, ‖g₀‖ = 1 for kkt/cyclic)
        return tol * max(1.0, float(np.abs(x).sum()))

    def try_polish() -> Array | None:
        nonlocal tried
        support = tuple(int(i) for i in np.nonzero(lam > 0)[0])
        if rule == "post" or support == tried:
            return None
        tried = support
        candidate = _polish(m, b, lam)
        if candidate is None:
            return None
        if float(_violation(candidate, b + m @ candidate).max()) <= limit(candidate):
            return candidate
        return None

    while True:
        s = b + m @ lam  # refresh: no drift from the rank-one updates
        v = _violation(lam, s)
        if float(v.max()) <= limit(lam):
            return lam, updates, True, False
        polished = try_polish()
        if polished is not None:
            return polished, updates, True, False
        if updates >= max_iter:
            break
        if rule == "cyclic":
            order: Iterable[int] = range(n)
        else:
            order = itertools.repeat(0, n)  # n selections between refreshes
        for position in order:
            if updates >= max_iter:
                break
            if rule == "cyclic":
                tau = position
            elif rule == "kkt":
                v = _violation(lam, s)
                tau = int(np.argmax(v))
                if float(v[tau]) <= limit(lam):
                    break  # refresh s and re-check
            else:  # the post's literal rule
                tau = int(np.argmin(s))
                if float(_violation(lam[tau : tau + 1], s[tau : tau + 1])[0]) <= limit(lam):
                    # a fixed point: the selected coordinate is already optimal, so the rule
                    # will re-select it forever (spec 08 §4); stalled unless KKT holds everywhere
                    s = b + m @ lam
                    converged = float(_violation(lam, s).max()) <= limit(lam)
                    return lam, updates, converged, not converged
            new = max(-(float(s[tau]) - float(lam[tau]) * float(diag[tau])), 0.0) / float(diag[tau])
            delta = new - float(lam[tau])
            updates += 1
            if delta != 0.0:
                lam[tau] = new
                s += delta * m[:, tau]
    final = lam
    polished = _polish(m, b, lam) if rule != "post" else None
    if polished is not None:
        before = float(_violation(lam, b + m @ lam).max())
        after = float(_violation(polished, b + m @ polished).max())
        if after < before:
            final = polished
    converged = float(_violation(final, b + m @ final).max()) <= limit(final)
    return final, updates, converged, False


def _nnls(a: Array, y: Array) -> Array:
    from scipy.optimize import nnls  # lazy: SciPy only for the reference solver

    n = a.shape[1]
    try:
        x, _ = nnls(a, y, maxiter=max(50 * n, 100))
    except RuntimeError:  # iteration limit (older SciPy raises): one retry with a larger one
        x, _ = nnls(a, y, maxiter=2000 * n)
    out: Array = np.asarray(x, dtype=np.float64)
    return out


def _solve_nnls_gram(m: Array, b: Array) -> Array:
    """NNLS from the Gram form: M = AᵀA with A = Λ^½Vᵀ (eigendecomposition, positive part),
    Aᵀy = −b with y = −Λ^(−½)Vᵀb (b lies in range(M) for a true Gram pair)."""
    w, v = np.linalg.eigh(m)
    keep = w > max(float(w.max()), 0.0) * m.shape[0] * _EPS * 16
    if not bool(keep.any()):
        return np.zeros(m.shape[0])
    root = np.sqrt(w[keep])
    a = root[:, None] * v[:, keep].T
    y = -(v[:, keep].T @ b) / root
    return _nnls(a, y)


@dataclasses.dataclass
class _Solution:
    lam: Array
    solver: str
    iterations: int
    converged: bool
    stalled: bool
    skipped: tuple[int, ...]
    degenerate: str | None
    kept: npt.NDArray[np.intp]
    scale: Array  # ‖gᵢ‖·‖g₀‖ (or its proxy) per kept auxiliary task: normalises vᵢ


def _solve(
    m: Array,
    b: Array,
    main_norm: float | None,
    solver: str,
    tol: float,
    max_iter: int,
    zero_tol: float,
    vectors: Callable[[], tuple[Array, Array]] | None = None,
) -> _Solution:
    """Solve on (M, b); ``main_norm`` = ‖g₀‖ (None: unknown, Gram form without ``main_sq``);
    ``vectors`` returns (g₀, G) as NumPy arrays for NNLS in the vector form."""
    n = b.shape[0]
    diag = np.diag(m)
    keep_mask = diag > zero_tol
    kept = np.nonzero(keep_mask)[0]
    skipped = tuple(int(i) for i in np.nonzero(~keep_mask)[0])
    lam = np.zeros(n)

    def shortcut(reason: str) -> _Solution:
        return _Solution(lam, "none", 0, True, False, skipped, reason, kept, np.ones(kept.size))

    if main_norm is not None and main_norm == 0.0:
        return shortcut("zero_main")
    if kept.size == 0:
        return shortcut("zero_aux")
    mk = m[np.ix_(kept, kept)]
    bk = b[kept]
    if bool(np.all(bk >= 0)):
        return shortcut("no_conflict")
    norms = np.sqrt(np.diag(mk))
    if main_norm is None:  # without ‖g₀‖: maxᵢ|⟨gᵢ,g₀⟩|/‖gᵢ‖ ≤ ‖g₀‖ (Cauchy–Schwarz)
        main_norm = float(np.max(np.abs(bk) / norms))
    scale = norms * main_norm
    used = solver
    if used == "auto":
        used = "closed1" if kept.size == 1 else "kkt"

    def solve_nnls() -> Array:
        if vectors is not None:
            main, aux = vectors()
            return _nnls(aux[kept].T, -main)
        normalised = _solve_nnls_gram(mk / np.outer(norms, norms), bk / scale)
        out: Array = normalised * main_norm / norms
        return out

    if used == "closed1":  # (gamma): γ = relu(−⟨g₀,g₁⟩)/‖g₁‖²
        sub = np.array([max(-float(bk[0]), 0.0) / float(mk[0, 0])])
        iterations, converged, stalled = 1, True, False
    elif used == "nnls":
        sub = solve_nnls()
        iterations, converged, stalled = 0, True, False
    elif used == "post":  # raw problem (one power-of-two scale: exact, same selections)
        power = math.frexp(max(float(np.diag(mk).max()), main_norm**2))[1]
        sub, iterations, converged, stalled = _solve_coordinate(
            np.ldexp(mk, -power), np.ldexp(bk, -power), "post", tol, max_iter
        )
    else:  # kkt / cyclic on the normalised problem: unit diagonal, ‖g₀‖ = 1
        normalised_m = mk / np.outer(norms, norms)
        np.fill_diagonal(normalised_m, 1.0)
        normalised, iterations, converged, stalled = _solve_coordinate(
            normalised_m, bk / scale, used, tol, max_iter
        )
        sub = normalised * main_norm / norms
        if used == "kkt" and not converged:
            # safety net of the exact default: Lawson–Hanson (finite termination; on the vectors
            # in the vector form, where the Gram matrix's squared condition number stalls the
            # coordinate phase, e.g. nearly opposite auxiliary gradients spanning a thin cone)
            sub, used = solve_nnls(), "kkt+nnls"
    lam[kept] = sub
    return _Solution(lam, used, iterations, converged, stalled, skipped, None, kept, scale)


def _refine(flat0: torch.Tensor, flat: torch.Tensor, sol: _Solution) -> None:
    """One step of iterative refinement with the vectors (kkt/cyclic, vector form): the Gram form
    squares the condition number of G, so re-solve the support's equations ⟨gᵢ, u⟩ = 0 (i ∈ S) as
    the least-squares problem min_δ ‖u + G_Sᵀδ‖ (QR on the vectors, like NNLS does) and keep
    λ_S + δ when it stays ≥ 0 and does not increase the KKT violation."""
    support = np.nonzero(sol.lam > 0)[0]
    if support.size == 0 or sol.degenerate is not None:
        return
    kept = torch.from_numpy(sol.kept).to(flat.device)
    rows = torch.from_numpy(support).to(flat.device)
    scale = sol.scale

    def violation(lam: Array) -> float:
        lam_t = torch.from_numpy(lam).to(flat.device)
        u = flat0 + lam_t @ flat
        s = (flat[kept] @ u).cpu().numpy()
        return float((_violation(lam[sol.kept], s) / scale).max())

    lam_s = torch.from_numpy(sol.lam[support]).to(flat.device)
    u = flat0 + lam_s @ flat[rows]
    try:
        delta = torch.linalg.lstsq(flat[rows].T, -u.unsqueeze(1)).solution.squeeze(1)
    except RuntimeError:
        return
    candidate = sol.lam.copy()
    candidate[support] = sol.lam[support] + delta.cpu().numpy()
    if not bool(np.all(np.isfinite(candidate))) or float(candidate.min()) < 0:
        return
    if violation(candidate) <= violation(sol.lam):
        sol.lam = candidate


def _project_off_support(
    flat0: torch.Tensor, flat: torch.Tensor, lam: Array, u_sum: torch.Tensor
) -> torch.Tensor:
    """u* = (I − P_S)g₀, the residual of g₀ off the span of the support S = {i : λᵢ > 0} (at the
    optimum ⟨u,gᵢ⟩ = 0 on S and u − g₀ ∈ span(G_S), spec 08 §3). Formed from an orthonormal basis
    of span(G_S) (SVD of G_S, rank cut at ε·|S|·σ_max) its rounding error is O(ε‖g₀‖), where the sum
    g₀ + Gᵀλ carries O(ε Σᵢλᵢ‖gᵢ‖): large when the cone is narrow and λ large (u* = 0 with
    λ ≈ 10³ left |λᵢ⟨u,gᵢ⟩| ≈ 10⁻¹⁰). When G_S spans the whole space u = 0 exactly. Kept only if
    it agrees with the sum to the sum's own rounding scale (a wrong support leaves the sum)."""
    support = torch.from_numpy(np.nonzero(lam > 0)[0]).to(flat.device)
    if support.numel() == 0:
        return u_sum
    rows = flat[support]
    # rows scaled to unit norm (the span is unchanged): gradients whose norms differ by 10¹²
    # would otherwise lose the small ones' directions to the large ones' rounding (issue 20)
    rows = rows / rows.norm(dim=1, keepdim=True).clamp_min(torch.finfo(rows.dtype).tiny)
    try:
        _, sigma, vh = torch.linalg.svd(rows, full_matrices=False)
    except RuntimeError:
        return u_sum
    eps = torch.finfo(torch.float64).eps
    cut = float(sigma.max()) * eps * max(rows.shape)
    basis = vh[sigma > cut]
    if basis.shape[0] >= flat0.numel():
        u = torch.zeros_like(flat0)
    else:
        u = flat0 - basis.T @ (basis @ flat0)
    lam_t = torch.from_numpy(lam).to(flat.device)
    scale = float(flat0.norm()) + float(lam_t @ flat.norm(dim=1))
    if float((u - u_sum).norm()) > 1e3 * eps * max(flat0.numel(), 1) ** 0.5 * scale:
        return u_sum
    return u


def _make_info(
    sol: _Solution,
    s: Array,
    norm_sq: float | None,
    main_inner: float | None,
    main_sq: float | None,
) -> PrimaryAuxInfo:
    """Residuals from s = (⟨gᵢ,u⟩)ᵢ (explicit vectors or b + Mλ)."""
    s_kept = s[sol.kept]
    lam_kept = sol.lam[sol.kept]
    if s_kept.size:
        min_inner = float(s_kept.min())
        feasibility = max(0.0, -min_inner)
        complementarity = float(np.abs(lam_kept * s_kept).max())
    else:
        min_inner, feasibility, complementarity = math.inf, 0.0, 0.0
    if sol.degenerate is None:
        residual = float((_violation(lam_kept, s_kept) / sol.scale).max())
    else:
        residual = 0.0
    converged = sol.converged
    if sol.solver in ("nnls", "kkt+nnls"):
        converged = residual <= 1e-9
    return PrimaryAuxInfo(
        solver=sol.solver,
        iterations=sol.iterations,
        converged=converged,
        stalled=sol.stalled,
        feasibility=feasibility,
        complementarity=complementarity,
        kkt_residual=residual,
        min_inner=min_inner,
        n_active=int(np.count_nonzero(sol.lam > 0)),
        norm_sq=norm_sq,
        main_inner=main_inner,
        main_norm_sq=main_sq,
        skipped=sol.skipped,
        degenerate=sol.degenerate,
    )


def primary_auxiliary_direction(
    main_grad: ArrayLike | None = None,
    aux_grads: ArrayLike | None = None,
    *,
    gram: ArrayLike | None = None,
    b: ArrayLike | None = None,
    main_sq: float | None = None,
    solver: PrimaryAuxSolver = "auto",
    tol: float | None = None,
    max_iter: int | None = None,
    zero_tol: float = _ZERO_TOL,
) -> tuple[torch.Tensor | None, torch.Tensor, PrimaryAuxInfo]:
    """Project the main gradient onto the cone where no auxiliary loss rises (spec 08 §2, §3).

    Vector form: ``main_grad`` g₀ (any shape, at least one element) and ``aux_grads`` G (shape
    ``[n, *main_grad.shape]``, n ≥ 1). Returns ``(u, lam, info)``: u = g₀ + Σᵢλᵢgᵢ (shape and
    promoted dtype of the inputs; computed in float64), ``lam`` λ ≥ 0 (float64, ``[n]``, on the
    input's device) and a :class:`PrimaryAuxInfo`. u is the maximiser of ⟨u,g₀⟩ − ½‖u‖² subject to
    ⟨u,gᵢ⟩ ≥ 0; λ the minimiser of ‖g₀ + Gᵀλ‖² over λ ≥ 0 (the dual, a non-negative least squares
    problem); the update is Δθ = −ηu. For the exact solvers (kkt, cyclic, nnls) u is formed as
    (I − P_S)g₀, the residual of g₀ off the span of the active gradients (rounding O(ε‖g₀‖) instead
    of the sum's O(ε Σλᵢ‖gᵢ‖); u = 0 exactly when they span the space).

    Gram form: ``gram`` M = GGᵀ (``[n, n]``) and ``b`` = (⟨gᵢ,g₀⟩)ᵢ (``[n]``), optionally
    ``main_sq`` = ‖g₀‖² (then ``info`` also reports ‖u‖² and ⟨u,g₀⟩, and g₀ = 0 is recognised).
    Returns ``(None, lam, info)``: form u = g₀ + Gᵀλ, e.g. by backpropagating L₀ + Σλᵢ Lᵢ.

    ``solver`` (module docstring): ``"auto"`` (``"closed1"`` for one auxiliary task, else
    ``"kkt"``: exact), ``"closed1"`` (requires n = 1), ``"kkt"``, ``"cyclic"``, ``"post"`` (the
    post's rule; may stall, spec 08 §4), ``"nnls"`` (SciPy). ``tol`` (default 1e-13) bounds the
    KKT violation maxᵢ vᵢ/(‖gᵢ‖‖g₀‖) relative to max(1, Σᵢλᵢ‖gᵢ‖/‖g₀‖) (the rounding scale of
    s = b + Mλ); ``max_iter`` (default 10⁴) the coordinate updates.
    ``zero_tol``: auxiliary gradients with ‖gᵢ‖² ≤ zero_tol (default 1e-30) are skipped.

    Raises TypeError for non-tensors, integer dtypes or mixing the two forms, and ValueError for
    empty inputs, mismatched shapes, NaN/inf, an invalid Gram matrix or an unknown solver.
    """
    check_choice(solver, "solver", PRIMARY_AUX_SOLVERS)
    tol_value, iterations = _check_options(tol, max_iter, zero_tol)
    if gram is not None or b is not None:
        if main_grad is not None or aux_grads is not None:
            raise TypeError(
                "give either the vectors (main_grad, aux_grads) or the Gram form (gram, b), "
                "not both"
            )
        if gram is None or b is None:
            raise TypeError("the Gram form needs both gram (M = GGᵀ) and b (= G g₀)")
        m = _gram_array(gram)
        b_tensor = _as_tensor(b, "b")
        if b_tensor.ndim != 1 or b_tensor.shape[0] != m.shape[0]:
            raise ValueError(
                f"b must be 1-D with one entry per auxiliary task ({m.shape[0]}), got shape "
                f"{tuple(b_tensor.shape)}"
            )
        b_array: Array = b_tensor.detach().to(device="cpu", dtype=torch.float64).numpy()
        sq = _check_main_sq(main_sq)
        if solver == "closed1" and m.shape[0] != 1:
            raise ValueError(f"solver='closed1' is the one-auxiliary formula, got {m.shape[0]}")
        sol = _solve(
            m,
            b_array,
            None if sq is None else math.sqrt(sq),
            solver,
            tol_value,
            iterations,
            zero_tol,
        )
        s = b_array + m @ sol.lam
        norm_sq = main_inner = None
        if sq is not None:
            main_inner = sq + float(b_array @ sol.lam)
            norm_sq = max(sq + 2.0 * float(b_array @ sol.lam) + float(sol.lam @ m @ sol.lam), 0.0)
        device = gram.device if isinstance(gram, torch.Tensor) else torch.device("cpu")
        lam = torch.from_numpy(sol.lam).to(device)
        return None, lam, _make_info(sol, s, norm_sq, main_inner, sq)

    if main_grad is None or aux_grads is None:
        raise TypeError("give main_grad and aux_grads (vector form), or gram and b (Gram form)")
    if main_sq is not None:
        raise TypeError("main_sq belongs to the Gram form; the vector form computes ‖g₀‖²")
    g0 = _as_tensor(main_grad, "main_grad")
    g = _as_tensor(aux_grads, "aux_grads")
    if g.ndim != g0.ndim + 1 or tuple(g.shape[1:]) != tuple(g0.shape):
        raise ValueError(
            f"aux_grads must have shape [n_aux, *main_grad.shape] (main_grad: "
            f"{tuple(g0.shape)}), got {tuple(g.shape)}"
        )
    n = int(g.shape[0])
    if solver == "closed1" and n != 1:
        raise ValueError(f"solver='closed1' is the one-auxiliary formula, got {n} auxiliary tasks")
    dtype = torch.promote_types(g0.dtype, g.dtype)
    device = g0.device
    flat0 = g0.detach().reshape(-1).to(device=device, dtype=torch.float64)
    flat = g.detach().reshape(n, -1).to(device=device, dtype=torch.float64)
    m_vec: Array = (flat @ flat.T).cpu().numpy()
    b_vec: Array = (flat @ flat0).cpu().numpy()
    sq_vec = float(flat0 @ flat0)
    peak = float(flat0.abs().max())  # ‖g₀‖ without underflow of the squares (0 iff g₀ = 0)
    main_norm = peak * float(torch.linalg.vector_norm(flat0 / peak)) if peak > 0 else 0.0

    def vectors() -> tuple[Array, Array]:
        return flat0.cpu().numpy(), flat.cpu().numpy()

    sol = _solve(m_vec, b_vec, main_norm, solver, tol_value, iterations, zero_tol, vectors)
    if sol.solver in ("kkt", "cyclic"):
        _refine(flat0, flat, sol)
    lam = torch.from_numpy(sol.lam).to(device)
    if sol.degenerate == "zero_main":
        u64 = torch.zeros_like(flat0)
        u = torch.zeros_like(g0, dtype=dtype)
    elif sol.degenerate is not None:  # no conflict / all auxiliaries zero: u = g₀ exactly
        u64 = flat0
        u = g0.detach().to(dtype).clone()
    else:
        u64 = flat0 + lam @ flat
        if sol.solver in ("kkt", "cyclic", "nnls") and sol.converged:
            u64 = _project_off_support(flat0, flat, sol.lam, u64)
        u = u64.to(dtype).reshape(g0.shape)
    s = (flat @ u64).cpu().numpy()
    return u, lam, _make_info(sol, s, float(u64 @ u64), float(u64 @ flat0), sq_vec)


# ----------------------------------------------------------------------------------------------
# Mixed case: several main tasks (simplex) and auxiliary tasks (orthant), spec 08 §2 and §5.1.


def _mixed_enumerate(k: Array, n_main: int) -> tuple[Array, int]:
    """Exact minimiser of xᵀKx over {x ≥ 0, Σ_{i<n_main} xᵢ = 1} by support enumeration.

    For every support S holding at least one main task solve the KKT system
    ``[[K_SS, −e_S], [e_Sᵀ, 0]] [x_S; ν] = [0; 1]`` (e_S marks the main tasks; pseudo-inverse, so a
    singular support is harmless: a minimal optimal support gives a non-singular system), keep the
    feasible candidates and return the one of least value (every feasible x has value ≥ the
    optimum, so the least candidate is optimal)."""
    total = k.shape[0]
    best = np.zeros(total)
    best[0] = 1.0
    best_value = math.inf
    count = 0
    for size in range(1, total + 1):
        combos = [c for c in itertools.combinations(range(total), size) if c[0] < n_main]
        if not combos:
            continue
        supports = np.array(combos, dtype=np.intp)
        count += supports.shape[0]
        marks = (supports < n_main).astype(np.float64)
        systems = np.zeros((supports.shape[0], size + 1, size + 1))
        systems[:, :size, :size] = k[supports[:, :, None], supports[:, None, :]]
        systems[:, :size, size] = -marks
        systems[:, size, :size] = marks
        rhs = np.zeros(size + 1)
        rhs[size] = 1.0
        solutions = np.linalg.pinv(systems) @ rhs
        residual = np.abs(np.einsum("bij,bj->bi", systems, solutions) - rhs).max(axis=1)
        x = solutions[:, :size]
        feasible = (x.min(axis=1) >= -1e-12) & (residual <= 1e-9)
        if not bool(feasible.any()):
            continue
        x = np.clip(x[feasible], 0.0, None)
        main_sum = (x * marks[feasible]).sum(axis=1, keepdims=True)
        x = x / main_sum
        index = supports[feasible]
        sub = k[index[:, :, None], index[:, None, :]]
        values = np.einsum("bi,bij,bj->b", x, sub, x)
        j = int(np.argmin(values))
        if float(values[j]) < best_value:
            best_value = float(values[j])
            best = np.zeros(total)
            best[index[j]] = x[j]
    return best, count


def _mixed_slsqp(k: Array, n_main: int) -> tuple[Array, int, bool]:
    """SLSQP (equality on the main weights, bounds ≥ 0), then the support's KKT system."""
    from scipy.optimize import minimize  # lazy: SciPy only for the large mixed case

    total = k.shape[0]
    marks = np.zeros(total)
    marks[:n_main] = 1.0
    start = marks / n_main
    result = minimize(
        lambda x: 0.5 * float(x @ k @ x),
        start,
        jac=lambda x: k @ x,
        method="SLSQP",
        bounds=[(0.0, None)] * total,
        constraints=[
            {"type": "eq", "fun": lambda x: float(marks @ x - 1.0), "jac": lambda x: marks}
        ],
        options={"ftol": 1e-15, "maxiter": 10_000},
    )
    x = np.clip(np.asarray(result.x, dtype=np.float64), 0.0, None)
    x[:n_main] /= max(float(x[:n_main].sum()), 1e-300)
    support = np.nonzero(x > 1e-9)[0]
    if support.size and bool((support < n_main).any()):
        size = support.size
        e = marks[support]
        system = np.zeros((size + 1, size + 1))
        system[:size, :size] = k[np.ix_(support, support)]
        system[:size, size] = -e
        system[size, :size] = e
        rhs = np.zeros(size + 1)
        rhs[size] = 1.0
        solution = np.linalg.lstsq(system, rhs, rcond=None)[0]
        if bool(np.all(solution[:size] >= 0)):
            polished = np.zeros(total)
            polished[support] = solution[:size]
            if float(polished @ k @ polished) <= float(x @ k @ x) * (1 + 1e-12) + 1e-18:
                x = polished
    return x, int(result.nit), bool(result.success)


def project_mixed(
    main_grads: ArrayLike | None = None,
    aux_grads: ArrayLike | None = None,
    *,
    gram: ArrayLike | None = None,
    n_main: int | None = None,
    max_enumeration: int = _MIXED_ENUMERATION_MAX,
) -> tuple[torch.Tensor | None, torch.Tensor, torch.Tensor, PrimaryAuxInfo]:
    """Several main tasks and auxiliary tasks: min ‖Σαᵢgᵢ + Σλⱼhⱼ‖² over α in the simplex and
    λ ≥ 0 (spec 08 §2 "mixed case"; the post leaves it to the reader).

    Vector form: ``main_grads`` ``[n, *shape]`` and ``aux_grads`` ``[m, *shape]`` (or None: m = 0,
    which is MGDA, spec 07). Gram form: ``gram`` — the ``(n+m) × (n+m)`` Gram matrix, main tasks
    first, and ``n_main`` = n. Returns ``(u, alpha, lam, info)`` with u = Σαᵢgᵢ + Σλⱼhⱼ (None in
    Gram form), ``alpha`` (float64 ``[n]``, sums to 1), ``lam`` (float64 ``[m]``, ≥ 0). Exact by
    support enumeration when n + m ≤ ``max_enumeration`` (default 10), else SciPy SLSQP polished on
    its support (spec 08 §5.1). u is unique; α, λ need not be. With n = 1 this is the primary/
    auxiliary projection; with m = 0 MGDA's min-norm point (C8.9). ``info``: feasibility,
    complementarity and ``min_inner`` over the auxiliary tasks, ``norm_sq`` = ‖u‖².
    """
    if isinstance(max_enumeration, bool) or not isinstance(max_enumeration, int):
        raise TypeError(f"max_enumeration must be an int, got {type(max_enumeration).__name__}")
    main_t: torch.Tensor | None = None
    aux_t: torch.Tensor | None = None
    if gram is not None:
        if main_grads is not None or aux_grads is not None:
            raise TypeError("give either the vectors (main_grads, aux_grads) or gram, not both")
        k = _gram_array(gram)
        if isinstance(n_main, bool) or not isinstance(n_main, int):
            raise TypeError("the Gram form needs n_main (an int: the main tasks come first)")
        if not 1 <= n_main <= k.shape[0]:
            raise ValueError(f"n_main must be in [1, {k.shape[0]}], got {n_main}")
        n = n_main
        device = gram.device if isinstance(gram, torch.Tensor) else torch.device("cpu")
    else:
        if main_grads is None:
            raise TypeError("give main_grads (and aux_grads), or gram and n_main")
        if n_main is not None:
            raise TypeError("n_main belongs to the Gram form")
        main_t = _as_tensor(main_grads, "main_grads")
        if main_t.ndim < 2:
            raise ValueError(
                f"main_grads must be [n_main, *shape] (one row per main task), got shape "
                f"{tuple(main_t.shape)}"
            )
        n = int(main_t.shape[0])
        rows = [main_t.detach().reshape(n, -1).to(torch.float64)]
        if aux_grads is not None:
            aux_t = _as_tensor(aux_grads, "aux_grads")
            if tuple(aux_t.shape[1:]) != tuple(main_t.shape[1:]) or aux_t.ndim != main_t.ndim:
                raise ValueError(
                    f"aux_grads must have shape [m, {', '.join(map(str, main_t.shape[1:]))}], "
                    f"got {tuple(aux_t.shape)}"
                )
            rows.append(aux_t.detach().reshape(aux_t.shape[0], -1).to(main_t.device, torch.float64))
        stacked = torch.cat(rows)
        k = (stacked @ stacked.T).cpu().numpy()
        device = main_t.device
    total = k.shape[0]
    diag = np.diag(k)
    scale = float(diag.max())
    degenerate = None
    if scale <= 0.0:
        x = np.zeros(total)
        x[:n] = 1.0 / n
        used, count, converged, degenerate = "none", 0, True, "all_zero"
    elif total <= max_enumeration:
        x, count = _mixed_enumerate(k / scale, n)
        used, converged = "enumerate", True
    else:
        x, count, converged = _mixed_slsqp(k / scale, n)
        used = "slsqp"
    s = k @ x
    norm_sq = max(float(x @ s), 0.0)
    alpha_np, lam_np = x[:n], x[n:]
    s_aux = s[n:]
    if lam_np.size:
        min_inner = float(s_aux.min())
        feasibility = max(0.0, -min_inner)
        complementarity = float(np.abs(lam_np * s_aux).max())
    else:
        min_inner, feasibility, complementarity = math.inf, 0.0, 0.0
    # KKT of the mixed problem: (Kx)ᵢ = ν on the main support, ≥ ν off it; the auxiliary part as
    # in the primary/auxiliary case; relative to the largest ‖gᵢ‖².
    nu = float(norm_sq)  # xᵀKx = Σαᵢ(Kx)ᵢ + Σλⱼ(Kx)ⱼ = ν (complementarity)
    main_violation = np.where(alpha_np > 0, np.abs(s[:n] - nu), np.maximum(nu - s[:n], 0.0))
    aux_violation = _violation(lam_np, s_aux)
    residual = (
        float(np.concatenate([main_violation, aux_violation]).max()) / scale if scale > 0 else 0.0
    )
    info = PrimaryAuxInfo(
        solver=used,
        iterations=count,
        converged=converged and residual <= 1e-8,
        stalled=False,
        feasibility=feasibility,
        complementarity=complementarity,
        kkt_residual=residual,
        min_inner=min_inner,
        n_active=int(np.count_nonzero(lam_np > 0)),
        norm_sq=norm_sq,
        degenerate=degenerate,
    )
    alpha = torch.from_numpy(alpha_np.copy()).to(device)
    lam = torch.from_numpy(lam_np.copy()).to(device)
    if main_t is None:
        return None, alpha, lam, info
    flat_main = main_t.detach().reshape(n, -1).to(torch.float64)
    u64 = alpha @ flat_main
    if aux_t is not None:
        u64 = u64 + lam @ aux_t.detach().reshape(aux_t.shape[0], -1).to(
            main_t.device, torch.float64
        )
    dtype = main_t.dtype if aux_t is None else torch.promote_types(main_t.dtype, aux_t.dtype)
    return u64.to(dtype).reshape(main_t.shape[1:]), alpha, lam, info


# ----------------------------------------------------------------------------------------------
# Strategies for kexue.mtl.mtl_backward (the GramWeighting protocol)


def _check_main(main: object) -> tuple[int, ...]:
    items: list[object] = list(main) if isinstance(main, Sequence) else [main]
    if not items:
        raise ValueError("main is empty: name at least one main task")
    out: list[int] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, int):
            raise TypeError(f"main must be a task index (int) or a list of them, got {main!r}")
        if item < 0:
            raise ValueError(f"main task indices must be >= 0, got {item}")
        out.append(item)
    if len(set(out)) != len(out):
        raise ValueError(f"main lists a task twice: {out}")
    return tuple(out)


class PrimaryAuxiliary(nn.Module):
    """Primary/auxiliary treatment of task losses for :func:`kexue.mtl.mtl_backward` (spec 08
    §5.2): the shared update is u* = g₀ + Σλᵢgᵢ, the projection of the main task's gradient onto
    the cone where no auxiliary loss rises (:func:`primary_auxiliary_direction`).

    ``main``: the main task's index (default 0) or a list of main tasks, which are then combined on
    the simplex (the mixed case, :func:`project_mixed`; one main task and no auxiliary: u = g₀;
    every task main: MGDA). ``mode``: ``"shared"`` — gradients of the shared parameters (exact);
    ``"rep"`` — gradients of the shared features H (the cheap representation approximation of
    spec 07, pass ``features=`` to ``mtl_backward``; spec 08 pitfall 6). ``head_scaling``: what
    task-specific parameters receive; ``"none"`` (default) — each head its own ∇Lᵢ (a head cannot
    conflict with another task, and an auxiliary head would otherwise be frozen whenever λᵢ = 0);
    ``"alpha"`` — wᵢ∇Lᵢ, exactly the backward of L₀ + Σλᵢ Lᵢ (spec 08 §5.2 step 3).

    By name: ``mtl_backward(losses, shared, aggregator="primary_auxiliary")`` (task 0 is main).
    As a loss, with ``shared_params`` and ``mode="shared"``: ``strategy(losses)`` returns
    Σ sg(wᵢ) Lᵢ (under ``torch.distributed``: weights from the ranks' averaged per-task
    gradients, as in :class:`kexue.mtl.MGDA`). After each call: ``weights`` (float64: 1 or αᵢ
    for main tasks, λᵢ for auxiliary ones), ``lam``, ``alpha``, ``info``
    (:class:`PrimaryAuxInfo`), and the counters ``steps`` and ``active_steps``
    (``active_fraction``: steps with an active constraint, spec 08 §5.2 step 4).
    """

    def __init__(
        self,
        shared_params: Iterable[torch.Tensor] | None = None,
        *,
        main: int | Sequence[int] = 0,
        solver: PrimaryAuxSolver = "auto",
        mode: Literal["shared", "rep"] = "shared",
        head_scaling: HeadScaling = "none",
        tol: float | None = None,
        max_iter: int | None = None,
        zero_tol: float = _ZERO_TOL,
        jacobian_method: JacobianMethod = "auto",
        chunk_size: int | None = None,
    ) -> None:
        super().__init__()
        self._shared = (
            None if shared_params is None else check_tensor_list(shared_params, "shared_params")
        )
        self.main = _check_main(main)
        self.solver = check_choice(solver, "solver", PRIMARY_AUX_SOLVERS)
        self.mode = check_choice(mode, "mode", ("shared", "rep"))
        self._head_scaling: HeadScaling = check_choice(  # type: ignore[assignment]
            head_scaling, "head_scaling", ("alpha", "none")
        )
        _check_options(tol, max_iter, zero_tol)
        self.tol = tol
        self.max_iter = max_iter
        self.zero_tol = zero_tol
        self.jacobian_method = check_choice(jacobian_method, "jacobian_method", JACOBIAN_METHODS)
        self.chunk_size = chunk_size
        self._weights: torch.Tensor | None = None
        self._lam: torch.Tensor | None = None
        self._alpha: torch.Tensor | None = None
        self._info: PrimaryAuxInfo | None = None
        self.steps = 0
        self.active_steps = 0

    @property
    def jacobian_source(self) -> Literal["shared", "features"]:
        return "features" if self.mode == "rep" else "shared"

    @property
    def head_scaling(self) -> HeadScaling:
        return self._head_scaling

    @property
    def weights(self) -> torch.Tensor | None:
        """Weights of the last shared update u = Σᵢwᵢgᵢ (float64; None before the first call)."""
        return self._weights

    @property
    def lam(self) -> torch.Tensor | None:
        """λ of the auxiliary tasks (in task order, main tasks left out) of the last call."""
        return self._lam

    @property
    def alpha(self) -> torch.Tensor | None:
        """Simplex weights of the main tasks of the last call ([1.] for a single main task)."""
        return self._alpha

    @property
    def info(self) -> PrimaryAuxInfo | None:
        return self._info

    @property
    def active_fraction(self) -> float:
        """Fraction of calls so far in which some constraint was active (λ ≠ 0)."""
        return self.active_steps / self.steps if self.steps else 0.0

    def weights_from_gram(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        """Weights (1 or α for main tasks, λ for auxiliary tasks) from the Gram matrix of all
        task gradients (``losses`` is used only for the task count)."""
        if not isinstance(gram, torch.Tensor) or gram.ndim != 2 or gram.shape[0] != gram.shape[1]:
            raise ValueError("gram must be a square [n_tasks, n_tasks] tensor")
        n_tasks = int(gram.shape[0])
        if losses.numel() != n_tasks:
            raise ValueError(f"got {losses.numel()} losses for a {n_tasks}-task Gram matrix")
        bad = [i for i in self.main if i >= n_tasks]
        if bad:
            raise ValueError(f"main task index {bad} out of range for {n_tasks} tasks")
        gram64 = gram.detach().to(torch.float64)
        mains = list(self.main)
        aux = [i for i in range(n_tasks) if i not in self.main]
        weights = torch.zeros(n_tasks, dtype=torch.float64, device=gram.device)
        if len(mains) == 1 and aux:
            p = mains[0]
            index = torch.tensor(aux, device=gram.device)
            _, lam, info = primary_auxiliary_direction(
                gram=gram64[index][:, index],
                b=gram64[index, p],
                main_sq=float(gram64[p, p]),
                solver=self.solver,  # type: ignore[arg-type]
                tol=self.tol,
                max_iter=self.max_iter,
                zero_tol=self.zero_tol,
            )
            alpha = torch.ones(1, dtype=torch.float64, device=gram.device)
        elif len(mains) == 1:
            lam = torch.zeros(0, dtype=torch.float64, device=gram.device)
            alpha = torch.ones(1, dtype=torch.float64, device=gram.device)
            sq = float(gram64[mains[0], mains[0]])
            info = PrimaryAuxInfo(
                solver="none",
                iterations=0,
                converged=True,
                stalled=False,
                feasibility=0.0,
                complementarity=0.0,
                kkt_residual=0.0,
                min_inner=math.inf,
                n_active=0,
                norm_sq=sq,
                main_inner=sq,
                main_norm_sq=sq,
                degenerate="no_aux",
            )
        else:
            order = torch.tensor(mains + aux, device=gram.device)
            _, alpha, lam, info = project_mixed(gram=gram64[order][:, order], n_main=len(mains))
        weights[torch.tensor(mains, device=gram.device)] = alpha.to(gram.device)
        if aux:
            weights[torch.tensor(aux, device=gram.device)] = lam.to(gram.device)
        self._weights, self._lam, self._alpha, self._info = weights, lam, alpha, info
        self.steps += 1
        self.active_steps += int(info.n_active > 0)
        return weights

    def forward(self, losses: LossesLike) -> torch.Tensor:
        if self._shared is None or self.mode != "shared":
            raise TypeError(
                "PrimaryAuxiliary as a loss needs shared_params (and mode='shared'); otherwise "
                "use kexue.mtl.mtl_backward(losses, ..., aggregator=this)"
            )
        return gram_weighted_loss(
            losses,
            self._shared,
            self.weights_from_gram,
            method=self.jacobian_method,  # type: ignore[arg-type]
            chunk_size=self.chunk_size,
        )


def _cosine_gate(
    main_sq: float, inner: Array, aux_sq: Array, weighted: bool, zero_tol: float
) -> Array:
    denominator = np.sqrt(np.maximum(aux_sq, 0.0) * max(main_sq, 0.0))
    valid = (aux_sq > zero_tol) & (main_sq > zero_tol)
    cosine = np.where(valid, inner / np.where(valid, denominator, 1.0), 0.0)
    gate: Array = np.maximum(cosine, 0.0) if weighted else (cosine > 0).astype(np.float64)
    return gate


def gradient_cosine_gate(
    main_grad: ArrayLike,
    aux_grads: ArrayLike,
    *,
    weighted: bool = False,
    zero_tol: float = _ZERO_TOL,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GCS baseline (Du et al. 2018; AuxiLearn's ``GradCosine``; spec 08 §5.5, not from the post):
    u = g₀ + Σᵢ wᵢgᵢ with wᵢ = 1 if cos(g₀, gᵢ) > 0 else 0 (``weighted=True``: wᵢ = max(cos, 0)).

    Shapes as in :func:`primary_auxiliary_direction`; returns ``(u, w)`` (w float64 ``[n]``). A
    zero gradient (‖·‖² ≤ ``zero_tol``) has no cosine: its gate is closed.
    """
    g0 = _as_tensor(main_grad, "main_grad")
    g = _as_tensor(aux_grads, "aux_grads")
    if g.ndim != g0.ndim + 1 or tuple(g.shape[1:]) != tuple(g0.shape):
        raise ValueError(
            f"aux_grads must have shape [n_aux, *main_grad.shape], got {tuple(g.shape)} for "
            f"main_grad {tuple(g0.shape)}"
        )
    flat0 = g0.detach().reshape(-1).to(torch.float64)
    flat = g.detach().reshape(g.shape[0], -1).to(device=g0.device, dtype=torch.float64)
    gate = _cosine_gate(
        float(flat0 @ flat0),
        (flat @ flat0).cpu().numpy(),
        (flat * flat).sum(1).cpu().numpy(),
        weighted,
        zero_tol,
    )
    weights = torch.from_numpy(gate).to(g0.device)
    u = flat0 + weights @ flat
    return u.to(torch.promote_types(g0.dtype, g.dtype)).reshape(g0.shape), weights


class GradCosine(nn.Module):
    """The GCS gate as a :func:`kexue.mtl.mtl_backward` strategy (spec 08 §5.5): weight 1 for the
    main task, 1 (or max(cos, 0) with ``weighted``) for an auxiliary task whose gradient has a
    positive cosine with the main one, else 0. ``head_scaling`` as in :class:`PrimaryAuxiliary`."""

    def __init__(
        self,
        *,
        main: int = 0,
        weighted: bool = False,
        head_scaling: HeadScaling = "none",
        zero_tol: float = _ZERO_TOL,
    ) -> None:
        super().__init__()
        if isinstance(main, bool) or not isinstance(main, int):
            raise TypeError(f"main must be one task index (int), got {main!r}")
        self.main = _check_main(main)[0]
        if not isinstance(weighted, bool):
            raise TypeError("weighted must be a bool")
        self.weighted = weighted
        self._head_scaling: HeadScaling = check_choice(  # type: ignore[assignment]
            head_scaling, "head_scaling", ("alpha", "none")
        )
        _check_options(None, None, zero_tol)
        self.zero_tol = zero_tol
        self._weights: torch.Tensor | None = None

    @property
    def jacobian_source(self) -> Literal["shared"]:
        return "shared"

    @property
    def head_scaling(self) -> HeadScaling:
        return self._head_scaling

    @property
    def weights(self) -> torch.Tensor | None:
        return self._weights

    def weights_from_gram(self, gram: torch.Tensor, losses: torch.Tensor) -> torch.Tensor:
        m = _gram_array(gram)
        n_tasks = m.shape[0]
        if self.main >= n_tasks:
            raise ValueError(f"main task index {self.main} out of range for {n_tasks} tasks")
        aux = [i for i in range(n_tasks) if i != self.main]
        weights = np.zeros(n_tasks)
        weights[self.main] = 1.0
        if aux:
            weights[aux] = _cosine_gate(
                float(m[self.main, self.main]),
                m[aux, self.main],
                np.diag(m)[aux],
                self.weighted,
                self.zero_tol,
            )
        self._weights = torch.from_numpy(weights).to(gram.device)
        return self._weights


# ----------------------------------------------------------------------------------------------
# L2 regularisation as an auxiliary task (spec 08 §5.3)

_L2_LAYERS = (
    nn.Linear,
    nn.Bilinear,
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def l2_parameters(module: nn.Module) -> list[torch.Tensor]:
    """The default θ of :class:`L2AsAuxiliary` (spec 08 §5.3 ``param_groups``): the weights of
    linear, bilinear and (transposed) convolution layers that require grad; biases and
    normalisation parameters are left out."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    out: list[torch.Tensor] = []
    for layer in module.modules():
        weight = getattr(layer, "weight", None)
        if (
            isinstance(layer, _L2_LAYERS)
            and isinstance(weight, torch.Tensor)
            and weight.requires_grad
        ):
            out.append(weight)
    return out


class L2AsAuxiliary:
    """L2 regularisation as an auxiliary task, without a coefficient (spec 08 §5.3, the post).

    The auxiliary loss ½‖θ‖² has gradient θ; the n = 1 formula replaces the gradient g by
    g + relu(−⟨g,θ⟩)/‖θ‖²·θ, so the step never increases ‖θ‖ to first order.
    ``params``: the tensors that form θ (one constraint on their concatenation), or a module —
    then :func:`l2_parameters` (linear/conv weights). ``mode``:

    * ``"coupled"`` — :meth:`project_gradients` rewrites ``.grad`` before the optimiser (plain SGD:
      ‖θₜ₊₁‖² − ‖θₜ‖² = −2η⟨u,θ⟩ + η²‖u‖² ≤ η²‖u‖², C8.8; with Adam the preconditioner distorts
      the projection, pitfall 5);
    * ``"decoupled"`` (AdamW-style) — :meth:`project_update` applies the formula to the optimiser's
      proposed update Δ (g → −Δ): Δ ← Δ − relu(⟨Δ,θ⟩)/‖θ‖²·θ, θ the parameters before the step, so
      ‖θ + Δ‖² − ‖θ‖² ≤ ‖Δ‖².

    :meth:`step` does either around ``optimizer.step()``. When ‖θ‖² ≤ ``zero_tol`` the constraint
    is vacuous and nothing changes; without a conflict the gradient/update is left untouched
    (bit for bit). After each call: ``gamma`` (the coefficient on θ; 0 without a conflict), and the
    counters ``steps``/``active_steps``.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | nn.Module,
        mode: Literal["coupled", "decoupled"] = "coupled",
        *,
        zero_tol: float = _ZERO_TOL,
    ) -> None:
        items = l2_parameters(params) if isinstance(params, nn.Module) else params
        self.params = check_tensor_list(items, "params")
        self.mode = check_choice(mode, "mode", L2_MODES)
        _check_options(None, None, zero_tol)
        self.zero_tol = zero_tol
        self.gamma = 0.0
        self.steps = 0
        self.active_steps = 0

    def _record(self, gamma: float) -> float:
        self.gamma = gamma
        self.steps += 1
        self.active_steps += int(gamma > 0)
        return gamma

    @staticmethod
    def _inner(a: Sequence[torch.Tensor | None], b: Sequence[torch.Tensor]) -> float:
        total = 0.0
        for x, y in zip(a, b, strict=True):
            if x is not None:
                total += float((x.detach().to(torch.float64) * y.detach().to(torch.float64)).sum())
        return total

    def _check_finite(self, value: float, what: str) -> None:
        if not math.isfinite(value):
            raise ValueError(f"{what} is NaN or infinite: fix the loss/model before the step")

    @torch.no_grad()
    def project_gradients(self) -> float:
        """Coupled: g ← g + γθ with γ = relu(−⟨g,θ⟩)/‖θ‖² on ``.grad`` in place; returns γ."""
        grads = [p.grad for p in self.params]
        inner = self._inner(grads, self.params)
        norm_sq = self._inner(list(self.params), self.params)
        self._check_finite(inner, "⟨grad, θ⟩")
        self._check_finite(norm_sq, "‖θ‖²")
        if inner >= 0 or norm_sq <= self.zero_tol:
            return self._record(0.0)
        gamma = -inner / norm_sq
        for p in self.params:
            if p.grad is None:
                p.grad = (gamma * p.detach()).to(p.dtype)
            else:
                p.grad.add_(p.detach(), alpha=gamma)
        return self._record(gamma)

    @torch.no_grad()
    def project_update(self, before: Sequence[torch.Tensor]) -> float:
        """Decoupled: with θ = ``before`` (the parameters before the optimiser step) and
        Δ = current − before, move the parameters to θ + Δ − γθ, γ = relu(⟨Δ,θ⟩)/‖θ‖²; returns γ."""
        if len(before) != len(self.params):
            raise ValueError(f"before has {len(before)} tensors, params {len(self.params)}")
        for old, p in zip(before, self.params, strict=True):
            if old.shape != p.shape:
                raise ValueError(f"before tensor of shape {tuple(old.shape)} for {tuple(p.shape)}")
        deltas = [p.detach() - old for p, old in zip(self.params, before, strict=True)]
        inner = self._inner(deltas, before)
        norm_sq = self._inner(list(before), before)
        self._check_finite(inner, "⟨update, θ⟩")
        self._check_finite(norm_sq, "‖θ‖²")
        if inner <= 0 or norm_sq <= self.zero_tol:
            return self._record(0.0)
        gamma = inner / norm_sq
        for p, old in zip(self.params, before, strict=True):
            p.sub_(old.to(p.dtype), alpha=gamma)
        return self._record(gamma)

    def step(self, optimizer: torch.optim.Optimizer) -> float:
        """``project_gradients(); optimizer.step()`` (coupled), or snapshot θ,
        ``optimizer.step()``, ``project_update(θ)`` (decoupled). Returns γ."""
        if self.mode == "coupled":
            gamma = self.project_gradients()
            optimizer.step()
            return gamma
        before = [p.detach().clone() for p in self.params]
        optimizer.step()
        return self.project_update(before)


# ----------------------------------------------------------------------------------------------
# Gradient-guided loss masking (GGLM, arXiv 2102.13549; spec 08 §5.4, §5.5)


def gglm_mask(
    per_sample_grads: ArrayLike, clean_grad: ArrayLike, *, threshold: float = 0.0
) -> torch.Tensor:
    """GGLM: keep the noisy samples whose gradient agrees with the clean-data gradient.

    ``per_sample_grads`` ``[B, *shape]`` (e.g. from :func:`per_sample_gradients`), ``clean_grad``
    ``[*shape]``. Returns a bool mask ``[B]``: ⟨gᵦ, g_clean⟩ > ``threshold`` (float64 products).
    The masked loss is then, e.g., ``(mask * losses).sum() / mask.sum().clamp_min(1)``. Unlike
    the post's projection (which corrects the update), GGLM drops samples (spec 08 §5.4).
    """
    grads = _as_tensor(per_sample_grads, "per_sample_grads")
    clean = _as_tensor(clean_grad, "clean_grad")
    if grads.ndim != clean.ndim + 1 or tuple(grads.shape[1:]) != tuple(clean.shape):
        raise ValueError(
            f"per_sample_grads must have shape [B, *clean_grad.shape], got {tuple(grads.shape)} "
            f"for clean_grad {tuple(clean.shape)}"
        )
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise TypeError(f"threshold must be a real number, got {type(threshold).__name__}")
    if not math.isfinite(threshold):
        raise ValueError(f"threshold must be finite, got {threshold}")
    flat = grads.detach().reshape(grads.shape[0], -1).to(torch.float64)
    inner = flat @ clean.detach().reshape(-1).to(device=grads.device, dtype=torch.float64)
    return inner > threshold


def per_sample_gradients(
    module: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    inputs: torch.Tensor,
    targets: torch.Tensor,
    params: Sequence[str] | None = None,
) -> torch.Tensor:
    """Per-sample gradients ``[B, d]`` of ``loss_fn(module(x[None]), y[None])`` (spec 08 §5.5) by
    ``torch.func.vmap(grad)``, flattened over the parameters named in ``params`` (default: all that
    require grad, in ``named_parameters`` order). The module must not mix samples (no batch norm
    in training mode)."""
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be an nn.Module, got {type(module).__name__}")
    if not isinstance(inputs, torch.Tensor) or not isinstance(targets, torch.Tensor):
        raise TypeError("inputs and targets must be tensors")
    if inputs.shape[0] == 0 or inputs.shape[0] != targets.shape[0]:
        raise ValueError(
            f"inputs and targets need the same non-zero batch size, got {inputs.shape[0]} and "
            f"{targets.shape[0]}"
        )
    named = {n: p for n, p in module.named_parameters() if p.requires_grad}
    if params is not None:
        missing = [n for n in params if n not in named]
        if missing:
            raise ValueError(f"unknown or frozen parameters {missing}")
        named = {n: named[n] for n in params}
    if not named:
        raise ValueError("no parameter requires grad")
    detached = {n: p.detach() for n, p in named.items()}
    frozen = {n: p.detach() for n, p in module.named_parameters() if n not in detached}
    buffers = dict(module.named_buffers())

    def one(weights: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        state = {**frozen, **buffers, **weights}
        out = torch.func.functional_call(module, state, (x.unsqueeze(0),))
        loss = loss_fn(out, y.unsqueeze(0))
        return loss.reshape(())

    grads = torch.func.vmap(torch.func.grad(one), in_dims=(None, 0, 0))(detached, inputs, targets)
    batch = int(inputs.shape[0])
    return torch.cat([grads[n].reshape(batch, -1) for n in named], dim=1)
