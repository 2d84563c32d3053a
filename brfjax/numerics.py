"""Portable reference numerics: float32 results that are the same on every machine.

The reference path (``exact=True``) must give the same spikes whatever the batch size,
the number of devices and the processor (or accelerator) it runs on. Float32 addition
and multiplication are correctly rounded everywhere; three other things are not:

* **matrix products.** A BLAS sums each output in an order chosen by its kernel, which
  depends on the processor, on the number of rows of the product and on the library.
  [`portable_matmul`][brfjax.numerics.portable_matmul] splits the operands into slices whose products are *exact*
  in float32 (the Ozaki scheme: every partial sum is representable, so every summation
  order gives the same value), then adds the slices' products in a fixed order. The
  result is a function of the two operands only, and equals the exact product
  correctly rounded to float32 for nearly every element (measured in ``docs``).
* **division and square root.** XLA turns ``x / 0.01`` into ``x * 100`` and, on NVIDIA
  GPUs, divides with a 1-ulp approximation. [`correctly_rounded_divide`][brfjax.numerics.correctly_rounded_divide] and
  [`correctly_rounded_sqrt`][brfjax.numerics.correctly_rounded_sqrt] refine any faithful first guess to the IEEE result
  with an exact residual computed from additions and multiplications only.
* **exp.** Every backend has its own float32 ``exp``. [`correctly_rounded_exp`][brfjax.numerics.correctly_rounded_exp]
  evaluates ``e^a`` in double-float arithmetic (pairs of float32) and rounds once.

Everything here runs on the device under ``jit``, ``grad`` and ``vmap``, has no host
callback, and lowers for CPU, CUDA and TPU (so a model that uses it can be exported
with `jax.export`). Sources: the divergence boundary and decays of the paper
(Section 3, Algorithm 1 and appendix A.2; ``docs/concepts/brf-neuron.md`` and
``docs/concepts/other-neurons.md``), evaluated as the authors' code does
(``docs/numerics.md``); Dekker (1971) and Knuth for the error-free
transformations; Ozaki, Ogita, Oishi & Rump (2012) for the split products.
"""

from __future__ import annotations

import decimal
import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Array = jax.Array

BOUNDARY_DT = 0.01  # δ of the divergence boundary p(ω) (always 0.01 in the original)
MATMUL_SLICES = 3  # slices of the right operand in portable_matmul (see its docstring)
GENERAL_OPERAND_BITS = 36  # bits kept of each operand when the left one is not binary


# ------------------------------------------------------------- error-free transforms


def _bits(x: Array) -> Array:
    return lax.bitcast_convert_type(x, jnp.uint32)


def _from_bits(bits: Array) -> Array:
    return lax.bitcast_convert_type(bits, jnp.float32)


def _split(a: Array) -> tuple[Array, Array]:
    """a = high + low exactly, each with at most 12 significant bits.

    The high part keeps the top 12 bits of the significand (a mask, not Veltkamp's
    ``(c·a) - (c·a - a)``, which a fused multiply-add would break)."""
    high = _from_bits(_bits(a) & jnp.uint32(0xFFFFF000))
    return high, a - high


def two_product(a: Array, b: Array) -> tuple[Array, Array]:
    """``(p, e)`` with ``p = fl(a·b)`` and ``p + e = a·b`` exactly (Dekker 1971).

    Every product of the 12-bit parts is exact, so a fused multiply-add anywhere gives
    the same values.

    Args:
      a: float32 array, any shape.
      b: float32 array broadcastable with ``a``.

    Returns:
      ``(p, e)``: two float32 arrays of the broadcast shape, the rounded product and its
      exact rounding error (exact for finite products whose parts stay in the normal
      range).
    """
    product = lax.optimization_barrier(a * b)
    a_high, a_low = _split(a)
    b_high, b_low = _split(b)
    error = (((a_high * b_high - product) + a_high * b_low) + a_low * b_high) + a_low * b_low
    return product, error


