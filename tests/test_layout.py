"""Time-major and batch-major layouts: the same numbers, and one error naming the layout.

A network built with ``time_major=False`` takes ``(B, T, I)`` and returns batch-major
readouts and trajectories; the metrics take ``time_major=False`` for them. Both layouts
run the same computation on the same values (a transpose only moves them), so the
results are compared bit for bit.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import checkpoint

from brfjax import interop, metrics, models
from brfjax.data.ecg import load_ecg

NEURONS = ["brf", "vrf", "bhrf", "alif"]
STEPS, BATCH, INPUTS, HIDDEN, CLASSES = 30, 3, 4, 12, 3


def to_batch_major(tree):
    return jax.tree_util.tree_map(lambda a: np.swapaxes(np.asarray(a), 0, 1), tree)


def assert_trees_equal(left, right):
    assert jax.tree_util.tree_structure(left) == jax.tree_util.tree_structure(right)
    jax.tree_util.tree_map(np.testing.assert_array_equal, left, right)


def spiking_variables(neuron, x, **options):
    """Parameters of a small network whose hidden layer spikes within STEPS steps."""
    model = models.build_network(neuron, HIDDEN, CLASSES, **options)
    variables = model.init(jax.random.PRNGKey(0), x)
    # the harmonic RF's static response to a current I is about I/ω², hence its larger gain
    gain = 2000.0 if neuron == "bhrf" else 40.0
    variables["params"]["hidden"]["kernel"] = variables["params"]["hidden"]["kernel"] * gain
    return variables


def inputs_and_targets(seed=1):
    """Time-major spikes ``(T, B, I)`` and batch-major per-step labels ``(B, T)``."""
    x = (jax.random.uniform(jax.random.PRNGKey(seed), (STEPS, BATCH, INPUTS)) < 0.3).astype(
        jnp.float32
    )
    labels = np.random.default_rng(seed).integers(0, CLASSES, (BATCH, STEPS)).astype(np.int32)
    return np.asarray(x), labels


def both_layouts(neuron, **options):
    """The same network built time-major and batch-major, its variables, and the inputs."""
    x, labels = inputs_and_targets()
    variables = spiking_variables(neuron, x, **options)
    time_major = models.build_network(neuron, HIDDEN, CLASSES, **options)
    batch_major = models.build_network(neuron, HIDDEN, CLASSES, time_major=False, **options)
    return time_major, batch_major, variables, x, labels


@pytest.mark.parametrize("neuron", NEURONS)
def test_batch_major_network_returns_the_time_major_results_transposed(neuron):
    sub = 5
    time_major, batch_major, variables, x, _ = both_layouts(
        neuron, sub_seq_length=sub, return_trajectory=True
    )
    reference = jax.jit(time_major.apply)(variables, x)
    out = jax.jit(batch_major.apply)(variables, np.swapaxes(x, 0, 1))
    assert float(reference.spike_counts.sum()) > 0
    assert out.readouts.shape == (BATCH, STEPS - sub, CLASSES)
    assert out.trajectory.z.shape == (BATCH, STEPS, HIDDEN)
    assert out.spike_counts.shape == (BATCH,)
    np.testing.assert_array_equal(out.readouts, to_batch_major(reference.readouts))
    assert_trees_equal(out.trajectory, to_batch_major(reference.trajectory))
    assert_trees_equal(out.final_state, reference.final_state)
    np.testing.assert_array_equal(out.spike_counts, reference.spike_counts)


# the paper's three protocols (brfjax.tasks): per-step labels (ECG), one label per
# sequence scored at every step (PS-MNIST, SHD) or at the last step only (S-MNIST)
PROTOCOLS = {
    "per_step": (metrics.PER_STEP, False),
    "sequence": (metrics.SEQUENCE, False),
    "sequence_label_last": (metrics.SEQUENCE, True),
}


@pytest.mark.parametrize("protocol", sorted(PROTOCOLS))
@pytest.mark.parametrize("neuron", NEURONS)
def test_loss_and_accuracy_are_identical_in_both_layouts(neuron, protocol):
    objective, label_last = PROTOCOLS[protocol]
    sub = 5 if neuron == "alif" else 0
    time_major, batch_major, variables, x, labels = both_layouts(
        neuron, sub_seq_length=sub, label_last=label_last
    )
    if objective == metrics.PER_STEP:
        batch_targets = labels[:, sub:]
        time_targets = np.ascontiguousarray(batch_targets.T)
    else:
        batch_targets = time_targets = labels[:, 0]
    weights = np.array([1.0, 0.0, 1.0], np.float32)

    def statistics(model, inputs, targets, layout):
        output = model.apply(variables, inputs)
        return (
            metrics.summed_loss(output.readouts, targets, time_major=layout),
            metrics.summed_loss(output.readouts, targets, weights, time_major=layout),
            metrics.correct_count(output.readouts, targets, objective, weights, time_major=layout),
            metrics.batch_sums(
                output.readouts,
                targets,
                output.spike_counts,
                objective,
                weights,
                time_major=layout,
            ),
            metrics.batch_sums(
                output.readouts,
                targets,
                output.spike_counts,
                objective,
                per_term=True,
                time_major=layout,
            ),
            metrics.predictions(output.readouts, objective, time_major=layout),
        )

    reference = jax.jit(lambda: statistics(time_major, x, time_targets, True))()
    result = jax.jit(lambda: statistics(batch_major, np.swapaxes(x, 0, 1), batch_targets, False))()
    assert np.isfinite(reference[0]) and float(reference[0]) > 0
    for got, expected in zip(result[:4], reference[:4]):
        assert_trees_equal(got, expected)
    # per-step results come back in the caller's layout
    per_term, per_term_reference = result[4], reference[4]
    np.testing.assert_array_equal(per_term.nll, to_batch_major(per_term_reference.nll))
    assert_trees_equal(per_term[1:], per_term_reference[1:])
    predicted = result[5] if objective == metrics.SEQUENCE else np.swapaxes(result[5], 0, 1)
    np.testing.assert_array_equal(predicted, reference[5])


@pytest.mark.parametrize("neuron", ["brf", "alif"])
def test_streaming_chunks_in_batch_major_equal_the_time_major_stream(neuron):
    sub = 10 if neuron == "alif" else 0
    time_major, batch_major, variables, x, _ = both_layouts(neuron, sub_seq_length=sub)
    full = jax.jit(time_major.apply)(variables, x)
    apply = jax.jit(batch_major.apply, static_argnums=3)
    x_batch = np.swapaxes(x, 0, 1)
    # the first chunk starts from rest, given explicitly: with start_step=0 its 7 steps all
    # lie within an ALIF network's 10 unscored ones, and the second chunk's first 3 too
    state, readouts, counts = batch_major.initial_state(BATCH), [], 0
    for start, stop in ((0, 7), (7, STEPS)):
        out = apply(variables, x_batch[:, start:stop], state, start)
        state = out.final_state
        readouts.append(out.readouts)
        counts = counts + out.spike_counts
    np.testing.assert_array_equal(np.concatenate(readouts, axis=1), to_batch_major(full.readouts))
    np.testing.assert_array_equal(counts, full.spike_counts)
    assert_trees_equal(state, full.final_state)


@pytest.mark.parametrize(
    "neuron,backward",
    # BHRF always differentiates the scan with JAX (autodiff); the others default to the
    # hand-written reverse pass; "recompute" cuts the time axis into segments
    [(neuron, "manual") for neuron in NEURONS] + [("brf", "recompute")],
)
def test_gradients_are_identical_in_both_layouts(neuron, backward):
    time_major, batch_major, variables, x, labels = both_layouts(neuron, backward=backward)
    params, constants = (
        variables["params"],
        {k: v for k, v in variables.items() if k != "params"},
    )

    def loss(params, model, inputs, targets, layout):
        output = model.apply({"params": params, **constants}, inputs)
        return metrics.summed_loss(output.readouts, targets, time_major=layout)

    grad = jax.jit(jax.grad(loss), static_argnums=(1, 4))
    reference = grad(params, time_major, x, np.ascontiguousarray(labels.T), True)
    result = grad(params, batch_major, np.swapaxes(x, 0, 1), labels, False)
    assert all(float(jnp.abs(leaf).sum()) > 0 for leaf in jax.tree_util.tree_leaves(reference))
    assert_trees_equal(result, reference)


def test_flax_rnn_default_layout_over_the_cell_equals_the_batch_major_network():
    """``nn.RNN`` is batch-major by default: its spikes are the batch-major network's."""
    _, batch_major, variables, x, _ = both_layouts("brf", return_trajectory=True)
    x_batch = np.swapaxes(x, 0, 1)
    spikes = nn.RNN(batch_major.hidden).apply(
        {"params": {"cell": variables["params"]["hidden"]}}, x_batch
    )
    np.testing.assert_array_equal(
        spikes, jax.jit(batch_major.apply)(variables, x_batch).trajectory.z
    )


