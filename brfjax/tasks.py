"""The paper's tasks: data shapes, objective and per-neuron network options (spec §4).

``TASKS[name]`` describes a task; :func:`network_options` gives the
:func:`brfjax.models.build_network` options the paper used for a task x neuron.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from brfjax import metrics
from brfjax.data import ecg
from brfjax.data.ecg import SequenceData


@dataclass(frozen=True)
class TaskSpec:
    """Shape and protocol of one task.

    ``alif_sub_seq_length``: leading steps run but not scored for ALIF (0 otherwise).
    ``load``: ``(split, data_dir) -> SequenceData`` for ``split`` in train/test.
    """

    name: str
    input_size: int
    hidden_size: int
    num_classes: int
    num_steps: int
    objective: str
    label_last: bool
    alif_sub_seq_length: int
    load: Callable[[str, Optional[str]], SequenceData]


TASKS: dict[str, TaskSpec] = {
    "ecg": TaskSpec(
        name="ecg",
        input_size=ecg.NUM_CHANNELS,
        hidden_size=36,
        num_classes=ecg.NUM_CLASSES,
        num_steps=ecg.NUM_STEPS,
        objective=metrics.PER_STEP,
        label_last=False,
        alif_sub_seq_length=10,
        load=ecg.load_ecg,
    ),
}

NEURON_NAMES = ("brf", "vrf", "bhrf", "alif")


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise ValueError(f"unknown task {name!r}; expected one of {sorted(TASKS)}") from None


def network_options(task: TaskSpec, neuron: str) -> dict:
    """``sub_seq_length`` and ``label_last`` of the paper's network for ``task`` x ``neuron``."""
    if neuron not in NEURON_NAMES:
        raise ValueError(f"unknown neuron {neuron!r}; expected one of {list(NEURON_NAMES)}")
    return {
        "sub_seq_length": task.alif_sub_seq_length if neuron == "alif" else 0,
        "label_last": task.label_last,
    }