def two_sum(a: Array, b: Array) -> tuple[Array, Array]:
    """``(s, e)`` with ``s = fl(a + b)`` and ``s + e = a + b`` exactly (Knuth).

    Args:
      a: float32 array, any shape.
      b: float32 array broadcastable with ``a``.

    Returns:
      ``(s, e)``: two float32 arrays of the broadcast shape, the rounded sum and its exact
      rounding error (for finite operands).
    """
    # the barrier keeps XLA's simplifier from rewriting (a + b) - a as b
    total = lax.optimization_barrier(a + b)
    b_virtual = total - a
    return total, (a - (total - b_virtual)) + (b - b_virtual)


def _next_up(x: Array) -> Array:
    """The next float32 above a finite ``x > 0``."""
    return _from_bits(_bits(x) + jnp.uint32(1))


def _next_down(x: Array) -> Array:
    """The next float32 below a finite ``x > 0``."""
    return _from_bits(_bits(x) - jnp.uint32(1))


def _is_odd(x: Array) -> Array:
    return (_bits(x) & jnp.uint32(1)) == 1


def _usable(x: Array) -> Array:
    """Finite, positive and normal: where the refinements below are exact."""
    return jnp.isfinite(x) & (x >= np.float32(np.finfo(np.float32).tiny))


# -------------------------------------------------------------- division and sqrt


def _refine_quotient(quotient: Array, numerator: Array, denominator: Array) -> Array:
    """One step from a faithful ``q ≈ y/d`` (``y, d, q > 0``) to the nearest float32.

    ``r = y - q·d`` is exact (``two_product``; ``y - p`` by Sterbenz; the residual of a
    faithful quotient is representable). ``y/d`` lies above the midpoint ``q + u/2``
    iff ``r > u·d/2``, an exact comparison since ``u·d/2`` is ``d`` scaled by a power of
    two; a tie goes to the even neighbour."""
    product, error = two_product(quotient, denominator)
    residual = (numerator - product) - error
    up, down = _next_up(quotient), _next_down(quotient)
    half_up = (up - quotient) * denominator * np.float32(0.5)
    half_down = (quotient - down) * denominator * np.float32(0.5)
    odd = _is_odd(quotient)
    go_up = (residual > half_up) | ((residual == half_up) & odd)
    go_down = (residual < -half_down) | ((residual == -half_down) & odd)
    return jnp.where(go_up, up, jnp.where(go_down, down, quotient))


def correctly_rounded_divide(numerator: Array, denominator) -> Array:
    """IEEE float32 ``numerator / denominator`` (round to nearest even) on any backend.

    Args:
      numerator: float32 array, any shape.
      denominator (jax.Array | float): float32 array or scalar, broadcastable to ``numerator``.

    Returns:
      float32 array of the broadcast shape. Zeros, infinities, NaNs and results outside
      the normal range are those of the backend's own division.
    """
    numerator = jnp.asarray(numerator, jnp.float32)
    # the barrier keeps XLA from replacing a division by a constant with a product by
    # its rounded reciprocal; the refinement below corrects any faithful first guess
    denominator = lax.optimization_barrier(jnp.asarray(denominator, jnp.float32))
    guess = numerator / denominator
    y, d, q = jnp.abs(numerator), jnp.abs(denominator), jnp.abs(guess)
    ok = _usable(y) & _usable(d) & _usable(q)
    y, d, safe_q = (jnp.where(ok, value, np.float32(1.0)) for value in (y, d, q))
    for _ in range(2):
        safe_q = _refine_quotient(safe_q, y, d)
    return jnp.where(ok, jnp.copysign(safe_q, guess), guess)


def _refine_root(root: Array, radicand: Array) -> Array:
    """One step from a faithful ``s ≈ √x`` (``x, s > 0``) to the nearest float32.

    ``r = x - s²`` is exact and a multiple of ``u²`` (``u`` the spacing at ``s``), as
    is ``s·u``: so ``x > (s + u/2)²  ⟺  r > s·u`` and, with ``u⁻`` the spacing below
    ``s``, ``x < (s - u⁻/2)²  ⟺  r ≤ -s·u⁻``. A square root is never a midpoint."""
    product, error = two_product(root, root)
    residual = (radicand - product) - error
    up, down = _next_up(root), _next_down(root)
    go_up = residual > root * (up - root)
    go_down = residual <= -(root * (root - down))
    return jnp.where(go_up, up, jnp.where(go_down, down, root))