# ------------------------------------------------------------------- layout errors


@pytest.mark.parametrize(
    "time_major,expected",
    [(True, r"time-major \(T, B, I\)"), (False, r"batch-major \(B, T, I\)")],
)
def test_input_errors_name_the_expected_layout(time_major, expected):
    x, _ = inputs_and_targets()
    variables = spiking_variables("brf", x)
    model = models.build_network("brf", HIDDEN, CLASSES, time_major=time_major)
    with pytest.raises(
        ValueError,
        match=rf"parameters expect {INPUTS} \(expected {expected}; got shape \(30, 3, 5\)\)",
    ):
        model.apply(variables, np.zeros((STEPS, BATCH, INPUTS + 1), np.float32))
    with pytest.raises(ValueError, match=rf"inputs must be {expected}; got shape \(3, 4\)"):
        model.apply(variables, np.zeros((BATCH, INPUTS), np.float32))
    with pytest.raises(ValueError, match=rf"\({expected}\) have no steps"):
        model.apply(
            variables,
            np.zeros((BATCH, 0, INPUTS) if not time_major else (0, BATCH, INPUTS), np.float32),
        )


def test_time_major_must_be_a_bool():
    x, _ = inputs_and_targets()
    variables = spiking_variables("brf", x)
    with pytest.raises(ValueError, match="time_major must be True .* or False .*, got 'batch'"):
        models.build_network("brf", HIDDEN, CLASSES, time_major="batch").apply(variables, x)


