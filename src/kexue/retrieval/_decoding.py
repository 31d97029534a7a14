"""Trie-constrained greedy and beam search (spec 04 §3).

* :func:`constrained_log_probs` — one batched step of §3.1: ``log_softmax`` over the vocabulary,
  −inf outside each row's allowed set (never ``log(p + ε)``), then either renormalised over the
  allowed set (``renormalized``) or left as the model's own log-probabilities (``raw``), with the
  optional look-ahead weights of §4.3;
* :func:`constrained_greedy` — §3.3;
* :func:`constrained_beam_search` — §3.4, ``mode="standard"`` (finished pool, exact stop rule) and
  ``mode="bert4keras"`` (the reference's finishing rule, reproduced);
* :class:`Hypothesis` — one decoded sequence.

The model is abstracted as a *step function* ``step_fn(prefixes) -> scores``: ``prefixes`` is an
int64 ``[R, t]`` tensor (the ``prompt`` tokens followed by the key tokens decoded so far, on the
CPU), ``scores`` a floating ``[R, V]`` tensor of logits or log-probabilities with ``V >=
trie.vocab_size`` (the engine applies ``log_softmax`` itself). ``R = batch_size * num_beams`` rows,
input-major (rows ``b*num_beams .. (b+1)*num_beams-1`` belong to input ``b``), and ``R`` never
changes during one call: finished or empty beams stay as padding rows (their prefixes are padded
with ``trie.end_id``), so a model can ``repeat_interleave`` its encoder output once. If the step
function has a method ``reorder(indices)``, it is called after every step with the int64 ``[R]``
source row of every new row (for models with a KV cache). Every step is vectorised over rows with
:meth:`Trie.children` / :meth:`Trie.allowed_mask`; the only per-row Python work is the look-ahead's
subtree search, which is inherently per node (and cached, spec 04 §4.3).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ._lookahead import LookAhead

if TYPE_CHECKING:
    from ._trie import Trie

__all__ = [
    "BEAM_MODES",
    "SCORING_MODES",
    "Hypothesis",
    "StepFunction",
    "constrained_beam_search",
    "constrained_greedy",
    "constrained_log_probs",
]

StepFunction = Callable[[torch.Tensor], torch.Tensor]
"""``step_fn(prefixes: int64 [R, t]) -> scores [R, V]`` (logits or log-probabilities)."""

SCORING_MODES = ("renormalized", "raw")
"""Beam scores (spec 04 §3.2): Σ log p̃ over the allowed sets, or Σ log p of the model."""

BEAM_MODES = ("standard", "bert4keras")
"""Finishing rules (spec 04 §3.4)."""

_NEG_INF = float("-inf")
_FLOAT64_MIN = torch.finfo(torch.float64).min


@dataclass(frozen=True)
class Hypothesis:
    """One decoded sequence (spec 04 §3).

    ``tokens``: the decoded tokens (without the prompt), including the terminator ``END`` when the
    key is complete; ``key``: the stored key, i.e. ``tokens[:-1]`` when ``complete`` (the trie
    appends ``END`` to every key), else the partial ``tokens``; ``score``: Σ of the per-step scores
    of the chosen scoring mode divided by ``len(tokens) ** length_penalty``; ``complete``: the trie
    state is a stored key (``END`` taken). An incomplete hypothesis (truncated at ``maxlen``, or a
    ``bert4keras`` hypothesis finished on an ``END`` that is not the last one of the key) must not
    be reported as a retrieved key (§3.4); ``values``: the key's values (insertion order) when
    complete, else ``[]``.
    """

    tokens: tuple[int, ...]
    key: tuple[int, ...]
    score: float
    complete: bool
    values: list[Any] = field(default_factory=list, hash=False)


# --------------------------------------------------------------------------- validation helpers


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return value


def _check_choice(value: object, name: str, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _check_step_fn(step_fn: object) -> None:
    if not callable(step_fn):
        raise TypeError(
            f"step_fn must be callable (prefixes [R, t] -> scores [R, V]), got "
            f"{type(step_fn).__name__}"
        )


def _check_prompt(prompt: Sequence[int] | torch.Tensor) -> torch.Tensor:
    if isinstance(prompt, torch.Tensor):
        if prompt.ndim != 1 or prompt.is_floating_point() or prompt.is_complex():
            raise ValueError(
                f"prompt must be a 1-D integer tensor, got {prompt.dtype} {prompt.ndim}-D"
            )
        items = [int(t) for t in prompt.tolist()]
    else:
        items = []
        for t in prompt:
            if isinstance(t, bool) or not isinstance(t, int):
                raise TypeError(f"prompt tokens must be ints, got {type(t).__name__}")
            items.append(t)
    if any(t < 0 for t in items):
        raise ValueError(f"prompt tokens must be >= 0, got {items}")
    return torch.tensor(items, dtype=torch.int64)


def _resolve_maxlen(maxlen: int | None, trie: Trie) -> int:
    if maxlen is None:
        return int(trie.max_depth)
    return _check_count(maxlen, "maxlen")


def _resolve_lookahead(
    lookahead: LookAhead | Sequence[LookAhead] | None, batch_size: int
) -> list[LookAhead] | None:
    if lookahead is None:
        return None
    if isinstance(lookahead, LookAhead):
        return [lookahead] * batch_size
    items = list(lookahead)
    if len(items) != batch_size:
        raise ValueError(
            f"lookahead must be one LookAhead (shared by all inputs) or one per input; got "
            f"{len(items)} for batch_size={batch_size}"
        )
    for i, item in enumerate(items):
        if not isinstance(item, LookAhead):
            raise TypeError(f"lookahead[{i}] must be a LookAhead, got {type(item).__name__}")
    return items


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.promote_types(dtype, torch.float32)


# --------------------------------------------------------------------------- one step (§3.1)


def _allowed(trie: Trie, states: torch.Tensor, vocab: int, device: torch.device) -> torch.Tensor:
    """bool ``[R, vocab]`` allowed mask on ``device``; dead (-1) and complete rows are all False."""
    return trie.allowed_mask(states=states.to(torch.int64), vocab_size=vocab).to(device)


def _normalize(
    log_probs: torch.Tensor,
    mask: torch.Tensor,
    renormalize: bool,
    weights: torch.Tensor | None,
) -> torch.Tensor:
    """−inf masking, look-ahead reweighting and (optional) renormalisation of log-probabilities.

    ``renormalize``: ``lw − logsumexp_A lw`` with ``lw = log p / w`` (spec 04 §3.1, §4.3); a row
    whose allowed tokens all have probability 0 becomes uniform over its allowed set (so the
    validity guarantee of §3.5 holds for any model). Not renormalised (``raw``): ``log p`` on the
    allowed set; with look-ahead weights, the reweighted distribution is rescaled to the original
    mass of the allowed set (``lw − logsumexp_A lw + logsumexp_A log p``), so a raw score stays the
    log-probability the model gives the allowed set, redistributed by the look-ahead.
    Single-child rows give exactly ``0`` (renormalised) or exactly ``log p`` (raw).
    """
    if not renormalize and weights is None:
        return log_probs.masked_fill(~mask, _NEG_INF)
    lw = log_probs if weights is None else log_probs / weights.to(log_probs)
    masked_w = lw.masked_fill(~mask, _NEG_INF)
    lse_w = torch.logsumexp(masked_w, dim=-1, keepdim=True)
    empty = torch.isneginf(lse_w)  # allowed set empty, or every allowed token has p = 0
    if renormalize:
        out = masked_w - lse_w
        count = mask.sum(dim=-1, keepdim=True).clamp(min=1).to(log_probs.dtype)
        out = torch.where(empty & mask, -torch.log(count), out)
    else:
        lse = torch.logsumexp(log_probs.masked_fill(~mask, _NEG_INF), dim=-1, keepdim=True)
        out = torch.where(empty, masked_w, masked_w - lse_w + lse)
    return out.masked_fill(~mask, _NEG_INF)


# Sparse masking (below) when the allowed edges of all rows are fewer than R·V / this: then
# gathering them beats full passes over the [R, V] scores (deep nodes have a handful of children).
_SPARSE_FRACTION = 8


def _log_softmax(scores: torch.Tensor) -> torch.Tensor:
    """``log_softmax`` over V; a row whose scores are all −inf (no mass anywhere) stays all −inf
    instead of NaN."""
    out = torch.log_softmax(scores, dim=-1)
    suspect = torch.isnan(out[:, 0])  # O(R): the full check only runs when needed
    if bool(suspect.any()):
        out[suspect & torch.isneginf(scores).all(dim=-1)] = _NEG_INF
    return out


def _sparse_masked(
    scores: torch.Tensor, trie: Trie, states: torch.Tensor, normalization: str
) -> torch.Tensor | None:
    """Masked scores ``[R, V]`` built from the allowed edges only, or None if they are too many.

    ``normalization``: ``"none"`` (copy the scores of allowed tokens, −inf elsewhere),
    ``"raw"`` (``log_softmax`` over V, gathered on the allowed tokens) or ``"renormalized"`` (``ℓ −
    logsumexp_A ℓ``; the full ``log_softmax`` normaliser cancels, so no pass over V is needed).
    Same results as the dense path of :func:`_normalize` without look-ahead weights: a row whose
    allowed scores are all −inf becomes uniform over its allowed set when renormalised.
    """
    rows_count, vocab = scores.shape
    degree = trie.num_children(states.to(torch.int64)).cpu()
    if int(degree.sum()) * _SPARSE_FRACTION > rows_count * vocab:
        return None
    children = trie.children(states.to(torch.int64))
    rows = children.rows.to(scores.device)
    flat = rows * vocab + children.tokens.to(scores.device)
    dtype = scores.dtype if normalization == "none" else _work_dtype(scores.dtype)
    work = scores.to(dtype)
    if normalization == "raw":  # bit-identical to the dense path's log_softmax
        work = _log_softmax(work)
    values = work.reshape(-1).index_select(0, flat)
    if normalization == "renormalized":
        maximum = torch.full((rows_count,), _NEG_INF, dtype=dtype, device=scores.device)
        maximum = maximum.scatter_reduce(0, rows, values, "amax")
        shift = torch.where(torch.isfinite(maximum), maximum, 0.0)
        total = torch.zeros(rows_count, dtype=dtype, device=scores.device)
        total = total.index_add(0, rows, torch.exp(values - shift[rows]))
        lse = shift + torch.log(total)  # −inf when every allowed score is −inf
        uniform = -torch.log(degree.to(device=scores.device, dtype=dtype).clamp(min=1))
        values = torch.where(torch.isneginf(lse)[rows], uniform[rows], values - lse[rows])
    out = torch.full_like(work, _NEG_INF)
    out.view(-1).index_copy_(0, flat, values)
    return out


def _dense_masked(
    scores: torch.Tensor, trie: Trie, states: torch.Tensor, normalization: str
) -> torch.Tensor:
    """The dense counterpart of :func:`_sparse_masked` (same ``normalization`` values).

    Masks by *adding* a float ``0 / −inf`` table built once per distinct state (a single
    broadcast row when all rows share a state, as at the root): on CPU an add is an order of
    magnitude faster than ``where``/``masked_fill`` with a dense, irregular boolean mask.
    """
    rows_count, vocab = scores.shape
    dtype = scores.dtype if normalization == "none" else _work_dtype(scores.dtype)
    unique, inverse = torch.unique(states.to(torch.int64).cpu(), return_inverse=True)
    children = trie.children(unique)
    table = torch.full((len(unique), vocab), _NEG_INF, dtype=dtype)
    table.view(-1).index_fill_(0, children.rows * vocab + children.tokens, 0.0)
    table = table.to(scores.device)
    additive = table if len(unique) == 1 else table[inverse.to(scores.device)]
    work = scores.to(dtype)
    if normalization == "raw":
        work = _log_softmax(work)
    out = work + additive
    if normalization == "renormalized":
        lse = torch.logsumexp(out, dim=-1, keepdim=True)
        empty = torch.isneginf(lse)  # no allowed token, or all allowed scores −inf
        out = out - torch.where(empty, 0.0, lse)
        if bool(empty.any()):
            count = torch.isfinite(additive).sum(dim=-1, keepdim=True).clamp(min=1)
            uniform = additive.expand(rows_count, vocab) - torch.log(count.to(dtype))
            out = torch.where(empty, uniform, out)
    return out


def constrained_log_probs(
    scores: torch.Tensor,
    trie: Trie,
    states: torch.Tensor,
    *,
    renormalize: bool = True,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-row constrained log-probabilities ``[R, V]`` for trie ``states`` (spec 04 §3.1, C4.4).

    ``scores``: logits or log-probabilities ``[R, V]`` with ``V >= trie.vocab_size``;
    ``states``: int64 ``[R]`` trie node ids (``-1`` = dead: the row gets −inf everywhere).
    ``log_softmax`` over ``V`` is applied first, then every token outside the allowed set of the
    row's node gets −inf. ``renormalize=True`` (the ``renormalized`` scoring mode) subtracts the
    ``logsumexp`` over the allowed set, so every live row sums to 1 and a single-child row is
    exactly ``0`` (probability 1); ``False`` (``raw``) keeps the model's log-probabilities.
    ``weights``: optional look-ahead weights ``w >= 1`` ``[R, V]`` (spec 04 §4.3), applied as
    ``log p / w`` before the renormalisation. Computed in at least float32.
    """
    if not isinstance(scores, torch.Tensor) or not scores.is_floating_point():
        raise TypeError("scores must be a floating-point torch.Tensor")
    if scores.ndim != 2 or scores.shape[1] < trie.vocab_size:
        raise ValueError(
            f"scores must have shape [R, V] with V >= trie.vocab_size = {trie.vocab_size}, got "
            f"{tuple(scores.shape)}"
        )
    if not isinstance(states, torch.Tensor) or tuple(states.shape) != (scores.shape[0],):
        raise ValueError(f"states must be an int64 tensor of shape [{scores.shape[0]}]")
    if weights is not None and tuple(weights.shape) != tuple(scores.shape):
        raise ValueError(
            f"weights must have the shape of scores {tuple(scores.shape)}, got "
            f"{tuple(weights.shape)}"
        )
    if weights is None:
        normalization = "renormalized" if renormalize else "raw"
        sparse = _sparse_masked(scores, trie, states, normalization)
        return sparse if sparse is not None else _dense_masked(scores, trie, states, normalization)
    log_probs = torch.log_softmax(scores.to(_work_dtype(scores.dtype)), dim=-1)
    mask = _allowed(trie, states, scores.shape[1], scores.device)
    return _normalize(log_probs, mask, renormalize, weights)


