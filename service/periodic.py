"""A background thread that runs one pass of work every ``interval_s`` seconds until stopped:
the server's lease reaper and webhook deliverer are both of this kind."""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


class PeriodicTask:
    """Calls :meth:`tick` every ``interval_s`` seconds in a daemon thread; an exception in one
    pass is logged and the next pass runs as usual (a transient database error must not stop
    the loop). ``interval_s <= 0`` means never start."""

    #: The thread's name, as shown by ``py-spy`` and in logs.
    thread_name = "assay-periodic"
    #: How long :meth:`stop` waits for a pass in progress.
    join_timeout_s = 5.0

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=self.thread_name, daemon=True)

    def tick(self) -> None:
        """One pass of the work."""
        raise NotImplementedError

    def start(self) -> None:
        if self.interval_s > 0:
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=self.join_timeout_s)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.tick()
            except Exception:  # keep going after a transient error
                log.exception("%s: pass failed", self.thread_name)
