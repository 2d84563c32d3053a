"""A neuron defined outside brfjax, through the neuron interface: the network, the
training command and the fast (segment-recompute) backward with ``jax.vjp`` adjoints."""

import dataclasses
import json
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brfjax import metrics, models, neurons, tasks, train
from brfjax.neurons import (
    NeuronModel,
    Parameter,
    arithmetic,
    decay_factor,
    normal_init,
    uniform_init,
)

# ------------------------------------------- a leaky resonator with an adaptive threshold


class LeakyResonatorState(NamedTuple):
    z: jax.Array
    u: jax.Array
    v: jax.Array
    a: jax.Array


class LeakyResonatorCoefficients(NamedTuple):
    rotation: jax.Array  # δ·|ω|
    decay: jax.Array  # exp(-1/|τ|)


def leaky_resonator_coefficients(omega, tau, exact=True):
    return LeakyResonatorCoefficients(0.01 * jnp.abs(omega), decay_factor(tau, exact))


def leaky_resonator_step(
    coefficients, state, current, spike=neurons.common.default_spike, dt=0.01, exact=True
):
    """u_t = α·u - δω·v + I,  v_t = α·v + δω·u,  a_t = 0.9·a + 0.1·z_{t-1},  z_t = Θ(u_t - 1 - a_t)."""
    del dt
    add, subtract = arithmetic(exact)
    rotation, decay = coefficients
    u = add(subtract(state.u * decay, rotation * state.v), current)
    v = add(state.v * decay, rotation * state.u)
    a = add(state.a * 0.9, state.z * 0.1)
    return LeakyResonatorState(spike((u - 1.0) - a), u, v, a)


LEAKY_RESONATOR = NeuronModel(
    name="leaky_resonator",
    state=LeakyResonatorState,
    parameters=(
        Parameter("omega", uniform_init(5.0, 10.0)),
        Parameter("tau", normal_init(20.0, 5.0)),
    ),
    coefficients=leaky_resonator_coefficients,
    step=leaky_resonator_step,
)
NOT_A_NEURON = object()
PATH = f"{__name__}:LEAKY_RESONATOR"

# ---------------------------------------------------------------------------- the tests


def test_registry_resolves_names_import_paths_and_refuses_the_rest():
    assert neurons.get_neuron("bhrf") is neurons.BHRF
    assert neurons.get_neuron(PATH) is LEAKY_RESONATOR
    for value, message in [
        ("lstm", r"unknown neuron 'lstm'; expected one of \['alif', 'bhrf', 'brf', 'vrf'\]"),
        ("no_such_module_here:X", "cannot import module 'no_such_module_here'"),
        (f"{__name__}:MISSING", "has no attribute 'MISSING'"),
        (f"{__name__}:NOT_A_NEURON", "is a object, not a brfjax.neurons.NeuronModel"),
    ]:
        with pytest.raises(ValueError, match=message):
            neurons.get_neuron(value)
        with pytest.raises(SystemExit):
            train.parse_args(["--task", "ecg", "--neuron", value])


def _gradients_and_outputs(neuron, backward, return_trajectory=False, **options):
    model = models.build_network(
        neuron, 12, 3, backward=backward, return_trajectory=return_trajectory, **options
    )
    x = jax.random.uniform(jax.random.PRNGKey(1), (40, 5, 4)) * 2.0
    variables = model.init(jax.random.PRNGKey(0), x)
    params = dict(variables["params"], hidden=dict(variables["params"]["hidden"]))
    # the harmonic resonator's heavy damping (b' ~ U(1, 6)) needs larger currents to spike
    params["hidden"]["kernel"] = params["hidden"]["kernel"] * (200.0 if neuron == "bhrf" else 20.0)
    initial = model.initial_state(5)
    # spikes at t = -1 and a non-zero readout: the initial state's gradient has every term
    initial_spikes = (jnp.arange(5 * 12).reshape(5, 12) % 3 == 0).astype(jnp.float32)
    initial = initial._replace(
        readout=jnp.full((5, 3), 0.3), hidden=initial.hidden._replace(z=initial_spikes)
    )
    targets = jnp.arange(5) % 3

    def loss(params, initial, inputs):
        out = model.apply({"params": params}, inputs, initial, start_step=0)
        value = (
            metrics.summed_loss(out.readouts, targets)
            + 1e-3 * out.spike_counts.sum()
            + 0.1 * jnp.sum(out.final_state.hidden.u)
            + 0.1 * jnp.sum(out.final_state.readout)
        )
        if return_trajectory:
            value = (
                value + 0.01 * jnp.sum(out.trajectory.u[::3]) + 0.05 * jnp.sum(out.trajectory.z[5:])
            )
        return value, out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(
        params, initial, x
    )
    return grads, out


