"""Stopping a training run cleanly on a signal.

Cluster schedulers send ``SIGTERM`` some time before they kill a job (at the end of its
wall time, or when it is preempted); an interactive user presses Ctrl-C (``SIGINT``).
While a [`StopSignals`][brfjax.stopping.StopSignals] is active, the first of these signals only records a
request; the training loop polls it between steps, writes a checkpoint of its position
and ends with the conventional exit status ``128 + signal number`` (143 for SIGTERM, 130
for SIGINT). A second signal of the same kind acts as it would without brfjax (Ctrl-C
twice raises ``KeyboardInterrupt`` at once, without a checkpoint).
"""

from __future__ import annotations

import signal
import sys
import threading

SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopSignals:
    """Context manager that turns the first SIGTERM/SIGINT into a stop request.

    Handlers can only be installed from the main thread; elsewhere (e.g. a notebook's
    worker thread) the context does nothing and [`requested`][brfjax.stopping.StopSignals.requested] stays False.

    Attributes:
        signum: the number of the first signal received, or None.
    """

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in SIGNALS:
                # a signal the process was started to ignore (e.g. SIGINT of a shell's
                # background job) stays ignored
                if signal.getsignal(signum) is not signal.SIG_IGN:
                    self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc_info) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame) -> None:
        self.signum = signum
        # the next signal of this kind takes its usual effect (abort without checkpoint)
        signal.signal(
            signum, signal.default_int_handler if signum == signal.SIGINT else signal.SIG_DFL
        )
        print(
            f"{self.name}: stopping after the current training step to write a checkpoint "
            f"(send {self.name} again to abort without one)",
            file=sys.stderr,
            flush=True,
        )

    @property
    def requested(self) -> bool:
        """True once a signal has arrived."""
        return self.signum is not None

    @property
    def name(self) -> str:
        """The signal's name, e.g. ``"SIGTERM"`` (empty before any signal)."""
        return "" if self.signum is None else signal.Signals(self.signum).name

    @property
    def exit_status(self) -> int:
        """``128 + signal number``: what a shell reports for a process ended by the signal.

        Raises:
          RuntimeError: no signal was received yet.
        """
        if self.signum is None:
            raise RuntimeError("no signal was received")
        return 128 + self.signum