def _lookahead_weights(
    lookaheads: list[LookAhead] | None,
    trie: Trie,
    states: torch.Tensor,
    tokens: torch.Tensor,
    live: torch.Tensor,
    rows_per_input: int,
    shape: tuple[int, int],
    dtype: torch.dtype,
    device: torch.device,
) -> torch.Tensor | None:
    """Dense look-ahead weights ``[R, V]`` (1 where the rule does not apply), or None."""
    if lookaheads is None:
        return None
    weights: torch.Tensor | None = None
    for row in live.nonzero().flatten().tolist():
        result = lookaheads[row // rows_per_input].weights(
            trie, tokens[row].tolist(), state=int(states[row])
        )
        if result is None:
            continue
        if weights is None:
            weights = torch.ones(shape, dtype=dtype, device=device)
        allowed, w = result
        weights[row, allowed.to(device)] = w.to(device=device, dtype=dtype)
    return weights


class _Stepper:
    """Calls the step function, validates its output and turns it into constrained scores."""

    def __init__(
        self,
        step_fn: StepFunction,
        trie: Trie,
        prompt: torch.Tensor,
        rows: int,
        renormalize: bool,
        lookaheads: list[LookAhead] | None,
        rows_per_input: int,
    ) -> None:
        self.step_fn = step_fn
        self.trie = trie
        self.prompt = prompt
        self.rows = rows
        self.renormalize = renormalize
        self.lookaheads = lookaheads
        self.rows_per_input = rows_per_input
        reorder = getattr(step_fn, "reorder", None)
        self.reorder: Callable[[torch.Tensor], object] | None = (
            reorder if callable(reorder) else None
        )

    def __call__(
        self, step: int, tokens: torch.Tensor, states: torch.Tensor, live: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Flat candidates ``(row, token, child_state, step_score)`` of all live rows."""
        prefixes = torch.cat([self.prompt.expand(self.rows, -1), tokens], dim=1)
        out = self.step_fn(prefixes)
        if not isinstance(out, torch.Tensor):
            raise TypeError(
                f"step_fn must return a torch.Tensor, got {type(out).__name__} at step {step}"
            )
        vocab = self.trie.vocab_size
        if out.ndim != 2 or out.shape[0] != self.rows or out.shape[1] < vocab:
            raise ValueError(
                f"step_fn must return scores of shape [{self.rows}, V] with V >= "
                f"trie.vocab_size = {vocab}, got {tuple(out.shape)} at step {step}"
            )
        if not out.is_floating_point():
            raise TypeError(f"step_fn must return floating-point scores, got {out.dtype}")
        log_probs = torch.log_softmax(out.to(_work_dtype(out.dtype)), dim=-1)
        live_dev = live.to(out.device)
        bad = torch.isnan(log_probs).any(dim=1) & live_dev
        if bool(bad.any()):
            rows = bad.nonzero().flatten().tolist()[:8]
            raise ValueError(
                f"step_fn returned NaN scores at step {step} for row(s) {rows} (NaN or +inf "
                "logits, or a row that is -inf everywhere); check the model: a NaN cannot be "
                "ranked"
            )
        live_states = torch.where(live, states, torch.full_like(states, -1))
        weights = _lookahead_weights(
            self.lookaheads,
            self.trie,
            live_states,
            tokens,
            live,
            self.rows_per_input,
            (self.rows, out.shape[1]),
            log_probs.dtype,
            out.device,
        )
        mask = _allowed(self.trie, live_states, out.shape[1], out.device)
        constrained = _normalize(log_probs, mask, self.renormalize, weights)
        row, token, child = self.trie.children(live_states)
        row, token, child = row.to(torch.int64), token.to(torch.int64), child.to(torch.int64)
        step_scores = constrained[row.to(out.device), token.to(out.device)]
        return row, token, child, step_scores.to(device="cpu", dtype=torch.float64)

    def after_step(self, source_rows: torch.Tensor) -> None:
        if self.reorder is not None:
            self.reorder(source_rows)


def _hypothesis(
    trie: Trie, tokens: Sequence[int], state: int, score: float, length_penalty: float
) -> Hypothesis:
    tokens = tuple(int(t) for t in tokens)
    complete = state >= 0 and bool(trie.is_complete(torch.tensor([state], dtype=torch.int64))[0])
    if length_penalty != 0.0 and tokens:
        score = score / len(tokens) ** length_penalty
    return Hypothesis(
        tokens=tokens,
        key=tokens[:-1] if complete else tokens,
        score=float(score),
        complete=complete,
        values=list(trie.values_of(state)) if complete else [],
    )


# --------------------------------------------------------------------------- greedy (§3.3)


def constrained_greedy(
    step_fn: StepFunction,
    trie: Trie,
    *,
    batch_size: int = 1,
    prompt: Sequence[int] | torch.Tensor = (),
    maxlen: int | None = None,
    lookahead: LookAhead | Sequence[LookAhead] | None = None,
    scoring: str = "renormalized",
) -> list[Hypothesis]:
    """Constrained greedy decoding (spec 04 §3.3), one :class:`Hypothesis` per input.

    At every step the allowed token with the highest (look-ahead reweighted) probability is taken
    (ties: the smallest token id), until the key is complete (``END`` taken) or ``maxlen`` tokens
    (default ``trie.max_depth``) are decoded; a truncated result has ``complete=False``. The choice
    is the same in both scoring modes (§3.2); ``scoring`` only sets the reported score. Equal to
    :func:`constrained_beam_search` with ``num_beams=1`` (C4.7). ``lookahead``: a
    :class:`~kexue.retrieval.LookAhead` shared by all inputs, or one per input (spec 04 §4).
    """
    _check_step_fn(step_fn)
    batch = _check_count(batch_size, "batch_size")
    renormalize = _check_choice(scoring, "scoring", SCORING_MODES) == "renormalized"
    length = _resolve_maxlen(maxlen, trie)
    stepper = _Stepper(
        step_fn, trie, _check_prompt(prompt), batch, renormalize,
        _resolve_lookahead(lookahead, batch), 1,
    )  # fmt: skip
    end = int(trie.end_id)
    tokens = torch.empty((batch, 0), dtype=torch.int64)
    states = torch.zeros(batch, dtype=torch.int64)
    scores = torch.zeros(batch, dtype=torch.float64)
    lengths = torch.zeros(batch, dtype=torch.int64)
    done = torch.zeros(batch, dtype=torch.bool)
    identity = torch.arange(batch)
    for step in range(length):
        if bool(done.all()):
            break
        row, token, child, step_scores = stepper(step, tokens, states, ~done)
        edges = row.numel()
        key = step_scores.clamp(min=_FLOAT64_MIN)  # a real edge with score −inf still ranks
        best = torch.full((batch,), _NEG_INF, dtype=torch.float64)
        best = best.scatter_reduce(0, row, key, reduce="amax")
        candidate = torch.where(key == best[row], torch.arange(edges), edges)
        first = torch.full((batch,), edges, dtype=torch.int64)
        first = first.scatter_reduce(0, row, candidate, reduce="amin")
        chosen = first < edges
        pick = first[chosen]
        new_tokens = torch.full((batch,), end, dtype=torch.int64)
        new_tokens[chosen] = token[pick]
        states = states.clone()
        states[chosen] = child[pick]
        scores[chosen] += step_scores[pick]
        lengths[chosen] += 1
        tokens = torch.cat([tokens, new_tokens[:, None]], dim=1)
        done = done | ~chosen | trie.is_complete(states).to(torch.bool)
        stepper.after_step(identity)
    return [
        _hypothesis(
            trie, tokens[b, : int(lengths[b])].tolist(), int(states[b]), float(scores[b]), 0.0
        )
        for b in range(batch)
    ]


# --------------------------------------------------------------------------- beam search (§3.4)


def _rank_candidates(
    row: torch.Tensor, total: torch.Tensor, num_beams: int, batch: int
) -> torch.Tensor:
    """Edge indices ``[B, C]`` of each input's candidates, best first (−1 = none).

    Candidates are ranked by cumulative score; a real edge whose score is −inf still ranks above
    "no candidate". Ties keep the flat edge order (lower beam, then lower token) — a stable sort,
    so ``num_beams=1`` takes the same token as greedy (C4.7).
    """
    edges = row.numel()
    owner = torch.div(row, num_beams, rounding_mode="floor")
    counts = torch.bincount(owner, minlength=batch)
    width = max(int(counts.max()) if edges else 0, 1)
    offsets = torch.cumsum(counts, 0) - counts
    position = torch.arange(edges) - offsets[owner]
    keys = torch.full((batch, width), _NEG_INF, dtype=torch.float64)
    keys[owner, position] = total.clamp(min=_FLOAT64_MIN)
    index = torch.full((batch, width), -1, dtype=torch.int64)
    index[owner, position] = torch.arange(edges)
    order = torch.sort(keys, dim=1, descending=True, stable=True).indices
    return index.gather(1, order)


def _length_bound(best: torch.Tensor, length: int, maxlen: int, alpha: float) -> torch.Tensor:
    """Upper bound on the final ``score / |y|**alpha`` of an alive beam with score ``best`` (≤ 0)
    after ``length`` tokens; step scores are ≤ 0, so the score can only decrease and the final
    length lies in ``[length + 1, maxlen]`` (``s / L**alpha`` is monotone in ``L``)."""
    if length >= maxlen:
        return torch.full_like(best, _NEG_INF)
    if alpha == 0.0:
        return best
    low = best / float(length + 1) ** alpha
    high = best / float(maxlen) ** alpha
    return torch.maximum(low, high)


def constrained_beam_search(
    step_fn: StepFunction,
    trie: Trie,
    *,
    num_beams: int = 3,
    batch_size: int = 1,
    prompt: Sequence[int] | torch.Tensor = (),
    mode: str = "standard",
    scoring: str = "renormalized",
    min_ends: int = 1,
    length_penalty: float = 0.0,
    maxlen: int | None = None,
    lookahead: LookAhead | Sequence[LookAhead] | None = None,
    num_return: int | None = None,
) -> list[list[Hypothesis]]:
    """Constrained beam search (spec 04 §3.4): per input, a list of hypotheses, best first.

    Candidates are expanded over allowed tokens only (−inf masking), scored with
    ``scoring="renormalized"`` (Σ log p̃, the post; single-child steps add exactly 0) or ``"raw"``
    (Σ log p of the model, what Hugging Face beam search computes), optionally reweighted by a
    :class:`~kexue.retrieval.LookAhead` (§4). Per step and input, the candidates of all beams are
    ranked by cumulative score (ties: lower beam, then lower token).

    * ``mode="standard"`` (default): the candidates ranked in the top ``num_beams`` that complete
      a key go to a finished pool of size ``num_beams`` (scored ``score / |y|**length_penalty``,
      ``|y|`` = decoded tokens incl. ``END``); the best ``num_beams`` unfinished candidates stay
      alive. An input stops when no beam is alive, or when the pool is full and no alive beam can
      beat its worst entry (step scores are ≤ 0; with ``length_penalty != 0`` the bound is taken
      over all final lengths up to ``maxlen``). Returns the pool (``num_return`` best, default
      ``num_beams``); truncated beams (``complete=False``) follow only if the pool has fewer.
      ``min_ends`` is not used. Hypotheses are distinct trie paths.
    * ``mode="bert4keras"`` (reference semantics, for reproduction): a candidate is *finished*
      when its last token is ``END`` and it holds at least ``min_ends`` ``END`` tokens (KgCLUE:
      ``min_ends=3``), or when its trie node is a complete key (which has no continuation). After
      each step, if the best of the ``width`` selected candidates is finished it is returned;
      otherwise the finished ones are dropped and ``width`` shrinks to the number kept (the
      reference's ``topk = flag.sum()``). At ``maxlen`` the best alive hypothesis is returned
      even if unfinished. One hypothesis per input (``num_return`` must be 1).

    ``maxlen`` (default ``trie.max_depth``, which includes ``END``): truncated hypotheses have
    ``complete=False`` and are not retrieved keys. With ``num_beams >= len(trie)`` nothing is
    pruned and the standard mode returns the argmax over keys of the chosen score (C4.8).
    """
    _check_step_fn(step_fn)
    k = _check_count(num_beams, "num_beams")
    batch = _check_count(batch_size, "batch_size")
    standard = _check_choice(mode, "mode", BEAM_MODES) == "standard"
    renormalize = _check_choice(scoring, "scoring", SCORING_MODES) == "renormalized"
    min_ends = _check_count(min_ends, "min_ends")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)):
        raise TypeError(f"length_penalty must be a real number, got {type(length_penalty)}")
    alpha = float(length_penalty)
    if not math.isfinite(alpha):
        raise ValueError(f"length_penalty must be finite, got {length_penalty}")
    length_cap = _resolve_maxlen(maxlen, trie)
    if num_return is None:
        num_return = k if standard else 1
    num_return = _check_count(num_return, "num_return")
    if standard and num_return > k:
        raise ValueError(f"num_return must be <= num_beams = {k}, got {num_return}")
    if not standard and num_return != 1:
        raise ValueError(
            f"mode='bert4keras' returns one hypothesis per input (reference semantics); "
            f"got num_return={num_return}, use mode='standard' for several"
        )
    rows = batch * k
    stepper = _Stepper(
        step_fn, trie, _check_prompt(prompt), rows, renormalize,
        _resolve_lookahead(lookahead, batch), k,
    )  # fmt: skip
    end = int(trie.end_id)

    tokens = torch.empty((rows, 0), dtype=torch.int64)
    states = torch.zeros(rows, dtype=torch.int64)
    scores = torch.zeros(rows, dtype=torch.float64)  # cumulative, unpenalised
    alive = torch.zeros((batch, k), dtype=torch.bool)
    alive[:, 0] = True
    ends = torch.zeros(rows, dtype=torch.int64)  # END tokens per row (bert4keras)
    width = torch.full((batch,), k, dtype=torch.int64)  # bert4keras beam width
    done = torch.zeros(batch, dtype=torch.bool)
    results: list[list[Hypothesis]] = [[] for _ in range(batch)]
    # standard mode: finished pool, sorted best first (key −inf = empty slot)
    pool_key = torch.full((batch, k), _NEG_INF, dtype=torch.float64)
    pool_score = torch.full((batch, k), _NEG_INF, dtype=torch.float64)  # unpenalised
    pool_tokens = torch.full((batch, k, length_cap), end, dtype=torch.int64)
    pool_length = torch.zeros((batch, k), dtype=torch.int64)
    pool_state = torch.full((batch, k), -1, dtype=torch.int64)

    for step in range(length_cap):
        if bool(done.all()):
            break
        length = step + 1
        live = alive.reshape(rows)
        row, token, child, step_scores = stepper(step, tokens, states, live)
        total = scores[row] + step_scores
        complete = trie.is_complete(child).to(torch.bool)
        ranked = _rank_candidates(row, total, k, batch)
        valid = ranked >= 0
        edge = ranked.clamp(min=0)
        rank = torch.arange(ranked.shape[1])[None, :]
        if standard:
            finished = valid & complete[edge]
            to_pool = finished & (rank < k)
            unfinished = valid & ~finished
            slot = torch.cumsum(unfinished.to(torch.int64), dim=1) - 1
            keep = unfinished & (slot < k)
        else:
            row_ends = ends[row] + (token == end).to(torch.int64)
            finished_edge = ((token == end) & (row_ends >= min_ends)) | complete
            finished = valid & finished_edge[edge]
            selected = valid & (rank < width[:, None])
            best_done = finished[:, 0] & ~done
            for b in best_done.nonzero().flatten().tolist():
                e = int(ranked[b, 0])
                prefix = [*tokens[int(row[e])].tolist(), int(token[e])]
                results[b] = [_hypothesis(trie, prefix, int(child[e]), float(total[e]), alpha)]
            done = done | best_done
            dropped = (selected & finished).any(dim=1)
            keep = selected & ~finished & ~done[:, None]
            slot = torch.cumsum(keep.to(torch.int64), dim=1) - 1
            width = torch.where(dropped & ~done, keep.sum(dim=1), width)
            to_pool = torch.zeros_like(keep)

        kept_b, kept_c = keep.nonzero(as_tuple=True)
        kept_edge = ranked[kept_b, kept_c]
        new_rows = kept_b * k + slot[kept_b, kept_c]
        source = torch.arange(rows)
        source[new_rows] = row[kept_edge]
        new_token = torch.full((rows,), end, dtype=torch.int64)
        new_token[new_rows] = token[kept_edge]
        new_state = torch.full((rows,), -1, dtype=torch.int64)
        new_state[new_rows] = child[kept_edge]
        new_score = torch.full((rows,), _NEG_INF, dtype=torch.float64)
        new_score[new_rows] = total[kept_edge]
        new_alive = torch.zeros(rows, dtype=torch.bool)
        new_alive[new_rows] = True

        if standard and bool(to_pool.any()):
            pool_b, pool_c = to_pool.nonzero(as_tuple=True)
            pool_edge = ranked[pool_b, pool_c]
            penalised = total[pool_edge]
            if alpha != 0.0:
                penalised = penalised / float(length) ** alpha
            width_new = min(ranked.shape[1], k)
            cand_key = torch.full((batch, width_new), _NEG_INF, dtype=torch.float64)
            cand_key[pool_b, pool_c] = penalised.clamp(min=_FLOAT64_MIN)
            cand_score = torch.full((batch, width_new), _NEG_INF, dtype=torch.float64)
            cand_score[pool_b, pool_c] = total[pool_edge]
            cand_tokens = torch.full((batch, width_new, length_cap), end, dtype=torch.int64)
            cand_tokens[pool_b, pool_c, :step] = tokens[row[pool_edge]]
            cand_tokens[pool_b, pool_c, step] = token[pool_edge]
            cand_length = torch.full((batch, width_new), length, dtype=torch.int64)
            cand_state = torch.full((batch, width_new), -1, dtype=torch.int64)
            cand_state[pool_b, pool_c] = child[pool_edge]
            merged_key = torch.cat([pool_key, cand_key], dim=1)
            order = torch.sort(merged_key, dim=1, descending=True, stable=True).indices[:, :k]
            pool_key = merged_key.gather(1, order)
            pool_score = torch.cat([pool_score, cand_score], dim=1).gather(1, order)
            pool_length = torch.cat([pool_length, cand_length], dim=1).gather(1, order)
            pool_state = torch.cat([pool_state, cand_state], dim=1).gather(1, order)
            merged_tokens = torch.cat([pool_tokens, cand_tokens], dim=1)
            pool_tokens = merged_tokens.gather(1, order[:, :, None].expand(-1, -1, length_cap))

        ends = ends[source] + (new_token == end).to(torch.int64)
        tokens = torch.cat([tokens[source], new_token[:, None]], dim=1)
        states, scores = new_state, new_score
        alive = new_alive.reshape(batch, k)
        if standard:
            best_alive = scores.reshape(batch, k).masked_fill(~alive, _NEG_INF).amax(dim=1)
            bound = _length_bound(best_alive, length, length_cap, alpha).clamp(min=_FLOAT64_MIN)
            no_better = (pool_key[:, -1] > _NEG_INF) & (bound <= pool_key[:, -1])
            done = done | ~alive.any(dim=1) | no_better
        else:
            done = done | ~alive.any(dim=1)
        alive = alive & ~done[:, None]
        stepper.after_step(source)

    for b in range(batch):
        if standard:
            for j in range(k):
                if bool(pool_key[b, j] > _NEG_INF) and len(results[b]) < num_return:
                    n = int(pool_length[b, j])
                    results[b].append(
                        _hypothesis(
                            trie, pool_tokens[b, j, :n].tolist(), int(pool_state[b, j]),
                            float(pool_score[b, j]), alpha,
                        )
                    )  # fmt: skip
        if len(results[b]) >= num_return:
            continue
        beam_rows = b * k + alive[b].nonzero().flatten()
        for r in beam_rows.tolist():  # slots are in rank order: best first
            if len(results[b]) < num_return:
                results[b].append(
                    _hypothesis(trie, tokens[r].tolist(), int(states[r]), float(scores[r]), alpha)
                )
    return results
