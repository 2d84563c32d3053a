"""The published PyTorch files convert to the reference checkpoints bit for bit, and a
checkpoint that records what it is cannot be read as anything else."""

import json
import sys

import jax
import numpy as np
import pytest
from conftest import CHECKPOINTS, SHARED, checkpoint

import brfjax
from brfjax import convert, evaluate, export, interop, models, tasks

ORIGINAL_PT = SHARED / "reference" / "original_pt"

# name: (task, neuron, (I, H, C), SHA-256 of the published .pt), from
# ../shared/reference/checkpoints/MANIFEST.md
PUBLISHED = {
    "ecg_brf": (
        "ecg",
        "brf",
        (4, 36, 6),
        "7447cfb5006759c095218e3ae757029d79213463899fdcf3961471d7dd8f4e16",
    ),
    "ecg_vrf": (
        "ecg",
        "vrf",
        (4, 36, 6),
        "3055c531cf1c3314501d34ee405005454da546670a8ab8acdf763a5422ba505f",
    ),
    "ecg_alif": (
        "ecg",
        "alif",
        (4, 36, 6),
        "761784b3cd1d4984e349c589e168f6d7b39ed2d8701fa99f2c9c3411e2fa659a",
    ),
    "smnist_brf": (
        "smnist",
        "brf",
        (1, 256, 10),
        "dd042842b41045dad12972baf3bb615f0fd2bf56c455cb138a71a648762fa480",
    ),
    "psmnist_brf": (
        "psmnist",
        "brf",
        (1, 256, 10),
        "5f69282d924fbc987b937a94771e964d970d9e1aaf7fbaa8ba5e4445ef5cd914",
    ),
    "smnist_vrf": (
        "smnist",
        "vrf",
        (1, 256, 10),
        "456e717fdd3687c55457867ceb8ca060177f6a959d2aac124baf41a854aab21e",
    ),
    "psmnist_vrf": (
        "psmnist",
        "vrf",
        (1, 256, 10),
        "ee47430f9dd22a0bac06dfc0057677440933118f84cc24903cfdeaac8877a1f7",
    ),
    "smnist_alif": (
        "smnist",
        "alif",
        (1, 256, 10),
        "b427e03a6251f91feb3db8126a94bde7374153144ba733a959542f0507b5c06f",
    ),
    "psmnist_alif": (
        "psmnist",
        "alif",
        (1, 256, 10),
        "994dfebfacaa93414ec249d5863b35a42110db379e05fa0859e17cc84f54246d",
    ),
    "shd_brf": (
        "shd",
        "brf",
        (700, 128, 20),
        "126a6f78db17b1be3e8ad7d5d66dd9d3d7701bbd666496d1fe9e98da7422638b",
    ),
    "shd_vrf": (
        "shd",
        "vrf",
        (700, 128, 20),
        "87b5c2404cd60793c9c50bef2a01504a314363974abba838bb87c881c1bae349",
    ),
    "shd_alif": (
        "shd",
        "alif",
        (700, 128, 20),
        "5835d01761697634b307a5db9eaa2d4588c154e2434c70040cd8a172a5d3e639",
    ),
}

# brfjax's statistics of the published ECG BRF model (as in tests/test_evaluate.py)
ECG_BRF_LINE = (
    "ecg brf: accuracy 86.2177 % (158037/183300), loss 0.393271, spikes 974795, SOP 6913.44, "
    "SOP/step 5.32, firing rate 0.15, samples 141"
)


@pytest.fixture
def torch():
    return pytest.importorskip(
        "torch", reason='converting .pt files needs torch: pip install ".[torch]"'
    )


def original(name):
    path = ORIGINAL_PT / f"{name}.pt"
    if not path.exists():
        pytest.skip(f"published .pt file {path} not available (needs ../shared)")
    return path


def one_error_line(capsys):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and "Traceback" not in err, err
    return lines[0]


