"""No first-order ascent of any task under any optimiser: projecting the applied step.

MGDA (spec 07 §2.1, §2.4) promises a direction u with ⟨gᵢ, u⟩ ≥ 0 for every task, the
primary/auxiliary projection (spec 08 §2, §3) one with ⟨gᵢ, u⟩ ≥ 0 for every auxiliary task and
⟨g₀, u⟩ = ‖u‖² ≥ 0 for the main one. Both promises are about the *direction*: plain SGD applies
Δθ = −ηu and keeps them, but an adaptive optimiser (Adam: a diagonal preconditioner and momentum)
applies Δθ = −η·m̂/(√v̂ + ε), a different vector, and ⟨Δθ, gᵢ⟩ > 0 happens (measured in the
``mtl-optim`` experiment).

:class:`NoAscentStep` restores the promise for the step actually taken, whatever the optimiser:
after ``optimizer.step()`` it replaces the applied step Δ by its Euclidean projection onto the
cone {Δ : ⟨Δ, gᵢ⟩ ≤ 0 for every guarded task i}. With u₀ = −Δ this is the primary/auxiliary
problem of spec 08 §2 (main "gradient" −Δ, every guarded task an auxiliary one),

    max_u ⟨u, −Δ⟩ − ½‖u‖²  s.t.  ⟨u, gᵢ⟩ ≥ 0,     u* = −Δ + Σᵢλᵢgᵢ,  λ = argmin_{λ≥0} ‖−Δ + Gᵀλ‖²,

so the same exact solver (:func:`kexue.mtl.primary_auxiliary_direction`, Gram form) gives λ and
the parameters move to θ + Δ − Σᵢλᵢgᵢ. Consequences (spec 08 §3): ⟨Δ*, gᵢ⟩ ≤ 0 for every guarded
task, ‖Δ*‖ ≤ ‖Δ‖, ⟨Δ*, Δ⟩ = ‖Δ*‖² (the step stays within 90° of the optimiser's), and without a
conflict (all ⟨Δ, gᵢ⟩ ≤ 0) the step is left untouched, bit for bit. The optimiser's state
(momentum, second moments) is not changed — the decoupled pattern of
:class:`kexue.mtl.L2AsAuxiliary` (spec 08 §5.3), applied to the task gradients.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import torch

from ._auxiliary import (
    PRIMARY_AUX_SOLVERS,
    PrimaryAuxInfo,
    PrimaryAuxSolver,
    primary_auxiliary_direction,
)
from ._checks import check_choice, check_tensor_list

__all__ = ["NoAscentStep"]

_ZERO_TOL = 1e-30  # spec 08 §2: a (numerically) zero task gradient gives no constraint


class NoAscentStep:
    """Project an optimiser's applied step so that no task loss rises to first order.

    ``params``: the parameters the optimiser updates (shared trunk and heads: every parameter a
    guarded loss depends on should be listed, or its part of ⟨Δθ, gᵢ⟩ is not controlled).
    ``tasks``: indices of the guarded tasks (default: all); ``solver``, ``zero_tol``: as in
    :func:`kexue.mtl.primary_auxiliary_direction` (spec 08 §5.1).

    Use (task gradients from the same forward pass, before the graph is freed)::

        grads = task_gradients(losses, params, retain_graph=True)   # [T, *p.shape] per parameter
        mtl_backward(losses, shared, aggregator=MGDA())           # or any backward
        guard.step(optimizer, grads)                               # optimizer.step() + projection

    After each call: ``lam`` (float64 ``[len(tasks)]``), ``info`` (the solver's
    :class:`~kexue.mtl.PrimaryAuxInfo`, None without a conflict), ``inner_before`` /
    ``inner_after`` (float64 ``[len(tasks)]``: ⟨Δ, gᵢ⟩ of the optimiser's step and of the projected
    one; the latter ≤ 0 up to rounding), and the counters ``steps`` / ``active_steps`` (steps in
    which the projection changed the step; ``active_fraction``).

    Raises TypeError/ValueError for bad parameters, task indices, options, or task gradients of
    the wrong count, shape or with NaN/inf, and ValueError for a NaN/inf step.
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor],
        *,
        tasks: Sequence[int] | None = None,
        solver: PrimaryAuxSolver = "auto",
        zero_tol: float = _ZERO_TOL,
    ) -> None:
        self.params = check_tensor_list(params, "params")
        if tasks is not None:
            if isinstance(tasks, (str, bytes)) or not isinstance(tasks, Sequence):
                raise TypeError(f"tasks must be a sequence of task indices, got {tasks!r}")
            items = list(tasks)
            if not items:
                raise ValueError("tasks is empty: guard at least one task (or pass None for all)")
            for item in items:
                if isinstance(item, bool) or not isinstance(item, int):
                    raise TypeError(f"tasks must hold int task indices, got {item!r}")
                if item < 0:
                    raise ValueError(f"task indices must be >= 0, got {item}")
            if len(set(items)) != len(items):
                raise ValueError(f"tasks has repeated indices: {items}")
            self.tasks: tuple[int, ...] | None = tuple(items)
        else:
            self.tasks = None
        self.solver = check_choice(solver, "solver", PRIMARY_AUX_SOLVERS)
        if (
            isinstance(zero_tol, bool)
            or not isinstance(zero_tol, (int, float))
            or not math.isfinite(zero_tol)
            or zero_tol < 0
        ):
            raise ValueError(f"zero_tol must be a finite real number >= 0, got {zero_tol!r}")
        self.zero_tol = float(zero_tol)
        self.lam: torch.Tensor | None = None
        self.info: PrimaryAuxInfo | None = None
        self.inner_before: torch.Tensor | None = None
        self.inner_after: torch.Tensor | None = None
        self.steps = 0
        self.active_steps = 0

    @property
    def active_fraction(self) -> float:
        """Fraction of calls so far in which the projection changed the step."""
        return self.active_steps / self.steps if self.steps else 0.0

    def _check_grads(self, task_grads: Sequence[torch.Tensor]) -> tuple[list[torch.Tensor], int]:
        if isinstance(task_grads, torch.Tensor) or not isinstance(task_grads, Sequence):
            raise TypeError(
                "task_grads must be a sequence with one [T, *p.shape] tensor per parameter "
                "(what kexue.mtl.task_gradients(losses, params) returns)"
            )
        if len(task_grads) != len(self.params):
            raise ValueError(
                f"task_grads has {len(task_grads)} tensors for {len(self.params)} parameters"
            )
        n_tasks: int | None = None
        out: list[torch.Tensor] = []
        for index, (grad, p) in enumerate(zip(task_grads, self.params, strict=True)):
            if not isinstance(grad, torch.Tensor):
                raise TypeError(f"task_grads[{index}] must be a tensor, got {type(grad).__name__}")
            if not grad.is_floating_point():
                raise TypeError(f"task_grads[{index}] must be floating point, got {grad.dtype}")
            if grad.ndim != p.ndim + 1 or tuple(grad.shape[1:]) != tuple(p.shape):
                raise ValueError(
                    f"task_grads[{index}] must have shape [T, *{tuple(p.shape)}], got "
                    f"{tuple(grad.shape)}"
                )
            if n_tasks is None:
                n_tasks = int(grad.shape[0])
            elif grad.shape[0] != n_tasks:
                raise ValueError(
                    f"task_grads[{index}] has {grad.shape[0]} tasks, task_grads[0] has {n_tasks}"
                )
            out.append(grad.detach())
        assert n_tasks is not None
        if n_tasks < 1:
            raise ValueError("task_grads holds no task")
        if self.tasks is not None:
            bad = [i for i in self.tasks if i >= n_tasks]
            if bad:
                raise ValueError(f"task indices {bad} out of range for {n_tasks} tasks")
        return out, n_tasks

    @torch.no_grad()
    def project_update(
        self, before: Sequence[torch.Tensor], task_grads: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """With θ = ``before`` (the parameters before the optimiser step), Δ = current − θ and
        gᵢ = ``task_grads`` (one ``[T, *p.shape]`` tensor per parameter, the gradients at θ), move
        the parameters to θ + Δ − Σᵢλᵢgᵢ with λ ≥ 0 the projection's multipliers; returns λ
        (float64, one per guarded task)."""
        if isinstance(before, torch.Tensor) or len(before) != len(self.params):
            raise ValueError(f"before must hold {len(self.params)} tensors (one per parameter)")
        for old, p in zip(before, self.params, strict=True):
            if not isinstance(old, torch.Tensor) or old.shape != p.shape:
                raise ValueError(f"before tensor does not match a parameter of shape {p.shape}")
        grads, n_tasks = self._check_grads(task_grads)
        guarded = list(self.tasks) if self.tasks is not None else list(range(n_tasks))
        device = self.params[0].device
        gram = torch.zeros(len(guarded), len(guarded), dtype=torch.float64, device=device)
        inner = torch.zeros(len(guarded), dtype=torch.float64, device=device)
        step_sq = 0.0
        rows = torch.tensor(guarded, device=device)
        for p, old, grad in zip(self.params, before, grads, strict=True):
            g = grad.to(device=device, dtype=torch.float64).reshape(n_tasks, -1)[rows]
            delta = (p.detach().to(torch.float64) - old.detach().to(torch.float64)).reshape(-1)
            gram += g @ g.T
            inner += g @ delta
            step_sq += float(delta.pow(2).sum())
        if not bool(torch.isfinite(gram).all()):
            raise ValueError("task_grads contain NaN or inf")
        if not (math.isfinite(step_sq) and bool(torch.isfinite(inner).all())):
            raise ValueError("the optimiser's step is NaN or infinite: fix the loss/model first")
        self.steps += 1
        self.inner_before = inner
        if bool((inner <= 0).all()):  # no conflict: the step is kept bit for bit
            self.lam = torch.zeros(len(guarded), dtype=torch.float64, device=device)
            self.info = None
            self.inner_after = inner
            return self.lam
        # Spec 08 §2 with u₀ = −Δ: b = (⟨gᵢ, u₀⟩)ᵢ = −inner, ‖u₀‖² = ‖Δ‖².
        _, lam, info = primary_auxiliary_direction(
            gram=gram,
            b=-inner,
            main_sq=step_sq,
            solver=self.solver,  # type: ignore[arg-type]
            zero_tol=self.zero_tol,
        )
        lam = lam.to(device=device, dtype=torch.float64)
        self.lam, self.info = lam, info
        self.inner_after = inner - gram @ lam
        if bool((lam > 0).any()):
            self.active_steps += 1
            for p, grad in zip(self.params, grads, strict=True):
                g = grad.to(device=device, dtype=torch.float64).reshape(n_tasks, -1)[rows]
                correction = (lam @ g).reshape(p.shape)
                p.sub_(correction.to(p.dtype))
        return lam

    def step(
        self, optimizer: torch.optim.Optimizer, task_grads: Sequence[torch.Tensor]
    ) -> torch.Tensor:
        """Snapshot θ, ``optimizer.step()``, then :meth:`project_update` (returns λ)."""
        before = [p.detach().clone() for p in self.params]
        optimizer.step()
        return self.project_update(before, task_grads)
