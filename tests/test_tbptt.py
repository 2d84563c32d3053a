"""Truncated BPTT (brfjax.steps.tbptt_batch): the paper's chunks (an update after every
step t with t % L == 0, t = 0 included, and after the last step), each chunk scoring its
own steps, for per-step targets and for networks that leave their first sub_seq_length
steps unscored; a chunk that covers the sequence is the full-BPTT update, bit for bit."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from brfjax import metrics, steps, tasks
from brfjax.batches import device_batch
from brfjax.data import SequenceData
from brfjax.parallel import DataParallel

T, B = 24, 4
LR = np.float32(0.05)


@pytest.fixture(autouse=True)
def standard_promotion():
    """optax's Adam raises a float to an int32 step count, which strict promotion refuses."""
    with jax.numpy_dtype_promotion("standard"):
        yield


def ecg_data(seed=0) -> SequenceData:
    rng = np.random.default_rng(seed)
    inputs = (rng.uniform(size=(B, T, 4)) < 0.3).astype(np.float32)
    return SequenceData(inputs, rng.integers(0, 6, (B, T)).astype(np.int32))


def shd_data(seed=0) -> SequenceData:
    rng = np.random.default_rng(seed)
    inputs = (rng.uniform(size=(B, T, 700)) < 0.05).astype(np.uint8)
    return SequenceData(inputs, rng.integers(0, 20, B).astype(np.int32))


def smnist_data(steps, seed=0) -> SequenceData:
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 256, (B, steps, 1)).astype(np.uint8)
    return SequenceData(pixels, rng.integers(0, 10, B).astype(np.int32))


class Run:
    """A small network of ``task`` x ``neuron`` (8 hidden neurons) and its train step."""

    def __init__(self, task_name, neuron, **overrides):
        self.config = tasks.config_for(
            task_name, neuron, hidden_sizes=(8,), batch_size=B, **overrides
        )
        self.task = tasks.get_task(task_name)
        self.model = tasks.build_model(self.config)
        self.optimizer = steps.make_optimizer(self.config)
        self.initial, self.constants = steps.init_state(self.config, self.model, self.optimizer)
        self.train_step = steps.make_train_step(
            self.model, self.optimizer, self.task.objective, self.constants
        )
        self.parallel = DataParallel(1)

    def fresh_state(self):
        """A copy of the initial state (a train step donates the state it is given)."""
        return jax.tree_util.tree_map(jnp.array, self.initial)

    def full(self, data):
        batch = device_batch(self.parallel, self.task, self.model, data, np.arange(B))
        state, result = self.train_step(
            self.fresh_state(), batch.inputs, batch.targets, LR, None, batch.weights
        )
        return state, result

    def chunked(self, data, length, step=None):
        return steps.tbptt_batch(
            self.model,
            step or self.train_step,
            self.fresh_state(),
            data,
            np.arange(B),
            LR,
            length,
            self.task,
            self.parallel,
        )


@functools.cache
def run_of(task_name, neuron):
    """One :class:`Run` per task x neuron for the whole module: its compiled steps are reused."""
    return Run(task_name, neuron)


def recording(train_step, calls):
    """``train_step`` that records each call's chunk and result."""

    def step(state, inputs, targets, lr, initial_state=None, weights=None, start_step=None):
        state, result = train_step(state, inputs, targets, lr, initial_state, weights, start_step)
        calls.append(
            {
                "steps": inputs.shape[0],
                "targets": tuple(targets.shape),
                "start_step": start_step,
                "from_rest": initial_state is None,
                "loss": float(result.loss),
                "params": jax.tree_util.tree_map(np.asarray, state.params),
            }
        )
        return state, result

    return step


