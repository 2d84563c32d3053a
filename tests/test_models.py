import jax
import jax.numpy as jnp
import numpy as np
import numpy_reference as ref
import pytest
from conftest import checkpoint

from brfjax import interop, metrics, models, scan
from brfjax.data.ecg import load_ecg

f32 = np.float32


@pytest.mark.parametrize("neuron", ["brf", "vrf", "alif", "bhrf"])
@pytest.mark.parametrize(
    "sizes,count", [((4, 36, 6), 1734), ((1, 256, 10), 68874), ((700, 128, 20), 108820)]
)
def test_parameter_counts(neuron, sizes, count):
    inputs, hidden, classes = sizes
    model = models.build_network(neuron, hidden, classes)
    variables = jax.eval_shape(
        lambda x: model.init(jax.random.PRNGKey(0), x), jnp.zeros((1, 1, inputs))
    )
    assert models.count_parameters(variables["params"]) == count


def synthetic_ecg_input():
    x = np.zeros((100, 1, 4), f32)
    x[0:20, 0, 0] = 1
    x[40:45, 0, 2] = 1
    return x


# the published ECG models on a synthetic 100-step input: (sub_seq_length, total hidden spikes,
# final readout o_99, argmax of the recorded outputs at t = 0, 10, ...); spikes and argmaxes exact, readouts to 1e-4
SYNTHETIC = {
    "brf": (
        0,
        417,
        [-2.43116, -3.0178, -13.98336, -5.70269, 1.34831, 0.14085],
        [0, 0, 0, 0, 0, 4, 4, 4, 4, 4],
    ),
    "vrf": (
        0,
        808,
        [-2.38764, -7.52336, -14.29632, -22.05466, -1.13957, 0.86308],
        [0, 0, 0, 0, 4, 4, 4, 4, 5, 5],
    ),
    "alif": (
        10,
        371,
        [0.23845, -0.80619, -9.15979, -7.36613, -2.69484, 2.22128],
        [4, 3, 4, 4, 4, 4, 4, 5, 5],
    ),
}


@pytest.mark.parametrize("neuron", sorted(SYNTHETIC))
def test_synthetic_input_through_ecg_checkpoints(neuron):
    sub, spikes, final, argmaxes = SYNTHETIC[neuron]
    model, variables = interop.load_reference_network(
        checkpoint(f"ecg_{neuron}"), neuron, sub_seq_length=sub
    )
    out = jax.jit(model.apply)(variables, synthetic_ecg_input())
    assert out.readouts.shape == (100 - sub, 1, 6)
    assert float(out.spike_counts.sum()) == spikes
    np.testing.assert_allclose(out.readouts[-1, 0], final, atol=1e-4)
    np.testing.assert_array_equal(np.argmax(out.readouts[::10, 0], axis=-1), argmaxes)


def small_network(neuron, **kwargs):
    model = models.build_network(neuron, 12, 3, **kwargs)
    x = (jax.random.uniform(jax.random.PRNGKey(1), (60, 5, 4)) < 0.3).astype(jnp.float32)
    variables = jax.jit(model.init)(jax.random.PRNGKey(0), x)  # one program, not one per op
    # stronger weights so that every neuron type spikes within 60 steps (the harmonic
    # RF's static response to a current I is about I/ω²)
    gain = 2000.0 if neuron == "bhrf" else 40.0
    variables["params"]["hidden"]["kernel"] = variables["params"]["hidden"]["kernel"] * gain
    return model, variables, x


def python_loop(model, variables, x):
    """The network unrolled step by step through the Flax cells' own __call__."""
    hidden, readout = model.hidden, model.readout
    state = model.initial_state(x.shape[1])
    h, o = state.hidden, state.readout
    outputs, spikes = [], []
    for t in range(x.shape[0]):
        h, z = hidden.apply({k: v["hidden"] for k, v in variables.items()}, h, x[t])
        o, _ = readout.apply({"params": variables["params"]["readout"]}, o, z)
        outputs.append(o)
        spikes.append(z)
    return np.stack(outputs), np.stack(spikes)


@pytest.mark.parametrize("neuron", ["brf", "vrf", "bhrf", "alif"])
def test_scan_equals_python_loop(neuron):
    model, variables, x = small_network(neuron, return_trajectory=True)
    out = jax.jit(model.apply)(variables, x)
    outputs, spikes = python_loop(model, variables, x)
    assert spikes.sum() > 0
    np.testing.assert_array_equal(out.trajectory.z, spikes)
    np.testing.assert_array_equal(out.readouts, outputs)
    np.testing.assert_array_equal(out.spike_counts, spikes.sum(axis=(0, 2)))