def raw_arrays(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def assert_same_bits(got, expected):
    assert got.dtype == expected.dtype and got.shape == expected.shape
    assert got.tobytes() == expected.tobytes()


# ------------------------------------------------------------------ converting the .pt files


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_each_published_model_converts_to_the_reference_tensors_bit_for_bit(
    torch, tmp_path, capsys, name
):
    task, neuron, sizes, sha256 = PUBLISHED[name]
    output = tmp_path / f"{name}.npz"
    assert (
        convert.main([str(original(name)), "--task", task, "--neuron", neuron, "-o", str(output)])
        == 0
    )
    assert capsys.readouterr().out.startswith(f"wrote {output} ({task} {neuron}, ")
    converted, reference = raw_arrays(output), raw_arrays(checkpoint(name))
    assert set(converted) == set(reference) | {interop.IDENTITY_KEY}
    for key, expected in reference.items():
        assert_same_bits(converted[key], expected)
    record = json.loads(str(converted[interop.IDENTITY_KEY]))
    assert record["task"] == task and record["neuron"] == neuron
    assert record["network"] == dict(
        zip(("input_size", "hidden_size", "num_classes"), sizes, strict=True)
    )
    assert record["source"] == {"file": f"{name}.pt", "sha256": sha256}
    assert record["brfjax_version"] == brfjax.__version__
    # what brfjax reads back: the published tensors, the record apart
    state_dict, identity = interop.read_reference(output)
    assert identity == record and set(state_dict) == set(reference)


@pytest.mark.parametrize("name", ["psmnist_brf_permutation", "psmnist_alif_permutation"])
def test_both_permutations_convert_to_the_reference_npy(torch, tmp_path, capsys, name):
    output = tmp_path / f"{name}.npy"
    assert convert.main([str(original(name)), "-o", str(output)]) == 0
    assert_same_bits(np.load(output), np.load(CHECKPOINTS / f"{name}.npy"))


def test_a_converted_model_evaluates_to_the_reference_line_without_task_or_neuron(
    torch, tmp_path, capsys
):
    output = tmp_path / "ecg_brf.npz"
    assert (
        convert.main(
            [str(original("ecg_brf")), "--task", "ecg", "--neuron", "brf", "-o", str(output)]
        )
        == 0
    )
    capsys.readouterr()
    assert evaluate.main(["--checkpoint", str(output)]) == 0
    converted = capsys.readouterr()
    assert converted.out.strip() == ECG_BRF_LINE and converted.err == ""
    # the published .npz: the flags are required and the assumption is stated
    assert (
        evaluate.main(
            ["--task", "ecg", "--neuron", "brf", "--checkpoint", str(checkpoint("ecg_brf"))]
        )
        == 0
    )
    published = capsys.readouterr()
    assert published.out.strip() == ECG_BRF_LINE
    assert published.err.strip() == (
        "note: ecg_brf.npz does not record its neuron or task: evaluated as a brf "
        "network for ecg, as --neuron and --task say"
    )


def test_convert_errors_are_one_line(torch, tmp_path, capsys):
    model, permutation = str(original("ecg_brf")), str(original("psmnist_brf_permutation"))
    out = str(tmp_path / "x.npz")
    cases = [
        ([model, "-o", out], 2, ["is a model", "pass --task and --neuron"]),
        ([model, "--neuron", "brf", "-o", out], 2, ["pass --task"]),
        (
            [model, "--task", "shd", "--neuron", "brf", "-o", out],
            2,
            ["input width 4 and 6 classes", "pass --task ecg"],
        ),
        (
            [model, "--task", "ecg", "--neuron", "alif", "-o", out],
            1,
            ["do not fit a 'alif' network", "hidden.omega"],
        ),
        (
            [model, "--task", "ecg", "--neuron", "brf", "-o", str(tmp_path / "x.npy")],
            2,
            ["name the output *.npz"],
        ),
        (
            [permutation, "--neuron", "brf", "-o", str(tmp_path / "p.npy")],
            2,
            ["takes no --neuron brf; drop it"],
        ),
        ([permutation, "-o", out], 2, ["name the output *.npy"]),
        ([str(tmp_path / "absent.pt"), "-o", out], 1, ["does not exist"]),
    ]
    for argv, status, fragments in cases:
        assert convert.main(argv) == status, argv
        message = one_error_line(capsys)
        assert all(fragment in message for fragment in fragments), (argv, message)
    assert not (tmp_path / "x.npz").exists() and not (tmp_path / "x.npy").exists()
    with pytest.raises(SystemExit) as exit_info:
        convert.main([model, "--task", "ecg"])
    assert exit_info.value.code == 2 and "-o/--output" in one_error_line(capsys)


def test_files_that_are_not_published_models_are_refused(torch, tmp_path, capsys):
    import fractions

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    short = tmp_path / "short_permutation.pt"
    torch.save(torch.arange(10), short)
    repeated = tmp_path / "repeated_permutation.pt"
    torch.save(torch.zeros(784, dtype=torch.int64), repeated)
    code = tmp_path / "code.pt"  # an object weights_only=True does not unpickle
    torch.save({"model_state_dict": {"hidden.omega": fractions.Fraction(1, 3)}}, code)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.ones(3)}, other)
    cases = [
        (garbage, ".npz", "is not a readable torch.save file"),
        (short, ".npy", "expected an integer array of shape (784,), got int64 (10,)"),
        (repeated, ".npy", "not a permutation of 0..783"),
        (
            code,
            ".npz",
            "refuses to read it with weights_only=True (Unsupported global: GLOBAL fractions.Fraction",
        ),
        (other, ".npz", "holds neither a model"),
    ]
    for path, suffix, fragment in cases:
        output = tmp_path / f"out{suffix}"
        assert (
            convert.main(
                [str(path), "--task", "ecg", "--neuron", "brf", "-o", str(output)]
                if suffix == ".npz"
                else [str(path), "-o", str(output)]
            )
            == 1
        ), path
        assert fragment in one_error_line(capsys), path
        assert not output.exists()


