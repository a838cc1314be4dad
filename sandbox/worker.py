"""Long-lived worker: one request per stdin line in, one result per stdout line out.

Runs inside a gVisor container (or, for the `process` backend, directly on the host). Each request
runs in a fresh forked child with CPU-time, address-space, file-size and process limits, a private
scratch directory, a clean environment and (in gVisor) an unprivileged uid. The wall-clock limit
and the output-size limit are enforced here, outside the child, by SIGKILL; afterwards every
descendant of the worker is killed, so nothing a program started survives into the next request.
The verdict is assembled here from the harness's nonce-tagged records (see harness.py).

Usage: python -I -S worker.py   (stdlib only; must not import the host-side package)
"""
from __future__ import annotations

import json
import os
import secrets
import select
import shutil
import signal
import sys
import tempfile
import time

try:
    from . import harness
    from .schema import OUTPUT_CAP_CHARS, OUTPUT_LIMIT_BYTES
except ImportError:  # loaded flat inside the sandbox
    import harness
    from schema import OUTPUT_CAP_CHARS, OUTPUT_LIMIT_BYTES

try:
    import resource
except ImportError:  # pragma: no cover - non-Unix
    resource = None

SCRATCH_FILE_LIMIT = 16 << 20     # RLIMIT_FSIZE: largest file a program may write
CHILD_NPROC = 32                  # RLIMIT_NPROC for the unprivileged child uid
EXIT_GRACE_S = 0.2                # after the child exits, how long stray holders of its pipes may keep them open
PR_SET_CHILD_SUBREAPER = 36


def _set_subreaper():
    """Become the reaper of orphaned descendants, and cap glibc malloc arenas (inherited by
    children) so threaded programs do not exhaust RLIMIT_AS with 64 MiB-per-thread arenas."""
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
        libc.mallopt(-8, 2)  # M_ARENA_MAX
    except Exception:
        pass


def _descendants(root: int) -> list[int]:
    """All live descendants of `root` (reads /proc; works on Linux and in gVisor)."""
    parent = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read()
            ppid = int(stat[stat.rindex(b")") + 2:].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        parent[int(name)] = ppid
    out, frontier = [], {root}
    while frontier:
        nxt = {p for p, pp in parent.items() if pp in frontier and p not in out}
        out.extend(nxt)
        frontier = nxt
    return out


def kill_descendants(rounds: int = 50):
    """SIGKILL every descendant (orphans are re-parented to us as subreaper / init), then reap."""
    me = os.getpid()
    for _ in range(rounds):
        pids = _descendants(me)
        for p in pids:
            try:
                os.kill(p, signal.SIGKILL)
            except OSError:
                pass
        _reap()
        if not pids:
            return


def _reap():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def _child(req, res_w, out_w, err_w, scratch, uid, nonce):
    """Runs in the forked child; never returns."""
    try:
        os.setsid()
        fd = 100 + secrets.randbelow(800)
        os.dup2(res_w, fd)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        os.dup2(out_w, 1)
        os.dup2(err_w, 2)
        # Close every other inherited fd. Listing /proc/self/fd costs a few syscalls where a blind
        # closerange(3, 4096) costs thousands under gVisor's ptrace platform.
        for name in os.listdir("/proc/self/fd"):
            n = int(name)
            if n > 2 and n != fd:
                try:
                    os.close(n)
                except OSError:
                    pass
        os.chdir(scratch)
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        if resource is not None:
            cpu = int(req["timeout_s"]) + 1
            mem = req["memory_mb"] << 20
            for lim, val in ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (mem, mem)),
                             (resource.RLIMIT_FSIZE, (SCRATCH_FILE_LIMIT, SCRATCH_FILE_LIMIT)),
                             (resource.RLIMIT_CORE, (0, 0))):
                try:
                    resource.setrlimit(lim, val)
                except (ValueError, OSError):
                    pass
        if uid is not None:
            if resource is not None:
                resource.setrlimit(resource.RLIMIT_NPROC, (CHILD_NPROC, CHILD_NPROC))
            os.setgroups([])
            os.setgid(uid)
            os.setuid(uid)
        os.environ.clear()
        os.environ.update({"PATH": "/usr/bin:/bin", "HOME": scratch, "TMPDIR": scratch, "LANG": "C.UTF-8"})
        sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
        sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False, buffering=1)
        sys.stdin = open(0, "r", closefd=False)
        sys.argv = ["solution.py"]
        harness.run(req, fd, nonce, OUTPUT_LIMIT_BYTES)
    finally:
        os._exit(70)