def correctly_rounded_sqrt(x: Array) -> Array:
    """IEEE float32 square root (round to nearest even) on any backend.

    Args:
      x: float32 array, any shape.

    Returns:
      float32 array of the same shape. ``0``, negative, infinite, NaN and subnormal
      inputs give the backend's own ``sqrt``.
    """
    x = jnp.asarray(x, jnp.float32)
    guess = jnp.sqrt(x)
    ok = _usable(x) & _usable(guess)
    safe_x = jnp.where(ok, x, np.float32(1.0))
    root = jnp.where(ok, guess, np.float32(1.0))
    for _ in range(2):
        root = _refine_root(root, safe_x)
    return jnp.where(ok, root, guess)


# ---------------------------------------------------------------------------- exp


def _exact_decimal(value: decimal.Decimal) -> tuple[np.float32, np.float32]:
    """``value ≈ high + low`` as two float32 (``high`` the nearest float32)."""
    high = np.float32(float(value))
    low = np.float32(float(value - decimal.Decimal(float(high))))
    return high, low


def _exp_constants():
    """ln2/64 in three parts (the first with 10 significant bits, so that ``n·part``
    is exact for ``|n| < 2^14``) and the table ``2^(j/64)``, j = 0..63, as float32
    pairs; computed once with 50-digit decimals."""
    context = decimal.Context(prec=50)
    step = context.divide(context.ln(decimal.Decimal(2)), decimal.Decimal(64))
    mantissa, exponent = np.frexp(float(step))
    part1 = np.float32(np.ldexp(np.round(mantissa * 2**10), exponent - 10))
    rest = context.subtract(step, decimal.Decimal(float(part1)))
    part2 = np.float32(float(rest))
    part3 = np.float32(float(context.subtract(rest, decimal.Decimal(float(part2)))))
    table = [
        _exact_decimal(context.power(decimal.Decimal(2), context.divide(decimal.Decimal(j), 64)))
        for j in range(64)
    ]
    high = np.array([h for h, _ in table], np.float32)
    low = np.array([lo for _, lo in table], np.float32)
    return (part1, part2, part3), high, low


_LN2_BY_64, _TABLE_HIGH, _TABLE_LOW = _exp_constants()
_EXP_MIN_ARGUMENT = np.float32(-87.33654)  # below it e^a is subnormal (flushed to 0)
_EXP_MAX_ARGUMENT = np.float32(88.72283)  # above it e^a overflows


