"""The paper's twelve published models, shipped with brfjax (docs/published-models.md).

The authors' trained networks (github.com/AdaptiveAILab/brf-neurons, MIT licence, see
``LICENSE`` in this folder) as NumPy state dicts: each ``NAME.npz`` holds exactly the
``model_state_dict`` of the authors' ``NAME.pt``, float32 tensors bit for bit. Their
identity records (task, neuron, sizes, the authors' file and its SHA-256) are kept here,
beside the files, so that the files stay the state dicts as published; the two PS-MNIST
pixel permutations ship as ``NAME_permutation.npy``. ``NAMES`` lists the models,
``{ecg,smnist,psmnist,shd}_{brf,vrf,alif}``:

    from brfjax import published

    model, variables = published.load("ecg_brf")  # the paper's 4-36-6 ECG network
    checkpoint = published.path("ecg_brf")  # its .npz inside the installed package

The commands take a name where they take a checkpoint file (``python -m brfjax.evaluate
--checkpoint ecg_brf``), with its task, neuron and, for PS-MNIST, its permutation.
``psmnist_vrf`` holds the network's initial weights (that run diverged after its first
epoch; no permutation was saved for it, and the original inference script feeds pixels in
order).
"""

from __future__ import annotations

import functools
import os
from typing import NamedTuple

from brfjax import interop, tasks
from brfjax.data.download import file_digest
from brfjax.interop import CheckpointError

FOLDER = os.path.dirname(os.path.abspath(__file__))


class PublishedModel(NamedTuple):
    """One published model: what its file is and where it comes from.

    Attributes:
      task: the task it was trained for.
      neuron: its hidden neuron.
      sizes: ``(I, H, C)``, inputs per step, hidden neurons, classes.
      sha256: SHA-256 of the shipped ``.npz``.
      source_sha256: SHA-256 of the authors' ``.pt`` it was converted from.
      permutation: for PS-MNIST, the shipped ``.npy`` of its pixel order, or ``"identity"``
        (pixel order) where none was saved; None for the other tasks.
    """

    task: str
    neuron: str
    sizes: tuple[int, int, int]
    sha256: str
    source_sha256: str
    permutation: str | None = None


