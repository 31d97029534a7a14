"""Noise sampling that reaches the far tails (spec 09 §5.2, C9.9; issue 19 item 5).

The problem. ``torch.rand`` in float32 returns k · 2⁻²⁴ (k uniform in [0, 2²⁴)), so an
inverse-CDF sampler from clamped float32 uniforms never produces Gumbel noise above
−log(−log(1 − 2⁻²³)) ≈ 15.9, and ``torch.randn`` (Box–Muller from the same 24-bit uniforms on the
CPU) never exceeds |z| ≈ 5.77. A class 17+ nats behind the top (Gumbel), or needing a normal
deviate beyond 5.8, is then *never* sampled although its probability may be 10⁻⁸.

The fix: the *tail-patched* uniform. One float32 uniform is drawn per element as before (the
bulk, cost unchanged). The elements that fall in the two tail zones u < Z or u ≥ 1 − Z
(Z = 2⁻²⁰, exactly 2⁻²⁰ of the mass each under torch's k · 2⁻²⁴ grid) are redrawn from a fresh
float64 uniform *inside their zone*: t = Z · (w + 2⁻⁵⁴) with w a float64 uniform, and mapped by
a tail-accurate quantile in float64 (Φ⁻¹(t) below, Φ⁻¹(1 − t) computed without forming 1 − t
above). Conditional on falling in a zone the original draw is uniform there, so the result is
the exact law discretised — on the midpoints of torch's 2⁻²⁴ grid in the bulk (at least 16
cells per zone width at the zone edges), on a 2⁻⁷⁴ grid in the zones — with an unreachable tail
mass of at most τ = Z · 2⁻⁵⁴ = 2⁻⁷⁴ ≈ 5.3 · 10⁻²³ per side. By a coupling argument every class
probability of ``perturb_max_sample`` is then off by at most 2nτ (≈ 3.4 · 10⁻¹⁸ for n = 32,000)
plus the bulk discretisation, far below the 10⁻¹² target.

Normal noise keeps ``torch.randn`` for the bulk and redraws every |z| > 4.5 from the exact
conditional tail law, sign kept: |z| = −Φ⁻¹(Φ(−4.5) · (w + 2⁻⁵⁴)) in float64 (τ ≈ 1.9 · 10⁻²²).
The mass that ``randn`` puts beyond 4.5 (and hence the total mass of the exact tail) is that of
its Box–Muller transform from 24-bit uniforms on the CPU: 0.2 % relatively below the exact
6.8 · 10⁻⁶ (0.03 % at 4, 2 % at 5; computed from the 24-bit radius grid), a relative error that
the far classes' frequencies inherit.

The rare zone elements are found by one global ``aminmax`` gate (at batch 64 × n = 1,000 a tail
element occurs in ~12 % of the calls) and, when it fires, by blockwise ``amin``/``amax`` (blocks
of 256 elements; only flagged blocks are searched). The clamp of the old sampler is no longer
needed, and the bulk transforms run in place. On accelerators the gate costs one host
synchronisation.

Reach (standardised noise, smallest/largest value the sampler can return; :func:`reach`):

=============  ===============================  =========================================
noise          reach                            needed for p ≥ 10⁻¹² (tail mass ≤ 10⁻¹⁵)
=============  ===============================  =========================================
Gumbel         [−3.94, 51.3]                    upper ≥ 34.5 (lower tail immaterial)
logistic       [−51.3, 51.3]                    ±34.5 (both tails carry far classes)
exponential    [5.3 · 10⁻²³, 51.3]               upper ≥ 34.5 (lower end is the support, 0)
normal         [−9.68, 9.68]                    ±7.94
uniform        [−½, ½] (±(½ − 5.3 · 10⁻²³))     the support; float32 spacing 3 · 10⁻⁸ at ±½
=============  ===============================  =========================================

"Needed": a class with probability p receives it from noise configurations whose own tail mass
is at least p, so a sampler whose unreachable tail mass per side is ≤ 10⁻³ p loses at most a
fraction 10⁻³ of it; for p = 10⁻¹² that is the quantile 1 − 10⁻¹⁵ (Gumbel and logistic 34.5,
normal 7.94). The old sampler stopped at 15.9 (Gumbel, logistic, exponential) and 5.77 (normal).
User noises (:class:`~kexue.discrete.Noise` subclasses without their own ``sample``) get the
same lower tail and an upper tail to mass 2⁻⁵³ (their quantile is evaluated at 1 − t in float64).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch

__all__ = [
    "NORMAL_CUT",
    "ZONE",
    "check_sample_args",
    "reach",
    "sample_by_quantile",
    "sample_noise",
    "sample_normal",
]

Transform = Callable[[torch.Tensor], torch.Tensor]

#: mass of each tail zone of the bulk uniform (redrawn in float64)
ZONE = 2.0**-20
#: normal noise: |z| above this is redrawn from the exact tail law
NORMAL_CUT = 4.5
#: offset of the fresh float64 zone draw: t = ZONE · (w + 2⁻⁵⁴) is never 0
_FINE_OFFSET = 2.0**-54
_BLOCK = 256
#: tail elements located one by one (argmin/argmax) before the blockwise search takes over
_EXTREME_STEPS = 4
#: above this many elements tail elements are expected in numbers: straight to the block search
_EXTREME_MAX_COUNT = 1 << 18
#: the smallest work-dtype value above NORMAL_CUT (z > 4.5 is patched, z = 4.5 kept)
_ABOVE_CUT = {
    dtype: float(torch.nextafter(torch.tensor(NORMAL_CUT, dtype=dtype),
                                 torch.tensor(math.inf, dtype=dtype)))
    for dtype in (torch.float32, torch.float64)
}  # fmt: skip
_NORMAL_TAIL_MASS = 0.5 * math.erfc(NORMAL_CUT / math.sqrt(2.0))  # Φ(−4.5)


def check_sample_args(
    shape: object, generator: object, dtype: object, device: object
) -> tuple[tuple[int, ...], torch.dtype, torch.device | None]:
    """Validate the arguments of ``Noise.sample``; return (shape, dtype, device)."""
    if isinstance(shape, int) and not isinstance(shape, bool):
        shape = (shape,)
    if not isinstance(shape, (tuple, list, torch.Size)) or not all(
        isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape
    ):
        raise ValueError(f"shape must be a sequence of non-negative ints, got {shape!r}")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    try:
        resolved = None if device is None else torch.device(device)  # type: ignore[call-overload]
    except (RuntimeError, TypeError) as error:
        raise ValueError(f"device {device!r} is not a torch device: {error}") from None
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {generator!r}")
        target = resolved if resolved is not None else torch.empty(0).device
        if generator.device.type != target.type:
            raise ValueError(
                f"generator is on {generator.device.type} but the noise is drawn on "
                f"{target.type}; pass torch.Generator(device={target.type!r}) or device="
                f"{generator.device.type!r}"
            )
    return tuple(int(s) for s in shape), dtype, resolved


def _work_dtype(dtype: torch.dtype) -> torch.dtype:
    return torch.float64 if dtype == torch.float64 else torch.float32


def _outside(
    flat: torch.Tensor, low: float, high: float, neutral: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat indices of ``flat < low`` and of ``flat >= high`` (both rare). One global
    ``aminmax`` gate (most calls stop there); then, a few at a time, the extreme element is
    located by ``argmin``/``argmax`` and set to ``neutral`` (the caller overwrites it) until the
    gate passes — two reductions per tail element instead of a search of the whole tensor; past
    ``_EXTREME_STEPS`` elements, a blockwise search (amin/amax per block of ``_BLOCK``, then an
    exact search inside the flagged blocks only)."""
    found_lower: list[int] = []
    found_upper: list[int] = []
    steps = _EXTREME_STEPS if flat.numel() <= _EXTREME_MAX_COUNT else 1
    for step in range(steps):
        bounds = torch.aminmax(flat)
        below, above = float(bounds.min) < low, float(bounds.max) >= high
        if not (below or above):
            return _indices(found_lower, flat.device), _indices(found_upper, flat.device)
        if step == steps - 1:
            break  # many tail elements (or a large tensor): search the blocks
        if below:
            index = _extreme_index(flat, largest=False)
            flat[index] = neutral
            found_lower.append(index)
        if above:
            index = _extreme_index(flat, largest=True)
            flat[index] = neutral
            found_upper.append(index)
    lower_rest, upper_rest = _search_blocks(flat, low, high)
    return (torch.cat((_indices(found_lower, flat.device), lower_rest)),
            torch.cat((_indices(found_upper, flat.device), upper_rest)))  # fmt: skip


