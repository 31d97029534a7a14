"""Extended-precision references for the two quadratic programs of ``kexue.mtl`` and the
generator of test instances (issue 20 item 1; spec 07 §3.1, spec 08 §2).

* **Min-norm point** u* = Gᵀα*, α* = argmin over the simplex of ‖Gᵀα‖² (MGDA, MGDA-UB).
* **Primary/auxiliary projection** u* = g₀ + Gᵀλ*, λ* = argmin over λ ≥ 0 of ‖g₀ + Gᵀλ‖².

Both references work in 50-digit arithmetic (mpmath) on the *exact* Gram matrix of the float64
inputs: every float64 is an integer times a power of two, so GGᵀ is formed exactly in Python
integers before it is rounded to 50 digits. A float64 solver from another family (SciPy's
Lawson–Hanson NNLS, through the least-distance reformulation for the min-norm point) proposes
the support; the 50-digit KKT system on that support is solved and the optimality conditions
are checked in 50 digits; when they fail, an active-set method (Wolfe's for the simplex,
Lawson–Hanson for the orthant) runs in 50 digits from there to a point that satisfies them. The
answer is therefore certified by the KKT conditions, not by the float64 proposal.

The instance generator (:data:`MIN_NORM_FAMILIES`, :data:`PROJECTION_FAMILIES`) covers
T = 2 … 40 tasks, gradient norms spread over 10^±6, near and far from stationarity, exactly
stationary, rank-deficient, duplicated, orthogonal (closed form) and float32-rounded gradients.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import mpmath as mp
import numpy as np
from scipy.optimize import nnls

DIGITS = 50
Matrix = list[list[mp.mpf]]

# ----------------------------------------------------------------------------------------------
# exact arithmetic on float64 inputs


def _integers(values: np.ndarray) -> tuple[list[list[int]], int]:
    """Rows of ``values`` as integers N with values = N · 2^shift exactly."""
    rows: list[list[tuple[int, int]]] = []
    low = None
    for row in np.asarray(values, dtype=np.float64):
        pairs = []
        for x in row.tolist():
            if x == 0.0:
                pairs.append((0, 0))
                continue
            mantissa, exponent = math.frexp(x)
            integer, power = int(mantissa * 2**53), exponent - 53
            pairs.append((integer, power))
            low = power if low is None else min(low, power)
        rows.append(pairs)
    shift = 0 if low is None else low
    return [[i << (p - shift) if i else 0 for i, p in row] for row in rows], shift


def exact_gram(vectors: np.ndarray, other: np.ndarray | None = None) -> Matrix:
    """⟨aᵢ, bⱼ⟩ exactly (Python integers), rounded once to 50 digits; b = a by default."""
    both = vectors if other is None else np.vstack([vectors, other])
    ints, shift = _integers(both.reshape(both.shape[0], -1))
    a = ints[: len(vectors)]
    b = a if other is None else ints[len(vectors) :]
    with mp.workdps(DIGITS):
        scale = 2 * shift
        return [[mp.ldexp(mp.mpf(sum(x * y for x, y in zip(ra, rb, strict=True))), scale)
                 for rb in b] for ra in a]  # fmt: skip


def exact_vectors(vectors: np.ndarray) -> list[list[mp.mpf]]:
    with mp.workdps(DIGITS):
        return [[mp.mpf(float(x)) for x in row] for row in vectors.reshape(len(vectors), -1)]


def _solve(matrix: Matrix, rhs: list[mp.mpf]) -> list[mp.mpf] | None:
    """The solution of the square system, or None when it is singular to 50 digits (a pivot
    rounded away from 0 shows as a solution 10³⁰ times larger than the data allows)."""
    size_n = len(rhs)
    rows = [[*row, value] for row, value in zip(matrix, rhs, strict=True)]
    # Gaussian elimination with partial pivoting on lists of mpf: mpmath's lu_solve spends most of
    # its time in matrix indexing (measured 3-4x slower on these 40 x 40 systems)
    for column in range(size_n):
        pivot = max(range(column, size_n), key=lambda r: abs(rows[r][column]))
        if rows[pivot][column] == 0:
            return None
        rows[column], rows[pivot] = rows[pivot], rows[column]
        head = rows[column]
        inverse = 1 / head[column]
        for r in range(column + 1, size_n):
            factor = rows[r][column] * inverse
            if factor:
                row = rows[r]
                for c in range(column + 1, size_n + 1):
                    row[c] -= factor * head[c]
    values = [mp.mpf(0)] * size_n
    for r in range(size_n - 1, -1, -1):
        total = rows[r][size_n] - mp.fsum(rows[r][c] * values[c] for c in range(r + 1, size_n))
        values[r] = total / rows[r][r]
    size = max(abs(x) for row in matrix for x in row)
    if max(abs(x) for x in values) * size > mp.mpf(10) ** 30 * max(max(abs(x) for x in rhs), 1):
        return None
    return values


def quadratic(m: Matrix, x: Sequence[mp.mpf], y: Sequence[mp.mpf] | None = None) -> mp.mpf:
    """xᵀMy (y = x by default) in the current precision."""
    y = x if y is None else y
    return mp.fsum(x[i] * mp.fsum(m[i][j] * y[j] for j in range(len(y))) for i in range(len(x)))


# ----------------------------------------------------------------------------------------------
# min-norm point of conv{gᵢ}


def _affine_minimizer(m: Matrix, support: list[int]) -> list[mp.mpf] | None:
    """Weights (summing to 1) of the minimum-norm point of the affine hull of the support."""
    k = len(support)
    system = [[m[a][b] for b in support] + [mp.mpf(1)] for a in support]
    system.append([mp.mpf(1)] * k + [mp.mpf(0)])
    solution = _solve(system, [mp.mpf(0)] * k + [mp.mpf(1)])
    return None if solution is None else solution[:k]


def _nnls_support(grads: np.ndarray) -> list[int]:
    """Support proposed by SciPy's Lawson–Hanson NNLS: the least-distance form of the min-norm
    problem, min ‖Eβ − e‖ over β ≥ 0 with E = [Gᵀ; 1ᵀ] (α* ∝ β*)."""
    norms = np.linalg.norm(grads, axis=1)
    scaled = grads / max(float(norms.max()), 1e-300)
    e_matrix = np.vstack([scaled.T, np.ones(len(grads))])
    target = np.zeros(e_matrix.shape[0])
    target[-1] = 1.0
    try:
        beta, _ = nnls(e_matrix, target, maxiter=50 * len(grads))
    except RuntimeError:
        return [int(np.argmin(norms))]
    support = [int(i) for i in np.nonzero(beta > 0)[0]]
    return support or [int(np.argmin(norms))]


def min_norm_reference(grads: np.ndarray, gram: Matrix | None = None) -> list[mp.mpf]:
    """α* (50 digits) with Gᵀα* the minimum-norm point of conv{gᵢ}, certified by the KKT
    conditions ⟨gᵢ, u*⟩ ≥ ‖u*‖² for every i (to 10⁻⁴⁰ of maxᵢ‖gᵢ‖²)."""
    m = exact_gram(grads) if gram is None else gram
    tasks = len(m)
    with mp.workdps(DIGITS):
        largest = max(m[i][i] for i in range(tasks))
        tiny = mp.mpf(10) ** -40 * largest
        weights = [mp.mpf(0)] * tasks
        support: list[int] = []
        for start in (_nnls_support(grads), list(range(tasks))):  # warm starts
            mu = _affine_minimizer(m, start) if len(start) <= len(grads[0]) + 1 else None
            if mu is not None and min(mu) > 0:
                support = list(start)
                for index, value in zip(start, mu, strict=True):
                    weights[index] = value
                break
        else:
            first = min(range(tasks), key=lambda i: m[i][i])
            support, weights[first] = [first], mp.mpf(1)
        for _ in range(20 * tasks + 100):  # Wolfe's major cycles
            s = [mp.fsum(m[i][j] * weights[j] for j in support) for i in range(tasks)]
            norm_sq = mp.fsum(weights[i] * s[i] for i in support)
            entering = min(range(tasks), key=lambda i: s[i])
            if s[entering] >= norm_sq - tiny:
                return weights
            if entering in support:
                raise AssertionError("reference: the corral point is not its affine minimiser")
            support.append(entering)
            for _ in range(tasks + 1):  # minor cycles
                mu = _affine_minimizer(m, support)
                if mu is None:
                    raise AssertionError("reference: affinely dependent corral")
                if min(mu) > 0:
                    for index, value in zip(support, mu, strict=True):
                        weights[index] = value
                    break
                theta = min(weights[i] / (weights[i] - v)
                            for i, v in zip(support, mu, strict=True) if v <= 0)  # fmt: skip
                for index, value in zip(support, mu, strict=True):
                    weights[index] = (1 - theta) * weights[index] + theta * value
                support = [i for i in support if weights[i] > mp.mpf(10) ** -45]
                for i in range(tasks):
                    if i not in support:
                        weights[i] = mp.mpf(0)
        raise AssertionError("reference: Wolfe's algorithm did not terminate")


# ----------------------------------------------------------------------------------------------
# projection onto the cone {u : ⟨u, gᵢ⟩ ≥ 0}


def projection_reference(main: np.ndarray, aux: np.ndarray) -> list[mp.mpf]:
    """λ* ≥ 0 (50 digits) minimising ‖g₀ + Gᵀλ‖², certified by s = b + Mλ ≥ 0 and λᵢsᵢ = 0
    (b = Gg₀), from SciPy's NNLS support and, when that fails, Lawson–Hanson in 50 digits."""
    m = exact_gram(aux)
    b = [row[0] for row in exact_gram(aux, main.reshape(1, -1))]
    count = len(m)
    with mp.workdps(DIGITS):
        largest = max(max(m[i][i] for i in range(count)), mp.mpf(0))
        main_sq = exact_gram(main.reshape(1, -1))[0][0]
        tiny = mp.mpf(10) ** -40 * mp.sqrt(largest * main_sq)
        lam = [mp.mpf(0)] * count

        def solve_on(passive: list[int]) -> list[mp.mpf] | None:
            return _solve([[m[i][j] for j in passive] for i in passive], [-b[i] for i in passive])

        flat = aux.reshape(count, -1)
        scale = max(float(np.linalg.norm(flat, axis=1).max()), 1e-300)
        try:
            guess, _ = nnls(flat.T / scale, -main.reshape(-1) / scale, maxiter=50 * count)
            passive = [int(i) for i in np.nonzero(guess > 0)[0]]
        except RuntimeError:
            passive = []
        z = solve_on(passive) if passive else []
        if z is None or (z and min(z) <= 0):
            passive = []
        else:
            for index, value in zip(passive, z, strict=True):
                lam[index] = value
        for _ in range(20 * count + 100):  # Lawson–Hanson outer loop
            s = [b[i] + mp.fsum(m[i][j] * lam[j] for j in passive) for i in range(count)]
            candidates = [i for i in range(count) if i not in passive and s[i] < -tiny]
            if not candidates:
                return lam
            passive.append(min(candidates, key=lambda i: s[i] / mp.sqrt(m[i][i])))
            for _ in range(count + 1):
                z = solve_on(passive)
                if z is None:
                    raise AssertionError("reference: dependent passive set")
                if min(z) > 0:
                    for index, value in zip(passive, z, strict=True):
                        lam[index] = value
                    break
                step = min(lam[i] / (lam[i] - v) for i, v in zip(passive, z, strict=True) if v <= 0)
                for index, value in zip(passive, z, strict=True):
                    lam[index] = lam[index] + step * (value - lam[index])
                passive = [i for i in passive if lam[i] > mp.mpf(10) ** -45 * (1 + abs(lam[i]))]
                for i in range(count):
                    if i not in passive:
                        lam[i] = mp.mpf(0)
        raise AssertionError("reference: Lawson–Hanson did not terminate")