def test_batch_major_ecg_batch_into_the_time_major_ecg_network_fails_naming_the_layout():
    """(16, 1300, 4) into the time-major ECG network runs (16 steps of 1300 "samples"):
    the loss against the task's time-major targets then names the layout and the fix."""
    model, variables = interop.load_reference_network(checkpoint("ecg_brf"), "brf")
    data = load_ecg("test")
    inputs, targets = data.inputs[:16], data.targets[:16]
    assert inputs.shape == (16, 1300, 4)
    output = jax.jit(model.apply)(variables, inputs)
    assert output.readouts.shape == (16, 1300, 6) and output.spike_counts.shape == (1300,)
    time_major_targets = np.ascontiguousarray(targets.T)
    message = r"readouts look batch-major \(B, T', C\).*time_major=False.*transpose its inputs to \(T, B, I\)"
    with pytest.raises(ValueError, match=message):
        metrics.summed_loss(output.readouts, time_major_targets)
    with pytest.raises(ValueError, match=message):
        metrics.correct_count(output.readouts, time_major_targets, metrics.PER_STEP)
    # the network built batch-major takes the same batch and gives the time-major numbers
    batch_major = model.clone(time_major=False)
    result = jax.jit(batch_major.apply)(variables, inputs)
    reference = jax.jit(model.apply)(variables, np.ascontiguousarray(inputs.transpose(1, 0, 2)))
    np.testing.assert_array_equal(result.readouts, to_batch_major(reference.readouts))
    np.testing.assert_array_equal(
        metrics.summed_loss(result.readouts, targets, time_major=False),
        metrics.summed_loss(reference.readouts, time_major_targets),
    )


def test_sequence_labels_for_the_other_layout_name_time_major():
    readouts = jnp.zeros((7, 4, CLASSES))  # time-major (T'=7, B=4, C)
    with pytest.raises(
        ValueError,
        match=r"do not fit .*\(time-major\) or one .*readouts look batch-major .*time_major=False",
    ):
        metrics.summed_loss(readouts, jnp.zeros((7,), jnp.int32))
    with pytest.raises(
        ValueError,
        match=r"\(batch-major\) or one .*readouts look time-major .*pass time_major=True",
    ):
        metrics.summed_loss(readouts, jnp.zeros((4,), jnp.int32), time_major=False)
    with pytest.raises(
        ValueError,
        match=r"\(batch-major\) or one .*readouts look time-major .*pass time_major=True",
    ):
        metrics.correct_count(
            readouts, jnp.zeros((4, 7), jnp.int32), metrics.PER_STEP, time_major=False
        )


def test_targets_that_fit_neither_layout_get_no_layout_hint():
    with pytest.raises(
        ValueError,
        match=r"expected per-step targets \(7, 4\) \(time-major\) or one label per sequence \(4,\)$",
    ):
        metrics.summed_loss(jnp.zeros((7, 4, CLASSES)), jnp.zeros((5,), jnp.int32))


def test_readouts_of_the_wrong_rank_name_the_layout():
    with pytest.raises(
        ValueError,
        match=r"readouts must be batch-major \(B, T', C\); got shape \(4, 3\)",
    ):
        metrics.predictions(jnp.zeros((4, CLASSES)), metrics.SEQUENCE, time_major=False)
    with pytest.raises(ValueError, match="no scored step"):
        metrics.predictions(jnp.zeros((4, 0, CLASSES)), metrics.SEQUENCE, time_major=False)


def test_a_padding_sample_adds_nothing_to_the_loss_even_where_its_readouts_are_nan():
    """Zero-weight samples (padding) are left out of the loss, as of the statistics:
    NaN readouts of one add 0, not NaN * 0."""
    readouts = np.random.default_rng(0).normal(size=(5, 3, 4)).astype(np.float32)
    targets, weights = np.array([0, 2, 1]), np.array([1.0, 0.0, 1.0], np.float32)
    clean = float(metrics.summed_loss(readouts, targets, weights))
    readouts[2, 1, :] = np.nan
    for loss in (metrics.summed_loss, jax.jit(metrics.summed_loss)):
        assert float(loss(readouts, targets, weights)) == clean
    assert np.isnan(float(metrics.summed_loss(readouts, targets)))  # a real sample's NaN shows
