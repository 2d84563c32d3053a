"""Inputs are checked once, at the model's and the metrics' boundary: a wrong shape,
dtype, length or label gets one clear error (or is cast, for real dtypes), never a
number for something else; and streaming is indexed relative to the whole sequence."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import checkpoint
from in_process import run_main
from test_data import write_shd

from brfjax import evaluate, metrics, models
from brfjax.data import DataError, shd

NEURONS = ["brf", "vrf", "bhrf", "alif"]


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


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("backward", models.BACKWARDS)
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
            "4 features per step but the network's parameters expect 3",
        ),
        (np.zeros((5, 2, 3), np.complex64), "real numbers"),
    ]
    for x, message in cases:
        with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
            net.apply(variables, x)
        with pytest.raises(ValueError):
            jax.grad(lambda v, x=x: jnp.sum(net.apply(v, x).readouts))(variables)


def test_a_sequence_with_no_scored_step_is_refused():
    net, variables = network_and_variables("alif", sub_seq_length=10)
    with pytest.raises(
        ValueError, match="10 steps but the network leaves the first sub_seq_length=10 unscored"
    ):
        net.apply(variables, np.zeros((10, 2, 3), np.float32))
    assert net.apply(variables, np.zeros((11, 2, 3), np.float32)).readouts.shape == (1, 2, 3)


@pytest.mark.parametrize("neuron", NEURONS)
@pytest.mark.parametrize("backward", models.BACKWARDS)
def test_streaming_in_chunks_equals_one_pass_with_unscored_leading_steps(neuron, backward):
    """The first sub_seq_length steps of the sequence are unscored, not each chunk's."""
    net, variables = network_and_variables(neuron, sub_seq_length=10, backward=backward)
    x = spiking_input(120)
    whole = net.apply(variables, x)
    for cuts in ((1, 49, 1, 46, 23), (10, 110), (9, 2, 109), (60, 60)):
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
