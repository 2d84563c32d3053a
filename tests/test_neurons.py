import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from jax.test_util import check_grads

from brfjax import neurons, surrogates

f32 = np.float32


def test_divergence_boundary_reference_values():
    omega = jnp.array([3, 10, 25, 50, 85, 99.99, 100], jnp.float32)
    expected = f32([-0.04500747, -0.5012572, -3.1754136, -13.397462, -47.321732, -98.58567, -100.0])
    boundary = neurons.divergence_boundary(omega, exact=True)
    np.testing.assert_array_equal(boundary[1:], expected[1:])
    # printed with 7 significant digits only: equal to within half a unit of the last digit
    np.testing.assert_allclose(boundary[0], expected[0], rtol=0, atol=5e-9)
    # the fast path (XLA turns /δ into ·100) stays within a few ulps ×100
    np.testing.assert_allclose(neurons.divergence_boundary(omega, exact=False), expected, rtol=2e-6)


@pytest.mark.parametrize("exact", [True, False])
def test_divergence_boundary_is_nan_above_100(exact):
    boundary = jax.jit(lambda w: neurons.divergence_boundary(w, exact))(jnp.array([100.5, 150.0]))
    assert np.isnan(np.asarray(boundary)).all()


def spec_brf_inputs():
    coefficients = neurons.brf_coefficients(
        jnp.array([10, 50, -30], f32), jnp.array([0.5, 0.2, -1.0], f32), exact=True
    )
    state = neurons.BRFState(
        jnp.zeros(3, f32),
        jnp.array([0.9, 1.2, 0.3], f32),
        jnp.array([0.3, -0.4, 2.0], f32),
        jnp.array([0, 0.5, 1.9], f32),
    )
    return coefficients, state, jnp.array([20, -5, 150], f32)


def test_brf_step_matches_reference_values():
    coefficients, state, current = spec_brf_inputs()
    np.testing.assert_array_equal(coefficients.boundary, f32([-0.50125718, -13.397462, -4.6060801]))
    new = jax.jit(neurons.brf_step)(coefficients, state, current)
    np.testing.assert_array_equal(new.z, [1, 0, 0])
    np.testing.assert_array_equal(new.u, f32([1.0609887, 1.1808305, 1.1774818]))
    np.testing.assert_array_equal(new.v, f32([0.38699624, 0.25638986, 1.9398783]))
    np.testing.assert_array_equal(new.q, f32([1.0, 0.44999999, 1.7099999]))
    damping = (coefficients.boundary - coefficients.b_offset) - state.q
    np.testing.assert_array_equal(damping, f32([-1.0012572, -14.097462, -7.5060802]))


def test_rf_step_matches_reference_values():
    coefficients, state, current = spec_brf_inputs()
    coefficients = neurons.rf_coefficients(
        jnp.array([10, 50, -30], f32), jnp.array([0.5, 0.2, -1.0], f32)
    )
    new = jax.jit(neurons.rf_step)(
        coefficients, neurons.RFState(state.z, state.u, state.v), current
    )
    np.testing.assert_array_equal(new.z, [1, 1, 1])
    np.testing.assert_array_equal(new.u, f32([1.0655000, 1.3476000, 1.1970000]))
    np.testing.assert_array_equal(new.v, f32([0.38850001, 0.20080002, 2.0699999]))


def test_alif_step_matches_reference_values():
    coefficients = neurons.alif_coefficients(
        jnp.array([20, 5], f32), jnp.array([7, 200], f32), exact=True
    )
    np.testing.assert_array_equal(coefficients.alpha, f32([0.95122945, 0.81873077]))
    np.testing.assert_array_equal(coefficients.rho, f32([0.86687791, 0.99501246]))
    state = neurons.ALIFState(
        jnp.array([1, 0], f32), jnp.array([0.2, 0.05], f32), jnp.array([0.1, 0.3], f32)
    )
    new = jax.jit(neurons.alif_step)(coefficients, state, jnp.array([0.5, 2.0], f32))
    np.testing.assert_array_equal(new.z, [0, 0])
    np.testing.assert_array_equal(new.u, f32([0.21463117, 0.40347499]))
    np.testing.assert_array_equal(new.a, f32([0.21980989, 0.29850376]))


def test_li_step_matches_reference_values():
    alpha = neurons.decay_factor(jnp.array([20, 1], f32), exact=True)
    np.testing.assert_array_equal(alpha, f32([0.95122945, 0.36787945]))
    potential = jax.jit(neurons.li_step)(alpha, jnp.array([1, 1], f32), jnp.array([3, -2], f32))
    np.testing.assert_array_equal(potential, f32([1.0975411, -0.89636165]))


def random_states(key, shape, count):
    keys = jax.random.split(key, count)
    return [np.asarray(jax.random.normal(k, shape, jnp.float32)) for k in keys]


