"""Run a CPU-bound step in one long-lived worker process, beside the GIL-bound classifier instead of after it.

Scoring a 5,000-ticket backfill chunk is: text cleaning + TF-IDF + logistic regression (holds the GIL), VADER
(pure Python, holds the GIL) and lingua (Rust). On a 2-CPU machine the classifier keeps one core busy; VADER and a
single-threaded lingua each in their own process use the other core instead of queueing for the GIL or
fighting the classifier for both cores. The result is the same: only where the function runs changes.

A worker is created once per process (``tasks.scoring`` caches it), starts with ``forkserver``/``spawn`` (never
``fork``: the parent runs threads), exits when its parent dies even by SIGKILL, and if it dies itself the call
is run in-process with the same function and the worker is flagged ``broken`` so the caller replaces it.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

_FN: Callable[..., Any] | None = None


def _init(fn: Callable[..., Any]) -> None:
    """Runs in the worker: keep the function, and exit as soon as the parent is gone (no orphans)."""
    global _FN
    _FN = fn
    parent = multiprocessing.parent_process()
    if parent is not None:
        def watch() -> None:
            multiprocessing.connection.wait([parent.sentinel])
            os._exit(0)

        threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _call(*args: Any) -> Any:
    return _FN(*args)


def _peak_rss_mb() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def can_start_workers() -> bool:
    """False inside a daemonic process (e.g. a Dask worker), which may not have children: run in-process."""
    return not multiprocessing.current_process().daemon


class ProcessWorker:
    """``fn`` (picklable: a module-level function, a bound method of a picklable object, a partial) run in one
    separate process. Call ``submit`` for a Future, or use ``start``/``finish`` below."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn
        self.broken = False
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context(method), initializer=_init,
                                         initargs=(fn,))

    def submit(self, *args: Any) -> Future:
        try:
            return self._pool.submit(_call, *args)
        except BrokenProcessPool:
            self.broken = True
            raise

    def peak_rss_mb(self) -> float:
        """The worker process's peak resident memory (for benchmarks)."""
        return self._pool.submit(_peak_rss_mb).result()

    def __call__(self, *args: Any) -> Any:
        return finish(self, start(self, *args), *args)

    def close(self) -> None:
        self.broken = True  # a closed worker is replaced like a dead one by whoever caches it
        self._pool.shutdown(wait=True, cancel_futures=True)


def start(fn: Callable[..., Any], *args: Any, executor: Executor | None = None) -> Future:
    """Begin ``fn(*args)``: in its worker process for a ``ProcessWorker``, else on ``executor`` (a thread) or,
    without one, right here (an already finished future)."""
    if isinstance(fn, ProcessWorker):
        try:
            return fn.submit(*args)
        except BrokenProcessPool:
            fn = fn.fn
    if executor is not None:
        return executor.submit(fn, *args)
    done: Future = Future()
    done.set_result(fn(*args))
    return done


def finish(fn: Callable[..., Any], future: Future, *args: Any) -> Any:
    """The result of ``start``; if the worker process died meanwhile, the same function runs in-process."""
    try:
        return future.result()
    except BrokenProcessPool:
        if isinstance(fn, ProcessWorker):
            fn.broken = True
            return fn.fn(*args)
        raise