# ----------------------------------------------------------------------------------------------
# instance families

Generator = Callable[[np.random.Generator], np.ndarray]


def _tasks(rng: np.random.Generator, low: int = 2, high: int = 40) -> int:
    """T between ``low`` and ``high``, small T more often (the 50-digit reference is O(T³))."""
    choices = [t for t in (2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 40) if low <= t <= high]
    weights = np.array([1.0 / (1 + t) ** 0.5 for t in choices])
    return int(rng.choice(choices, p=weights / weights.sum()))


def _spread(rng: np.random.Generator, tasks: int, decades: float) -> np.ndarray:
    return 10.0 ** rng.uniform(-decades, decades, size=(tasks, 1))


def _gaussian(rng: np.random.Generator) -> np.ndarray:
    tasks = _tasks(rng)
    return rng.standard_normal((tasks, int(rng.integers(tasks, 2 * tasks + 17))))


def _scaled(rng: np.random.Generator) -> np.ndarray:
    grads = _gaussian(rng)
    return grads * _spread(rng, len(grads), 6.0)


def _near_stationary(rng: np.random.Generator) -> np.ndarray:
    """The hull passes within 10⁻¹⁰–10⁻² of 0 (before scaling); norms over 10^±6."""
    tasks = _tasks(rng, 3)
    dim = int(rng.integers(max(2, tasks - 2), tasks + 8))
    base = rng.standard_normal((tasks, dim))
    weights = rng.dirichlet(np.ones(tasks))
    direction = rng.standard_normal(dim)
    grads = (
        base - weights @ base + 10.0 ** rng.uniform(-10, -2) * direction / np.linalg.norm(direction)
    )
    return grads * _spread(rng, tasks, float(rng.uniform(0.0, 6.0)))