@pytest.mark.parametrize("neuron", ["brf", "vrf", "bhrf", "alif"])
def test_exact_steps_equal_numpy_float32_bitwise(neuron):
    """Many random steps under jit equal an independent IEEE float32 NumPy version."""
    batch, hidden, steps = 64, 128, 30
    rng = np.random.default_rng(0)
    if neuron == "alif":
        raw = (rng.normal(20, 5, hidden).astype(f32), rng.normal(100, 50, hidden).astype(f32))
    else:
        raw = (rng.uniform(-90, 90, hidden).astype(f32), rng.uniform(-2, 2, hidden).astype(f32))
    model = neurons.get_neuron(neuron)
    coefficients = model.coefficients(*raw, exact=True)
    step = jax.jit(lambda state, current: model.step(coefficients, state, current))
    oracle = {
        "brf": ref.brf_step,
        "vrf": ref.rf_step,
        "bhrf": ref.bhrf_step,
        "alif": ref.alif_step,
    }[neuron]
    state = neurons.zero_state(model.state, (batch,), hidden)
    expected = [np.asarray(field) for field in state]
    for t in range(steps):
        current = (rng.normal(size=(batch, hidden)) * 100).astype(f32)
        state = step(state, current)
        expected = oracle(*raw, *expected, current)
        for name, got, want in zip(model.state._fields, state, expected):
            np.testing.assert_array_equal(got, want, err_msg=f"{neuron} {name} at step {t}")
    assert np.asarray(state.z).sum() > 0


def test_li_step_equals_numpy_float32_bitwise():
    rng = np.random.default_rng(1)
    tau = rng.normal(20, 5, 10).astype(f32)
    potential, current = (rng.normal(size=(256, 10)).astype(f32) for _ in range(2))
    got = jax.jit(neurons.li_step)(neurons.decay_factor(tau, exact=True), potential, current)
    np.testing.assert_array_equal(got, ref.li_step(tau, potential, current))


def test_exact_decay_equals_float64_exp_on_checkpoint_scale_values():
    tau = np.random.default_rng(2).normal(20, 8, 5000).astype(f32)
    expected = np.exp((f32(-1) / np.abs(tau)).astype(np.float64)).astype(f32)
    np.testing.assert_array_equal(jax.jit(lambda t: neurons.decay_factor(t, True))(tau), expected)
    np.testing.assert_allclose(neurons.decay_factor(tau, False), expected, rtol=3e-7)


def test_unfused_add_keeps_nan_and_inf_semantics():
    x = jnp.array([1.0, jnp.nan, jnp.inf, jnp.inf, 2.0], f32)
    y = jnp.array([jnp.nan, 1.0, -jnp.inf, 1.0, 3.0], f32)
    np.testing.assert_array_equal(jax.jit(neurons.unfused_add)(x, y), x + y)


def test_brf_spike_gradient_wrt_previous_q_is_minus_surrogate():
    coefficients, state, current = spec_brf_inputs()

    def spikes(q):
        return neurons.brf_step(coefficients, state._replace(q=q), current).z

    q = state.q
    jacobian = jax.jacobian(spikes)(q)
    new = neurons.brf_step(coefficients, state, current)
    argument = (new.u - 1.0) - q
    # z depends on q through the threshold (-g) and through the damping b = p - b' - q
    du_dq = jax.jacobian(lambda q: neurons.brf_step(coefficients, state._replace(q=q), current).u)(
        q
    )
    g = surrogates.double_gaussian(argument)
    np.testing.assert_allclose(jnp.diag(jacobian), g * (jnp.diag(du_dq) - 1.0), rtol=1e-6)
    # with the membrane held fixed, ∂z/∂q = -g exactly
    direct = jax.grad(lambda q: jnp.sum(surrogates.heaviside((new.u - 1.0) - q)))(q)
    np.testing.assert_allclose(direct, -g, rtol=1e-7)


def test_exact_coefficient_derivatives_equal_autodiff_of_the_formulas():
    omega = jnp.array([3.0, 20.0, -50.0, 85.0], f32)
    tau = jnp.array([5.0, -20.0, 200.0, 1.5], f32)
    for fn in (neurons.divergence_boundary, neurons.decay_factor):
        x = jnp.abs(omega) if fn is neurons.divergence_boundary else tau
        exact = jax.grad(lambda x, fn=fn: jnp.sum(fn(x, True)))(x)
        plain = jax.grad(lambda x, fn=fn: jnp.sum(fn(x, False)))(x)
        np.testing.assert_allclose(exact, plain, rtol=1e-5)


def _no_surrogate(x):
    return jnp.zeros_like(x)


@pytest.mark.parametrize("neuron", ["brf", "vrf", "bhrf", "alif"])
def test_membrane_gradients_match_finite_differences(neuron):
    """Away from the spike the update is smooth: with the spike's derivative set to 0
    (a finite difference sees a locally constant spike), reverse-mode gradients of the
    new membrane equal central differences (float32, so loose tolerances)."""
    model = neurons.get_neuron(neuron)
    rng = np.random.default_rng(3)
    if neuron == "alif":
        raw = (f32([15.0, 25.0, 8.0]), f32([30.0, 120.0, 9.0]))
    else:
        raw = (f32([20.0, -35.0, 60.0]), f32([0.4, -1.2, 2.5]))
    state = model.state(
        *(jnp.asarray(rng.uniform(0.1, 0.8, 3).astype(f32)) for _ in model.state._fields)
    )
    state = state._replace(z=jnp.array([1.0, 0.0, 1.0], f32))

    def membrane(raw0, raw1, current, u):
        coefficients = model.coefficients(raw0, raw1, exact=True)
        spike = lambda x: surrogates.heaviside(x, _no_surrogate)  # noqa: E731
        new = model.step(coefficients, state._replace(u=u), current, spike=spike)
        return new.u

    current = jnp.asarray(rng.normal(size=3).astype(f32) * 5)
    check_grads(
        membrane,
        (jnp.asarray(raw[0]), jnp.asarray(raw[1]), current, state.u),
        order=1,
        modes=["rev"],
        eps=1e-2,
        atol=2e-2,
        rtol=2e-2,
    )