def test_flax_rnn_over_the_cell_equals_the_network():
    import flax.linen as nn

    model, variables, x = small_network("brf", return_trajectory=True)
    rnn = nn.RNN(model.hidden, time_major=True)
    spikes = rnn.apply({"params": {"cell": variables["params"]["hidden"]}}, x)
    np.testing.assert_array_equal(spikes, jax.jit(model.apply)(variables, x).trajectory.z)


@pytest.mark.parametrize("neuron", ["brf", "vrf", "alif"])
def test_streaming_equals_full_sequence(neuron):
    model, variables, x = small_network(neuron)
    apply = jax.jit(model.apply)
    full = apply(variables, x)
    state, readouts, counts = None, [], 0
    for chunk in (x[:7], x[7:30], x[30:]):
        out = apply(variables, chunk, state)
        state = out.final_state
        readouts.append(out.readouts)
        counts = counts + out.spike_counts
    np.testing.assert_array_equal(np.concatenate(readouts), full.readouts)
    np.testing.assert_array_equal(counts, full.spike_counts)
    jax.tree_util.tree_map(np.testing.assert_array_equal, state, full.final_state)


def test_results_do_not_depend_on_batch_size():
    model, variables = interop.load_reference_network(
        checkpoint("ecg_brf"), "brf", return_trajectory=True
    )
    data = load_ecg("test")
    x = np.ascontiguousarray(data.inputs[:12].transpose(1, 0, 2))
    apply = jax.jit(model.apply)
    together = apply(variables, x)
    for i in (0, 5, 11):
        alone = apply(variables, x[:, i : i + 1])
        np.testing.assert_array_equal(alone.trajectory.z[:, 0], together.trajectory.z[:, i])
        np.testing.assert_array_equal(alone.readouts[:, 0], together.readouts[:, i])


def test_wide_network_results_do_not_depend_on_batch_size():
    """At H = 256 a BLAS picks its kernels, and so each row's summation order, by the
    number of rows; the portable products give every row the same bits regardless
    (CI runs this with XLA's Eigen and its YNNPACK product paths)."""
    model, variables = interop.load_reference_network(checkpoint("psmnist_alif"), "alif")
    x = np.random.default_rng(0).random((60, 160, 1)).astype(np.float32)
    apply = jax.jit(model.apply)
    together = apply(variables, x)
    assert float(together.spike_counts.sum()) > 0
    for start, size in ((0, 1), (3, 8), (5, 33), (0, 128)):
        part = apply(variables, x[:, start : start + size])
        np.testing.assert_array_equal(part.readouts, together.readouts[:, start : start + size])
        np.testing.assert_array_equal(
            part.spike_counts, together.spike_counts[start : start + size]
        )


def test_nothing_recompiles_between_batches_of_the_same_shape():
    model, variables, x = small_network("brf")
    apply = jax.jit(model.apply)
    apply(variables, x)
    before = apply._cache_size()
    for seed in range(3):
        other = jax.random.uniform(jax.random.PRNGKey(seed + 10), x.shape)
        apply(variables, other).readouts.block_until_ready()
    assert apply._cache_size() == before == 1


def test_structure_sub_sequence_label_last_and_input_order():
    model, variables, x = small_network("brf", sub_seq_length=10, return_trajectory=True)
    out = jax.jit(model.apply)(variables, x)
    assert out.readouts.shape == (50, 5, 3)
    # the spike count covers all steps, including the 10 unrecorded ones
    np.testing.assert_array_equal(out.spike_counts, out.trajectory.z.sum(axis=(0, 2)))
    assert float(out.trajectory.z[:10].sum()) > 0
    last = models.build_network("brf", 12, 3, sub_seq_length=10, label_last=True)
    out_last = jax.jit(last.apply)(variables, x)
    assert out_last.readouts.shape == (1, 5, 3)
    np.testing.assert_array_equal(out_last.readouts[0], out.readouts[-1])
    # the readout at step t integrates z_t of the same step: o_0 = (1-α)·(z_0 · W_out)
    readout = variables["params"]["readout"]
    alpha = np.exp((f32(-1) / np.abs(np.asarray(readout["tau"]))).astype(np.float64)).astype(f32)
    first = jax.jit(models.build_network("brf", 12, 3, return_trajectory=True).apply)(variables, x)
    expected = (np.asarray(first.trajectory.z[0]) @ np.asarray(readout["kernel"])) * (
        f32(1) - alpha
    )
    np.testing.assert_allclose(first.readouts[0], expected, rtol=1e-6)
    # hidden input is [x_t, z_{t-1}]: the kernel's first rows act on the input
    kernel = np.asarray(variables["params"]["hidden"]["kernel"])
    assert kernel.shape == (4 + 12, 12)


def test_inputs_must_be_time_major_3d_and_backward_known():
    model, variables, x = small_network("brf")
    with pytest.raises(ValueError, match="time-major"):
        model.apply(variables, x[0])
    with pytest.raises(
        ValueError,
        match=r"backward must be one of \('manual', 'autodiff', 'recompute'\), got 'symbolic'",
    ):
        model.clone(backward="symbolic").apply(variables, x)


