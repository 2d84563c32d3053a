"""Inputs are checked once, at the model's and the metrics' boundary: a wrong shape,
dtype, length or label gets one clear error (or is cast, for real dtypes), never a
number for something else; and streaming is indexed relative to the whole sequence."""

import re

import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import checkpoint
from in_process import run_main
from test_data import write_shd

from brfjax import cells, evaluate, layers, metrics, models
from brfjax.data import DataError, shd

NEURONS = ["brf", "vrf", "bhrf", "alif"]
# every neuron with the default backward, and the BRF neuron with every backward: the
# neuron's step and the backward's code path are independent of each other
NEURON_BACKWARDS = [(neuron, "manual") for neuron in NEURONS] + [
    ("brf", backward) for backward in models.BACKWARDS if backward != "manual"
]


def network_and_variables(neuron, sub_seq_length=0, backward="manual", label_last=False):
    net = models.build_network(
        neuron, 8, 3, sub_seq_length=sub_seq_length, backward=backward, label_last=label_last
    )
    x = np.zeros((12, 2, 3), np.float32)
    return net, net.init(jax.random.PRNGKey(0), x)


def spiking_input(steps, batch=2, seed=0):
    return 200.0 * (
        np.random.default_rng(seed).random((steps, batch, 3)) < 0.3
    )  # every neuron type spikes at init


@pytest.mark.parametrize("neuron,backward", NEURON_BACKWARDS)
def test_float64_and_integer_inputs_are_cast_once_to_float32(neuron, backward):
    net, variables = network_and_variables(neuron, backward=backward)
    x = spiking_input(20)
    reference = net.apply(variables, x.astype(np.float32))
    grad_reference = jax.grad(lambda v: jnp.sum(net.apply(v, x.astype(np.float32)).readouts))(
        variables
    )
    with jax.enable_x64(True):
        out = net.apply(variables, x.astype(np.float64))
        grads = jax.grad(lambda v: jnp.sum(net.apply(v, jnp.asarray(x, jnp.float64)).readouts))(
            variables
        )
    assert out.readouts.dtype == jnp.float32
    np.testing.assert_array_equal(out.readouts, reference.readouts)
    jax.tree_util.tree_map(np.testing.assert_array_equal, grads, grad_reference)
    np.testing.assert_array_equal(
        net.apply(variables, (x > 0).astype(np.int32) * 200).readouts, reference.readouts
    )


@pytest.mark.parametrize("backward", models.BACKWARDS)
def test_shapes_lengths_and_widths_are_checked_at_the_boundary(backward):
    net, variables = network_and_variables("brf", backward=backward)
    cases = [
        (np.zeros((0, 2, 3), np.float32), "have no steps"),
        (np.zeros((5, 0, 3), np.float32), "have no samples"),
        (np.zeros((5, 3), np.float32), "time-major (T, B, I)"),
        (
            np.zeros((5, 2, 4), np.float32),
            "4 features per step but the parameters expect 3",
        ),
        (np.zeros((5, 2, 3), np.complex64), "real numbers"),
    ]
    for x, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            net.apply(variables, x)
        with pytest.raises(ValueError):
            jax.grad(lambda v, x=x: jnp.sum(net.apply(v, x).readouts))(variables)


def test_parameters_of_the_other_recurrence_setting_are_named_as_such():
    """A recurrent kernel's extra rows would otherwise read as a wider input (padding the
    inputs to that width would then run recurrent weights as input weights)."""
    x = np.ones((4, 2, 3), np.float32)
    recurrent = models.build_network("brf", (5, 4), 2)
    feed_forward = models.build_network("brf", (5, 4), 2, recurrent=False)
    with_recurrence = jax.jit(recurrent.init)(jax.random.PRNGKey(0), x)
    without = jax.jit(feed_forward.init)(jax.random.PRNGKey(0), x)
    with pytest.raises(
        ValueError, match=r"kernel \(8, 5\) has 5 rows more than the 3 features per "
    ):
        feed_forward.apply(with_recurrence, x)
    with pytest.raises(
        ValueError, match=r"kernel \(3, 5\) has no recurrent rows .* recurrent=False"
    ):
        recurrent.apply(without, x)
    # a deeper layer's kernel: one error here, not Flax's parameter-shape error
    mixed = {"params": {**with_recurrence["params"], "hidden_1": without["params"]["hidden_1"]}}
    with pytest.raises(ValueError, match=r"hidden layer 1's kernel \(5, 4\) has no recurrent rows"):
        recurrent.apply(mixed, x)
    # the layers alone: one error, not Flax's parameter-shape error
    layer = layers.SpikingRNN(recurrent.hidden_cells[0].clone(parent=None))
    first = {"params": with_recurrence["params"]["hidden_0"]}
    with pytest.raises(
        ValueError, match=r"inputs have 2 features per step but the parameters expect 3"
    ):
        layer.apply(first, x[..., :2])
    with pytest.raises(ValueError, match=r"the layer's kernel \(8, 5\) has 5 rows more"):
        layers.SpikingRNN(feed_forward.hidden_cells[0].clone(parent=None)).apply(first, x)
    readout = layers.LIReadoutRNN(recurrent.readout.clone(parent=None))
    with pytest.raises(
        ValueError, match=r"spikes have 5 neurons per step but the readout's kernel"
    ):
        readout.apply({"params": with_recurrence["params"]["readout"]}, np.ones((4, 2, 5)))


