"""Exact blocked k-nearest neighbours and k-occurrence; optional faiss backend (spec 10 §7.1).

The hub value (k-occurrence) of x_j is the number of neighbour lists that contain it
(spec 10 §2): N_k(x_j) = #{i : x_j ∈ kNN(x_i)}.

**Exact backend** (torch, CPU or CUDA; spec 10 §7.1 steps 1-4). For each block of B query rows, one
GEMM gives the ranking key

    D_ij = ‖x_j‖² − 2⟨q_i, x_j⟩        (= ‖q_i − x_j‖² − ‖q_i‖², the same order per row)

(``torch.addmm``; the per-row constant ‖q_i‖² is dropped: it does not change the ranking), the
query's own column is masked **by index**, k + 1 candidates are selected, and ``bincount``
accumulates the neighbour indices. Selection is two-stage when N ≥ 4·64·(k + 1): the minimum of
every 64-column chunk (one vectorised pass), the k + 1 chunks with the smallest minima (which must
contain the k + 1 smallest keys), then ``topk`` inside those — about 3× cheaper than ``topk`` over
the whole row on CPU. Memory is O(B·N): one reused (B, N) key block, no N × N matrix; the default
B gives the block half of a 256 MiB budget (:data:`DEFAULT_MEMORY_BUDGET`); norms and finiteness
checks run in small row chunks (no N × d temporaries). Distances are computed in float32, or in
float64 when X is float64 (half-precision inputs are promoted to float32: spec 10 pitfall 6).
``metric="cosine"`` L2-normalises the rows first (then D is 1 − cos up to a constant); an all-zero
row has no direction and raises.

**Ties** (spec 10 §7.1 step 5): neighbours are ordered by (distance, index) — at equal distance the
smaller index wins. The GEMM key only selects k + 1 candidates; their distances are then recomputed
from explicit differences ‖q − x‖² (bit-identical for identical points, so exact duplicates tie
exactly, which GEMM blocking does not guarantee) and sorted by (distance, index); a row whose
k-th and (k + 1)-th recomputed distances are equal (a tie straddling the cut) is re-ranked over all
N points the same way. Near-ties closer than the GEMM's rounding (≈ 1e-7 relative in float32) are
decided by the GEMM key.

**Conventions** (spec 10 §3, §7.1 step 6):

* ``include_self=False`` — the post's: a point is never its own neighbour; k true neighbours;
  Σ N_k = N·k and 0 ≤ N_k ≤ N − 1 (spec 10 §5).
* ``include_self=True`` — the official code's (scikit-learn ``kneighbors_graph(X)`` with X passed
  explicitly): the point occupies the first of its k slots **regardless of ties** (its own key is
  set to −∞), followed by its k − 1 nearest other points; N_k = 1 + N_{k−1}^{excl}, Σ N_k = N·k.

**faiss backend** (optional extra, ``pip install kexue[faiss]``; spec 10 §7.1 step 7):
:class:`FaissOptions` picks ``IndexFlatL2`` / ``IndexFlatIP`` (exact; IP on the normalised rows for
cosine), ``IndexIVFFlat`` (``nlist``, ``nprobe``) or ``IndexHNSWFlat`` (``hnsw_m``,
``ef_construction``, ``ef_search``). Self is removed by index: k + 1 neighbours are queried and the
query's own id is dropped wherever it appears; when an approximate index does not return it, the
last candidate is dropped instead. faiss computes in float32 and breaks ties in its own order (not
by index). Suitable for N in the millions, where the exact O(N²d) cost is prohibitive.
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from types import ModuleType
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import torch

__all__ = [
    "BACKENDS",
    "DEFAULT_MEMORY_BUDGET",
    "FAISS_INDEXES",
    "METRICS",
    "Backend",
    "FaissIndexType",
    "FaissOptions",
    "Metric",
    "default_block_size",
    "k_nearest_neighbours",
    "k_occurrence",
]

Metric = Literal["sqeuclidean", "cosine"]
Backend = Literal["exact", "faiss"]
FaissIndexType = Literal["flat", "ivf", "hnsw"]
METRICS: tuple[str, ...] = ("sqeuclidean", "cosine")
BACKENDS: tuple[str, ...] = ("exact", "faiss")
FAISS_INDEXES: tuple[str, ...] = ("flat", "ivf", "hnsw")

#: Elements per temporary of the chunked elementwise passes (norms, finiteness, exact distances):
#: small enough to be recycled by the C allocator (multi-MiB temporaries fragmented the heap and
#: raised the peak RSS by ~N·d·4 bytes in measurements).
_ELEMENTWISE_CHUNK = 2**16
#: Columns per chunk of the two-stage top-k selection of the exact backend.
_CHUNK = 64
#: Bytes the exact backend's distance block may use by default (spec 10 §7.1 step 4).
DEFAULT_MEMORY_BUDGET = 256 * 2**20

PointsLike = torch.Tensor | npt.NDArray[Any]


@dataclasses.dataclass(frozen=True)
class FaissOptions:
    """Index choice and parameters of the faiss backend (spec 10 §7.1 step 7).

    ``index``: ``"flat"`` (exact brute force), ``"ivf"`` (inverted file with ``nlist`` k-means
    cells, ``nprobe`` visited per query; ``nlist=None`` → ⌈4√N⌉ capped so each cell has ≥ 39
    training points) or ``"hnsw"`` (graph with ``hnsw_m`` links per node, ``ef_construction`` and
    ``ef_search`` beam widths). ``seed`` fixes the IVF k-means initialisation.
    """

    index: FaissIndexType = "flat"
    nlist: int | None = None
    nprobe: int = 16
    hnsw_m: int = 32
    ef_construction: int = 80
    ef_search: int = 64
    seed: int = 0

    def __post_init__(self) -> None:
        if self.index not in FAISS_INDEXES:
            raise ValueError(f"index must be one of {FAISS_INDEXES}, got {self.index!r}")
        for name in ("nprobe", "hnsw_m", "ef_construction", "ef_search"):
            _check_int(getattr(self, name), name, minimum=1)
        if self.nlist is not None:
            _check_int(self.nlist, "nlist", minimum=1)


# ----------------------------------------------------------------------------------------------
# Validation


def _row_slices(points: torch.Tensor) -> list[slice]:
    """Row ranges of ~64k elements for elementwise work without N × d temporaries."""
    rows = max(1, _ELEMENTWISE_CHUNK // max(1, points.shape[1]))
    return [slice(first, first + rows) for first in range(0, points.shape[0], rows)]


def _finite_rows(points: torch.Tensor) -> torch.Tensor:
    """Which rows are entirely finite, in row chunks written into one preallocated result (small
    results interleaved with freed temporaries fragment the C heap)."""
    result = torch.empty(points.shape[0], dtype=torch.bool, device=points.device)
    for rows in _row_slices(points):
        result[rows] = torch.isfinite(points[rows]).all(dim=1)
    return result


def _squared_norms(points: torch.Tensor) -> torch.Tensor:
    """‖x_j‖² per row, chunked like :func:`_finite_rows`."""
    result = torch.empty(points.shape[0], dtype=points.dtype, device=points.device)
    for rows in _row_slices(points):
        chunk = points[rows]
        result[rows] = (chunk * chunk).sum(dim=1)
    return result


def _check_int(value: object, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} ({value!r})")
    if int(value) < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value


def _as_points(value: object, name: str) -> torch.Tensor:
    """A 2-D, non-empty, finite floating tensor (NumPy arrays are converted, not copied)."""
    if isinstance(value, np.ndarray):
        if not np.issubdtype(value.dtype, np.floating):
            raise TypeError(f"{name} must be floating point, got dtype {value.dtype}")
        value = torch.from_numpy(np.ascontiguousarray(value))
    if not isinstance(value, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor or a numpy array of shape (N, d), "
            f"got {type(value).__name__}"
        )
    if not value.is_floating_point():
        raise TypeError(f"{name} must be floating point, got {value.dtype} (convert with .float())")
    if value.ndim != 2:
        raise ValueError(f"{name} must have shape (N, d), got shape {tuple(value.shape)}")
    if value.shape[0] == 0 or value.shape[1] == 0:
        raise ValueError(
            f"{name} is empty (shape {tuple(value.shape)}): need N >= 1 points, d >= 1"
        )
    finite_rows = _finite_rows(value)  # isfinite on the whole array: several N × d temporaries
    if not bool(finite_rows.all()):
        bad = torch.nonzero(~finite_rows).flatten()
        raise ValueError(
            f"{name} has {bad.numel()} row(s) with NaN or infinite values (first: row "
            f"{int(bad[0])}); remove or impute them before computing neighbours"
        )
    return value.detach()


def _compute_dtype(points: torch.Tensor) -> torch.dtype:
    return torch.float64 if points.dtype == torch.float64 else torch.float32


def _prepared(points: torch.Tensor, metric: str, name: str) -> torch.Tensor:
    points = points.to(_compute_dtype(points))
    if metric == "cosine":
        norms = torch.linalg.vector_norm(points, dim=1)
        zero = norms == 0
        if bool(zero.any()):
            raise ValueError(
                f"{name} has {int(zero.sum())} all-zero row(s) (first: row "
                f"{int(torch.nonzero(zero)[0])}): the cosine distance is undefined for them; use "
                'metric="sqeuclidean" or drop those rows'
            )
        points = points / norms.unsqueeze(1)
    return points


def _check_k(k: object, n_reference: int, include_self: bool, has_queries: bool) -> int:
    k = _check_int(k, "k", minimum=1)
    if has_queries or include_self:
        if k > n_reference:
            raise ValueError(
                f"k = {k} exceeds the number of reference points N = {n_reference}: choose k <= N"
            )
    elif k >= n_reference:
        raise ValueError(
            f"k = {k} but only N - 1 = {n_reference - 1} other points exist (self excluded): "
            "choose k <= N - 1 or pass more points"
        )
    return k


def default_block_size(
    n_reference: int, element_size: int = 4, memory_budget: int = DEFAULT_MEMORY_BUDGET
) -> int:
    """Query rows per block so that the B × N key block (plus a same-sized sort buffer) fits
    ``memory_budget`` bytes (spec 10 §7.1 step 4): B = max(1, budget // (2·N·element_size))."""
    _check_int(n_reference, "n_reference", minimum=1)
    _check_int(element_size, "element_size", minimum=1)
    _check_int(memory_budget, "memory_budget", minimum=1)
    return max(1, memory_budget // (2 * n_reference * element_size))


# ----------------------------------------------------------------------------------------------
# Exact backend


def _order_by_distance_then_index(
    values: torch.Tensor, indices: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sort each row's candidates by (value, index): by index first, then stably by value."""
    by_index = indices.argsort(dim=1)
    indices = indices.gather(1, by_index)
    values = values.gather(1, by_index)
    values, by_value = values.sort(dim=1, stable=True)
    return values, indices.gather(1, by_value)


def _exact_distances(
    queries: torch.Tensor,
    reference: torch.Tensor,
    indices: torch.Tensor,
    query_ids: torch.Tensor | None,
    self_key: float,
) -> torch.Tensor:
    """‖q_i − x_j‖² from explicit differences for the candidate indices (B, C): bit-identical for
    identical points, so exact duplicates tie exactly; the query's own entry gets ``self_key``."""
    distances = torch.empty(indices.shape, dtype=queries.dtype, device=queries.device)
    chunk = max(1, _ELEMENTWISE_CHUNK // max(1, indices.shape[1] * queries.shape[1]))
    for first in range(0, indices.shape[0], chunk):
        last = min(first + chunk, indices.shape[0])
        differences = reference[indices[first:last]] - queries[first:last].unsqueeze(1)
        distances[first:last] = (differences * differences).sum(dim=2)
    if query_ids is not None:
        distances[indices == query_ids.unsqueeze(1)] = self_key
    return distances


def _row_distances(query: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """‖q − x_j‖² for every reference point, from explicit differences, in column chunks."""
    distances = torch.empty(reference.shape[0], dtype=query.dtype, device=query.device)
    chunk = max(1, _ELEMENTWISE_CHUNK // max(1, reference.shape[1]))
    for first in range(0, reference.shape[0], chunk):
        differences = reference[first : first + chunk] - query
        distances[first : first + chunk] = (differences * differences).sum(dim=1)
    return distances


def _knn_exact(
    queries: torch.Tensor,
    reference: torch.Tensor,
    k: int,
    *,
    self_mask: bool,
    include_self: bool,
    block_size: int,
) -> torch.Tensor:
    n_queries, n_reference = queries.shape[0], reference.shape[0]
    reference_sq = _squared_norms(reference).unsqueeze(0)  # [1, N]
    reference_t = reference.t()
    candidates = min(k + 1, n_reference)
    neighbours = torch.empty(n_queries, k, dtype=torch.long, device=queries.device)
    self_key = -math.inf if include_self else math.inf
    # Chunked selection: the k + 1 smallest keys of a row lie in the k + 1 column chunks with the
    # smallest minima, so one vectorised min per chunk replaces most of top-k's work.
    chunked = n_reference >= 4 * _CHUNK * candidates
    padded = n_reference + (-n_reference) % _CHUNK if chunked else n_reference
    # Padding columns stay +inf; the GEMM writes only [:, :N] (BLAS leading dimension = padded).
    buffer = torch.full((block_size, padded), math.inf, dtype=queries.dtype, device=queries.device)
    offsets = torch.arange(_CHUNK, device=queries.device)
    for start in range(0, n_queries, block_size):
        stop = min(start + block_size, n_queries)
        keys = buffer[: stop - start]
        # One GEMM per block: ‖x_j‖² − 2⟨q_i, x_j⟩ (spec 10 §7.1 step 3).
        torch.addmm(
            reference_sq,
            queries[start:stop],
            reference_t,
            beta=1.0,
            alpha=-2.0,
            out=keys[:, :n_reference],
        )
        if self_mask:
            rows = torch.arange(stop - start, device=keys.device)
            keys[rows, rows + start] = self_key  # self by index, not by rank
        if chunked:
            minima = keys.view(stop - start, padded // _CHUNK, _CHUNK).amin(dim=2)
            _, chunk_ids = minima.topk(candidates, dim=1, largest=False, sorted=False)
            columns = (chunk_ids.unsqueeze(2) * _CHUNK + offsets).reshape(stop - start, -1)
            _, position = keys.gather(1, columns).topk(
                candidates, dim=1, largest=False, sorted=False
            )
            indices = columns.gather(1, position)
        else:
            _, indices = keys.topk(candidates, dim=1, largest=False, sorted=False)
        query_ids = torch.arange(start, stop, device=keys.device) if self_mask else None
        values = _exact_distances(queries[start:stop], reference, indices, query_ids, self_key)
        values, indices = _order_by_distance_then_index(values, indices)
        if candidates > k:
            straddling = torch.nonzero(values[:, k - 1] == values[:, k]).flatten()
            for row in straddling.tolist():
                # A tie across the cut: rank the whole row by exact distance, stably.
                distances = _row_distances(queries[start + row], reference)
                if query_ids is not None:
                    distances[start + row] = self_key
                indices[row, :k] = distances.sort(stable=True).indices[:k]
        neighbours[start:stop] = indices[:, :k]
    return neighbours


# ----------------------------------------------------------------------------------------------
# faiss backend


def _import_faiss() -> ModuleType:
    try:
        return importlib.import_module("faiss")
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            'backend="faiss" needs the optional faiss package: pip install kexue[faiss] '
            '(or use backend="exact")'
        ) from error


def _faiss_index(faiss: Any, dim: int, n_reference: int, metric: str, options: FaissOptions) -> Any:
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    if options.index == "flat":
        return faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
    if options.index == "hnsw":
        index = faiss.IndexHNSWFlat(dim, options.hnsw_m, faiss_metric)
        index.hnsw.efConstruction = options.ef_construction
        index.hnsw.efSearch = options.ef_search
        return index
    nlist = options.nlist
    if nlist is None:
        nlist = max(1, min(math.ceil(4 * math.sqrt(n_reference)), n_reference // 39))
    if nlist > n_reference:
        raise ValueError(f"nlist = {nlist} exceeds the number of reference points {n_reference}")
    quantizer = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
    index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss_metric)
    index.cp.seed = options.seed
    index.nprobe = min(options.nprobe, nlist)
    return index


def _knn_faiss(
    queries: torch.Tensor,
    reference: torch.Tensor,
    k: int,
    *,
    self_mask: bool,
    include_self: bool,
    metric: str,
    options: FaissOptions,
) -> torch.Tensor:
    faiss = _import_faiss()
    reference_np = np.ascontiguousarray(reference.detach().cpu().numpy(), dtype=np.float32)
    queries_np = (
        reference_np
        if queries is reference
        else np.ascontiguousarray(queries.detach().cpu().numpy(), dtype=np.float32)
    )
    n_reference, dim = reference_np.shape
    index = _faiss_index(faiss, dim, n_reference, metric, options)
    if not index.is_trained:
        index.train(reference_np)
    index.add(reference_np)
    if not self_mask:
        _, labels = index.search(queries_np, k)
        result = torch.from_numpy(labels.astype(np.int64))
    else:
        candidates = min(k + 1, n_reference)
        _, labels_np = index.search(queries_np, candidates)
        labels = torch.from_numpy(labels_np.astype(np.int64))
        own = torch.arange(labels.shape[0]).unsqueeze(1)
        unusable = (labels == own) | (labels < 0)
        # Stable: keep the other ids in faiss's order, push self and "missing" (-1) to the end.
        order = unusable.to(torch.int8).argsort(dim=1, stable=True)
        others = labels.gather(1, order)
        result = torch.cat([own, others[:, : k - 1]], dim=1) if include_self else others[:, :k]
    if bool((result < 0).any()):
        raise RuntimeError(
            "the approximate faiss index returned fewer than k neighbours for some queries: "
            "raise nprobe (ivf) or ef_search (hnsw), or use FaissOptions(index='flat')"
        )
    return result.to(queries.device)


# ----------------------------------------------------------------------------------------------
# Public functions


def k_nearest_neighbours(
    X: PointsLike,
    k: int = 5,
    *,
    metric: Metric = "sqeuclidean",
    include_self: bool = False,
    block_size: int | None = None,
    backend: Backend = "exact",
    queries: PointsLike | None = None,
    faiss_options: FaissOptions | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> torch.Tensor:
    """Indices of each point's k nearest neighbours, shape (N, k), nearest first (spec 10 §7.1).

    ``X`` (N, d) float tensor (any device) or NumPy array. ``include_self`` selects the convention
    (module docstring): False → k true neighbours, self excluded by index; True → self in the first
    slot plus k − 1 neighbours. With ``queries`` (M, d) the lists of those points are searched in X
    (no self handling; ``include_self`` must be False). Exact backend: ties broken by the smaller
    index; ``block_size`` query rows per GEMM (default: :func:`default_block_size` for
    ``memory_budget`` bytes). ``backend="faiss"`` uses ``faiss_options`` (default exact flat index).

    Raises ValueError for k ≥ N (self excluded) or k > N, empty X, NaN/inf rows, zero rows with the
    cosine metric, and unknown options.
    """
    metric = _check_choice(metric, "metric", METRICS)  # type: ignore[assignment]
    backend = _check_choice(backend, "backend", BACKENDS)  # type: ignore[assignment]
    if not isinstance(include_self, bool):
        raise TypeError(f"include_self must be a bool, got {type(include_self).__name__}")
    reference = _as_points(X, "X")
    if queries is not None:
        if include_self:
            raise ValueError(
                "include_self=True is only meaningful without queries (the points are their own "
                "queries); pass queries=None or include_self=False"
            )
        query_points = _as_points(queries, "queries")
        if query_points.shape[1] != reference.shape[1]:
            raise ValueError(
                f"queries have dimension {query_points.shape[1]} but X has {reference.shape[1]}"
            )
        if query_points.device != reference.device:
            raise ValueError(f"queries are on {query_points.device} but X is on {reference.device}")
    k = _check_k(k, reference.shape[0], include_self, queries is not None)
    reference = _prepared(reference, metric, "X")
    prepared_queries = reference if queries is None else _prepared(query_points, metric, "queries")
    if queries is not None and prepared_queries.dtype != reference.dtype:
        common = torch.promote_types(prepared_queries.dtype, reference.dtype)
        reference, prepared_queries = reference.to(common), prepared_queries.to(common)
    self_mask = queries is None
    if backend == "faiss":
        if faiss_options is not None and not isinstance(faiss_options, FaissOptions):
            raise TypeError(
                f"faiss_options must be a FaissOptions, got {type(faiss_options).__name__}"
            )
        return _knn_faiss(
            prepared_queries,
            reference,
            k,
            self_mask=self_mask,
            include_self=include_self,
            metric=metric,
            options=faiss_options or FaissOptions(),
        )
    if block_size is None:
        block = default_block_size(reference.shape[0], reference.element_size(), memory_budget)
    else:
        block = _check_int(block_size, "block_size", minimum=1)
    block = min(block, prepared_queries.shape[0])
    with torch.no_grad():
        return _knn_exact(
            prepared_queries,
            reference,
            k,
            self_mask=self_mask,
            include_self=include_self,
            block_size=block,
        )


def k_occurrence(
    X: PointsLike,
    k: int = 5,
    *,
    metric: Metric = "sqeuclidean",
    include_self: bool = False,
    block_size: int | None = None,
    backend: Backend = "exact",
    queries: PointsLike | None = None,
    faiss_options: FaissOptions | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
) -> torch.Tensor:
    """Hub values N_k(x_j), a LongTensor of shape (N,) on X's device (spec 10 §2, §7.1).

    ``N_k(x_j)`` counts the neighbour lists of :func:`k_nearest_neighbours` (same arguments) that
    contain x_j. Self excluded (default, the post's convention): Σ N_k = N·k and 0 ≤ N_k ≤ N − 1;
    ``include_self=True`` (the official code's): every point counts itself once, N_k =
    1 + N_{k−1}^{excl}, Σ N_k = N·k (spec 10 §5, C10.3). With ``queries``: Σ N_k = M·k.
    """
    neighbours = k_nearest_neighbours(
        X,
        k,
        metric=metric,
        include_self=include_self,
        block_size=block_size,
        backend=backend,
        queries=queries,
        faiss_options=faiss_options,
        memory_budget=memory_budget,
    )
    n_reference = X.shape[0]
    return torch.bincount(neighbours.flatten(), minlength=n_reference)
