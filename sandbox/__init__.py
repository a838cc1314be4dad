"""Sandboxed execution of untrusted Python programs against tests (stdlib only; no JAX).

    from sandbox import Executor, Result
    with Executor(backend="gvisor", workers=None, timeout_s=10.0, memory_mb=512, trace=False) as ex:
        results = ex.run(requests)        # list[Result] in request order
        for r in ex.imap(requests): ...   # completion order
        fut = ex.submit(request)          # concurrent.futures.Future[Result]

Requests and results follow the JSONL schema of `python -m sandbox run` (see schema.py).

Security argument (details in worker.py): the verdict is computed by a judge that shares no process,
memory, file descriptor or namespace with the program; the program runs in a fresh unprivileged process
forked from a zygote that never holds anything of any request (no tests, no other program's source), and
the two exchange only plain data (codec.py).
So nothing the program does inside its own process can change what the tests compute.
"""
from .schema import (OUTPUT_CAP_CHARS, STATUSES, TEST_KINDS, RequestError, Result, parse_request)
from .backends import ProcessBackend, WorkerCrashed, WorkerLost
from .executor import Executor, make_backend
from .gvisor import GVisorUnavailable

__all__ = ["Executor", "Result", "RequestError", "parse_request", "STATUSES", "TEST_KINDS",
           "OUTPUT_CAP_CHARS", "ProcessBackend", "WorkerCrashed", "WorkerLost", "make_backend", "GVisorUnavailable"]