MODELS = {
    "ecg_brf": PublishedModel(
        "ecg",
        "brf",
        (4, 36, 6),
        "3e78b7c8a54ef7c3a8f028ca68e0dfc158539f301f8183f89d7825d12ed6ecea",
        "7447cfb5006759c095218e3ae757029d79213463899fdcf3961471d7dd8f4e16",
    ),
    "ecg_vrf": PublishedModel(
        "ecg",
        "vrf",
        (4, 36, 6),
        "bc670bbe5d3c11b78a36b2866f11c7458b3f0fe29d633a5719e4854695c09d47",
        "3055c531cf1c3314501d34ee405005454da546670a8ab8acdf763a5422ba505f",
    ),
    "ecg_alif": PublishedModel(
        "ecg",
        "alif",
        (4, 36, 6),
        "f34fb5fcde5287fa3b1356b2269a4ad0f81692c8dc4e40f07873e5bc65b3b37a",
        "761784b3cd1d4984e349c589e168f6d7b39ed2d8701fa99f2c9c3411e2fa659a",
    ),
    "smnist_brf": PublishedModel(
        "smnist",
        "brf",
        (1, 256, 10),
        "8121201547c56181da6b34caf5725000135ae0b38e12739028b4e3a0f5adc0c4",
        "dd042842b41045dad12972baf3bb615f0fd2bf56c455cb138a71a648762fa480",
    ),
    "smnist_vrf": PublishedModel(
        "smnist",
        "vrf",
        (1, 256, 10),
        "334343e39f1a038a8d3037d24cf5d99e2bcec76f314cd7f494cd094dfe04f9b4",
        "456e717fdd3687c55457867ceb8ca060177f6a959d2aac124baf41a854aab21e",
    ),
    "smnist_alif": PublishedModel(
        "smnist",
        "alif",
        (1, 256, 10),
        "f4528959f2406223f3a9aa7fcb1f87dc227da98a2ac37ab09913b1a2a7324ad7",
        "b427e03a6251f91feb3db8126a94bde7374153144ba733a959542f0507b5c06f",
    ),
    "psmnist_brf": PublishedModel(
        "psmnist",
        "brf",
        (1, 256, 10),
        "11e5330d46d91b4e72e0d8ea25c336dc794bd6c72de9e264a0dd6e6475af7643",
        "5f69282d924fbc987b937a94771e964d970d9e1aaf7fbaa8ba5e4445ef5cd914",
        "psmnist_brf_permutation.npy",
    ),
    "psmnist_vrf": PublishedModel(
        "psmnist",
        "vrf",
        (1, 256, 10),
        "0c7fb4b839f36d3c16627d0efcb581612a7f7239a653dd943e09e2a1610ddd1a",
        "ee47430f9dd22a0bac06dfc0057677440933118f84cc24903cfdeaac8877a1f7",
        "identity",
    ),
    "psmnist_alif": PublishedModel(
        "psmnist",
        "alif",
        (1, 256, 10),
        "97bc95ae4156c881e712702f8372d996808a9ebfd9f10c759bbbe0b7f26c1910",
        "994dfebfacaa93414ec249d5863b35a42110db379e05fa0859e17cc84f54246d",
        "psmnist_alif_permutation.npy",
    ),
    "shd_brf": PublishedModel(
        "shd",
        "brf",
        (700, 128, 20),
        "4d3a26f69037b4c2d3764a1060c8400173fcfb823e1b40b4390b515cdc189214",
        "126a6f78db17b1be3e8ad7d5d66dd9d3d7701bbd666496d1fe9e98da7422638b",
    ),
    "shd_vrf": PublishedModel(
        "shd",
        "vrf",
        (700, 128, 20),
        "f9890b579d3a30102ff042f31aa46f70271c3c01d360b7e1d30bd49509253a81",
        "87b5c2404cd60793c9c50bef2a01504a314363974abba838bb87c881c1bae349",
    ),
    "shd_alif": PublishedModel(
        "shd",
        "alif",
        (700, 128, 20),
        "0dfb3866cba6d5ecd650dbace9f10aa5851304cdb527168c708d4189e120a189",
        "5835d01761697634b307a5db9eaa2d4588c154e2434c70040cd8a172a5d3e639",
    ),
}

NAMES = tuple(MODELS)

# the SHA-256 of each shipped permutation, checked like the models'
_PERMUTATION_SHA256 = {
    "psmnist_brf_permutation.npy": "aa5f48bd01151d76fe4edb0369a755e0d15efabc76cd574a6fdc5d44cec264d9",
    "psmnist_alif_permutation.npy": "8aaf8f56fda0670b6674ec5296111c742cbf312ac45b38b7983d9fa5b4ee38db",
}


def _model(name: str) -> PublishedModel:
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise CheckpointError(
            f"{name!r} is not a published model; the names are {', '.join(NAMES)}"
        ) from None


@functools.cache
def _verified(file: str, sha256: str) -> str:
    """The shipped ``file``'s path, once its content is checked against ``sha256``."""
    path = os.path.join(FOLDER, file)
    try:
        digest = file_digest(path, "sha256")
    except OSError as error:
        raise CheckpointError(
            f"the published model file {path!r} cannot be read ({error}); reinstall brfjax"
        ) from None
    if digest != sha256:
        raise CheckpointError(
            f"the published model file {path!r} is damaged (SHA-256 {digest}, expected {sha256}); "
            "reinstall brfjax"
        )
    return path


def path(name: str) -> str:
    """The shipped ``.npz`` of a published model, its content checked.

    Args:
      name: one of `NAMES`, such as ``"ecg_brf"``.

    Returns:
      The absolute path of ``NAME.npz`` inside the installed package.

    Raises:
      CheckpointError: an unknown name (the names are listed), or a missing or damaged file.
    """
    return _verified(f"{name}.npz", _model(name).sha256)


