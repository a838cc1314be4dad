"""Executor: a pool of long-lived workers fed from one queue, one thread per worker slot.

Every slot owns one worker (a gVisor container, a host process, or a lane to a Ray actor). This is
the one place that retries: a request whose worker crashes or hangs is retried once on a fresh
worker, then reported as `sandbox_error`; a request whose worker's host went away (WorkerLost: a Ray
actor or node died) is retried without counting, up to MAX_LOST_RETRIES times.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import os
import queue
import random
import sys
import threading
import time
import warnings
import weakref
from typing import Iterable, Iterator

from .backends import HANG_SLACK_S, WorkerCrashed, WorkerLost, local_backend
from .schema import Result, parse_request, sandbox_error

UNISOLATED_WARNING = ("sandbox backend 'process' runs untrusted programs UNISOLATED on this host "
                      "(only rlimits and a scratch dir); use backend='gvisor' for real isolation")
_STOP = object()
MAX_LOST_RETRIES = 3
ORDERS = ("random", "fifo")


class _PendingRequests:
    """The requests waiting for a slot, started in random order ("random") or as submitted ("fifo").

    Random is the default: the programs of one sandbox share its kernel, whose sandbox-wide counters (pipe and
    socket inode numbers) a program can both move and read, a few bits from each program to the next (red-team
    round 10). Samples of one task are submitted one after another; taken in an order no program can predict,
    they rarely run one after another in one sandbox, and a chain of them almost never does."""

    def __init__(self, order: str):
        self._rng = random.SystemRandom() if order == "random" else None
        self._items = [] if self._rng is not None else collections.deque()
        self._ready = threading.Condition()

    def put(self, item) -> None:
        with self._ready:
            self._items.append(item)
            self._ready.notify()

    def get(self):
        with self._ready:
            while not self._items:
                self._ready.wait()
            return self._take()

    def get_nowait(self):
        with self._ready:
            if not self._items:
                raise queue.Empty
            return self._take()

    def _take(self):
        if self._rng is None:
            return self._items.popleft()
        i = self._rng.randrange(len(self._items))
        self._items[i], self._items[-1] = self._items[-1], self._items[i]
        return self._items.pop()


def make_backend(name: str, memory_mb: int, **options):
    """Backend by name; `options` are backend-specific: the ray backend's (ray_backend.RayBackend), and `platform`
    (runsc's, gvisor.PLATFORMS) for gvisor and ray."""
    if name == "ray":
        from .ray_backend import RayBackend  # issue 6; raises an ImportError with the install hint without ray
        return RayBackend(memory_mb=memory_mb, **options)
    unknown = sorted(set(options) - ({"platform"} if name == "gvisor" else set()))
    if unknown and name in ("gvisor", "process"):
        raise ValueError(f"backend {name!r} takes no option{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}")
    return local_backend(name, memory_mb, options.get("platform"))


class Executor:
    """Runs requests (JSONL-schema dicts) in sandboxes; see the package docstring for the API."""

    def __init__(self, backend="gvisor", workers: int | None = None, timeout_s: float = 10.0,
                 memory_mb: int = 512, trace: bool = False, recycle_after: int = 2000,
                 hang_slack_s: float = HANG_SLACK_S, order: str = "random", **backend_options):
        """recycle_after: requests a worker serves before it is replaced (bounds slow leaks).
        hang_slack_s: seconds past a request's own timeout after which its worker counts as hung.
        order: in which order waiting requests start: "random" (see _PendingRequests) or "fifo" (as submitted:
        for a test or a debugging session that needs one program to run after another).
        backend_options: passed to the named backend (e.g. ray_address for backend="ray")."""
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an int >= 1 (None = the backend default), got {workers!r}")
        if order not in ORDERS:
            raise ValueError(f"order must be one of {ORDERS}, got {order!r}")
        self.timeout_s, self.memory_mb, self.trace = timeout_s, memory_mb, trace
        self.hang_slack_s = hang_slack_s
        if isinstance(backend, str):
            self.backend = make_backend(backend, memory_mb, **backend_options)
        elif backend_options:
            raise ValueError(f"backend options {sorted(backend_options)} need a backend name, not an object")
        else:
            self.backend = backend
        if self.backend.isolation == "process":
            warnings.warn(UNISOLATED_WARNING, RuntimeWarning, stacklevel=2)
            print(f"WARNING: {UNISOLATED_WARNING}", file=sys.stderr)
        self.workers = workers or self.backend.default_workers()
        self.recycle_after = recycle_after
        self.failed_attempts = 0  # worker failures seen (each one retried once, then sandbox_error)
        self.recent_failures: collections.deque = collections.deque(maxlen=20)  # (request id, error), newest last
        self._count_lock = threading.Lock()
        self._queue = _PendingRequests(order)
        self._closed = False
        # Slot 0 starts its sandbox first and the constructor waits for it, so that a broken runtime (e.g. runsc
        # cannot start) fails the constructor loudly. It starts in the slot's own thread: a sandbox dies with
        # the thread that started it (parent-death signal), and the caller's thread may end before the Executor.
        first: cf.Future = cf.Future()
        self._threads = [threading.Thread(target=self._serve, args=(i, first if i == 0 else None),
                                          name=f"sandbox-slot-{i}", daemon=True) for i in range(self.workers)]
        self._threads[0].start()
        try:
            first.result()
        except BaseException:  # its error, or Ctrl-C while waiting: nothing is left running
            self._queue.put(_STOP)
            self._threads[0].join()
            self.backend.close()
            raise
        for t in self._threads[1:]:
            t.start()
        # Runs on close(), on garbage collection, or at interpreter exit (finalize's atexit hook).
        self._finalizer = weakref.finalize(self, Executor._shutdown, self._queue, self._threads, self.backend,
                                           os.getpid())

    # public API -------------------------------------------------------------
    def submit(self, request: dict) -> cf.Future:
        """Queue one request; returns a Future[Result]. Raises RequestError for an invalid request."""
        if self._closed:
            raise RuntimeError("Executor is closed")
        req = parse_request(request, timeout_s=self.timeout_s, memory_mb=self.memory_mb, trace=self.trace)
        fut: cf.Future = cf.Future()
        self._queue.put((fut, req))
        return fut

    def imap(self, requests: Iterable[dict]) -> Iterator[Result]:
        """Yield Results in completion order (every slot stays busy)."""
        futs = [self.submit(r) for r in requests]
        for f in cf.as_completed(futs):
            yield f.result()

    def run(self, requests: Iterable[dict]) -> list[Result]:
        """Results in request order."""
        futs = [self.submit(r) for r in requests]
        return [f.result() for f in futs]

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._finalizer()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # internals --------------------------------------------------------------
    @staticmethod
    def _shutdown(q, threads, backend, owner_pid):
        if os.getpid() != owner_pid:
            return  # a forked copy of the caller must not tear down the parent's sandboxes
        # Requests not started yet are cancelled; running ones finish (bounded by their timeouts).
        while True:
            try:
                item = q.get_nowait()
            except queue.Empty:
                break
            if item is not _STOP:
                item[0].cancel()
        for _ in threads:
            q.put(_STOP)
        for t in threads:
            t.join(timeout=30)
        backend.close()

    def _serve(self, slot: int, started: cf.Future | None) -> None:
        """One slot's loop. `started` (slot 0): set once its first sandbox is up, or to the error that
        stopped it, which ends this slot."""
        iso = self.backend.isolation
        served = 0
        worker = None
        if started is not None:
            try:
                worker = self.backend.start_worker(slot)
            except BaseException as e:
                started.set_exception(e)
                return
            started.set_result(None)
        try:
            while True:
                item = self._queue.get()
                if item is _STOP:
                    return
                fut, req = item
                if not fut.set_running_or_notify_cancel():
                    continue
                t0 = time.monotonic()
                result, error = None, None
                crashes = lost = 0
                while crashes < 2 and lost <= MAX_LOST_RETRIES:
                    try:
                        if worker is None:
                            worker, served = self.backend.start_worker(slot), 0
                        result = Result.from_dict(worker.execute(req, req["timeout_s"] + self.hang_slack_s))
                        served += 1
                        if result.status == "sandbox_error":  # the worker itself failed: treat it as poisoned
                            raise WorkerCrashed(f"worker error: {result.error_message}")
                        break
                    except Exception as e:  # WorkerCrashed, or the runtime failed to start a sandbox
                        error, result = e, None
                        if isinstance(e, WorkerLost):
                            lost += 1
                        else:
                            crashes += 1
                        with self._count_lock:
                            self.failed_attempts += 1
                            self.recent_failures.append((req["id"], f"{type(e).__name__}: {e}"[:500]))
                        if worker is not None:
                            _close_quietly(worker)
                            worker = None
                if result is None:
                    what = "twice" if crashes >= 2 else f"{lost} times (host lost)"
                    result = sandbox_error(req["id"], f"sandbox failed {what}: {error}", iso,
                                           round(time.monotonic() - t0, 6))
                fut.set_result(result)
                if worker is not None and (served >= self.recycle_after or getattr(worker, "retired", False)):
                    _close_quietly(worker)
                    worker = None
        finally:
            if worker is not None:
                _close_quietly(worker)


def _close_quietly(worker) -> None:
    try:
        worker.close()
    except Exception:
        pass


__all__ = ["Executor", "WorkerCrashed", "WorkerLost", "make_backend"]