def _cap(b: bytes) -> str:
    s = b.decode("utf-8", "replace")
    if len(s) > OUTPUT_CAP_CHARS:
        s = s[:OUTPUT_CAP_CHARS] + "...[truncated]"
    return s


class Worker:
    def __init__(self, scratch_root: str | None = None, child_uid: int | None = None,
                 isolation: str = "process", control_fd: int | None = None):
        self.scratch_root = scratch_root or tempfile.gettempdir()
        self.child_uid = child_uid
        self.isolation = isolation
        self.control_fd = control_fd  # readable during a run only when the host went away (EOF)
        self.host_gone = False

    def _collect_partial_trace(self, pid: int, res_r: int, buf: bytearray) -> None:
        """Ask a timed-out child for its trace so far (SIGUSR1, harness handler), briefly."""
        try:
            os.kill(pid, signal.SIGUSR1)
        except OSError:
            return
        _read_until(res_r, buf, _has_trace_record, PARTIAL_TRACE_WAIT_S)

    def run(self, req: dict) -> dict:
        t0 = time.monotonic()
        nonce = secrets.token_hex(16)
        scratch = tempfile.mkdtemp(prefix="run-", dir=self.scratch_root)
        if self.child_uid is not None:
            os.chown(scratch, self.child_uid, self.child_uid)
        res_r, res_w = os.pipe()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        pid = os.fork()
        if pid == 0:
            _child(req, res_w, out_w, err_w, scratch, self.child_uid, nonce)
        for fd in (res_w, out_w, err_w):
            os.close(fd)
        bufs = {res_r: bytearray(), out_r: bytearray(), err_r: bytearray()}
        open_fds = set(bufs)
        deadline = t0 + req["timeout_s"]
        status = None          # exit status of the direct child
        cpu_s = 0.0
        exited_at = None
        timed_out = output_exceeded = False
        idle = 0
        while True:
            now = time.monotonic()
            if status is None:
                wpid, st, ru = os.wait4(pid, os.WNOHANG)
                if wpid:
                    status, exited_at, cpu_s = st, now, ru.ru_utime + ru.ru_stime
            if status is not None and (not open_fds or now - exited_at > EXIT_GRACE_S):
                break
            if now >= deadline:
                timed_out = status is None
                break
            watch = list(open_fds)
            if self.control_fd is not None:
                watch.append(self.control_fd)
            if status is None:
                # all pipes closed: the child is exiting, poll wait4 quickly
                wait = 0.05 if open_fds else 0.0005 * (1 << min(idle, 6))
                idle += not open_fds
            else:
                wait = EXIT_GRACE_S
            wait = min(deadline - now, wait)
            ready, _, _ = select.select(watch, [], [], max(wait, 0.0))
            for fd in ready:
                if fd == self.control_fd:
                    self.host_gone = True
                    continue
                chunk = os.read(fd, 65536)
                if not chunk:
                    open_fds.discard(fd)
                    continue
                if fd == res_r and len(bufs[res_r]) > 16 * OUTPUT_LIMIT_BYTES:
                    continue  # harness records are bounded; a flood is a forgery attempt
                bufs[fd] += chunk
            if len(bufs[out_r]) + len(bufs[err_r]) > OUTPUT_LIMIT_BYTES:
                output_exceeded = status is None
                break
            if self.host_gone:
                break
        if timed_out and req.get("trace") and res_r in open_fds:
            self._collect_partial_trace(pid, res_r, bufs[res_r])
        # Kill the child and everything it started, then collect what is left in the pipes.
        for kill in (os.killpg, os.kill):  # the child's process group first: one syscall for a fork bomb
            try:
                kill(pid, signal.SIGKILL)
            except OSError:
                pass
        if status is None:
            try:
                _, status, ru = os.wait4(pid, 0)
                cpu_s = ru.ru_utime + ru.ru_stime
            except ChildProcessError:
                status = None
        kill_descendants()
        for fd in bufs:
            if fd in open_fds:
                os.set_blocking(fd, False)
                try:
                    while len(bufs[fd]) < 2 * OUTPUT_LIMIT_BYTES:
                        chunk = os.read(fd, 65536)
                        if not chunk:
                            break
                        bufs[fd] += chunk
                except (BlockingIOError, OSError):
                    pass
            os.close(fd)
        shutil.rmtree(scratch, ignore_errors=True)
        result = assemble(req, bytes(bufs[res_r]), nonce, pid, status, timed_out=timed_out,
                          output_exceeded=output_exceeded, cpu_s=cpu_s)
        result.update(stdout=_cap(bytes(bufs[out_r])), stderr=_cap(bytes(bufs[err_r])),
                      duration_s=round(time.monotonic() - t0, 6), isolation=self.isolation)
        return result