@pytest.mark.parametrize("neuron", ["brf", "vrf", "bhrf", "alif"])
@pytest.mark.parametrize("exact", [True, False])
def test_gradients_are_finite_and_nonzero_for_every_parameter(neuron, exact):
    model, variables, x = small_network(neuron, exact=exact)
    targets = jnp.arange(60 * 5).reshape(60, 5) % 3

    def loss(params):
        out = model.apply({"params": params}, x)
        return metrics.summed_loss(out.readouts, targets)

    grads = jax.jit(jax.grad(loss))(variables["params"])
    for path, g in jax.tree_util.tree_leaves_with_path(grads):
        assert np.isfinite(np.asarray(g)).all(), path
        assert np.abs(np.asarray(g)).max() > 0, path


def test_exact_and_fast_paths_agree_closely():
    model, variables, x = small_network("brf")
    exact = jax.jit(model.apply)(variables, x)
    fast = jax.jit(models.build_network("brf", 12, 3, exact=False).apply)(variables, x)
    np.testing.assert_allclose(fast.readouts, exact.readouts, atol=1e-4)


@pytest.mark.parametrize("neuron,sub", [("vrf", 0), ("alif", 10)])
def test_ecg_test_set_spikes_equal_numpy_oracle(neuron, sub):
    """The whole ECG test set through the shipped model, spike for spike, against an
    independent NumPy float32 implementation of the spec."""
    path = checkpoint(f"ecg_{neuron}")
    model, variables = interop.load_reference_network(
        path, neuron, sub_seq_length=sub, return_trajectory=True
    )
    x = np.ascontiguousarray(load_ecg("test").inputs.transpose(1, 0, 2))
    out = jax.jit(model.apply)(variables, x)
    expected_out, expected_spikes = ref.run_network(interop.load_state_dict(path), neuron, x, sub)
    np.testing.assert_array_equal(out.trajectory.z, expected_spikes)
    np.testing.assert_allclose(out.readouts, expected_out, atol=1e-4)


def test_ecg_brf_test_set_against_numpy_oracle():
    """BRF is the most sensitive model: matmul summation order (XLA vs NumPy BLAS, one
    ulp in I_t) flips spikes late in a few sequences. Spikes agree exactly for the first
    500 steps, totals within 0.01 %, per-step predictions on >= 99.9 % of steps."""
    path = checkpoint("ecg_brf")
    model, variables = interop.load_reference_network(path, "brf", return_trajectory=True)
    x = np.ascontiguousarray(load_ecg("test").inputs.transpose(1, 0, 2))
    out = jax.jit(model.apply)(variables, x)
    expected_out, expected_spikes = ref.run_network(interop.load_state_dict(path), "brf", x)
    spikes = np.asarray(out.trajectory.z)
    np.testing.assert_array_equal(spikes[:500], expected_spikes[:500])
    assert abs(spikes.sum() - expected_spikes.sum()) <= 1e-4 * expected_spikes.sum()
    same = np.argmax(np.asarray(out.readouts), -1) == np.argmax(expected_out, -1)
    assert same.mean() >= 0.999


def test_diverging_vanilla_rf_gives_nan_and_class_zero():
    model, variables = interop.load_reference_network(checkpoint("psmnist_vrf"), "vrf")
    apply = jax.jit(model.apply)
    x = jax.random.uniform(jax.random.PRNGKey(0), (784, 4, 1))
    out = apply(variables, x)
    readouts = np.asarray(out.readouts)
    first_nan = np.argmax(np.isnan(readouts).any(axis=(1, 2)))
    assert 250 <= first_nan <= 400
    assert np.isnan(readouts[-1]).all()
    assert np.isnan(np.asarray(out.spike_counts)).all()
    predicted = np.argmax(readouts.mean(axis=0), axis=-1)
    np.testing.assert_array_equal(predicted, 0)
    silent = apply(variables, jnp.zeros((784, 2, 1)))
    np.testing.assert_array_equal(silent.readouts, 0)
    np.testing.assert_array_equal(silent.spike_counts, 0)


BACKWARD_OPTIONS = [
    {},
    {"sub_seq_length": 5, "label_last": True},
    {"use_bias": True, "readout_kwargs": {"use_bias": True}},
    {"recurrent": False},
]
BACKWARD_CASES = (
    # the manual backward recomputes segments of ⌈√60⌉ = 8 steps (7 full, one of 4); the
    # options change the loop and the loss around the neuron, not the neuron's reverse
    # step: every option with BRF, every neuron without options (stacks: test_layers)
    [("brf", options, {"backward": "manual"}) for options in BACKWARD_OPTIONS]
    + [(neuron, {}, {"backward": "manual"}) for neuron in ("vrf", "alif")]
    # other segmentations: one step each, one full segment, only the shorter one
    + [("brf", {}, {"backward": "manual", "recompute_segment": k}) for k in (1, 60, 100)]
    # recompute is JAX's own derivative of the same loop: one case per neuron
    + [
        (neuron, {}, {"backward": "recompute", "recompute_segment": 7})
        for neuron in ("brf", "vrf", "alif")
    ]
)