def correctly_rounded_exp(a: Array) -> Array:
    """``e^a`` rounded once to float32, the same on every backend.

    ``a = n·ln2/64 + r`` (``|r| ≤ ln2/128``, Cody–Waite in three parts), ``e^r`` by its
    Taylor series to ``r⁵`` and ``2^(j/64)`` from a table, in double-float arithmetic
    (relative error about 2^-46), then one rounding to float32: the correctly rounded
    value except when ``e^a`` lies within about 2^-46 of a midpoint between two float32
    (a chance of order 2^-22 per value; none of the stored checkpoints' values).

    Args:
      a: float32 array, any shape.

    Returns:
      float32 array of the same shape. ``e^a`` below the smallest normal float32
      (``a < -87.3365``) is flushed to 0 on every backend (the original's subnormal
      decays have no visible effect, see ``docs/numerics.md``, "Subnormal numbers");
      ``+inf`` above ``88.7228``; NaN for NaN.
    """
    a = jnp.asarray(a, jnp.float32)
    clipped = jnp.clip(a, _EXP_MIN_ARGUMENT, _EXP_MAX_ARGUMENT)
    n = jnp.round(clipped * np.float32(64.0 / np.log(2.0)))
    part1, part2, part3 = _LN2_BY_64
    reduced = clipped - n * part1  # exact: n·part1 is exact and close to a (Sterbenz)
    product, product_error = two_product(n, part2)
    r_high, r_sum_error = two_sum(reduced, -product)
    r_low = (r_sum_error - product_error) - n * part3
    r_high, r_low = two_sum(r_high, r_low)
    # e^r = 1 + r + r²/2 + (r³/6 + r⁴/24 + r⁵/120); the bracket in plain float32
    square, square_error = two_product(r_high, r_high)
    half_square_low = square_error * np.float32(0.5) + r_high * r_low
    tail = (
        r_high
        * r_high
        * r_high
        * (np.float32(1 / 6) + r_high * (np.float32(1 / 24) + r_high * np.float32(1 / 120)))
    )
    total, error = two_sum(np.float32(1.0), r_high)
    total, error2 = two_sum(total, square * np.float32(0.5))
    low = (((error + error2) + r_low) + half_square_low) + tail
    series_high, series_low = two_sum(total, low)
    # × 2^(j/64) from the table, then × 2^m (exact for normal results)
    index = n.astype(jnp.int32)
    j = jnp.bitwise_and(index, 63)
    m = jnp.right_shift(index, 6)  # floor division by 64
    table_high = jnp.asarray(_TABLE_HIGH)[j]
    table_low = jnp.asarray(_TABLE_LOW)[j]
    scaled, scaled_error = two_product(series_high, table_high)
    scaled_low = scaled_error + (series_high * table_low + series_low * table_high)
    rounded = scaled + scaled_low
    result = rounded * _power_of_two(m)
    result = jnp.where(a < _EXP_MIN_ARGUMENT, np.float32(0.0), result)
    result = jnp.where(a > _EXP_MAX_ARGUMENT, np.float32(np.inf), result)
    return jnp.where(jnp.isnan(a), a, result)


def _power_of_two(exponent: Array) -> Array:
    """``2^m`` as float32 for ``-126 ≤ m ≤ 127`` (built from its exponent bits)."""
    biased = jnp.clip(exponent + 127, 1, 254).astype(jnp.uint32)
    return _from_bits(jnp.left_shift(biased, jnp.uint32(23)))


# ------------------------------------------------------- the neurons' constants


@jax.custom_jvp
def divergence_boundary(omega: Array) -> Array:
    """The divergence boundary ``p(ω) = (-1 + sqrt(1 - (δω)²)) / δ`` with δ = 0.01.

    Each step is an IEEE float32 operation in this order: ``s = δ·ω``, ``r = 1 - s·s``
    (``s·s`` rounded before the subtraction), correctly rounded sqrt, ``-1 + √r``, and a
    true division by ``δ`` (not ``·100``), as the authors' code evaluates it. ``p(ω)`` is
    the largest damping for which the Euler step's factor ``|1 + δ(b + iω)|`` stays ≤ 1
    (paper Section 3 and Algorithm 1; ``docs/concepts/brf-neuron.md``, "Divergence
    boundary"). The derivative is ``dp/dω = -δω / sqrt(1 - (δω)²)``.

    Args:
      omega: float32 angular frequencies ``ω = |ω̃| ≥ 0`` in the paper's units (rad per
        unit time, with δ = 0.01 time units per step), any shape.

    Returns:
      float32 ``p(ω) ≤ 0`` of the same shape; NaN for ``ω > 100``.
    """
    scaled = np.float32(BOUNDARY_DT) * omega
    radicand = _unfused_difference(np.float32(1.0), scaled * scaled)
    return correctly_rounded_divide(
        np.float32(-1.0) + correctly_rounded_sqrt(radicand), np.float32(BOUNDARY_DT)
    )


@divergence_boundary.defjvp
def _divergence_boundary_jvp(primals, tangents):
    (omega,), (d_omega,) = primals, tangents
    scaled = np.float32(BOUNDARY_DT) * omega
    # dp/dω = -δω / sqrt(1 - (δω)²)
    return divergence_boundary(omega), -scaled / jnp.sqrt(1.0 - scaled * scaled) * d_omega