CASES = [
    (PATH, {}),
    (PATH, {"return_trajectory": True}),
    (PATH, {"recurrent": False, "use_bias": True}),
    ("bhrf", {}),
    ("bhrf", {"return_trajectory": True}),
    ("brf", {"return_trajectory": True}),
]


@pytest.mark.parametrize("neuron,options", CASES)
def test_fast_backward_equals_autodiff(neuron, options):
    """The default backward (segments of ⌈√40⌉ = 7 steps, the last shorter; jax.vjp of the
    step where the neuron has no reverse step) gives the gradients of JAX's derivative of
    the plain lax.scan up to float32 summation order (relative 1e-5 of each gradient's
    largest entry) for parameters, initial state and inputs, and the very same forward."""
    fast, out_fast = _gradients_and_outputs(neuron, "manual", **options)
    reference, out_reference = _gradients_and_outputs(neuron, "autodiff", **options)
    assert (
        float(jnp.sum(out_reference.spike_counts)) > 0
    )  # the neurons spike: the comparison means something
    for a, b in zip(jax.tree_util.tree_leaves(out_reference), jax.tree_util.tree_leaves(out_fast)):
        np.testing.assert_array_equal(b, a)
    leaves = jax.tree_util.tree_leaves_with_path(reference)
    assert len(leaves) == len(jax.tree_util.tree_leaves(fast))
    for (path, a), b in zip(leaves, jax.tree_util.tree_leaves(fast)):
        scale = float(jnp.max(jnp.abs(a)))
        np.testing.assert_allclose(
            b,
            a,
            rtol=0,
            atol=1e-5 * scale + 1e-12,
            err_msg=f"{neuron} {jax.tree_util.keystr(path)}",
        )


def test_own_neuron_has_its_parameters_and_initialisers():
    model = models.build_network(PATH, 64, 3, initializers={"tau": normal_init(200.0, 1.0)})
    params = model.init(jax.random.PRNGKey(0), jnp.zeros((2, 1, 4)))["params"]["hidden"]
    assert sorted(params) == ["kernel", "omega", "tau"]
    assert 5.0 <= float(params["omega"].min()) and float(params["omega"].max()) <= 10.0
    assert 190.0 < float(params["tau"].mean()) < 210.0
    with pytest.raises(
        ValueError, match=r"initializers for \['b_offset'\], which neuron .* does not have"
    ):
        models.build_network(PATH, 4, 3, initializers={"b_offset": uniform_init(0, 1)}).init(
            jax.random.PRNGKey(0), jnp.zeros((2, 1, 4))
        )


