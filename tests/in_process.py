"""A command-line program's ``main(argv)`` run in the test process, seen as a subprocess would be.

Starting ``python -m brfjax.X`` costs an interpreter, the JAX/Flax imports and a cold
in-memory compilation cache each time; where no process boundary is under test (exit
status and printed lines are), calling ``main(argv)`` checks the same. Tests of what only
a fresh process shows (signals, kills, device counts set before JAX starts, the
``python -m`` entry points themselves) start real subprocesses.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterable, Sequence

import jax
import pytest


def run_main(
    main: Callable[[Sequence[str] | None], int | None],
    args: Iterable[object],
    capfd: pytest.CaptureFixture[str] | None = None,
) -> subprocess.CompletedProcess:
    """Run ``main(argv)`` as ``sys.exit(main())`` under ``python -m`` would, in this process.

    Args:
        main: a program's entry function, ``main(argv) -> exit status`` (e.g.
            ``brfjax.train.main``); an argparse error leaves it by ``SystemExit``.
        args: the command-line arguments, each converted with ``str``.
        capfd: pytest's ``capfd`` fixture. It captures file descriptors 1 and 2, not only
            ``sys.stdout``/``sys.stderr``, so output written below Python (XLA's C++ log)
            is seen as a subprocess's pipes would see it. ``None`` (in a module-scoped
            fixture, which has no ``capfd``) leaves the output to pytest's own capture.

    Returns:
        A ``subprocess.CompletedProcess``: ``returncode`` is main's return value or the
        ``SystemExit`` status (``None`` counts as 0, as for a process), ``stdout`` and
        ``stderr`` the text written during the call (``None`` without ``capfd``).
    """
    # JAX's backends start before main: the CLIs' use_every_core can then no longer
    # change this test process's device count, whatever test ran first in it
    jax.devices()
    argv = [str(arg) for arg in args]
    if capfd is not None:
        capfd.readouterr()  # what earlier code wrote is not this call's output
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    stdout, stderr = capfd.readouterr() if capfd is not None else (None, None)
    return subprocess.CompletedProcess(argv, 0 if status is None else status, stdout, stderr)