def assert_same_bits(a, b):
    leaves_a, leaves_b = jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)
    assert len(leaves_a) == len(leaves_b)
    for x, y in zip(leaves_a, leaves_b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_tbptt_chunks_follow_the_paper_and_merge_unscored_steps():
    chunks = steps.tbptt_chunks(784, 50)
    assert len(chunks) == 17 and chunks[:2] == [(0, 1), (1, 51)] and chunks[-1] == (751, 784)
    # ALIF on ECG leaves 10 steps unscored: no update before a scored step
    chunks = steps.tbptt_chunks(1300, 50, sub_seq_length=10)
    assert chunks[:2] == [(0, 51), (51, 101)] and chunks[-1] == (1251, 1300)
    assert len(chunks) == 26
    assert steps.tbptt_chunks(T, T, sub_seq_length=10) == [(0, T)]
    assert steps.tbptt_chunks(T, 1000, sub_seq_length=10) == [(0, T)]
    assert steps.tbptt_chunks(T, 1000) == [(0, 1), (1, T)]  # the paper's update after step 0
    for num_steps, length, skipped in ((784, 50, 0), (1300, 50, 10), (T, 8, 10), (T, 7, 0)):
        chunks = steps.tbptt_chunks(num_steps, length, skipped)
        assert chunks[0][0] == 0 and chunks[-1][1] == num_steps
        assert all(a[1] == b[0] for a, b in zip(chunks, chunks[1:]))
        assert all(stop - 1 >= skipped for _, stop in chunks)  # every chunk scores a step


@pytest.mark.parametrize(
    "task_name, data, length",
    [("ecg", ecg_data, T), ("shd", shd_data, 1000)],
    ids=["ecg-per-step", "shd-sequence"],
)
def test_one_chunk_is_the_full_bptt_update_bit_for_bit(task_name, data, length):
    """ALIF leaves its first 10 steps unscored: a chunk length >= T is one chunk."""
    run = run_of(task_name, "alif")
    assert run.model.sub_seq_length == 10
    full_state, result = run.full(data())
    state, loss, sums, health = run.chunked(data(), length)
    assert_same_bits(state, full_state)
    assert loss == float(result.loss)
    for name in ("correct", "scored"):
        assert float(getattr(sums, name)) == float(getattr(result.sums, name))
    np.testing.assert_array_equal(np.asarray(sums.spikes), np.asarray(result.sums.spikes))
    np.testing.assert_array_equal(health, np.asarray(result.health))


def test_chunks_score_their_own_per_step_targets_after_sub_seq_length():
    run = run_of("ecg", "alif")
    data = ecg_data()
    calls = []
    state, loss, sums, _ = run.chunked(data, 8, recording(run.train_step, calls))
    # updates after steps 16 and 23: steps 0..9 unscored join the first chunk
    assert [(c["steps"], c["targets"], c["start_step"], c["from_rest"]) for c in calls] == [
        (17, (7, B), None, True),
        (7, (7, B), 10, False),
    ]
    assert int(state.opt_state.count) == 2
    assert float(sums.scored) == B * (T - 10)  # each scored step once
    assert loss == pytest.approx(calls[0]["loss"] + calls[1]["loss"], rel=1e-6)
    # the first chunk starts at rest with the initial parameters: its loss is that of the
    # whole sequence's readouts of steps 10..16
    variables = {"params": run.fresh_state().params, **run.constants}
    inputs = tasks.model_inputs(run.task, data.inputs)
    readouts = jax.jit(run.model.apply)(variables, inputs).readouts  # steps 10..23
    expected = metrics.summed_loss(readouts[:7], data.targets[:, 10:17].T)
    assert calls[0]["loss"] == pytest.approx(float(expected), rel=1e-5)


def test_sub_seq_length_zero_keeps_the_papers_update_after_step_zero():
    run = run_of("ecg", "brf")
    data = ecg_data()
    calls = []
    state, _, sums, _ = run.chunked(data, 1000, recording(run.train_step, calls))
    assert [(c["steps"], c["targets"], c["start_step"]) for c in calls] == [
        (1, (1, B), None),
        (T - 1, (T - 1, B), None),
    ]
    assert int(state.opt_state.count) == 2 and float(sums.scored) == B * T
    # the first update is the full-BPTT update of step 0 alone
    first = SequenceData(data.inputs[:, :1], data.targets[:, :1])
    after_step_zero, _ = run.full(first)
    assert_same_bits(calls[0]["params"], after_step_zero.params)


def test_label_last_chunks_match_an_explicit_loop_of_the_papers_rule():
    """S-MNIST ALIF (label-last, sub 0): after every step t with t % L == 0 and after the
    last, the loss of that step alone is back-propagated through its chunk, Adam steps,
    and the state goes on without gradient."""
    run = Run("smnist", "alif", tbptt_length=10)
    data = smnist_data(21)  # updates after steps 0, 10 and 20
    state, loss, sums, _ = run.chunked(data, 10)
    assert int(state.opt_state.count) == 3

    inputs = tasks.model_inputs(run.task, data.inputs)
    params = run.fresh_state().params
    adam = optax.scale_by_adam(b1=0.9, b2=0.999, eps=1e-8)

    @jax.jit
    def chunk_loss_and_grad(params, chunk, carry):
        def chunk_loss(params):
            output = run.model.apply({"params": params, **run.constants}, chunk, carry)
            last = output.readouts[-1]  # the chunk's last step only
            nll = -jax.nn.log_softmax(last)[np.arange(B), data.targets]
            return nll.mean(), jax.lax.stop_gradient(output.final_state)

        return jax.value_and_grad(chunk_loss, has_aux=True)(params)

    opt_state, carry, losses = adam.init(params), None, []
    for start, stop in ((0, 1), (1, 11), (11, 21)):
        (value, carry), grads = chunk_loss_and_grad(params, inputs[start:stop], carry)
        updates, opt_state = adam.update(grads, opt_state, params)
        params = jax.tree_util.tree_map(lambda p, u: p - LR * u, params, updates)
        losses.append(float(value))
    assert loss == pytest.approx(sum(losses), rel=1e-5)
    # train_loss is per scored step as the validation loss: here 3 chunks score one step each
    from brfjax import train

    assert train._scored_loss_terms(run.model, 21, 10) == 3
    assert train._scored_loss_terms(run.model, 21, 0) == 1
    for ours, reference in zip(
        jax.tree_util.tree_leaves(state.params), jax.tree_util.tree_leaves(params)
    ):
        np.testing.assert_allclose(np.asarray(ours), np.asarray(reference), rtol=1e-5, atol=1e-7)
    assert float(sums.scored) == B
