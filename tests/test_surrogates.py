import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brfjax import surrogates

POINTS = np.array([-3, -1, -0.5, 0, 0.25, 0.5, 1, 2, 3], np.float32)
# float32 values of the authors' surrogate functions (github.com/AdaptiveAILab/brf-neurons, snn/)
REFERENCE = {
    "double_gaussian": [
        -0.01209853,
        0.04322045,
        0.25859436,
        0.43883651,
        0.38499716,
        0.25859436,
        0.04322045,
        -0.01581849,
        -0.01209853,
    ],
    "multi_gaussian": [
        -0.01209776,
        0.04345199,
        0.2588582,
        0.43911165,
        0.38526943,
        0.2588582,
        0.04345199,
        -0.01569552,
        -0.01209776,
    ],
    "gaussian": [
        0.00443185,
        0.24197073,
        0.35206532,
        0.39894229,
        0.38666812,
        0.35206532,
        0.24197073,
        0.05399097,
        0.00443185,
    ],
    "linear": [0, 0, 0.5, 1, 0.75, 0.5, 0, 0, 0],
    "exp": [
        0.04978707,
        0.36787945,
        0.60653067,
        1,
        0.77880079,
        0.60653067,
        0.36787945,
        0.13533528,
        0.04978707,
    ],
}


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_surrogate_matches_reference_table(name):
    values = surrogates.get_surrogate(name)(jnp.asarray(POINTS))
    assert values.dtype == jnp.float32
    np.testing.assert_allclose(values, REFERENCE[name], rtol=2e-6, atol=1e-8)


def test_step_is_strict_and_float32():
    x = jnp.array([-1.0, -0.0, 0.0, 1e-30, 2.0], jnp.float32)
    z = surrogates.heaviside(x)
    assert z.dtype == jnp.float32
    np.testing.assert_array_equal(z, [0, 0, 0, 1, 1])


@pytest.mark.parametrize("name", sorted(REFERENCE))
@pytest.mark.parametrize("form", ["custom_vjp", "fgi"])
def test_spike_gradient_is_the_surrogate(name, form):
    spike = surrogates.spike_function(name, form)
    x = jnp.linspace(-4.0, 4.0, 81, dtype=jnp.float32)
    grads = jax.vmap(jax.grad(spike))(x)
    np.testing.assert_allclose(grads, surrogates.get_surrogate(name)(x), rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(spike(x), (x > 0).astype(np.float32))


def test_fgi_equals_custom_vjp_in_values_and_gradients():
    x = jax.random.normal(jax.random.PRNGKey(0), (1000,), jnp.float32) * 3
    weights = jax.random.normal(jax.random.PRNGKey(1), (1000,), jnp.float32)

    def loss(spike, x):
        return jnp.sum(spike(x) * weights)

    vjp_form = surrogates.spike_function("double_gaussian", "custom_vjp")
    fgi_form = surrogates.spike_function("double_gaussian", "fgi")
    np.testing.assert_array_equal(vjp_form(x), fgi_form(x))
    # same formula g(x)·grad_out; XLA fuses it differently in the two forms (a few ulps)
    np.testing.assert_allclose(
        jax.grad(loss, 1)(vjp_form, x), jax.grad(loss, 1)(fgi_form, x), rtol=1e-5, atol=1e-7
    )


def test_fgi_forward_is_nan_for_non_finite_argument():
    x = jnp.array([jnp.inf, -jnp.inf, jnp.nan, 1.0], jnp.float32)
    z = jax.jit(surrogates.fgi_heaviside)(x)
    assert np.isnan(np.asarray(z[:3])).all()
    assert z[3] == 1.0


def test_double_gaussian_sign_structure():
    g = surrogates.double_gaussian
    assert g(jnp.float32(0.0)) == pytest.approx(0.43883651, rel=1e-6)
    inner = jnp.linspace(-1.25, 1.25, 101)
    outer = jnp.concatenate([jnp.linspace(-6, -1.3, 50), jnp.linspace(1.3, 6, 50)])
    assert (g(inner) > 0).all()
    assert (g(outer) < 0).all()
    # symmetric and maximal at 0
    np.testing.assert_allclose(g(inner), g(-inner), rtol=1e-6)
    assert jnp.argmax(g(inner)) == 50


def test_unknown_names_are_rejected_with_the_valid_names():
    with pytest.raises(ValueError, match="double_gaussian"):
        surrogates.get_surrogate("sigmoid")
    with pytest.raises(ValueError, match="custom_vjp"):
        surrogates.spike_function("gaussian", "straight_through")