def permutation_path(name: str) -> str | None:
    """The pixel order a published PS-MNIST model was trained with.

    Args:
      name: one of `NAMES`.

    Returns:
      The shipped ``NAME_permutation.npy`` (its content checked); ``"identity"`` for
      ``psmnist_vrf`` (no permutation was saved; pixels in order, as the original
      inference script feeds them); None for a model of another task.

    Raises:
      CheckpointError: an unknown name, or a missing or damaged file.
    """
    permutation = _model(name).permutation
    if permutation is None or permutation == "identity":
        return permutation
    return _verified(permutation, _PERMUTATION_SHA256[permutation])


def identity(name: str) -> dict:
    """The identity record of a published model, as ``python -m brfjax.convert`` writes
    it for the authors' ``.pt``.

    Args:
      name: one of `NAMES`.

    Returns:
      [`brfjax.interop.identity_record`][brfjax.interop.identity_record]'s dict, with the source ``{"file":
      "NAME.pt", "sha256": ...}`` of the authors' file.

    Raises:
      CheckpointError: an unknown name.
    """
    model = _model(name)
    return interop.identity_record(
        model.task,
        model.neuron,
        *model.sizes,
        source={"file": f"{name}.pt", "sha256": model.source_sha256},
    )


def load(name: str, **network_kwargs) -> tuple:
    """``(model, variables)`` of a published model, ready for ``model.apply``.

    The network is built as the paper trained it for its task (the ALIF models'
    ``sub_seq_length``, S-MNIST's ``label_last``), with the sizes read from the file.

    Args:
      name: one of `NAMES`, such as ``"ecg_brf"``.
      **network_kwargs (Any): options of [`brfjax.models.build_network`][brfjax.models.build_network] that
        replace the task's (``exact``, ``time_major``, ``return_trajectory``...).

    Returns:
      ``(model, variables)``: an unbound [`RecurrentSNN`][brfjax.models.RecurrentSNN] and its
      Flax variables (time-major inputs ``(T, B, I)`` unless ``time_major=False``).

    Raises:
      CheckpointError: an unknown name, or a missing or damaged file.
    """
    model = _model(name)
    options = {**tasks.network_options(tasks.get_task(model.task), model.neuron), **network_kwargs}
    return interop.load_reference_network(path(name), model.neuron, **options)


def _shipped_name(file: str | os.PathLike) -> str | None:
    """The published model that ``file`` is (the shipped file itself), or None."""
    folder, base = os.path.split(os.path.realpath(file))
    name = base.removesuffix(".npz")
    if folder != os.path.realpath(FOLDER) or name not in MODELS or base == name:
        return None
    return name


def recorded_identity(file: str | os.PathLike) -> dict | None:
    """The identity record of a file that is one of the shipped published models.

    Args:
      file: any path.

    Returns:
      [`identity`][brfjax.published.identity]'s record when ``file`` is a shipped ``NAME.npz`` (the file itself,
      not a copy; its content is checked), otherwise None.

    Raises:
      CheckpointError: a shipped file that is missing or damaged.
    """
    name = _shipped_name(file)
    if name is None:
        return None
    path(name)  # a damaged installation is named here, not as a wrong number later
    return identity(name)


def complete_arguments(args) -> None:
    """Resolve a command's ``--checkpoint`` that names a published model.

    A path that exists is always taken as given. A published model's name (one of
    `NAMES`) becomes its shipped ``.npz``; for a shipped PS-MNIST model the
    command's ``--permutation``, where it has one and it is not given, becomes the
    model's own ([`permutation_path`][brfjax.published.permutation_path]). The model's task and neuron are then read
    from its record ([`recorded_identity`][brfjax.published.recorded_identity]).

    Args:
      args: the parsed arguments (an ``argparse.Namespace``); ``checkpoint`` and
        ``permutation`` are completed in place.
    """
    if not os.path.exists(args.checkpoint) and args.checkpoint in MODELS:
        args.checkpoint = os.path.join(FOLDER, f"{args.checkpoint}.npz")
    name = _shipped_name(args.checkpoint)
    if name is not None and getattr(args, "permutation", "") is None:
        permutation = MODELS[name].permutation
        if permutation is not None and permutation != "identity":
            permutation = os.path.join(FOLDER, permutation)
        args.permutation = permutation