def _stationary(rng: np.random.Generator) -> np.ndarray:
    """0 inside the hull (to rounding): u* ≈ 0, the solver must report stationarity."""
    tasks = _tasks(rng, 3)
    dim = int(rng.integers(2, tasks + 1))
    base = rng.standard_normal((tasks, dim))
    grads = base - rng.dirichlet(np.ones(tasks)) @ base
    return grads * _spread(rng, tasks, 3.0)


def _rank_deficient(rng: np.random.Generator) -> np.ndarray:
    tasks = _tasks(rng, 3)
    rank = int(rng.integers(1, max(2, tasks // 2)))
    grads = rng.standard_normal((tasks, rank)) @ rng.standard_normal((rank, tasks + 6))
    return grads * _spread(rng, tasks, 3.0)


def _duplicates(rng: np.random.Generator) -> np.ndarray:
    """Repeated rows, some exactly, some perturbed by 10⁻¹²: a singular Gram matrix."""
    grads = _scaled(rng)
    tasks = len(grads)
    if tasks < 3:
        return np.vstack([grads, grads[:1]])
    copies = rng.integers(0, tasks, size=max(1, tasks // 3))
    for target, source in zip(rng.permutation(tasks)[: len(copies)], copies, strict=True):
        if target != source:
            noise = 1e-12 * rng.standard_normal(grads.shape[1]) * rng.integers(0, 2)
            grads[target] = grads[source] * (1 + noise)
    return grads


def _correlated(rng: np.random.Generator) -> np.ndarray:
    """A common component plus 10⁻³–1 noise: little conflict, far from stationarity."""
    tasks = _tasks(rng)
    dim = int(rng.integers(tasks, 2 * tasks + 17))
    common = rng.standard_normal(dim)
    grads = common + 10.0 ** rng.uniform(-3, 0) * rng.standard_normal((tasks, dim))
    return grads * _spread(rng, tasks, 2.0)


def orthogonal(rng: np.random.Generator) -> np.ndarray:
    """Orthogonal rows, norms over 10^±6: α*ᵢ ∝ 1/‖gᵢ‖² in closed form."""
    tasks = _tasks(rng)
    q, _ = np.linalg.qr(rng.standard_normal((tasks + int(rng.integers(0, 8)), tasks)))
    return q.T * _spread(rng, tasks, 6.0)


def _low_dimension(rng: np.random.Generator) -> np.ndarray:
    """Many tasks in 2–5 dimensions: u* on a small face, or 0 inside the hull."""
    tasks = _tasks(rng, 6)
    grads = rng.standard_normal((tasks, int(rng.integers(2, 6))))
    grads[:, 0] += rng.uniform(0, 3)  # a common direction, sometimes enough to leave 0 outside
    return grads * _spread(rng, tasks, 4.0)


def _one_tiny(rng: np.random.Generator) -> np.ndarray:
    """One task 10⁻¹⁰–10⁻⁴ times smaller than the rest: u* near it."""
    grads = _gaussian(rng)
    grads[int(rng.integers(len(grads)))] *= 10.0 ** rng.uniform(-10, -4)
    return grads


def _opposed_pairs(rng: np.random.Generator) -> np.ndarray:
    """Pairs g, −c·g (c over 10^±6) plus a few free gradients."""
    pairs = int(rng.integers(1, 6))
    dim = int(rng.integers(2 * pairs + 2, 2 * pairs + 10))
    base = rng.standard_normal((pairs, dim))
    grads = [base, -base * 10.0 ** rng.uniform(-6, 6, size=(pairs, 1))]
    grads.append(rng.standard_normal((int(rng.integers(0, 4)), dim)))
    return np.vstack(grads)


def _float32_rounded(rng: np.random.Generator) -> np.ndarray:
    """Near-stationary gradients rounded to float32, as a float32 model's gradients are."""
    return _near_stationary(rng).astype(np.float32).astype(np.float64)


def _large(rng: np.random.Generator) -> np.ndarray:
    tasks = int(rng.choice([24, 40]))
    grads = rng.standard_normal((tasks, tasks + int(rng.integers(8, tasks + 8))))
    if rng.random() < 0.5:
        grads -= 0.9 * grads.mean(0)  # closer to stationarity
    return grads * _spread(rng, tasks, 2.0)


MIN_NORM_FAMILIES: dict[str, Generator] = {
    "gaussian": _gaussian,
    "scaled": _scaled,
    "near_stationary": _near_stationary,
    "stationary": _stationary,
    "rank_deficient": _rank_deficient,
    "duplicates": _duplicates,
    "correlated": _correlated,
    "orthogonal": orthogonal,
    "low_dimension": _low_dimension,
    "one_tiny": _one_tiny,
    "opposed_pairs": _opposed_pairs,
    "float32_rounded": _float32_rounded,
    "large": _large,
}


def _exact_rank_deficient(rng: np.random.Generator) -> np.ndarray:
    """G = AB with small-integer A, B: rank exactly r < T (float64 represents it exactly), rows
    scaled by powers of two (exact)."""
    tasks = _tasks(rng, 3, 24)
    rank = int(rng.integers(1, max(2, tasks // 2)))
    a = rng.integers(-4, 5, size=(tasks, rank)).astype(np.float64)
    a[np.all(a == 0, axis=1), 0] = 1.0
    b = rng.integers(-4, 5, size=(rank, tasks + 6)).astype(np.float64)
    b[:, 0] += 9.0  # no zero row of B
    return a @ b * 2.0 ** rng.integers(-20, 21, size=(tasks, 1))


def _exact_duplicates(rng: np.random.Generator) -> np.ndarray:
    """Exact copies of rows scaled by powers of two (parallel constraints, exactly)."""
    grads = _scaled(rng)
    copies = grads[rng.integers(0, len(grads), size=int(rng.integers(1, 4)))]
    return np.vstack([grads, copies * 2.0 ** rng.integers(-20, 21, size=(len(copies), 1))])


def _exact_opposed(rng: np.random.Generator) -> np.ndarray:
    """Pairs g, −2ᵏg (exactly antiparallel: the cone lies in the hyperplane ⟨u, g⟩ = 0) plus free
    gradients."""
    pairs = int(rng.integers(1, 4))
    dim = int(rng.integers(2 * pairs + 4, 2 * pairs + 12))
    base = rng.standard_normal((pairs, dim))
    free = rng.standard_normal((int(rng.integers(0, 4)), dim))
    return np.vstack([base, -base * 2.0 ** rng.integers(-20, 21, size=(pairs, 1)), free])


def _float32_gaussian(rng: np.random.Generator) -> np.ndarray:
    return _scaled(rng).astype(np.float32).astype(np.float64)


#: auxiliary-gradient families for the projection. The projection onto {u : Gu ≥ 0} is stable
#: under rounding-size changes of G only when the constraints are not nearly positively
#: dependent: two rounded copies of antiparallel gradients g, −cg leave a wedge whose bounding
#: normal is the O(1)-direction of their rounding difference, and the exact answer on the rounded
#: data differs from the intended one by O(1). Degenerate constraints therefore come exactly
#: representable (integer rank-deficient G, copies and opposites scaled by powers of two).
PROJECTION_FAMILIES: dict[str, Generator] = {
    "gaussian": _gaussian,
    "scaled": _scaled,
    "correlated": _correlated,
    "orthogonal": orthogonal,
    "one_tiny": _one_tiny,
    "large": _large,
    "float32_rounded": _float32_gaussian,
    "exact_rank_deficient": _exact_rank_deficient,
    "exact_duplicates": _exact_duplicates,
    "exact_opposed": _exact_opposed,
}
MAIN_GRADIENTS = ("conflict", "no_conflict", "opposite", "random")


def projection_instance(
    rng: np.random.Generator, family: str, main: str = "random"
) -> tuple[np.ndarray, np.ndarray]:
    """(g₀, G) for the projection: auxiliary gradients G from ``family``, the main gradient g₀
    (norm over 10^±6) ``"conflict"`` (pulled against some gᵢ), ``"no_conflict"`` (inside the
    dual cone: u* = g₀), ``"opposite"`` (−Σcᵢgᵢ plus a little noise: u* small) or
    ``"random"`` (one of the three)."""
    aux = PROJECTION_FAMILIES[family](rng)
    dim = aux.shape[1]
    unit = aux / np.linalg.norm(aux, axis=1, keepdims=True).clip(1e-300)
    kind = main if main != "random" else str(rng.choice(MAIN_GRADIENTS[:3]))
    if kind == "conflict":
        g0 = rng.standard_normal(dim) - 2.0 * rng.dirichlet(np.ones(len(aux))) @ unit
    elif kind == "no_conflict":
        g0 = rng.dirichlet(np.ones(len(aux))) @ unit
    else:
        g0 = -(rng.dirichlet(np.ones(len(aux))) @ unit) + 1e-3 * rng.standard_normal(dim)
    return g0 * 10.0 ** rng.uniform(-6, 6), aux