@jax.custom_jvp
def decay(tau: Array) -> Array:
    """``α = exp((-1)/|τ|)``: correctly rounded float32 argument, correctly rounded exp.

    The decay of the ALIF membrane and adaptation (paper appendix A.2) and of the LI
    readout (``docs/concepts/other-neurons.md``); the rounding matches the original's
    float32 exp on the GPU (``docs/numerics.md``). The derivative is
    ``α · sign(τ) / τ²``.

    Args:
      tau: float32 time constants in steps (raw, signed; ``|τ|`` is used), any shape.

    Returns:
      float32 decays in ``[0, 1)`` of the same shape (0 where ``|τ| < 0.01145``).
    """
    return correctly_rounded_exp(correctly_rounded_divide(np.float32(-1.0), jnp.abs(tau)))


@decay.defjvp
def _decay_jvp(primals, tangents):
    (tau,), (d_tau,) = primals, tangents
    alpha = decay(tau)
    # d/dτ exp(-1/|τ|) = exp(-1/|τ|) · sign(τ) / τ²
    return alpha, alpha * jnp.sign(tau) / (tau * tau) * d_tau


def _unfused_difference(x: Array, y: Array) -> Array:
    """``x - y`` with ``y`` rounded first: the selects hide a product ``y`` from XLA's
    multiply-add contraction without changing any value (NaNs included)."""
    return jnp.where(jnp.isnan(y), y, x) - jnp.where(jnp.isnan(x), x, y)


# ------------------------------------------------------------------ matrix products


def _slice_bits(depth: int) -> int:
    """Bits per slice such that a sum of ``depth`` slice products stays exact in float32."""
    return 24 - int(depth).bit_length()


def split_columns(matrix: Array, slices: int, bits: int) -> list[Array]:
    """``matrix ≈ Σ_j slice_j`` column by column.

    Slice j holds the next ``bits`` bits below the column's largest magnitude ``2^E``
    (multiples of ``2^(E - j·bits)``, at most ``2^bits`` of them). Bits below the last
    slice are dropped; the slices are a function of the column alone (Ozaki et al. 2012;
    ``docs/numerics.md``).

    Args:
      matrix: float32 ``(K, N)``.
      slices: number of slices, ≥ 1.
      bits: significant bits per slice (``24 - bit_length(K)`` keeps a sum of ``K``
        slice products exact).

    Returns:
      A list of ``slices`` float32 ``(K, N)`` arrays, largest first.
    """
    largest = jnp.max(jnp.abs(matrix), axis=0)
    _, exponent = jnp.frexp(largest)  # largest < 2^exponent
    # keep every slice's grid at or above the smallest normal float32
    exponent = jnp.maximum(exponent, -126 + slices * bits)
    parts, rest = [], matrix
    for j in range(1, slices + 1):
        to_grid = _power_of_two(j * bits - exponent)
        from_grid = _power_of_two(exponent - j * bits)
        part = jnp.round(rest * to_grid) * from_grid
        parts.append(part)
        rest = rest - part
    return parts


def _split_rows(matrix: Array, slices: int, bits: int) -> list[Array]:
    return [part.T for part in split_columns(matrix.T, slices, bits)]


def _precise_matmul(a: Array, b: Array) -> Array:
    return jnp.matmul(a, b, precision=lax.Precision.HIGHEST)


def _sum_in_order(terms: list[Array]) -> Array:
    """Σ terms, smallest slice first, in a fixed order (no reduction XLA may reorder)."""
    total = terms[-1]
    for term in reversed(terms[:-1]):
        total = term + total
    return total