def test_a_neuron_the_time_loop_would_run_wrongly_is_refused_where_it_is_made():
    """The loop and its backward read the spikes as the state's first field: a state
    with z elsewhere would train on wrong gradients, so it is refused, as are reverse
    steps and stability checks naming what the model lacks, and initialisers that
    ignore the shape they are given."""

    class SpikesSecond(NamedTuple):
        u: jax.Array
        z: jax.Array

    brf = neurons.get_neuron("brf")
    for changes, message in (
        ({"state": SpikesSecond}, r"first field must be the spikes z, got the fields \('u', 'z'\)"),
        ({"state": tuple}, "state must be a NamedTuple type"),
        (
            {"reverse": brf.reverse._replace(previous_fields=("u", "vv", "q"))},
            r"names fields \['vv'\] that the state \('z', 'u', 'v', 'q'\) does not have",
        ),
        (
            {"stability": brf.stability._replace(parameter="freq")},
            "reports parameter 'freq', which it does not have",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            dataclasses.replace(brf, **changes)
    scalar = dataclasses.replace(
        LEAKY_RESONATOR,
        parameters=(
            Parameter("omega", lambda key, shape, dtype: jnp.float32(7.0)),
            *LEAKY_RESONATOR.parameters[1:],
        ),
    )
    with pytest.raises(ValueError, match=r"parameter 'omega' has shape \(\), expected \(4,\)"):
        models.build_network(scalar, 4, 3).init(jax.random.PRNGKey(0), jnp.zeros((2, 1, 4)))
    # a step that returns a plain tuple, or a field of another dtype: named at trace time
    x = jnp.ones((6, 2, 4))
    for step, message in (
        (lambda *args, **kwargs: tuple(leaky_resonator_step(*args, **kwargs)), "returned tuple"),
        (
            lambda *args, **kwargs: leaky_resonator_step(*args, **kwargs)._replace(
                a=jnp.zeros((2, 4), jnp.int32)
            ),
            r"returned field a as int32 \(2, 4\); every field of the state is float32",
        ),
    ):
        with pytest.raises(ValueError, match=message):
            models.build_network(dataclasses.replace(LEAKY_RESONATOR, step=step), 4, 3).init(
                jax.random.PRNGKey(0), x
            )
    # an integer coefficient: the hand-written backward cannot sum its gradient
    counted = dataclasses.replace(
        LEAKY_RESONATOR,
        coefficients=lambda omega, tau, exact=True: (
            leaky_resonator_coefficients(omega, tau, exact),
            jnp.ones_like(omega, jnp.int32),
        ),
        step=lambda coefficients, *args, **kwargs: leaky_resonator_step(
            coefficients[0], *args, **kwargs
        ),
    )
    network = models.build_network(counted, 4, 3)
    params = network.init(jax.random.PRNGKey(0), x)["params"]
    with pytest.raises(ValueError, match="its coefficients hold int32 arrays; the hand-written"):
        jax.grad(lambda p: jnp.sum(network.apply({"params": p}, x).readouts))(params)
    # a reverse step reading a field it does not list (that field is not stored)
    unlisted = dataclasses.replace(brf, reverse=brf.reverse._replace(previous_fields=("u", "v")))
    network = models.build_network(unlisted, 4, 3)
    params = network.init(jax.random.PRNGKey(0), x)["params"]
    with pytest.raises(ValueError, match=r"previous_fields=\('u', 'v'\) of s_\(t-1\)"):
        jax.grad(lambda p: jnp.sum(network.apply({"params": p}, x).readouts))(params)


def test_own_neuron_trains_through_the_command_line(tmp_path):
    """``python -m brfjax.train --neuron module:NAME`` (in-process): one ECG epoch with the
    BRF row's protocol, tiny caps; the parameters move and the run's record names the neuron."""
    workdir = tmp_path / "run"
    status = train.main(
        [
            "--task",
            "ecg",
            "--neuron",
            PATH,
            "--epochs",
            "1",
            "--batch-size",
            "4",
            "--max-train-batches",
            "2",
            "--max-eval-batches",
            "1",
            "--workdir",
            str(workdir),
            "--devices",
            "1",
        ]
    )
    assert status == 0
    results = json.loads((workdir / "results.json").read_text())
    assert results["neuron"] == PATH
    assert (
        tasks.config_for("ecg", PATH).learning_rate == tasks.config_for("ecg", "brf").learning_rate
    )
    assert tasks.config_for("ecg", PATH).omega_init is None  # the model's own initialisers
