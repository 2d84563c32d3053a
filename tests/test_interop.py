import hypothesis
import hypothesis.strategies as st
import jax
import numpy as np
import pytest
from conftest import CHECKPOINTS, checkpoint

from brfjax import interop, models

ALL = [
    (f"{task}_{neuron}", neuron)
    for task in ("ecg", "smnist", "psmnist", "shd")
    for neuron in ("brf", "vrf", "alif")
]


@pytest.mark.parametrize("name,neuron", ALL)
def test_reference_round_trip_is_bitwise(name, neuron, tmp_path):
    path = checkpoint(name)
    model, variables = interop.load_reference_network(path, neuron)
    original = interop.load_state_dict(path)
    back = interop.variables_to_reference(variables, neuron)
    assert set(back) == set(original)
    for key in original:
        np.testing.assert_array_equal(back[key], original[key], err_msg=key)
    interop.save_reference(tmp_path / "copy.npz", variables, neuron)
    again = interop.load_state_dict(tmp_path / "copy.npz")
    for key in original:
        np.testing.assert_array_equal(again[key], original[key], err_msg=key)


def test_loaded_variables_fit_the_model_and_layout():
    model, variables = interop.load_reference_network(checkpoint("ecg_brf"), "brf")
    state_dict = interop.load_state_dict(checkpoint("ecg_brf"))
    np.testing.assert_array_equal(
        variables["params"]["hidden"]["kernel"], state_dict["hidden.linear.weight"].T
    )
    np.testing.assert_array_equal(
        variables["params"]["readout"]["kernel"], state_dict["out.linear.weight"].T
    )
    np.testing.assert_array_equal(variables["params"]["readout"]["tau"], state_dict["out.tau_mem"])
    assert models.count_parameters(variables["params"]) == 1734
    assert "mask" in variables
    _, no_mask = interop.load_reference_network(checkpoint("ecg_vrf"), "vrf")
    assert "mask" not in no_mask


def state_dict():
    return dict(interop.load_state_dict(checkpoint("ecg_brf")))


def test_missing_key_is_named():
    sd = state_dict()
    del sd["hidden.omega"]
    with pytest.raises(interop.CheckpointError, match=r"missing \['hidden.omega'\]"):
        interop.reference_to_variables(sd, "brf")


def test_extra_key_is_named():
    sd = state_dict()
    sd["hidden.tau_adp"] = np.ones(36, np.float32)
    with pytest.raises(interop.CheckpointError, match=r"unexpected \['hidden.tau_adp'\]"):
        interop.reference_to_variables(sd, "brf")


def test_wrong_neuron_family_is_reported():
    with pytest.raises(interop.CheckpointError, match="missing.*hidden.tau_mem"):
        interop.reference_to_variables(state_dict(), "alif")


def test_wrong_shape_names_key_and_both_shapes():
    sd = state_dict()
    sd["out.tau_mem"] = np.ones(7, np.float32)
    with pytest.raises(
        interop.CheckpointError, match=r"'out.tau_mem': expected shape \(6,\), got \(7,\)"
    ):
        interop.reference_to_variables(sd, "brf")


def test_checkpoint_that_does_not_fit_the_model():
    model = models.build_network("brf", 40, 6)
    with pytest.raises(
        interop.CheckpointError,
        match=r"hidden/omega: model expects \(40,\), checkpoint has \(36,\)",
    ):
        interop.reference_to_variables(state_dict(), "brf", model)


def test_unreadable_and_missing_files(tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip archive")
    with pytest.raises(interop.CheckpointError, match="not a readable"):
        interop.load_state_dict(bad)
    with pytest.raises(interop.CheckpointError, match="does not exist"):
        interop.load_state_dict(tmp_path / "absent.npz")


def test_flax_variables_from_init_write_a_loadable_reference(tmp_path):
    model = models.build_network("alif", 8, 3)
    variables = model.init(jax.random.PRNGKey(0), np.zeros((2, 1, 5), np.float32))
    interop.save_reference(tmp_path / "alif.npz", variables, "alif")
    loaded_model, loaded = interop.load_reference_network(tmp_path / "alif.npz", "alif")
    jax.tree_util.tree_map(
        np.testing.assert_array_equal, loaded["params"], jax.device_get(variables["params"])
    )
    assert sorted(interop.load_state_dict(tmp_path / "alif.npz")) == [
        "hidden.linear.weight",
        "hidden.tau_adp",
        "hidden.tau_mem",
        "out.linear.weight",
        "out.tau_mem",
    ]


def test_all_shipped_checkpoints_are_covered():
    if not CHECKPOINTS.exists():
        pytest.skip("needs ../shared")
    shipped = sorted(p.stem for p in CHECKPOINTS.glob("*.npz"))
    assert shipped == sorted(name for name, _ in ALL)


# a small BRF network's state dict, as published files hold them
_NET = models.build_network("brf", 5, 3)
_X = np.full((6, 2, 4), 100.0, np.float32)
_VARIABLES = _NET.init(jax.random.PRNGKey(0), _X)
_STATE_DICT = interop.variables_to_reference(_VARIABLES, "brf")


def _tamper(state_dict, draw):
    """One random defect (or none) in a copy of ``state_dict``."""
    state_dict = {key: np.array(value) for key, value in state_dict.items()}
    key = draw(st.sampled_from(sorted(state_dict)))
    kind = draw(
        st.sampled_from(
            ["none", "value", "drop", "extra", "reshape", "dtype", "transpose", "scalar"]
        )
    )
    if kind == "value":
        index = draw(st.integers(0, state_dict[key].size - 1))
        state_dict[key].flat[index] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf, 0.0, 150.0, -150.0, 1e30])
        )
    elif kind == "drop":
        del state_dict[key]
    elif kind == "extra":
        state_dict["hidden.extra"] = np.zeros(3, np.float32)
    elif kind == "reshape":
        state_dict[key] = state_dict[key].reshape(-1)[: max(state_dict[key].size - 1, 1)]
    elif kind == "dtype":
        state_dict[key] = state_dict[key].astype(
            draw(st.sampled_from([np.int32, np.float64, bool]))
        )
    elif kind == "transpose" and state_dict[key].ndim == 2:
        state_dict[key] = state_dict[key].T.copy()
    elif kind == "scalar":
        state_dict[key] = np.float32(1.0)
    return state_dict


@hypothesis.settings(max_examples=20)
@hypothesis.given(data=st.data())
def test_a_damaged_checkpoint_loads_and_runs_or_is_refused_in_one_line(tmp_path_factory, data):
    """Random defects in a checkpoint file: it loads as the network's variables of usable
    numbers, or it is refused with one CheckpointError; never another exception."""
    state_dict = _tamper(_STATE_DICT, data.draw)
    path = tmp_path_factory.mktemp("ckpt") / "model.npz"
    np.savez(path, **state_dict)
    try:
        model, variables = interop.load_reference_network(path, "brf")
    except interop.CheckpointError as error:
        assert str(error) and "\n" not in str(error)
        return
    # what loads is the network's tree, of usable numbers
    assert jax.tree_util.tree_map(np.shape, variables) == jax.tree_util.tree_map(
        np.shape, _VARIABLES
    )
    assert not interop.parameter_problems(variables["params"], "brf")