def test_without_torch_the_command_says_how_to_install_it(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    assert (
        convert.main(
            ["model.pt", "--task", "ecg", "--neuron", "brf", "-o", str(tmp_path / "x.npz")]
        )
        == 2
    )
    assert (
        one_error_line(capsys)
        == 'error: converting a PyTorch file needs torch; its CPU build is enough: pip install torch --index-url https://download.pytorch.org/whl/cpu, then from a clone of brfjax pip install ".[torch]"'
    )
    # the output file is checked first, as in the other commands
    missing = tmp_path / "no folder" / "x.npz"
    with pytest.raises(SystemExit) as exit_info:
        convert.main(["model.pt", "--task", "ecg", "--neuron", "brf", "-o", str(missing)])
    assert (
        exit_info.value.code == 2 and "does not exist; create it first" in capsys.readouterr().err
    )


# ----------------------------------------------- the identity record and what it refuses


@pytest.fixture
def recorded_vrf(tmp_path):
    """The published ECG RF model written by brfjax, with its identity record."""
    _, variables = interop.load_reference_network(checkpoint("ecg_vrf"), "vrf")
    path = tmp_path / "ecg_vrf_recorded.npz"
    interop.save_reference(path, variables, "vrf", task="ecg")
    return path


def test_save_reference_records_what_it_wrote_and_keeps_the_tensors_apart(recorded_vrf):
    state_dict, identity = interop.read_reference(recorded_vrf)
    assert identity == {
        "task": "ecg",
        "neuron": "vrf",
        "brfjax_version": brfjax.__version__,
        "network": {"input_size": 4, "hidden_size": 36, "num_classes": 6},
    }
    reference = raw_arrays(checkpoint("ecg_vrf"))
    assert set(interop.load_state_dict(recorded_vrf)) == set(state_dict) == set(reference)
    for key, expected in reference.items():
        assert_same_bits(state_dict[key], expected)
    assert interop.load_identity(checkpoint("ecg_vrf")) is None


def test_a_recorded_checkpoint_is_refused_for_another_neuron_or_task(recorded_vrf, capsys):
    for flags, named in (
        (["--neuron", "brf"], ["--neuron brf", "ecg/vrf", "ecg/brf"]),
        (["--task", "shd"], ["--task shd", "ecg/vrf", "shd/vrf"]),
        (["--task", "smnist", "--neuron", "alif"], ["--task smnist and --neuron alif disagree"]),
    ):
        for command in (evaluate.main, export.main):
            argv = [*flags, "--checkpoint", str(recorded_vrf)]
            if command is not evaluate.main:
                argv += ["-o", str(recorded_vrf.parent / "never.jaxexport")]
            with pytest.raises(SystemExit) as exit_info:
                command(argv)
            assert exit_info.value.code == 2
            message = one_error_line(capsys)
            assert all(fragment in message for fragment in named), message
            assert capsys.readouterr().out == ""
    assert not (recorded_vrf.parent / "never.jaxexport").exists()
    # the library refuses too: a BRF and an RF state dict have the same keys and shapes
    with pytest.raises(interop.CheckpointError, match="records a vrf network, not brf"):
        interop.load_reference_network(recorded_vrf, "brf")
    with pytest.raises(interop.CheckpointError, match="holds a ecg/vrf run .*, not ecg/brf"):
        evaluate.load_for_evaluation(tasks.get_task("ecg"), "brf", str(recorded_vrf))


def test_matching_flags_are_accepted_and_a_published_file_still_needs_them(recorded_vrf, capsys):
    args = evaluate.parse_args(
        ["--task", "ecg", "--neuron", "vrf", "--checkpoint", str(recorded_vrf)]
    )
    assert (args.task, args.neuron) == ("ecg", "vrf") and capsys.readouterr().err == ""
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--checkpoint", str(checkpoint("ecg_vrf"))])
    assert exit_info.value.code == 2
    assert (
        "does not record its task and neuron (a state dict as the authors published it); pass --task and "
        "--neuron" in one_error_line(capsys)
    )


def test_a_record_without_task_asks_for_the_task_only(tmp_path, capsys):
    _, variables = interop.load_reference_network(checkpoint("ecg_vrf"), "vrf")
    path = tmp_path / "no_task.npz"
    interop.save_reference(path, variables, "vrf")
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--checkpoint", str(path)])
    assert exit_info.value.code == 2 and "does not record its task; pass --task" in one_error_line(
        capsys
    )
    args = evaluate.parse_args(["--task", "ecg", "--checkpoint", str(path)])
    assert (args.task, args.neuron) == ("ecg", "vrf")
    assert (
        "does not record its task: evaluated as a vrf network for ecg, as --task says"
        in capsys.readouterr().err
    )


def test_a_damaged_record_is_refused_with_one_line(tmp_path, capsys):
    state_dict = interop.load_state_dict(checkpoint("ecg_brf"))
    not_json = tmp_path / "not_json.npz"
    np.savez(not_json, **state_dict, **{interop.IDENTITY_KEY: np.array("{task: ecg")})
    wrong_sizes = tmp_path / "wrong_sizes.npz"
    record = interop.identity_record("ecg", "brf", 4, 36, 7)
    np.savez(wrong_sizes, **state_dict, **{interop.IDENTITY_KEY: np.array(json.dumps(record))})
    for path, fragment in (
        (not_json, "is not JSON"),
        (wrong_sizes, "'num_classes': 7}, the tensors are"),
    ):
        with pytest.raises(interop.CheckpointError, match="identity record"):
            interop.load_state_dict(path)
        with pytest.raises(SystemExit) as exit_info:
            evaluate.main(["--checkpoint", str(path)])
        assert exit_info.value.code == 1 and fragment in one_error_line(capsys)
    with pytest.raises(interop.CheckpointError, match="network"):
        interop.write_reference(tmp_path / "never.npz", state_dict, record)
    assert not (tmp_path / "never.npz").exists()


def test_a_workdir_records_its_task_and_neuron_and_refuses_others(tmp_path, capsys):
    from brfjax import checkpoint as run_files

    workdir = tmp_path / "run"
    workdir.mkdir()
    run_files.write_json(
        str(workdir / run_files.CONFIG_FILE), tasks.config_for("ecg", "brf").to_dict()
    )
    identity = evaluate.recorded_identity(str(workdir))
    assert identity["task"] == "ecg" and identity["neuron"] == "brf"
    assert identity["network"] == {"input_size": 4, "hidden_size": 36, "num_classes": 6}
    with pytest.raises(SystemExit) as exit_info:
        evaluate.main(["--neuron", "alif", "--checkpoint", str(workdir)])
    assert exit_info.value.code == 2
    assert "--neuron alif disagrees" in one_error_line(capsys)


def test_a_stack_is_not_written_as_a_reference_state_dict(tmp_path):
    """The reference format holds the paper's one-layer network: a stack gets one error
    that says so and where a stack is kept, not a missing hidden/omega."""
    x = np.ones((4, 2, 3), np.float32)
    variables = jax.jit(models.build_network("brf", (5, 4), 2).init)(jax.random.PRNGKey(0), x)
    with pytest.raises(
        interop.CheckpointError, match=r"variables of a stack \(hidden_0, hidden_1\)"
    ):
        interop.save_reference(tmp_path / "stack.npz", variables, "brf")
    assert not (tmp_path / "stack.npz").exists()
