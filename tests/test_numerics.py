"""The portable reference numerics: every result here is a property of IEEE float32
addition and multiplication, so each test asserts exact values on any processor.

NumPy's float32 division and square root and float64 ``exp`` rounded to float32 are
the references (all correctly rounded); the products are checked against the exact
product computed in float64 (exact for the spike operands used here) and against
themselves at other batch sizes. CI runs this file a second time with XLA's CPU code
limited to AVX2 (``--xla_cpu_max_isa=AVX2``): other kernels, the same bits.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import checkpoint

from brfjax import models, numerics

RNG = np.random.default_rng(1234)


@pytest.fixture(autouse=True)
def fresh_random_numbers():
    """The same random numbers for a test whatever ran before it (pytest-xdist)."""
    global RNG
    RNG = np.random.default_rng(1234)


def refinement_inputs(reference):
    """Each correctly rounded value moved one float32 step up or down at random."""
    direction = np.where(RNG.random(reference.size) < 0.5, np.inf, -np.inf).astype(np.float32)
    return np.nextafter(reference, direction).astype(np.float32)


def test_division_by_delta_is_correctly_rounded_not_a_product_by_100():
    y = -RNG.random(200_000).astype(np.float32)
    got = jax.jit(lambda v: numerics.correctly_rounded_divide(v, np.float32(0.01)))(y)
    np.testing.assert_array_equal(got, y / np.float32(0.01))
    # the multiplication XLA would substitute differs on a good share of them
    assert np.mean(y * np.float32(100.0) != y / np.float32(0.01)) > 0.05


def test_division_is_correctly_rounded_for_any_operands_and_keeps_special_values():
    a = (RNG.standard_normal(200_000) * 10).astype(np.float32)
    b = np.exp(RNG.standard_normal(200_000) * 3).astype(np.float32) * np.sign(
        RNG.standard_normal(200_000)
    ).astype(np.float32)
    np.testing.assert_array_equal(jax.jit(numerics.correctly_rounded_divide)(a, b), a / b)
    special = np.array([0.0, -0.0, np.inf, np.nan, 1.0, 1e-40], np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        expected = special / np.array([1.0, 3.0, 2.0, 1.0, 0.0, 3.0], np.float32)
    got = numerics.correctly_rounded_divide(
        special, np.array([1.0, 3.0, 2.0, 1.0, 0.0, 3.0], np.float32)
    )
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(
        np.asarray(got)[:5][~np.isnan(expected[:5])], expected[:5][~np.isnan(expected[:5])]
    )


def test_a_quotient_one_step_off_is_refined_to_the_correctly_rounded_one():
    """What makes division portable to backends whose division is off by one ulp."""
    y = RNG.random(200_000).astype(np.float32) + np.float32(1e-3)
    d = np.float32(0.01)
    reference = y / d
    got = jax.jit(lambda q: numerics._refine_quotient(q, y, d))(refinement_inputs(reference))
    np.testing.assert_array_equal(got, reference)


def test_sqrt_is_correctly_rounded_also_from_a_guess_one_step_off():
    x = RNG.random(200_000).astype(np.float32)
    np.testing.assert_array_equal(jax.jit(numerics.correctly_rounded_sqrt)(x), np.sqrt(x))
    reference = np.sqrt(x)
    got = jax.jit(lambda s: numerics._refine_root(s, x))(refinement_inputs(reference))
    np.testing.assert_array_equal(got, reference)


def float64_exp_rounded(a):
    result = np.exp(a.astype(np.float64)).astype(np.float32)
    result[result < np.finfo(np.float32).tiny] = 0.0  # subnormal results are flushed
    return result


def test_exp_is_correctly_rounded_where_float32_exp_is_not():
    a = RNG.uniform(-87.3, 88.7, 1_000_000).astype(np.float32)
    expected = float64_exp_rounded(a)
    np.testing.assert_array_equal(jax.jit(numerics.correctly_rounded_exp)(a), expected)
    assert np.mean(np.asarray(jax.jit(jnp.exp)(a)) != expected) > 0.01  # XLA's own exp is not
    edges = np.array([0.0, -0.0, -1e-30, -87.5, -200.0, 89.0, np.nan, -np.inf], np.float32)
    got = np.asarray(numerics.correctly_rounded_exp(edges))
    np.testing.assert_array_equal(got[:6], [1.0, 1.0, 1.0, 0.0, 0.0, np.inf])
    assert np.isnan(got[6]) and got[7] == 0.0


def test_decay_equals_the_original_float32_exp_for_every_stored_time_constant():
    """exp((-1)/|τ|) with a float32 argument, float64 exp, one rounding (docs/numerics.md)."""
    taus = [RNG.uniform(0.02, 500, 200_000).astype(np.float32)]
    for name in (
        "ecg_brf",
        "ecg_vrf",
        "ecg_alif",
        "smnist_brf",
        "smnist_alif",
        "psmnist_alif",
        "shd_alif",
    ):
        with np.load(checkpoint(name)) as state:
            taus += [state[key].astype(np.float32) for key in state.files if "tau" in key]
    tau = np.concatenate(taus)
    argument = np.float32(-1.0) / np.abs(tau)
    np.testing.assert_array_equal(jax.jit(numerics.decay)(tau), float64_exp_rounded(argument))


def test_divergence_boundary_matches_spec_values_and_ieee_numpy():
    spec_omega = np.array([3, 10, 25, 50, 85, 99.99, 100], np.float32)
    expected = np.array(
        [-0.04500747, -0.5012572, -3.1754136, -13.397462, -47.321732, -98.58567, -100.0], np.float32
    )
    np.testing.assert_allclose(numerics.divergence_boundary(spec_omega), expected, rtol=2e-7)
    omega = np.concatenate([RNG.uniform(0, 100, 500_000), [0.0, 1e-40]]).astype(np.float32)
    scaled = np.float32(0.01) * omega
    reference = (np.float32(-1.0) + np.sqrt(np.float32(1.0) - scaled * scaled)) / np.float32(0.01)
    np.testing.assert_array_equal(jax.jit(numerics.divergence_boundary)(omega), reference)
    assert np.isnan(numerics.divergence_boundary(np.float32(100.5)))


def test_constants_have_their_exact_derivatives():
    omega = jnp.float32(40.0)
    scaled = 0.01 * omega
    assert jax.grad(numerics.divergence_boundary)(omega) == pytest.approx(
        float(-scaled / jnp.sqrt(1 - scaled**2)), rel=1e-6
    )
    tau = jnp.float32(-7.0)
    alpha = float(numerics.decay(tau))
    assert jax.grad(numerics.decay)(tau) == pytest.approx(alpha * -1.0 / 49.0, rel=1e-6)


# ----------------------------------------------------------------------- products

SHAPES = [(40, 36), (257, 256), (828, 128)]  # ECG, (PS-)MNIST, SHD hidden products


@pytest.mark.parametrize("depth,width", SHAPES)
def test_spike_products_are_the_same_for_every_batch_size_and_nearly_always_correctly_rounded(
    depth, width
):
    weights = (RNG.standard_normal((depth, width)) / np.sqrt(depth)).astype(np.float32)
    spikes = (RNG.random((64, depth)) < 0.2).astype(np.float32)
    product = jax.jit(lambda a, b: numerics.portable_matmul(a, b, binary_left=True))
    full = np.asarray(product(spikes, weights))
    for rows in (1, 2, 3, 7, 16, 33, 63):
        np.testing.assert_array_equal(product(spikes[:rows], weights), full[:rows])
    exact = (spikes.astype(np.float64) @ weights.astype(np.float64)).astype(np.float32)
    assert np.mean(full != exact) < 1e-3
    np.testing.assert_allclose(full, exact, rtol=0, atol=2 * np.abs(exact).max() * 2**-24)


def test_each_slice_product_is_exact_so_no_summation_order_matters():
    """The property that makes the products portable: every slice product, summed in
    any order (here forward, backward and pairwise in float32), gives the same value."""
    depth, width = 257, 64
    weights = (RNG.standard_normal((depth, width)) * 3).astype(np.float32)
    spikes = (RNG.random((8, depth)) < 0.5).astype(np.float32)
    for part in numerics.split_kernel(jnp.asarray(weights), binary_left=True):
        terms = spikes[:, :, None] * np.asarray(part)[None]  # (8, K, N), each term exact
        forward = np.zeros((8, width), np.float32)
        for k in range(depth):
            forward = forward + terms[:, k]
        backward = np.zeros((8, width), np.float32)
        for k in reversed(range(depth)):
            backward = backward + terms[:, k]
        np.testing.assert_array_equal(forward, backward)
        np.testing.assert_array_equal(forward, np.sum(terms, axis=1, dtype=np.float32))
        np.testing.assert_array_equal(
            forward, (spikes.astype(np.float64) @ np.asarray(part, np.float64)).astype(np.float32)
        )


@pytest.mark.parametrize("depth", [1, 4, 700])
def test_general_products_are_row_independent_and_within_the_documented_bound(depth):
    rng = np.random.default_rng(depth)
    weights = rng.standard_normal((depth, 32)).astype(np.float32)
    inputs = np.floor(rng.random((40, depth)) * 4).astype(np.float32) * rng.random(
        (40, depth)
    ).astype(np.float32)
    inputs[0, 0] = 1e-30  # entries far below the row's and column's largest magnitude
    weights[0, 1] = 1e-8
    product = jax.jit(numerics.portable_matmul)
    full = np.asarray(product(inputs, weights))
    for rows in (1, 5, 17):
        np.testing.assert_array_equal(product(inputs[:rows], weights), full[:rows])
    a, b = np.abs(inputs.astype(np.float64)), np.abs(weights.astype(np.float64))
    exact = inputs.astype(np.float64) @ weights.astype(np.float64)
    # the docstring's bound: 36 bits of each operand kept, plus the fixed-order sum's
    # rounding (a few float32 roundings of the partial results); results below float32's
    # normal range (here 1e-30 · 1e-8) are flushed, as in a plain float32 product
    dropped = 2.0**-36 * (
        a.sum(1, keepdims=True) * b.max(0, keepdims=True)
        + a.max(1, keepdims=True) * b.sum(0, keepdims=True)
    )
    assert np.all(np.abs(full - exact) <= 2**-22 * np.abs(exact) + 2 * dropped + 2.0**-120)


def test_rows_of_spikes_take_the_spike_product_whatever_the_other_rows():
    """A layer's wide input product (numerics.product_of_slices_by_row): a row of 0 and 1
    gets the bits of the spike product, any other row those of the general product, in
    blocks of spikes only, of values only and mixed, and below and above the size where
    the block-wide branch starts (64 x 700 and 1 x 700 elements)."""
    depth = 700
    weights = jnp.asarray(RNG.standard_normal((depth, 16)).astype(np.float32))
    spikes = (RNG.random((64, depth)) < 0.2).astype(np.float32)
    values = (np.floor(RNG.random((64, depth)) * 4) * 0.7).astype(np.float32)
    values[:, 0] = 0.35  # every row has a value other than 0 and 1
    parts = (
        numerics.split_kernel(weights, binary_left=True),
        numerics.split_kernel(weights, binary_left=False),
    )
    by_row = jax.jit(lambda a: numerics.product_of_slices_by_row(a, weights, *parts))
    as_spikes = np.asarray(numerics.product_of_slices(spikes, weights, parts[0], True))
    as_values = np.asarray(numerics.product_of_slices(values, weights, parts[1], False))
    mixed = np.where((np.arange(64) % 3 == 0)[:, None], spikes, values)
    expected = np.where((np.arange(64) % 3 == 0)[:, None], as_spikes, as_values)
    np.testing.assert_array_equal(by_row(spikes), as_spikes)
    np.testing.assert_array_equal(by_row(values), as_values)
    np.testing.assert_array_equal(by_row(mixed), expected)
    for row in (0, 1):
        np.testing.assert_array_equal(by_row(mixed[row : row + 1]), expected[row : row + 1])
    # the spike product is the other one (fewer slices): the rule changes values
    assert np.any(
        as_spikes != np.asarray(numerics.product_of_slices(spikes, weights, parts[1], False))
    )


def test_products_keep_nan_rows_and_the_derivative_of_a_plain_product():
    weights = RNG.standard_normal((10, 5)).astype(np.float32)
    spikes = np.array([[1, 0] * 5, [np.nan] + [0] * 9], np.float32)
    out = np.asarray(numerics.portable_matmul(spikes, weights, binary_left=True))
    assert np.all(np.isfinite(out[0])) and np.all(np.isnan(out[1]))
    a = jnp.asarray(RNG.random((3, 10)).astype(np.float32))
    plain = jax.grad(lambda a, b: jnp.sum(jnp.sin(a @ b)), argnums=(0, 1))(a, jnp.asarray(weights))
    portable = jax.grad(
        lambda a, b: jnp.sum(jnp.sin(numerics.portable_matmul(a, b))), argnums=(0, 1)
    )(a, jnp.asarray(weights))
    for p, q in zip(plain, portable):
        np.testing.assert_allclose(p, q, rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the network


def test_default_network_has_no_host_callback_and_lowers_for_gpu_and_tpu():
    network = models.build_network("alif", 16, 3)
    x = jnp.zeros((5, 2, 4))
    variables = network.init(jax.random.PRNGKey(0), x)
    text = jax.jit(network.apply).lower(variables, x).as_text()
    assert "callback" not in text
    grad = jax.jit(jax.grad(lambda v: jnp.sum(network.apply(v, x).readouts)))
    assert "callback" not in grad.lower(variables).as_text()
    exported = jax.export.export(
        jax.jit(lambda v, x: network.apply(v, x).readouts), platforms=("cpu", "cuda", "tpu")
    )(variables, x)
    assert exported.platforms == ("cpu", "cuda", "tpu")
