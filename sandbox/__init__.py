"""Sandboxed execution of untrusted Python programs against tests (stdlib only; no JAX).

    from sandbox import Executor, Result
    with Executor(backend="gvisor", workers=None, timeout_s=10.0, memory_mb=512, trace=False) as ex:
        results = ex.run(requests)        # list[Result] in request order
        for r in ex.imap(requests): ...   # completion order
        fut = ex.submit(request)          # concurrent.futures.Future[Result]

Requests and results follow the JSONL schema of `python -m sandbox run` (see schema.py).
"""
from .schema import (OUTPUT_CAP_CHARS, STATUSES, TEST_KINDS, RequestError, Result, parse_request)
from .backends import ProcessBackend, WorkerCrashed
from .executor import Executor, make_backend
from .gvisor import GVisorUnavailable

__all__ = ["Executor", "Result", "RequestError", "parse_request", "STATUSES", "TEST_KINDS",
           "OUTPUT_CAP_CHARS", "ProcessBackend", "WorkerCrashed", "make_backend", "GVisorUnavailable"]