def _indices(values: list[int], device: torch.device) -> torch.Tensor:
    if not values:
        return torch.empty(0, dtype=torch.long, device=device)
    return torch.tensor(values, dtype=torch.long, device=device)


def _extreme_index(flat: torch.Tensor, largest: bool) -> int:
    """Index of the largest (smallest) element: per-block amax (amin) over blocks of
    ``_BLOCK``, then the winning block's argmax (a full-length argmax is ~6× slower on the CPU,
    torch 2.13)."""
    count = flat.numel()
    blocks = count // _BLOCK
    best_index, best_value = -1, math.nan
    if blocks:
        main = flat[: blocks * _BLOCK].view(blocks, _BLOCK)
        per_block = main.amax(1) if largest else main.amin(1)
        block = int(per_block.argmax() if largest else per_block.argmin())
        row = main[block]
        column = int(row.argmax() if largest else row.argmin())
        best_index, best_value = block * _BLOCK + column, float(row[column])
    if blocks * _BLOCK < count:
        rest = flat[blocks * _BLOCK :]
        column = int(rest.argmax() if largest else rest.argmin())
        value = float(rest[column])
        if best_index < 0 or (value > best_value if largest else value < best_value):
            best_index = blocks * _BLOCK + column
    return best_index


def _search_blocks(
    flat: torch.Tensor, low: float, high: float
) -> tuple[torch.Tensor, torch.Tensor]:
    count = flat.numel()
    blocks = count // _BLOCK
    lower: list[torch.Tensor] = []
    upper: list[torch.Tensor] = []
    if blocks:
        main = flat[: blocks * _BLOCK].view(blocks, _BLOCK)
        # amin and amax separately: aminmax(dim=1) is ~15x slower on the CPU (torch 2.13)
        flagged = ((main.amin(1) < low) | (main.amax(1) >= high)).nonzero().squeeze(1)
        if flagged.numel():
            rows = main.index_select(0, flagged)
            for found, mask in ((lower, rows < low), (upper, rows >= high)):
                row, column = mask.nonzero(as_tuple=True)
                found.append(flagged[row] * _BLOCK + column)
    if blocks * _BLOCK < count:
        rest = flat[blocks * _BLOCK :]
        start = blocks * _BLOCK
        lower.append((rest < low).nonzero().squeeze(1) + start)
        upper.append((rest >= high).nonzero().squeeze(1) + start)
    empty = torch.empty(0, dtype=torch.long, device=flat.device)
    return (torch.cat(lower) if lower else empty), (torch.cat(upper) if upper else empty)