PARTIAL_TRACE_WAIT_S = 0.3  # how long a timed-out child gets to report its trace before SIGKILL


def _has_trace_record(buf: bytearray) -> bool:
    return b'"t":"trace"' in buf


def _read_until(fd: int, buf: bytearray, done, seconds: float) -> None:
    end = time.monotonic() + seconds
    while not done(buf):
        left = end - time.monotonic()
        if left <= 0:
            return
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        buf += chunk


def _records(data: bytes, nonce: str, pid: int):
    prefix = (nonce + " ").encode()
    for line in data.split(b"\n"):
        if not line.startswith(prefix):
            continue
        try:
            rec = json.loads(line[len(prefix):])
        except ValueError:
            continue
        if isinstance(rec, dict) and rec.get("pid") == pid:
            yield rec


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


def assemble(req: dict, data: bytes, nonce: str, pid: int, status, *, timed_out: bool,
             output_exceeded: bool, cpu_s: float = 0.0) -> dict:
    """Turn the harness records and the child's fate into a result dict (worker side, trusted)."""
    total = None
    passed_cases = set()
    failed_cases = set()
    first_exc = None
    end = None
    tampered = False
    harness_error = None
    partial_trace = None
    for rec in _records(data, nonce, pid):
        t = rec.get("t")
        if end is not None:
            tampered = True  # nothing may follow the harness's end record
            break
        if t == "plan" and total is None:
            total = rec.get("total")
        elif t in ("syntax", "load", "step"):
            first_exc = first_exc or rec.get("exc")
        elif t == "case":
            i = rec.get("i")
            if i in passed_cases or i in failed_cases:
                tampered = True
            elif rec.get("ok") is True:
                passed_cases.add(i)
            else:
                failed_cases.add(i)
                first_exc = first_exc or rec.get("exc")
        elif t == "end":
            end = rec
        elif t == "harness_error":
            harness_error = rec.get("message")
        elif t == "trace" and partial_trace is None:
            partial_trace = rec.get("trace")
    if not isinstance(total, int):
        total = len(req["test"].get("cases") or req["test"].get("asserts") or []) or 0
    out = {"id": req["id"], "status": None, "error_type": None, "error_message": None, "error_line": None,
           "tests_passed": len(passed_cases), "tests_total": total, "trace": None}

    def fail(st, etype, msg, line=None):
        out.update(status=st, error_type=etype, error_message=msg, error_line=line)
        return out

    if req.get("trace") and not tampered:
        out["trace"] = end.get("trace") if end is not None else partial_trace
    if timed_out:
        return fail("timeout", "Timeout", f"wall-clock limit of {req['timeout_s']}s exceeded")
    if output_exceeded:
        return fail("error", "OutputLimitExceeded", f"program wrote more than {OUTPUT_LIMIT_BYTES} bytes of output")
    if tampered:
        return fail("error", "HarnessTampering", "the harness record stream was tampered with")
    if end is None or harness_error is not None:
        # The child died before the harness finished: classify how.
        if status is not None and os.WIFSIGNALED(status):
            sig = os.WTERMSIG(status)
            if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_s >= int(req["timeout_s"]) + 1):
                return fail("timeout", "Timeout", f"CPU-time limit exceeded ({_signal_name(sig)})")
            return fail("error", _signal_name(sig), f"program killed by {_signal_name(sig)}")
        if harness_error is not None:
            return fail("error", "HarnessError", harness_error[:500])
        code = os.WEXITSTATUS(status) if status is not None and os.WIFEXITED(status) else None
        return fail("error", "ProcessExit", f"program exited (code {code}) before the tests finished")
    if end.get("passed") != len(passed_cases) or end.get("total") != total:
        return fail("error", "HarnessTampering", "harness counts disagree with its case records")
    if first_exc is not None:
        kind = first_exc.get("kind")
        st = {"failed": "failed", "memory": "memory", "syntax_error": "syntax_error"}.get(kind, "error")
        return fail(st, first_exc.get("type"), first_exc.get("message"), first_exc.get("line"))
    if len(passed_cases) == total and len(failed_cases) == 0:
        out["status"] = "passed"
        return out
    return fail("error", "HarnessError", "not every test reported a result")


