"""Every matrix product of the training and evaluation steps asks for full float32
precision, so that on GPUs XLA does not use TF32 (its default for float32 products
there; 10-bit mantissas would change spikes). Checked on the platform-independent
program JAX hands to XLA (StableHLO), the same on CPU and GPU."""

import jax.numpy as jnp
import pytest

from brfjax import steps, tasks

STEPS, BATCH = 12, 4


def dot_lines(lowered) -> list[str]:
    return [
        line.strip() for line in lowered.as_text().splitlines() if "stablehlo.dot_general" in line
    ]


def lowered_steps(task_name: str, neuron: str, backward: str):
    config = tasks.config_for(task_name, neuron, batch_size=BATCH)
    model = tasks.build_model(config).clone(backward=backward)
    optimizer = steps.make_optimizer(config)
    state, constants = steps.init_state(config, model, optimizer)
    task = tasks.get_task(task_name)
    inputs = jnp.zeros((STEPS, BATCH, task.input_size))
    target_shape = (
        (STEPS - model.sub_seq_length, BATCH) if task.objective == "per_step" else (BATCH,)
    )
    targets = jnp.zeros(target_shape, jnp.int32)
    train_step = steps.make_train_step(model, optimizer, task.objective, constants)
    eval_step = steps.make_eval_step(model, task.objective)
    return {
        "train": train_step.lower(state, inputs, targets, jnp.float32(0.01)),
        "eval": eval_step.lower({"params": state.params, **constants}, inputs, targets),
    }


@pytest.mark.parametrize(
    "task_name, neuron, backward",
    [("shd", neuron, "manual") for neuron in tasks.NEURON_NAMES]
    + [("ecg", "brf", backward) for backward in ("manual", "autodiff", "recompute")],
)
def test_every_product_is_full_float32(task_name, neuron, backward):
    for name, lowered in lowered_steps(task_name, neuron, backward).items():
        dots = dot_lines(lowered)
        assert len(dots) >= 2, name  # the input/recurrent product and the readout's at least
        for line in dots:
            assert "precision = [HIGHEST, HIGHEST]" in line, f"{name}: {line[:300]}"
