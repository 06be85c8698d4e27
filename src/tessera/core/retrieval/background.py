"""Background threads of the in-memory indexes, and waiting for them (tests, benchmarks)."""

from __future__ import annotations

import threading
import time


def wait_for_jobs(jobs: set[threading.Thread], lock: threading.Lock, timeout: float | None) -> bool:
    """Wait until `jobs` (guarded by `lock`) is empty, joining each; False on timeout."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with lock:
            pending = list(jobs)
        if not pending:
            return True
        for job in pending:
            job.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if deadline is not None and time.monotonic() >= deadline:
            with lock:
                return not jobs