def main():
    # The protocol owns the original stdout; fd 1 is pointed at /dev/null so stray writes cannot corrupt it.
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    _set_subreaper()
    uid = os.environ.get("IETA_SANDBOX_CHILD_UID")
    if uid:
        # Children (unprivileged) may only write inside their own scratch dir: shared writable
        # places would let one program leave state for the next.
        for shared in ("/tmp", "/dev/shm", os.environ.get("IETA_SANDBOX_SCRATCH") or "/tmp"):
            try:
                os.chmod(shared, 0o711)
            except OSError:
                pass
    worker = Worker(scratch_root=os.environ.get("IETA_SANDBOX_SCRATCH") or None,
                    child_uid=int(uid) if uid else None,
                    isolation=os.environ.get("IETA_SANDBOX_ISOLATION", "process"),
                    control_fd=0)
    stdin = os.fdopen(0, "rb", buffering=0)
    proto.write((json.dumps({"ready": True, "pid": os.getpid()}) + "\n").encode())
    buf = b""
    while True:
        while b"\n" not in buf:
            chunk = stdin.read(1 << 20)
            if not chunk:
                kill_descendants()
                return
            buf += chunk
        line, buf = buf.split(b"\n", 1)
        try:
            req = json.loads(line)
            result = worker.run(req)
        except Exception as e:  # a worker bug must not take the sandbox down silently
            result = {"id": req.get("id") if isinstance(req, dict) else None, "status": "sandbox_error",
                      "error_type": "WorkerError", "error_message": f"{type(e).__name__}: {e}",
                      "isolation": worker.isolation}
        if worker.host_gone:
            kill_descendants()
            return
        proto.write((json.dumps(result) + "\n").encode())


def bootstrap():
    """Entry point used by the backends: `python -I -S -c "...; import worker; worker.bootstrap()"`.

    -S skips site (no .pth side effects); site-packages are still added so programs can import
    installed libraries read-only.
    """
    import site
    sys.path.extend(p for p in site.getsitepackages() if p not in sys.path)
    main()
