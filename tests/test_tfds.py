"""The tensorflow-datasets MNIST backend end to end, with tensorflow-datasets itself.

The first images of the local IDX files are written as a prepared tfds ``mnist``
dataset (tfds' own MNIST builder, reading local files instead of downloading them);
``python -m brfjax.evaluate --mnist-backend tfds`` on it prints the line of the IDX
backend on the same images. Skipped where the ``brfjax[tfds]`` extra is not installed.
"""

import numpy as np
import pytest
from conftest import SHARED, checkpoint

from brfjax import evaluate, tasks

tfds = pytest.importorskip("tensorflow_datasets")

MNIST_DIR = SHARED / "data" / "mnist"
NUM_IMAGES = 300  # of each split: a few misclassified, seconds to evaluate on 2 cores


def write_tfds_mnist(data_dir, num_images):
    """The first ``num_images`` of each local IDX split as tfds' prepared ``mnist``."""
    from tensorflow_datasets.image_classification.mnist import MNIST

    class LocalMNIST(MNIST, skip_registration=True):
        name = "mnist"  # tfds' name, features and version: what tfds.load("mnist") reads

        def _split_generators(self, dl_manager):
            return [
                tfds.core.SplitGenerator(
                    name=split,
                    gen_kwargs={
                        "num_examples": num_images,
                        "data_path": str(MNIST_DIR / images),
                        "label_path": str(MNIST_DIR / labels),
                    },
                )
                for split, images, labels in (
                    (tfds.Split.TRAIN, "train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
                    (tfds.Split.TEST, "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
                )
            ]

    LocalMNIST(data_dir=str(data_dir)).download_and_prepare()


def test_evaluate_prints_the_idx_line_with_the_tfds_backend(tmp_path, capsys):
    model_path = checkpoint("smnist_brf")
    if not (MNIST_DIR / "t10k-images-idx3-ubyte").exists():
        pytest.skip(f"MNIST files not available in {MNIST_DIR} (needs ../shared)")
    write_tfds_mnist(tmp_path, NUM_IMAGES)
    capsys.readouterr()  # tfds' own report of the preparation

    code = evaluate.main(
        [
            "--task",
            "smnist",
            "--neuron",
            "brf",
            "--checkpoint",
            str(model_path),
            "--mnist-backend",
            "tfds",
        ]
        + ["--data-dir", str(tmp_path)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err

    # the IDX backend on the same images, through the evaluation the CLI runs
    task = tasks.get_task("smnist")
    model, variables, permutation = evaluate.load_for_evaluation(task, "brf", str(model_path))[:3]
    idx = tasks.load_split(task, "test", str(MNIST_DIR), "idx")
    first = idx.subset(np.arange(NUM_IMAGES))
    stats = evaluate.evaluate_dataset(
        model, variables, first, task, task.eval_batch_sizes[1], permutation
    )
    expected = evaluate.summary_line({"task": "smnist", "neuron": "brf", **stats})

    assert captured.out.strip() == expected
    assert f"/{NUM_IMAGES}), " in expected and expected.endswith(f"samples {NUM_IMAGES}")
