"""Whole-sequence layers and stacks of them: the paper's network as their composition,
gradients of 2- and 3-layer networks against JAX's derivative (one layer:
test_neuron_interface, test_models), streaming, parameters, errors. The CLI with a
2-layer network: test_train."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brfjax import cells, layers, metrics, models

# a custom neuron without a hand-written reverse step: the generic jax.vjp adjoint
PATH = "test_neuron_interface:LEAKY_RESONATOR"


def _spiking_inputs(shape, seed=0, scale=60.0):
    return scale * (np.random.default_rng(seed).random(shape) < 0.3).astype(np.float32)


def _sharpened(params, names, factor):
    """Larger kernels, so that every layer of a small random stack spikes."""
    return {
        **params,
        **{name: {**params[name], "kernel": params[name]["kernel"] * factor} for name in names},
    }


@pytest.mark.parametrize("sizes", [(9,), (9, 7)], ids=["one layer", "two layers"])
def test_the_network_is_its_layers_composed_bit_for_bit(sizes):
    """RecurrentSNN runs layers.spiking_layer per layer and layers.readout_layer: the same
    bits as SpikingRNN modules (the later ones fed spikes) and LIReadoutRNN applied by hand
    with the same parameters, in both layouts."""
    net = models.build_network("brf", sizes if len(sizes) > 1 else sizes[0], 3)
    x = _spiking_inputs((30, 4, 5))
    variables = net.init(jax.random.PRNGKey(0), x)
    params = _sharpened(variables["params"], net.hidden_names, 3.0)
    params = _sharpened(params, net.hidden_names[1:], 100.0)  # spikes in are sparser than x
    out = net.apply({"params": params}, x)

    spikes, counts = x, 0.0
    for depth, (cell, name) in enumerate(zip(net.hidden_cells, net.hidden_names)):
        layer = layers.SpikingRNN(cell.clone(parent=None), spike_inputs=depth > 0)
        step = layer.apply({"params": params[name]}, spikes)
        final = out.final_state.hidden[depth] if len(sizes) > 1 else out.final_state.hidden
        for a, b in zip(step.final_state, final):
            np.testing.assert_array_equal(a, b)
        spikes, counts = step.spikes, counts + step.spike_counts
        assert float(jnp.sum(spikes)) > 0  # every layer spikes: the comparison means something
    readout = layers.LIReadoutRNN(net.readout.clone(parent=None))
    potentials = readout.apply({"params": params["readout"]}, spikes)
    np.testing.assert_array_equal(potentials, out.readouts)
    np.testing.assert_array_equal(counts, out.spike_counts)

    batch_major = layers.SpikingRNN(net.hidden_cells[0].clone(parent=None), time_major=False)
    first = params[net.hidden_names[0]]
    np.testing.assert_array_equal(
        batch_major.apply({"params": first}, x.transpose(1, 0, 2)).spikes.transpose(1, 0, 2),
        layers.SpikingRNN(net.hidden_cells[0].clone(parent=None))
        .apply({"params": first}, x)
        .spikes,
    )


def _stack_problem(neuron, sizes, **options):
    """``(variables, params, initial state, inputs)`` of a small stack in which every
    layer spikes; the same for every backward (its parameters do not depend on it)."""
    model = models.build_network(neuron, sizes, 3, **options)
    # 2 layers: 23 steps, segments of 5 and a shorter last one; 3 layers: 25 steps, whole
    # segments only (a shorter segment is one more reverse body per layer to compile)
    steps = 25 if len(sizes) > 2 else 23
    x = jax.random.uniform(jax.random.PRNGKey(1), (steps, 3, 4)) * 2.0
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    # the harmonic resonator's heavy damping (b' ~ U(1, 6)) needs larger currents to spike
    params = _sharpened(
        variables["params"], model.hidden_names, 200.0 if neuron == "bhrf" else 20.0
    )
    params = _sharpened(params, model.hidden_names[1:], 30.0)  # spikes in are sparser than x
    with_states = jax.jit(model.clone(return_trajectory=True).apply)(
        {**variables, "params": params}, x
    )
    assert all(float(jnp.sum(t.z)) > 0 for t in with_states.trajectory)  # every layer spikes
    initial = model.initial_state(3)
    # spikes at t = -1 in every layer: the initial states' gradients have every term
    initial = initial._replace(
        readout=jnp.full((3, 3), 0.3),
        hidden=tuple(
            state._replace(z=(jnp.arange(3 * size).reshape(3, size) % 3 == 0).astype(jnp.float32))
            for state, size in zip(initial.hidden, sizes)
        ),
    )
    return variables, params, initial, x


def _stack_gradients(problem, neuron, sizes, backward, return_trajectory=False, **options):
    model = models.build_network(
        neuron, sizes, 3, backward=backward, return_trajectory=return_trajectory, **options
    )
    variables, params, initial, x = problem
    targets = jnp.arange(3) % 3

    def loss(params, initial, inputs):
        out = model.apply({**variables, "params": params}, inputs, initial, start_step=0)
        value = (
            metrics.summed_loss(out.readouts, targets)
            + 1e-3 * out.spike_counts.sum()
            + 0.1 * sum(jnp.sum(state.u) for state in out.final_state.hidden)
        )
        if return_trajectory:
            value = value + 0.01 * sum(jnp.sum(t.u[::3]) for t in out.trajectory)
        return value, out

    (_, out), grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2), has_aux=True))(
        params, initial, x
    )
    return grads, out


STACK_CASES = [
    # every shipped neuron through 3 layers with the hand-written backward, and through 2
    # with JAX's derivative recomputed in segments (one layer: test_models,
    # test_neuron_interface)
    *[(neuron, (6, 5, 4), "manual", {}) for neuron in ("brf", "vrf", "bhrf", "alif")],
    *[(neuron, (6, 5), "recompute", {}) for neuron in ("brf", "vrf", "bhrf", "alif")],
    ("brf", (6, 5), "manual", {"return_trajectory": True}),
    # layers as wide as their inputs: each segment's input cotangent is written over its
    # saved currents, with a shorter last segment, and with one segment longer than T
    ("brf", (4, 4), "manual", {"use_bias": True}),
    ("brf", (4, 4), "manual", {"recompute_segment": 30, "use_bias": True}),
    ("brf", (6, 5), "manual", {"recurrent": False, "use_bias": True}),
    ("brf", (6, 5), "manual", {"mask_prob": 0.3}),
    (PATH, (6, 5), "manual", {}),  # no hand-written reverse step: jax.vjp of its step
]


@pytest.mark.parametrize("neuron,sizes,backward,options", STACK_CASES)
def test_stack_gradients_equal_autodiff(neuron, sizes, backward, options):
    """Through every layer in reverse, the fast backward gives JAX's gradients up to
    float32 summation order (relative 2e-5 of each gradient's largest entry) for every
    parameter, the initial states and the inputs; the forward is the same bits."""
    layer_options = {k: v for k, v in options.items() if k != "return_trajectory"}
    problem = _stack_problem(neuron, sizes, **layer_options)
    fast, out_fast = _stack_gradients(problem, neuron, sizes, backward, **options)
    reference, out_reference = _stack_gradients(problem, neuron, sizes, "autodiff", **options)
    for a, b in zip(jax.tree_util.tree_leaves(out_fast), jax.tree_util.tree_leaves(out_reference)):
        np.testing.assert_array_equal(a, b)
    assert float(out_fast.spike_counts.sum()) > 0
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(fast), jax.tree_util.tree_leaves(reference)
    ):
        scale = float(jnp.max(jnp.abs(b)))
        np.testing.assert_allclose(
            a, b, rtol=0, atol=2e-5 * scale + 1e-12, err_msg=jax.tree_util.keystr(path)
        )
    # the deepest layer's kernel has a gradient: the readout reaches it, and the first
    # layer's: the reverse pass went through every layer
    assert all(
        float(jnp.max(jnp.abs(fast[0][name]["kernel"]))) > 0
        for name in fast[0]
        if name != "readout"
    )


def test_stack_streaming_equals_full_sequence():
    net = models.build_network("brf", (8, 6), 3, return_trajectory=False)
    x = _spiking_inputs((40, 3, 4), seed=2)
    variables = net.init(jax.random.PRNGKey(0), x)
    params = _sharpened(variables["params"], net.hidden_names, 3.0)
    params = _sharpened(params, net.hidden_names[1:], 100.0)
    assert float(jnp.min(net.apply({"params": params}, x).spike_counts)) > 0
    whole = net.apply({"params": params}, x)
    first = net.apply({"params": params}, x[:17])
    second = net.apply({"params": params}, x[17:], first.final_state, start_step=17)
    np.testing.assert_array_equal(
        jnp.concatenate([first.readouts, second.readouts]), whole.readouts
    )
    np.testing.assert_array_equal(first.spike_counts + second.spike_counts, whole.spike_counts)
    assert len(whole.final_state.hidden) == 2


def test_stack_parameters_are_named_per_layer_and_counted():
    """A stack's layers are hidden_0, hidden_1, ...; the paper's network keeps hidden. The
    2 x 150 PS-MNIST stack: (1+150)·150 + 300 + (150+150)·150 + 300 + 150·10 + 10."""
    x = jnp.zeros((5, 2, 1))
    stack = models.build_network("brf", (150, 150), 10)
    params = stack.init(jax.random.PRNGKey(0), x)["params"]
    assert sorted(params) == ["hidden_0", "hidden_1", "readout"]
    assert params["hidden_1"]["kernel"].shape == (300, 150)
    assert models.count_parameters(params) == 69_760
    one = models.build_network("brf", [256], 10).init(jax.random.PRNGKey(0), x)["params"]
    assert sorted(one) == ["hidden", "readout"] and models.count_parameters(one) == 68_874


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: models.build_network("brf", (), 3), "non-empty sequence"),
        (lambda: models.build_network("brf", (8, 0), 3), "positive integer"),
        (
            lambda: models.build_network("brf", 8, 3, recompute_segment=-1).init(
                jax.random.PRNGKey(0), jnp.zeros((4, 2, 3))
            ),
            "recompute_segment must be a positive",
        ),
        (
            lambda: models.build_network("brf", 8, 3, recompute_segment=2.5).init(
                jax.random.PRNGKey(0), jnp.zeros((4, 2, 3))
            ),
            "recompute_segment must be a positive",
        ),
        (
            lambda: layers.SpikingRNN(cells.BRFCell(features=4)).init(
                jax.random.PRNGKey(0), jnp.zeros((4, 3))
            ),
            "time-major (T, B, F)",
        ),
        (
            lambda: layers.SpikingRNN(cells.BRFCell(features=4), backward="symbolic").init(
                jax.random.PRNGKey(0), jnp.zeros((4, 2, 3))
            ),
            "backward must be one of",
        ),
        (
            lambda: layers.SpikingRNN(cells.BRFCell(features=4)).init(
                jax.random.PRNGKey(0), jnp.zeros((4, 2, 3), jnp.complex64)
            ),
            "inputs must hold real numbers (cast to float32); got dtype complex64",
        ),
        (
            lambda: layers.SpikingRNN(cells.BRFCell(features=4)).init(
                jax.random.PRNGKey(0), jnp.full((4, 2, 3), jnp.nan, jnp.bfloat16)
            ),
            "inputs hold 24 values that are NaN, inf or beyond float32's range",
        ),
        (
            lambda: layers.LIReadoutRNN(cells.LIReadout(3)).init(
                jax.random.PRNGKey(0), jnp.full((4, 2, 5), jnp.inf)
            ),
            "hold 40 values that are NaN, inf",
        ),
    ],
)
def test_bad_layer_options_give_one_error(call, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        call()


def test_input_product_out_of_the_loop_keeps_the_bits_of_a_step_by_step_loop():
    """With portable products a row of x·K does not depend on the other rows, so the
    layer's one product over all T·B rows gives the currents, and so the spikes and
    states, of products taken step by step inside a Python loop: the same bits."""
    cell = cells.BRFCell(features=16)
    x = np.random.default_rng(4).standard_normal((25, 6, 9)).astype(np.float32) * 30.0
    layer = layers.SpikingRNN(cell, return_trajectory=True)
    variables = layer.init(jax.random.PRNGKey(0), x)
    out = layer.apply(variables, x)
    state = layer.initial_state(6)
    for t in range(25):  # the cell: one step, its own products of that step's 6 rows
        state, z = cell.apply(variables, state, x[t])
        np.testing.assert_array_equal(z, out.spikes[t])
        np.testing.assert_array_equal(state.u, out.trajectory.u[t])
    assert float(jnp.sum(out.spikes)) > 0