@pytest.mark.parametrize("neuron,options,backward", BACKWARD_CASES)
def test_manual_backward_equals_autodiff(neuron, options, backward):
    """The hand-written reverse pass (brfjax.scan), and the recomputing one (60 steps in
    segments of 7, the last one shorter), give JAX's gradients up to float32 summation order
    (relative 1e-5 of each gradient's largest entry) for the parameters, the initial state
    (with spikes in it) and the inputs, and the very same forward. The loss touches every output: readouts,
    spike counts, final states."""
    manual = models.build_network(neuron, 12, 3, **backward, **options)
    autodiff = models.build_network(neuron, 12, 3, backward="autodiff", **options)
    _, variables, x = small_network(neuron)
    if options.get("use_bias") or options.get("recurrent") is False:
        variables = jax.jit(manual.init)(jax.random.PRNGKey(0), x)
        variables["params"]["hidden"]["kernel"] = variables["params"]["hidden"]["kernel"] * 40.0
    targets = jnp.arange(5) % 3
    initial = manual.initial_state(5)
    # spikes at t = -1 enter c_0 = [x_0, z_{-1}]: the kernel gradient has a term for them
    initial_spikes = (jnp.arange(5 * 12).reshape(5, 12) % 3 == 0).astype(jnp.float32)
    initial = initial._replace(
        readout=jnp.full((5, 3), 0.3), hidden=initial.hidden._replace(z=initial_spikes)
    )

    def loss(params, initial, inputs, model):
        out = model.apply({"params": params}, inputs, initial, start_step=0)
        final = out.final_state
        return (
            metrics.summed_loss(out.readouts, targets)
            + 1e-3 * out.spike_counts.sum()
            + 0.1 * jnp.sum(final.hidden.u)
            + 0.1 * jnp.sum(final.readout)
        )

    gradient = jax.jit(jax.grad(loss, argnums=(0, 1, 2)), static_argnums=3)
    g_manual = gradient(variables["params"], initial, x, manual)
    g_auto = gradient(variables["params"], initial, x, autodiff)
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(g_auto), jax.tree_util.tree_leaves(g_manual)
    ):
        scale = float(jnp.max(jnp.abs(a)))
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5 * scale + 1e-12, err_msg=str(path))
    # the forward that the gradient runs (segmented, keeping its residuals) is the reference one, bit for bit
    out_auto = autodiff.apply({"params": variables["params"]}, x, initial, start_step=0)
    out_manual, _ = jax.vjp(
        lambda p: manual.apply({"params": p}, x, initial, start_step=0), variables["params"]
    )
    for a, b in zip(jax.tree_util.tree_leaves(out_auto), jax.tree_util.tree_leaves(out_manual)):
        np.testing.assert_array_equal(b, a)


@pytest.mark.parametrize("reverse", [False, True])
def test_scan_into_reused_buffers_equals_lax_scan(reverse):
    """The manual backward's loops write their outputs into the previous segment's
    buffers: whatever those hold, the outputs and the carry are lax.scan's; buffers of
    another length are left alone and lax.scan's own outputs are returned."""

    def step(carry, x):
        carry = carry * 0.5 + x
        return carry, (carry, None, 2.0 * x)

    xs = jnp.arange(12.0).reshape(6, 2)
    expected_carry, expected = jax.lax.scan(step, jnp.ones(2), xs, reverse=reverse)
    old = (jnp.full((6, 2), 7.0), None, jnp.full((6, 2), -3.0))
    carry, outputs, handed_on = jax.jit(
        lambda xs, old: scan._scan_reusing(step, jnp.ones(2), xs, old, reverse)
    )(xs, old)
    np.testing.assert_array_equal(carry, expected_carry)
    for got, want in zip(
        jax.tree_util.tree_leaves((outputs, handed_on)),
        jax.tree_util.tree_leaves((expected, expected)),
    ):
        np.testing.assert_array_equal(got, want)
    short = jax.tree_util.tree_map(lambda a: a[:4], old)
    _, outputs, handed_on = scan._scan_reusing(step, jnp.ones(2), xs, short, reverse)
    for got, want in zip(jax.tree_util.tree_leaves(outputs), jax.tree_util.tree_leaves(expected)):
        np.testing.assert_array_equal(got, want)
    assert handed_on is short