def test_a_sequence_with_no_scored_step_is_refused():
    net, variables = network_and_variables("alif", sub_seq_length=10)
    with pytest.raises(
        ValueError, match="10 steps but the network leaves the first sub_seq_length=10 unscored"
    ):
        net.apply(variables, np.zeros((10, 2, 3), np.float32))
    assert net.apply(variables, np.zeros((11, 2, 3), np.float32)).readouts.shape == (1, 2, 3)


@pytest.mark.parametrize("neuron,backward", NEURON_BACKWARDS)
def test_streaming_in_chunks_equals_one_pass_with_unscored_leading_steps(neuron, backward):
    """The first sub_seq_length steps of the sequence are unscored, not each chunk's."""
    net, variables = network_and_variables(neuron, sub_seq_length=10, backward=backward)
    x = spiking_input(120)
    whole = net.apply(variables, x)
    # chunks that end inside the unscored steps, at their end, one step after it (a chunk
    # of the first scored step alone) and across it; few distinct lengths, each compiled
    for cuts in ((1, 9, 1, 49, 60), (10, 50, 60), (9, 2, 49, 60), (60, 60)):
        state, start, readouts, counts = net.initial_state(2), 0, [], 0
        for length in cuts:
            out = net.apply(variables, x[start : start + length], state, start_step=start)
            readouts.append(out.readouts)
            counts = counts + out.spike_counts
            state, start = out.final_state, start + length
        np.testing.assert_array_equal(np.concatenate(readouts), whole.readouts, err_msg=str(cuts))
        np.testing.assert_array_equal(counts, whole.spike_counts)
    assert float(jnp.sum(whole.spike_counts)) > 0
    with pytest.raises(ValueError, match="pass start_step="):
        net.apply(variables, x[:50], net.initial_state(2))
    with pytest.raises(ValueError, match="start_step must be a non-negative"):
        net.apply(variables, x[:50], net.initial_state(2), start_step=-1)


def test_gradient_of_a_chunk_inside_the_unscored_steps_is_zero_not_an_error():
    net, variables = network_and_variables("brf", sub_seq_length=10)
    x = spiking_input(8)
    grads = jax.grad(
        lambda v: jnp.sum(net.apply(v, x, net.initial_state(2), start_step=0).readouts)
    )(variables)
    assert all(float(jnp.abs(g).max()) == 0.0 for g in jax.tree_util.tree_leaves(grads))


# ------------------------------------------------------------------------ metrics


READOUTS = jnp.asarray(np.random.default_rng(0).standard_normal((5, 3, 4)).astype(np.float32))


@pytest.mark.parametrize("bad_label", [4, -1, 25])
def test_metrics_never_score_an_invalid_label_as_a_class(bad_label):
    targets = jnp.array([0, bad_label, 1])
    assert np.isnan(float(metrics.summed_loss(READOUTS, targets)))
    predicted = metrics.predictions(READOUTS, "sequence")
    valid_hits = int(predicted[0] == 0) + int(predicted[2] == 1)
    assert int(metrics.correct_count(READOUTS, targets, "sequence")) == valid_hits
    per_step = jnp.full((5, 3), bad_label)
    assert int(metrics.correct_count(READOUTS, per_step, metrics.PER_STEP)) == 0