def split_kernel(b: Array, *, binary_left: bool, slices: int = MATMUL_SLICES) -> tuple[Array, ...]:
    """The slices of ``b`` that [`portable_matmul`][brfjax.numerics.portable_matmul] multiplies.

    Compute them once, outside a time loop, and pass them to [`product_of_slices`][brfjax.numerics.product_of_slices]
    at every step.

    Args:
      b: float32 ``(K, N)``, e.g. a hidden kernel ``(I + H, H)``.
      binary_left: the left operand holds only 0 and 1 (spikes), so only ``b`` is split.
      slices: slices of ``b`` (default `MATMUL_SLICES`); more are used when the
        left operand is split too, to keep 36 bits of each operand.

    Returns:
      A tuple of float32 ``(K, N)`` slices, largest first.
    """
    depth = b.shape[0]
    if binary_left:
        return tuple(split_columns(b, slices, _slice_bits(depth)))
    bits = _slice_bits(depth) // 2
    # enough slices that each operand keeps 36 bits below its largest magnitude
    return tuple(split_columns(b, max(slices, -(-GENERAL_OPERAND_BITS // bits)), bits))


# Products whose left operand has fewer elements (one step of a small batch), or a
# symbolic shape (an exported program), take every slice pair in one product and no
# first-slice test: a branch costs more than it saves there.
_SHORTCUT_SIZE = 1 << 14


def _known_size(a: Array) -> int | None:
    """``a``'s number of elements, or None for a symbolic shape (an exported program)."""
    return a.size if all(isinstance(d, int) for d in a.shape) else None


@functools.partial(jax.custom_jvp, nondiff_argnums=(3,))
def product_of_slices(a: Array, b: Array, parts: tuple[Array, ...], binary_left: bool) -> Array:
    """[`portable_matmul`][brfjax.numerics.portable_matmul] of ``a`` and ``b`` given ``parts = split_kernel(b, ...)``.

    Its derivative is that of ``a @ b`` (the slices only change how the value is summed).

    Args:
      a: float32 ``(..., K)``, e.g. spikes ``(B, H)``.
      b: float32 ``(K, N)``.
      parts: ``split_kernel(b, binary_left=binary_left)``.
      binary_left: as given to [`split_kernel`][brfjax.numerics.split_kernel].

    Returns:
      float32 ``(..., N)``.
    """
    depth, width = b.shape
    if binary_left:
        products = _precise_matmul(a, jnp.concatenate(parts, axis=1))
        return _sum_in_order(
            [products[..., j * width : (j + 1) * width] for j in range(len(parts))]
        )
    slices = len(parts)
    left = _split_rows(a.reshape(-1, depth), slices, _slice_bits(depth) // 2)

    def products(i):
        # left slice i meets the kernel's slices 0..slices-1-i: every slice product is
        # exact, so one wider product per left slice gives the values of one per pair
        wide = _precise_matmul(left[i], jnp.concatenate(parts[: slices - i], axis=1))
        return [wide[:, j * width : (j + 1) * width] for j in range(slices - i)]

    def every_pair(_):
        wide = [products(i) for i in range(slices)]
        return _sum_in_order(
            [wide[i][total - i] for total in range(slices) for i in range(total + 1)]
        )

    def first_slice_only(_):
        # every row of a fits its first slice (e.g. small integer spike counts): the other
        # pairs' exact products are zeros, and leaving zeros out of the ordered sum
        # changes at most the sign of a zero result
        return _sum_in_order(products(0))

    size = _known_size(a)
    if slices == 1 or size is None or size < _SHORTCUT_SIZE:  # small or unknown: no branch
        # every slice pair in one product (a loop step runs one product, not one per
        # pair): left slice i times kernel slice j is the block (i, j), exact as a
        # product of its own
        wide = jnp.einsum(
            "srk,kn->srn",
            jnp.stack(left),
            jnp.concatenate(parts, axis=1),
            precision=lax.Precision.HIGHEST,
        )
        terms = [
            wide[i, :, (total - i) * width : (total - i + 1) * width]
            for total in range(slices)
            for i in range(total + 1)
        ]
        return _sum_in_order(terms).reshape(*a.shape[:-1], width)
    rest_is_zero = jnp.all(jnp.stack(left[1:]) == 0)
    total = lax.cond(rest_is_zero, first_slice_only, every_pair, None)
    return total.reshape(*a.shape[:-1], width)


@product_of_slices.defjvp
def _product_of_slices_jvp(binary_left, primals, tangents):
    a, b, parts = primals
    d_a, d_b, _ = tangents
    return product_of_slices(a, b, parts, binary_left), _precise_matmul(d_a, b) + _precise_matmul(
        a, d_b
    )


def _spike_rows(a: Array) -> Array:
    """Which rows of ``a`` ``(..., K)`` hold only 0 and 1: bool ``(..., 1)``."""
    return jnp.all((a == 0) | (a == 1), axis=-1, keepdims=True)


def product_of_slices_by_row(
    a: Array, b: Array, spike_parts: tuple[Array, ...], value_parts: tuple[Array, ...]
) -> Array:
    """A portable product in which every row of ``a`` that holds only 0 and 1 is
    multiplied as spikes, any other row as values.

    A row of spikes takes the product of ``binary_left`` (the kernel's slices only,
    3 products), any other row the general one (both operands split, 6 or more): each
    row's value still depends on that row and on ``b`` only, so it is the same for any
    batch size, device count and processor. A block of rows that are all spikes (or
    all values) computes only its own product; a mixed block computes both.

    Args:
      a: float32 ``(..., K)``, e.g. binned input spikes ``(T·B, I)``.
      b: float32 ``(K, N)``.
      spike_parts: ``split_kernel(b, binary_left=True)``.
      value_parts: ``split_kernel(b, binary_left=False)``.

    Returns:
      float32 ``(..., N)``: for spike rows the bits of
      ``product_of_slices(a, b, spike_parts, True)``, for the others those of
      ``product_of_slices(a, b, value_parts, False)``.
    """
    spike = _spike_rows(a)

    def spikes(_):
        return product_of_slices(a, b, spike_parts, True)

    def values(_):
        return product_of_slices(a, b, value_parts, False)

    def mixed(_):
        return jnp.where(spike, spikes(None), values(None))

    size = _known_size(a)
    if size is not None and size < _SHORTCUT_SIZE:  # small: no branch
        return mixed(None)
    every, some = jnp.all(spike), jnp.any(spike)
    which = jnp.where(every, 0, jnp.where(some, 2, 1))
    return lax.switch(which, (spikes, values, mixed), None)


def portable_matmul(
    a: Array, b: Array, *, binary_left: bool = False, slices: int = MATMUL_SLICES
) -> Array:
    """``a @ b`` in float32 whose every row depends on that row of ``a`` and on ``b``
    only: the same bits for any batch size, device count, BLAS or processor.

    ``b`` is split column-wise into slices ([`split_columns`][brfjax.numerics.split_columns]) narrow enough that
    every product ``a @ slice`` is computed exactly in float32 (all partial sums are
    representable, so every summation order gives the same value), and the slice
    products are added in a fixed order, smallest first. With ``binary_left`` the left
    operand is taken as it is, which is exact for values in ``{0, 1}`` (spikes; a NaN
    row stays NaN; other values give a close but order-dependent result); otherwise
    both operands are split into enough slices to keep 36 bits each and the slice
    pairs ``(i, j)`` with ``i + j < slices`` are multiplied.

    Accuracy: the bits of ``b`` (and ``a``) below the last slice are dropped, so an
    element's error is at most ``2^-S·(Σ_k |a_k|·max_k |b_kn| + Σ_k |b_kn|·max_k |a_k|)``
    (``S``: 45 bits or more for spikes with 3 slices, 36 for other operands; the second
    term only for split ``a``) plus the rounding of the fixed-order sum of the slice
    products; results below float32's normal range (``2^-126``) are flushed. With 3
    slices of a spike operand the result equals the exact product
    rounded to float32 for all but about one element in 10^5 at the paper's shapes, for
    about 3 times the cost of one product (both measured in ``docs/numerics.md``). The
    derivative is that of ``a @ b``. On GPUs the slice products run in full float32
    (``Precision.HIGHEST``); TPUs lower it, but their float32 products are not exact.

    Args:
      a: float32 ``(..., K)``, e.g. spikes ``(B, H)`` (one row per sample).
      b: float32 ``(K, N)``.
      binary_left: ``a`` holds only 0 and 1 (or NaN).
      slices: slices of ``b`` (3 by default; at least enough for 28 bits when ``a`` is
        split too).

    Returns:
      float32 ``(..., N)``.
    """
    return product_of_slices(
        a, b, split_kernel(b, binary_left=binary_left, slices=slices), binary_left
    )
