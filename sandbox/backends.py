"""Backends: where worker processes live. The Executor only talks to this small interface.

    class Backend:
        isolation: str                         # value of Result.isolation
        def default_workers(self) -> int
        def start_worker(self, slot: int) -> WorkerHandle   # raises WorkerCrashed if it cannot start
        def close(self) -> None                # must leave nothing running
    class WorkerHandle:
        def execute(self, request: dict, timeout_s: float) -> dict   # result-line dict; raises WorkerCrashed
        def close(self) -> None

`request` is a normalized dict from schema.parse_request. `execute` must return within `timeout_s`
or raise WorkerCrashed (the Executor then kills the handle, starts a new one and retries once).
"""
from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import shutil
import time

SANDBOX_DIR = os.path.dirname(os.path.abspath(__file__))
# Host-side slack on top of a request's own timeout before a worker counts as hung.
HANG_SLACK_S = 5.0
STARTUP_TIMEOUT_S = 60.0
BOOT = "import sys; sys.path.insert(0, {dir!r}); import program; program.boot()"


def _libc():
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True)
    except (OSError, ImportError):
        return None


_LIBC = _libc()
PR_SET_PDEATHSIG = 1
# util-linux's setpriv (Essential on Debian): sets PR_SET_PDEATHSIG, which survives its exec of the worker.
SETPRIV = shutil.which("setpriv")


def _die_with_parent():
    """preexec_fn, only where setpriv is missing: Python code in the forked child of a multithreaded process
    (JAX's threads) is what the subprocess docs warn can deadlock, and JAX warns about it."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, 9, 0, 0, 0)


def dying_with_parent(argv: list[str]) -> tuple[list[str], dict]:
    """(argv, Popen kwargs) that start `argv` with SIGKILL due when the thread that started it dies, so a
    crashed caller leaves nothing running (`runsc run` boots its sandbox --attached, so the sandbox follows)."""
    if SETPRIV:
        return [SETPRIV, "--pdeathsig", "KILL", "--", *argv], {}
    return argv, {"preexec_fn": _die_with_parent}


class WorkerCrashed(RuntimeError):
    """A worker died, hung or broke the protocol under a request (counts against it: retried once)."""


class WorkerLost(WorkerCrashed):
    """The worker's host went away (a Ray actor or node died): not the request's doing, so the Executor
    retries it without counting, a bounded number of times."""


def local_backend(name: str, memory_mb: int, platform: str | None = None):
    """The backend of one host's sandboxes: "gvisor" (isolated; `platform`: runsc's, gvisor.PLATFORMS, default
    ptrace) or "process" (unisolated; no platform)."""
    if name == "gvisor":
        from .gvisor import GVisorBackend
        return GVisorBackend(memory_mb=memory_mb, **({"platform": platform} if platform else {}))
    if name == "process":
        if platform:
            raise ValueError("the process backend runs no runsc: it takes no platform")
        return ProcessBackend(memory_mb=memory_mb)
    raise ValueError(f"unknown sandbox backend {name!r} (expected 'gvisor', 'process' or 'ray')")


class PipeWorker:
    """A worker process speaking the line protocol of worker.py over its stdin/stdout."""

    def __init__(self, argv: list[str], env: dict, cwd: str | None = None, on_close=None,
                 startup_timeout_s: float = STARTUP_TIMEOUT_S):
        self._on_close = on_close
        self.retired = False  # the worker said it ends after its last result (see execute)
        self._buf = b""
        self._stderr = tempfile.TemporaryFile()
        argv, kwargs = dying_with_parent(argv)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
                                     env=env, cwd=cwd, close_fds=True, start_new_session=True, **kwargs)
        try:
            hello = self._read_line(time.monotonic() + startup_timeout_s)
            if not json.loads(hello).get("ready"):
                raise WorkerCrashed(f"unexpected worker greeting {hello[:200]!r}")
        except Exception:
            err = self.stderr_tail()
            self.close()
            raise WorkerCrashed(f"worker failed to start: {err or 'no output'}")

    def stderr_tail(self, n: int = 2000) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read()[-n:].decode("utf-8", "replace").strip()
        except (OSError, ValueError):
            return ""

    def _read_line(self, deadline: float) -> bytes:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise WorkerCrashed("worker did not answer in time (hung)")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:  # (its last words, a traceback say, are the tail of its stderr)
                    err = self.stderr_tail(500)
                    raise WorkerCrashed(f"worker exited (code {self.proc.poll()})" + (f": {err}" if err else ""))
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return line

    def execute(self, request: dict, timeout_s: float) -> dict:
        try:
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as e:
            raise WorkerCrashed(f"worker is gone: {e}") from None
        line = self._read_line(time.monotonic() + timeout_s)
        try:
            result = json.loads(line)
        except ValueError:
            raise WorkerCrashed(f"worker sent a malformed line: {line[:200]!r}") from None
        if not isinstance(result, dict) or result.get("id") != request["id"]:
            raise WorkerCrashed("worker answered for another request")
        # The worker ends after this result (a program's process outlived the cleanup): not a failure of this
        # request, but the host must replace the worker before the next one.
        self.retired = bool(result.pop("retire", False))
        return result

    def close(self):
        try:
            self.proc.stdin.close()
        except (OSError, ValueError):
            pass
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, 9)
                except OSError:
                    self.proc.kill()
                self.proc.wait()
        self.proc.stdout.close()
        self._stderr.close()
        if self._on_close is not None:
            self._on_close()


class ProcessBackend:
    """Workers as plain host processes: no isolation beyond rlimits and a scratch dir."""

    isolation = "process"

    def __init__(self, memory_mb: int = 512):
        self._scratch = tempfile.mkdtemp(prefix="ieta-sandbox-process-")

    def default_workers(self) -> int:
        return os.cpu_count() or 1

    def start_worker(self, slot: int) -> PipeWorker:
        env = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "IETA_SANDBOX_ISOLATION": "process",
               "IETA_SANDBOX_SCRATCH": self._scratch}
        if os.environ.get("IETA_SANDBOX_PROFILE"):
            env["IETA_SANDBOX_PROFILE"] = "1"  # debug: per-phase timings in each result (worker.PROFILE)
        argv = [sys.executable, "-I", "-S", "-c", BOOT.format(dir=SANDBOX_DIR)]
        return PipeWorker(argv, env, cwd=self._scratch)

    def close(self):
        shutil.rmtree(self._scratch, ignore_errors=True)