def test_metrics_check_the_shapes_of_readouts_and_targets():
    with pytest.raises(ValueError, match="no scored step"):
        metrics.summed_loss(READOUTS[:0], jnp.array([0, 1, 2]))
    with pytest.raises(ValueError, match="no scored step|T' >= 1"):
        metrics.predictions(READOUTS[:0], "sequence")
    with pytest.raises(ValueError, match=r"expected per-step targets \(5, 3\) \(time-major\)"):
        metrics.summed_loss(READOUTS, jnp.zeros((3, 5), jnp.int32))
    with pytest.raises(ValueError, match="integer class labels"):
        metrics.summed_loss(READOUTS, jnp.zeros(3))
    with pytest.raises(ValueError, match=r"no sample \(B=0\)"):
        metrics.summed_loss(READOUTS[:, :0], jnp.zeros(0, jnp.int32))
    # weights and spike counts: one per sample, not broadcast
    targets = jnp.array([0, 1, 2])
    for weights in (jnp.ones(1), jnp.ones(()), jnp.ones((5, 3)), jnp.ones(5)):
        with pytest.raises(
            ValueError, match=r"weights of shape .* expected one value per sample, \(3,\)"
        ):
            metrics.summed_loss(READOUTS, targets, weights)
        with pytest.raises(ValueError, match="weights of shape"):
            metrics.correct_count(READOUTS, targets, "sequence", weights)
    with pytest.raises(ValueError, match=r"spike_counts of shape \(2,\)"):
        metrics.batch_sums(READOUTS, targets, jnp.ones(2), "sequence")
    # a batch of padding only: loss 0 and gradient 0, not NaN
    value, grad = jax.value_and_grad(metrics.summed_loss)(
        READOUTS, jnp.array([0, 1, 2]), jnp.zeros(3)
    )
    assert float(value) == 0.0 and not np.any(grad)
    # statistics of no samples: one error, not a division by zero
    sums = metrics.BatchSums(0.0, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="empty set: num_samples=0; every count"):
        metrics.model_statistics(sums, 0, 5, 8, 5)


def test_loaders_reject_labels_out_of_range_as_damaged_files(tmp_path, capfd):
    write_shd(tmp_path / "shd_test.h5", [([0.1], [3], 2), ([0.2], [5], 20), ([0.3], [7], 25)])
    with pytest.raises(DataError, match=r"label 20 at index 1 is outside 0..19"):
        shd.load_shd("test", str(tmp_path))
    result = run_main(
        evaluate.main,
        [
            "--task",
            "shd",
            "--neuron",
            "brf",
            "--checkpoint",
            checkpoint("shd_brf"),
            "--data-dir",
            tmp_path,
        ],
        capfd,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert (
        result.stderr.strip().splitlines()[-1].startswith("error: SHD file")
        and "label 20" in result.stderr
    )


# ------------------------------------------- the model's contract under transformations


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_state_shows_in_that_samples_outputs_under_jit(neuron, bad):
    """A traced NaN or inf input (eager apply refuses it) makes the neurons' spikes NaN
    from that step on: that sample's readouts and spike count show it; the other samples
    and the earlier steps keep their bits."""
    net, variables = network_and_variables(neuron)
    x = spiking_input(20, batch=3).astype(np.float32)
    broken = x.copy()
    broken[7, 1, 0] = bad
    apply = jax.jit(net.apply)
    clean, out = apply(variables, x), apply(variables, broken)
    readouts, reference = np.asarray(out.readouts), np.asarray(clean.readouts)
    assert np.isnan(readouts[7:, 1]).all()
    np.testing.assert_array_equal(readouts[:7, 1], reference[:7, 1])
    np.testing.assert_array_equal(readouts[:, [0, 2]], reference[:, [0, 2]])
    counts = np.asarray(out.spike_counts)
    assert np.isnan(counts[1]) and np.array_equal(
        counts[[0, 2]], np.asarray(clean.spike_counts)[[0, 2]]
    )


BAD_OPTIONS = [
    ({"dt": 0.02}, "dt=0.02: the brf neuron"),
    ({"dt": -0.01}, "dt must be a positive finite number"),
    ({"dt": float("nan")}, "dt must be a positive finite number"),
    ({"recompute_segment": -1}, "recompute_segment"),
    ({"recompute_segment": 2.5}, "recompute_segment"),
    ({"recompute_segment": True}, "recompute_segment"),
    ({"backward": "reverse"}, "backward"),
    ({"time_major": "yes"}, "time_major"),
    ({"sub_seq_length": -1}, "sub_seq_length"),
    ({"label_last": 1.5}, "label_last"),
    ({"mask_prob": 1.0}, "mask_prob"),
    ({"mask_prob": -0.1}, "mask_prob"),
    ({"products": "blas"}, "products"),
    ({"surrogate": "sigmoid"}, "surrogate"),
    ({"spike_form": "ste"}, "spike form"),
    ({"recurrent": "no"}, "recurrent"),
    ({"readout_kwargs": {"products": "blas"}}, "products"),
]


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS, ids=lambda v: str(v)[:30])
def test_options_that_change_the_numerics_are_refused_where_they_are_set(options, message):
    with pytest.raises(ValueError, match=message):
        models.build_network("brf", 8, 3, **options)