def _fine_zone_draw(
    count: int, mass: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``count`` float64 uniforms on (0, mass]: mass · (w + 2⁻⁵⁴), never 0."""
    w = torch.rand(count, generator=generator, dtype=torch.float64, device=device)
    return (w + _FINE_OFFSET) * mass


def _finish(value: torch.Tensor, scale: float, dtype: torch.dtype) -> torch.Tensor:
    if scale != 1.0:
        value.mul_(scale)
    if dtype == value.dtype:
        return value
    if dtype in (torch.float16, torch.bfloat16):  # never ±inf after the cast (C9.9)
        limit = torch.finfo(dtype).max
        value = value.clamp_(-limit, limit)
    return value.to(dtype)


def sample_by_quantile(
    shape: Sequence[int],
    *,
    bulk: Transform,
    lower_tail: Transform,
    upper_tail: Transform,
    scale: float,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | None,
) -> torch.Tensor:
    """σε of ``shape`` from the tail-patched uniform (module docstring).

    ``bulk(u)`` maps the work-dtype uniforms u in [Z, 1 − Z] (it may work in place);
    ``lower_tail(t)`` = Φ⁻¹(t) and ``upper_tail(t)`` = Φ⁻¹(1 − t) map float64 t in (0, Z]
    accurately. The result has ``dtype`` (drawn in float32, or float64 for float64)."""
    work = _work_dtype(dtype)
    if device is not None and device.type == "meta":
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    u = torch.rand(tuple(shape), generator=generator, dtype=work, device=device)
    if u.numel() == 0:
        return u.to(dtype)
    lower, upper = _outside(u.view(-1), ZONE, 1.0 - ZONE, 0.5)
    # the midpoint of each grid cell of torch.rand (k · 2^-digits): unbiased bulk quantiles
    u.add_(torch.finfo(work).eps / 4)  # half of the grid step 2^-24 (float64: 2^-53)
    value = bulk(u)
    patched = lower.numel() + upper.numel()
    if patched:
        t = _fine_zone_draw(patched, ZONE, generator, u.device)
        flat = value.view(-1)
        flat[lower] = lower_tail(t[: lower.numel()]).to(work)
        flat[upper] = upper_tail(t[lower.numel() :]).to(work)
    return _finish(value, scale, dtype)


def sample_normal(
    shape: Sequence[int],
    *,
    scale: float,
    generator: torch.Generator | None,
    dtype: torch.dtype,
    device: torch.device | None,
) -> torch.Tensor:
    """σz, z ~ N(0, 1): ``torch.randn`` for |z| ≤ 4.5 and the exact tail law beyond
    (module docstring)."""
    work = _work_dtype(dtype)
    if device is not None and device.type == "meta":
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    z = torch.randn(tuple(shape), generator=generator, dtype=work, device=device)
    if z.numel() == 0:
        return z.to(dtype)
    flat = z.view(-1)
    below, above = _outside(flat, -NORMAL_CUT, _ABOVE_CUT[work], 0.0)
    count_below, count_above = below.numel(), above.numel()
    if count_below or count_above:
        t = _fine_zone_draw(count_below + count_above, _NORMAL_TAIL_MASS, generator, z.device)
        tail = torch.special.ndtri(t).to(work)  # lower-tail values, z < −4.5
        if count_below:
            flat[below] = tail[:count_below]
        if count_above:
            flat[above] = tail[count_below:].neg_()  # the upper tail by symmetry
    return _finish(z, scale, dtype)


def reach(noise: object) -> tuple[float, float]:
    """The smallest and largest standardised value the built-in sampler of ``noise`` (a noise
    family name or instance) can return, in float64: its quantiles at the extreme zone draws
    t = Z · 2⁻⁵⁴ (normal: Φ(−4.5) · 2⁻⁵⁴). For the documentation and the tests."""
    from ._noises import as_noise

    law = as_noise(noise)  # type: ignore[arg-type]
    if law.name == "normal":
        t = torch.tensor([_NORMAL_TAIL_MASS * _FINE_OFFSET], dtype=torch.float64)
        top = float(-torch.special.ndtri(t)[0])
        return -top, top
    lower, upper = TAILS[law.name]
    t = torch.tensor([ZONE * _FINE_OFFSET], dtype=torch.float64)
    return float(lower(t)[0]), float(upper(t)[0])


# Tail-accurate quantiles of the built-in laws: (Φ⁻¹(t), Φ⁻¹(1 − t)) for small t, float64.


def _gumbel_lower(t: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log(t))


def _gumbel_upper(t: torch.Tensor) -> torch.Tensor:
    return -torch.log(-torch.log1p(-t))


def _logistic_lower(t: torch.Tensor) -> torch.Tensor:
    return torch.log(t) - torch.log1p(-t)


def _logistic_upper(t: torch.Tensor) -> torch.Tensor:
    return torch.log1p(-t) - torch.log(t)


def _exponential_lower(t: torch.Tensor) -> torch.Tensor:
    return -torch.log1p(-t)


def _exponential_upper(t: torch.Tensor) -> torch.Tensor:
    return -torch.log(t)


def _uniform_lower(t: torch.Tensor) -> torch.Tensor:
    return t - 0.5


def _uniform_upper(t: torch.Tensor) -> torch.Tensor:
    return 0.5 - t


def gumbel_bulk(u: torch.Tensor) -> torch.Tensor:
    """−log(−log u), in place."""
    return u.log_().neg_().log_().neg_()


def logistic_bulk(u: torch.Tensor) -> torch.Tensor:
    """log(u / (1 − u)), in place."""
    return u.logit_()


def exponential_bulk(u: torch.Tensor) -> torch.Tensor:
    """−log(1 − u), in place."""
    return u.neg_().log1p_().neg_()


def uniform_bulk(u: torch.Tensor) -> torch.Tensor:
    """u − ½, in place."""
    return u.sub_(0.5)


TAILS: dict[str, tuple[Transform, Transform]] = {
    "gumbel": (_gumbel_lower, _gumbel_upper),
    "logistic": (_logistic_lower, _logistic_upper),
    "exponential": (_exponential_lower, _exponential_upper),
    "uniform": (_uniform_lower, _uniform_upper),
}
BULKS: dict[str, Transform] = {
    "gumbel": gumbel_bulk,
    "logistic": logistic_bulk,
    "exponential": exponential_bulk,
    "uniform": uniform_bulk,
}


def generic_tails(icdf: Transform) -> tuple[Transform, Transform]:
    """(Φ⁻¹(t), Φ⁻¹(1 − t)) from a quantile function alone, in float64; the upper one clamps
    t ≥ 2⁻⁵³ so that 1 − t < 1 (upper reach: tail mass 2⁻⁵³)."""

    def lower(t: torch.Tensor) -> torch.Tensor:
        return icdf(t)

    def upper(t: torch.Tensor) -> torch.Tensor:
        return icdf(1.0 - t.clamp_min(2.0**-53))

    return lower, upper


def sample_noise(
    noise: object,
    shape: object,
    *,
    generator: object = None,
    dtype: object = torch.float32,
    device: object = None,
) -> torch.Tensor:
    """``noise.sample(...)`` (a :class:`~kexue.discrete.Noise`): validated arguments, the
    tail-patched sampler of the built-in family whose quantile ``noise`` uses, else the generic
    one from ``standard_icdf`` (module docstring)."""
    from ._noises import Noise, Normal

    if not isinstance(noise, Noise):
        raise TypeError(f"noise must be a kexue.discrete.Noise, got {type(noise).__name__}")
    size, out_dtype, where = check_sample_args(shape, generator, dtype, device)
    gen = generator if isinstance(generator, torch.Generator) else None
    icdf = type(noise).standard_icdf
    if icdf is Normal.standard_icdf:
        return sample_normal(size, scale=noise.scale, generator=gen, dtype=out_dtype,
                             device=where)  # fmt: skip
    family = _builtin_family(icdf)
    if family is not None:
        lower, upper = TAILS[family]
        bulk = BULKS[family]
    else:
        lower, upper = generic_tails(lambda t: noise.standard_icdf(t))

        def bulk(u: torch.Tensor) -> torch.Tensor:
            return noise.standard_icdf(u)

    return sample_by_quantile(size, bulk=bulk, lower_tail=lower, upper_tail=upper,
                              scale=noise.scale, generator=gen, dtype=out_dtype,
                              device=where)  # fmt: skip


def _builtin_family(icdf: object) -> str | None:
    from ._noises import Exponential, Gumbel, Logistic, Uniform

    for family, cls in (("gumbel", Gumbel), ("logistic", Logistic),
                        ("exponential", Exponential), ("uniform", Uniform)):  # fmt: skip
        if icdf is cls.standard_icdf:
            return family
    return None
