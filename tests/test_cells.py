import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from brfjax import cells, models, neurons


@pytest.mark.parametrize("name", sorted(cells.CELLS))
def test_cells_follow_the_rnn_cell_contract(name):
    cell = cells.get_cell(name)(features=7)
    assert isinstance(cell, nn.RNNCellBase)
    x = jnp.ones((3, 2))
    carry = cell.initialize_carry(jax.random.PRNGKey(0), x.shape)
    assert isinstance(carry, neurons.get_neuron(name).state)
    assert all(field.shape == (3, 7) and field.dtype == jnp.float32 for field in carry)
    variables = cell.init(jax.random.PRNGKey(0), carry, x)
    new_carry, spikes = cell.apply(variables, carry, x)
    assert type(new_carry) is type(carry)
    assert spikes.shape == (3, 7)
    assert cell.num_feature_axes == 1
    sequence = nn.RNN(cell, time_major=True).apply(
        {"params": {"cell": variables["params"]}}, jnp.ones((5, 3, 2))
    )
    assert sequence.shape == (5, 3, 7)


def test_readout_follows_the_rnn_cell_contract():
    readout = cells.LIReadout(features=4)
    carry = readout.initialize_carry(None, (2, 9))
    assert carry.shape == (2, 4)
    variables = readout.init(jax.random.PRNGKey(0), carry, jnp.ones((2, 9)))
    assert set(variables["params"]) == {"kernel", "tau"}
    potential, output = readout.apply(variables, carry, jnp.ones((2, 9)))
    np.testing.assert_array_equal(potential, output)


def init_cell(cell, in_features=4, seed=0):
    x = jnp.zeros((1, in_features))
    return cell.init(jax.random.PRNGKey(seed), cell.initialize_carry(None, x.shape), x)


def test_default_initialisers_are_the_papers():
    params = init_cell(cells.BRFCell(features=256), in_features=1)["params"]
    bound = np.sqrt(6 / (257 + 256))  # Xavier uniform, 0.1081 for MNIST
    kernel = np.asarray(params["kernel"])
    assert kernel.shape == (257, 256)
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.99 * bound
    assert 5.0 <= params["omega"].min() and params["omega"].max() <= 10.0
    assert 0.0 <= params["b_offset"].min() and params["b_offset"].max() <= 1.0
    alif = init_cell(cells.ALIFCell(features=2000))["params"]
    assert (
        abs(float(alif["tau_mem"].mean()) - 20) < 0.5
        and abs(float(alif["tau_mem"].std()) - 5) < 0.5
    )
    readout = cells.LIReadout(features=10).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 10)), jnp.zeros((1, 256))
    )
    assert np.abs(np.asarray(readout["params"]["kernel"])).max() <= np.sqrt(6 / (256 + 10))
    bhrf = init_cell(cells.BHRFCell(features=500))["params"]
    assert 10 <= bhrf["omega"].min() and bhrf["omega"].max() <= 50


def test_task_initialisers_can_be_overridden():
    cell = cells.BRFCell(
        features=50,
        omega_init=cells.uniform_init(15.0, 85.0),
        b_offset_init=cells.uniform_init(0.1, 1.0),
    )
    params = init_cell(cell)["params"]
    assert 15 <= params["omega"].min() and params["omega"].max() <= 85
    assert 0.1 <= params["b_offset"].min()


def test_pruning_mask_prunes_only_recurrent_weights():
    cell = cells.BRFCell(features=100, mask_prob=0.3)
    variables = init_cell(cell, in_features=4)
    mask = np.asarray(variables["mask"]["mask"])
    assert mask.shape == (104, 100)
    np.testing.assert_array_equal(mask[:4], 1)
    assert 0.25 < 1 - mask[4:].mean() < 0.35
    # the mask is applied to the kernel in the forward pass
    x = jnp.ones((1, 4))
    carry = cell.initialize_carry(None, x.shape)._replace(z=jnp.ones((1, 100)))
    zero_recurrent = {
        "params": variables["params"],
        "mask": {"mask": jnp.asarray(mask).at[4:].set(0.0)},
    }
    _, kernel, _ = cell.apply(zero_recurrent, 4, method=cell.layer)
    np.testing.assert_array_equal(kernel[4:], 0)
    new, _ = cell.apply(zero_recurrent, carry, x)
    free, _ = cell.apply(zero_recurrent, carry._replace(z=jnp.zeros((1, 100))), x)
    np.testing.assert_array_equal(new.u, free.u)


def test_non_recurrent_cell_with_bias():
    cell = cells.ALIFCell(
        features=6, recurrent=False, use_bias=True, bias_init=nn.initializers.ones
    )
    params = init_cell(cell, in_features=3)["params"]
    assert params["kernel"].shape == (3, 6)
    np.testing.assert_array_equal(params["bias"], 1)


def test_unknown_cell_name():
    with pytest.raises(ValueError, match="alif"):
        cells.get_cell("lstm")


# ------------------------------------------------ the cells under Flax's own transforms

CELL_OPTIONS = [
    {},
    {"recurrent": False},
    {"use_bias": True, "bias_init": nn.initializers.constant(0.3)},
    {"mask_prob": 0.5},
    {"spike_form": "fgi"},
    {"surrogate": "gaussian"},
    {"exact": False},
    {"products": "fast"},
    {"dt": 0.02},
]


def network_and_cell(name, options):
    from brfjax import models

    net = models.build_network(name, 6, 3, return_trajectory=True, **options)
    x = 200.0 * (np.random.default_rng(0).random((20, 4, 3)) < 0.3).astype(np.float32)
    variables = net.init(jax.random.PRNGKey(0), x)
    cell_variables = {"params": variables["params"]["hidden"]}
    if "mask" in variables:
        cell_variables["mask"] = variables["mask"]["hidden"]
    return net, variables, net.hidden, cell_variables, x