@pytest.mark.parametrize("neuron", ["bhrf", "alif"])
def test_neurons_derived_for_one_step_refuse_another_and_the_rf_takes_any(neuron):
    with pytest.raises(ValueError, match=f"dt=0.005: the {neuron} neuron"):
        models.build_network(neuron, 8, 3, dt=0.005)
    net = models.build_network("vrf", 8, 3, dt=0.005)
    x = spiking_input(12)
    assert np.isfinite(net.apply(net.init(jax.random.PRNGKey(0), x), x).readouts).all()


@pytest.mark.parametrize("backward", models.BACKWARDS)
def test_bfloat16_parameters_run_in_float32_and_get_bfloat16_gradients(backward):
    net, variables = network_and_variables("brf", backward=backward)
    x = spiking_input(20)
    low = jax.tree_util.tree_map(lambda a: a.astype(jnp.bfloat16), variables)
    rounded = jax.tree_util.tree_map(lambda a: a.astype(jnp.float32), low)

    def loss(v):
        return jnp.sum(net.apply(v, x).readouts)

    np.testing.assert_array_equal(net.apply(low, x).readouts, net.apply(rounded, x).readouts)
    grads, reference = jax.grad(loss)(low), jax.grad(loss)(rounded)
    for got, want in zip(jax.tree_util.tree_leaves(grads), jax.tree_util.tree_leaves(reference)):
        assert got.dtype == jnp.bfloat16
        np.testing.assert_array_equal(got, want.astype(jnp.bfloat16))


@pytest.mark.parametrize("backward", models.BACKWARDS)
def test_forward_mode_differentiation_gets_one_error_that_names_reverse_mode(backward):
    net, variables = network_and_variables("brf", backward=backward)
    x = jnp.asarray(spiking_input(12), jnp.float32)

    def total(inputs):
        return jnp.sum(net.apply(variables, inputs).readouts)

    for transform in (lambda: jax.jvp(total, (x,), (x,)), lambda: jax.jacfwd(total)(x)):
        with pytest.raises(ValueError, match="reverse mode only.*jax.jacrev"):
            transform()
    assert jax.jacrev(total)(x).shape == x.shape


def test_a_derivative_of_the_hand_written_backward_is_refused():
    """A gradient of a gradient through backward='manual' would differentiate the
    backward's recomputed steps, not the network: refused in one error; 'autodiff'
    gives it."""
    x = jnp.asarray(spiking_input(12), jnp.float32)
    for sizes in (8, (8, 6)):
        for backward in ("manual", "autodiff"):
            net = models.build_network("brf", sizes, 3, backward=backward)
            variables = net.init(jax.random.PRNGKey(0), x)

            def penalty(inputs, net=net, variables=variables):
                def total(v):
                    return jnp.sum(net.apply(v, inputs).readouts)

                grads = jax.grad(total)(variables)
                return sum(jnp.sum(g**2) for g in jax.tree_util.tree_leaves(grads))

            if backward == "manual":
                with pytest.raises(ValueError, match="gives first derivatives only"):
                    jax.grad(penalty)(x)
            else:
                assert np.isfinite(np.asarray(jax.grad(penalty)(x))).all()


