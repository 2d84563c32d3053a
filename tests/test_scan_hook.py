"""The per-step spike hook of ``scan.run``: where it acts, and its one error."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brfjax import models, scan

INPUT_SIZE = 5


def loop(neuron="brf"):
    """``(spec, params, inputs, hidden0, readout0)`` of a small network."""
    net = models.build_network(neuron, hidden_size=12, num_classes=3)
    x = 30.0 * (jax.random.uniform(jax.random.PRNGKey(0), (60, 4, INPUT_SIZE)) < 0.3).astype(
        jnp.float32
    )
    variables = net.init(jax.random.PRNGKey(1), x)

    def layers(module):
        return module.hidden.layer(INPUT_SIZE), module.readout.layer(module.hidden.features)

    (coefficients, kernel, bias), (alpha, readout_kernel, readout_bias) = nn.apply(layers, net)(
        variables
    )
    params = scan.NetworkParams(coefficients, kernel, bias, alpha, readout_kernel, readout_bias)
    initial = net.initial_state(x.shape[1])
    return net.hidden.scan_spec(), params, x, initial.hidden, initial.readout


@pytest.mark.parametrize("neuron", ["brf", "alif"])
def test_an_identity_hook_changes_nothing_and_a_silencing_hook_silences_from_its_step(neuron):
    spec, params, x, hidden0, readout0 = loop(neuron)
    plain = scan.run(spec, params, x, hidden0, readout0, keep_trajectory=True)
    assert float(plain.spike_counts.sum()) > 0
    same = scan.run(
        spec, params, x, hidden0, readout0, keep_trajectory=True, spike_hook=lambda t, z: z
    )
    jax.tree_util.tree_map(np.testing.assert_array_equal, same, plain)
    # silence every spike from step 30 on: the counts are those of steps 0..29, the
    # readouts up to step 29 are unchanged, the trajectory's spikes are zero afterwards
    silenced = scan.run(
        spec,
        params,
        x,
        hidden0,
        readout0,
        keep_trajectory=True,
        spike_hook=lambda t, z: jnp.where(t >= 30, jnp.zeros_like(z), z),
    )
    np.testing.assert_array_equal(silenced.spike_counts, plain.trajectory.z[:30].sum(axis=(0, 2)))
    np.testing.assert_array_equal(silenced.readouts[:30], plain.readouts[:30])
    assert float(jnp.abs(silenced.trajectory.z[30:]).sum()) == 0.0


def test_a_hook_that_changes_shape_or_dtype_is_one_error():
    spec, params, x, hidden0, readout0 = loop()
    with pytest.raises(ValueError, match="spike_hook returned shape"):
        scan.run(spec, params, x, hidden0, readout0, spike_hook=lambda t, z: z[:, :3])
    with pytest.raises(ValueError, match="spike_hook returned shape"):
        scan.run(spec, params, x, hidden0, readout0, spike_hook=lambda t, z: z.astype(jnp.int32))