def under(collection_name, cell_variables):
    """The cell's variables as the submodule ``cell`` of a wrapping module."""
    return {kind: {collection_name: value} for kind, value in cell_variables.items()}


@pytest.mark.parametrize("name", sorted(cells.CELLS))
@pytest.mark.parametrize("options", CELL_OPTIONS, ids=lambda o: ",".join(o) or "default")
def test_cells_under_nn_rnn_nn_scan_and_nn_vmap_give_the_networks_results(name, options):
    if "dt" in options and neurons.get_neuron(cells.CELLS[name].neuron).fixed_dt is not None:
        # a neuron derived for δ = 0.01 only (BRF's p(ω), BHRF's ω²·δ/2, discrete-time
        # ALIF) refuses another step where it is set
        with pytest.raises(ValueError, match=r"dt=0\.02: the \w+ neuron's coefficients"):
            cells.get_cell(name)(features=6, **options)
        return
    net, variables, cell, cell_variables, x = network_and_cell(name, options)
    expected = net.apply(variables, x).trajectory
    # exact=False lets XLA fuse multiply-adds as it likes in each program, and a fast
    # product's bits depend on its shape (the network's input product covers all T·B rows
    # at once, a cell's one step): ulps apart
    bitwise = options.get("exact", True) and options.get("products") != "fast"
    same = (
        np.testing.assert_array_equal
        if bitwise
        else functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-4)
    )
    assert float(jnp.sum(expected.z)) > 0  # the neurons spike: the comparison means something

    # nn.RNN, time-major and batch-major
    broadcast = ("params", "mask")  # the pruning mask is a variable of its own collection
    rnn_z = nn.RNN(cell, time_major=True, variable_broadcast=broadcast).apply(
        under("cell", cell_variables), x
    )
    same(rnn_z, expected.z)
    batch_major = nn.RNN(cell, variable_broadcast=broadcast).apply(
        under("cell", cell_variables), x.transpose(1, 0, 2)
    )
    same(batch_major.transpose(1, 0, 2), expected.z)

    # nn.scan over the cell class with the same attributes
    fields = {
        f.name: getattr(cell, f.name)
        for f in dataclasses.fields(cell)
        if f.name not in ("parent", "name")
    }
    scanned = nn.scan(
        type(cell),
        variable_broadcast=["params", "mask"],
        split_rngs={"params": False},
        in_axes=0,
        out_axes=0,
    )(**fields)
    carry = cell.initialize_carry(None, x[0].shape)
    final, z = scanned.apply(cell_variables, carry, x)
    same(z, expected.z)
    same(final.u, expected.u[-1])

    # nn.vmap over an extra leading axis: two halves of the batch side by side
    mapped = nn.vmap(
        type(cell),
        variable_axes={"params": None, "mask": None},
        split_rngs={"params": False},
        in_axes=(0, 0),
        out_axes=0,
    )(**fields)
    halves = x[0].reshape(2, 2, 3)
    carry2 = jax.tree_util.tree_map(
        lambda a: a.reshape(2, 2, -1), cell.initialize_carry(None, x[0].shape)
    )
    new, z0 = mapped.apply(cell_variables, carry2, halves)
    same(z0.reshape(4, -1), expected.z[0])
    same(new.u.reshape(4, -1), expected.u[0])


def test_a_masked_cell_under_plain_nn_rnn_keeps_its_mask_with_the_parameters():
    net, variables, cell, cell_variables, x = network_and_cell("brf", {"mask_prob": 0.5})
    rnn = nn.RNN(cell, time_major=True)  # only the parameters broadcast, Flax's default
    own = rnn.init(jax.random.PRNGKey(1), x)
    mask = own["params"]["cell"]["mask"]
    assert set(np.unique(mask)) == {0.0, 1.0} and (mask[:3] == 1).all()  # inputs never pruned
    # the same mask as the network's own collection gives the network's spikes
    params = {key: value for key, value in own["params"]["cell"].items() if key != "mask"}
    network_variables = {
        "params": {"hidden": params, "readout": variables["params"]["readout"]},
        "mask": {"hidden": {"mask": mask}},
    }
    np.testing.assert_array_equal(rnn.apply(own, x), net.apply(network_variables, x).trajectory.z)
    # and a cell of mask_prob 0 given these parameters applies their mask too
    cell_params = {"params": own["params"]["cell"]}
    pruned = cell.clone(mask_prob=0.0).apply(cell_params, 3, method="layer")[1]
    np.testing.assert_array_equal(
        pruned, own["params"]["cell"]["kernel"] * (mask != 0).astype(jnp.float32)
    )
    # its gradient is zero: an optimizer never changes which weights are pruned
    grads = jax.grad(lambda p: jnp.sum(rnn.apply({"params": p}, x)))(own["params"])
    assert not np.asarray(grads["cell"]["mask"]).any()
    assert not np.asarray(grads["cell"]["kernel"])[np.asarray(mask) == 0].any()
    # the mask is not a parameter
    assert models.count_parameters(own["params"]) == models.count_parameters(params)
    assert models.count_parameters(params) == sum(v.size for v in jax.tree.leaves(params))
    # a network's variables without their mask collection get one error naming the fix
    with pytest.raises(ValueError, match=r"variable_broadcast=\('params', 'mask'\)"):
        rnn.apply(under("cell", {"params": cell_variables["params"]}), x)