def test_an_initial_state_of_another_network_or_batch_is_refused_in_one_line():
    net, variables = network_and_variables("brf")
    x = spiking_input(12)
    alif = models.build_network("alif", 8, 3)
    stack = models.build_network("brf", (8, 8), 3)
    for state in (
        net.initial_state(5),  # another batch size
        alif.initial_state(2),  # another neuron
        models.build_network("brf", 9, 3).initial_state(2),  # another width
        stack.initial_state(2),  # a stack's state
        (np.zeros((2, 8)), np.zeros((2, 3))),  # not a NetworkState
    ):
        with pytest.raises(ValueError, match="initial_state must have the structure and shapes"):
            net.apply(variables, x, initial_state=state)
    booleans = jax.tree_util.tree_map(lambda a: a.astype(bool), net.initial_state(2))
    with pytest.raises(ValueError, match="right structure and shapes but holds bool values"):
        net.apply(variables, x, initial_state=booleans)
    nan = jax.tree_util.tree_map(lambda a: a.at[0, 0].set(np.nan), net.initial_state(2))
    with pytest.raises(
        ValueError, match="initial_state holds 5 values that are NaN, inf or beyond"
    ):
        net.apply(variables, x, initial_state=nan)
    layer = layers.SpikingRNN(cells.BRFCell(features=8))
    layer_variables = layer.init(jax.random.PRNGKey(0), x)
    with pytest.raises(ValueError, match="initial_state must have"):
        layer.apply(layer_variables, x, initial_state=alif.initial_state(2).hidden)
    first = net.apply(variables, x[:5])
    streamed = net.apply(variables, x[5:], initial_state=first.final_state)
    np.testing.assert_array_equal(
        np.concatenate([first.readouts, streamed.readouts]), net.apply(variables, x).readouts
    )


def test_parameters_of_other_sizes_or_depth_are_refused_naming_the_layer_not_the_inputs():
    x = spiking_input(12)
    variables = jax.jit(models.build_network("brf", (8, 6), 3).init)(jax.random.PRNGKey(0), x)
    for sizes, message in (
        ((9, 6), "hidden layer 0 has 8 neurons in them (kernel (11, 8)) but 9 in the network"),
        ((8, 5), "hidden layer 1 has 6 neurons in them (kernel (14, 6)) but 5 in the network"),
        ((8, 6, 4), "they hold the hidden layers ['hidden_0', 'hidden_1'], the network has "),
        (8, "they hold the hidden layers ['hidden_0', 'hidden_1'], the network has ['hidden']"),
    ):
        with pytest.raises(ValueError, match=re.escape(f"do not fit this network: {message}")):
            models.build_network("brf", sizes, 3).apply(variables, x)


OPTION_VALUES = {
    "backward": st.sampled_from(["manual", "autodiff", "recompute", "reverse", None, 1]),
    "recompute_segment": st.sampled_from([None, 1, 4, 0, -3, 2.5, True, "4"]),
    "time_major": st.sampled_from([True, False, 0, "yes", None]),
    "sub_seq_length": st.sampled_from([0, 3, -1, 2.0, True]),
    "label_last": st.sampled_from([False, True, 1, "no"]),
    "dt": st.sampled_from([0.01, 0.02, 0.0, -1.0, float("nan"), float("inf"), "0.01"]),
    "mask_prob": st.sampled_from([0.0, 0.3, 1.0, -0.5, float("nan"), True]),
    "products": st.sampled_from(["portable", "fast", "blas", None]),
    "surrogate": st.sampled_from(["double_gaussian", "gaussian", "sigmoid", None]),
    "spike_form": st.sampled_from(["custom_vjp", "fgi", "ste"]),
    "exact": st.sampled_from([True, False, "yes"]),
}


@hypothesis.settings(max_examples=40, deadline=None)
@hypothesis.given(
    neuron=st.sampled_from(NEURONS),
    sizes=st.sampled_from([8, (8, 6), 0, (), (8, -1), 2.5]),
    options=st.fixed_dictionaries({}, optional=OPTION_VALUES),
)
def test_any_configuration_is_built_and_traced_or_refused_in_one_line(neuron, sizes, options):
    """Random configurations: a network that builds must initialise, run and
    differentiate (traced abstractly, nothing compiled); one that does not gets a
    ValueError naming the option."""
    try:
        net = models.build_network(neuron, sizes, 3, **options)
    except ValueError as error:
        assert "\n" not in str(error)
        named = [name for name in (*options, "hidden_size") if name in str(error)]
        assert named or "dt=" in str(error) or "spike form" in str(error), str(error)
        return
    steps = 12
    x = jax.ShapeDtypeStruct((steps, 2, 3) if net.time_major else (2, steps, 3), jnp.float32)
    variables = jax.eval_shape(net.init, jax.random.PRNGKey(0), x)

    def loss(v, inputs):
        return jnp.sum(net.apply(v, inputs).readouts)

    grads = jax.eval_shape(jax.grad(loss), variables, x)
    assert jax.tree_util.tree_structure(grads) == jax.tree_util.tree_structure(variables)
