"""The judge: a long-lived worker that runs each program in a fresh process and decides its verdict.

Security argument. The verdict fields that feed pass@k, rewards and preference pairs (`status`,
`tests_passed`, `tests_total`) are computed here, in a process the program never shares anything
with: each program runs in its own process forked from a zygote that was started before any request
was read and that no part of a request ever passes through (program.py), so that process never held test
code, expected values or another program's source (its own comes on its channel); it runs as an
unprivileged uid with rlimits, in its own SysV IPC, pid, mount and network namespaces (pid 1, with its
own /proc; loopback only), with a private size-limited tmpfs as its only
writable place (unmounted after it: O(1) cleanup), and every process it started is killed before the
next program; its memory, all its processes together, is watched while it runs and while the judge works
on its data. Judge and program exchange only plain data over a pipe (codec.py: strict, bounded,
no pickle). stdio: the judge gives stdin (a file) and compares stdout. call: the judge sends the arguments and
compares the returned value. humaneval/asserts: the trusted test code runs here, in a fresh namespace,
with the program's top-level callables bound to proxies that call into the program's process (the
program's objects never enter the judge: non-plain values stay there as opaque handles, which refuse
comparison). `error_type`, `error_message`, `error_line` and `trace` are the program's own claims:
validated and bounded here, and nothing that ranks results may trust them beyond that.

Started by program.boot() (the backends' BOOT command: stdlib only; one request per stdin line, one
result per stdout line).
"""
from __future__ import annotations

import collections
import itertools
import json
import os
import select
import shutil
import signal
import socket
import _socket
import tempfile
import time

try:
    from . import codec, judge, program
    from .judge import Gone, Limit
    from .schema import OUTPUT_CAP_CHARS, OUTPUT_LIMIT_BYTES
except ImportError:  # loaded flat inside the sandbox
    import codec
    import judge
    import program
    from judge import Gone, Limit
    from schema import OUTPUT_CAP_CHARS, OUTPUT_LIMIT_BYTES

SCRATCH_MB = 64                   # size of each program's private tmpfs (gVisor)
EXIT_GRACE_S = 0.2                # after the program exits, how long its descendants may hold its stdout
WATCH_INTERVAL_S = 0.02           # memory watchdog period (all of a program's processes together, gVisor)
# The judge's timer also runs the watch (judge._watch), from this long after the program's start: most programs are
# done by then, so they pay for no signal; one that makes the judge compute longer is watched from there on.
WATCH_FIRST_TICK_S = 0.05
PARTIAL_TRACE_WAIT_S = 1.0        # how long a timed-out program gets to send its trace so far (busy hosts)
KILL_WAIT_S = 3.0                # how long kill_program waits for what it killed to go (then: tainted)
MAX_PENDING_FRAMES = 1024        # frames of the program not yet read by the judge (see Proc.pump)
PROFILE = bool(os.environ.get("IETA_SANDBOX_PROFILE"))  # debug: per-phase milliseconds in each result
PR_SET_CHILD_SUBREAPER = 36


def _libc():
    try:
        import ctypes
        return ctypes.CDLL(None, use_errno=True)
    except (ImportError, OSError):
        return None


_LIBC = _libc()


# --- process bookkeeping ----------------------------------------------------------------------------
def _process_table() -> dict[int, tuple[int, bytes]]:
    """pid -> (ppid, state) of every process (reads /proc; works on Linux and in gVisor)."""
    table = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            stat = _read_proc(f"/proc/{name}/stat")
            rest = stat[stat.rindex(b")") + 2:].split()
            table[int(name)] = (int(rest[1]), rest[0])
        except (OSError, ValueError, IndexError):
            continue
    return table


def _read_proc(path: str) -> bytes:
    """A small /proc file in three syscalls (open() adds four more, each a round trip under ptrace)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        return os.read(fd, 1 << 16)
    finally:
        os.close(fd)


def _descendants(root: int, table: dict, exclude: int | None = None) -> list[int]:
    out, frontier = [], {root}
    while frontier:
        nxt = {p for p, (pp, _) in table.items() if pp in frontier and p not in out and p != exclude}
        out.extend(nxt)
        frontier = nxt
    return out


_MEMINFO_FD = None  # /proc/meminfo, opened once: each reading is then one pread (regenerated at offset 0)
_STATM_FD = None    # /proc/self/statm (the judge's own), likewise
_PAGE = os.sysconf("SC_PAGE_SIZE")


def sandbox_memory_used() -> int:
    """Bytes in use in the whole sandbox (gVisor's /proc/meminfo describes the sandbox, not the host;
    shared copy-on-write pages count once, tmpfs files count too)."""
    global _MEMINFO_FD
    if _MEMINFO_FD is None:
        _MEMINFO_FD = os.open("/proc/meminfo", os.O_RDONLY | os.O_CLOEXEC)
    meminfo = os.pread(_MEMINFO_FD, 1 << 16, 0)
    fields = dict(line.split(b":", 1) for line in meminfo.splitlines() if b":" in line)
    return (int(fields[b"MemTotal"].split()[0]) - int(fields[b"MemFree"].split()[0])) << 10


def program_memory_used() -> int:
    """Bytes in use in the sandbox but the judge's own resident memory: the program's processes, its files and the
    idle zygote. The judge's copies of the program's values (a reply of millions of items, decoded) are the judge's
    to bound (codec.py), not the program's: counted as its memory, a 2M-item module-level table that a local run
    holds in 80 MB went over 256 MB whenever a look fell in the judge's decoding."""
    global _STATM_FD
    if _STATM_FD is None:
        _STATM_FD = os.open("/proc/self/statm", os.O_RDONLY | os.O_CLOEXEC)
    return sandbox_memory_used() - int(os.pread(_STATM_FD, 256, 0).split()[1]) * _PAGE


def input_file(data: bytes) -> int:
    """A program's stdin: an anonymous file holding `data`, read from its start. `python program.py < input` gets a
    file too, and a judge such as Codeforces runs programs so: os.fstat(0).st_size, seek and mmap work on it, as the
    fast-input templates of competitive programming assume (`os.read(0, os.fstat(0).st_size)` read nothing from
    the pipe stdin was before red-team round 12)."""
    fd = os.memfd_create("stdin", os.MFD_CLOEXEC)
    try:
        codec.write_all(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return f"signal {num}"


# --- one program's process, seen from the judge -----------------------------------------------------
class _Frames(collections.deque):
    """The program's frames not yet read by the judge, and their size in bytes (`bytes`)."""

    def __init__(self):
        super().__init__()
        self.bytes = 0

    def append(self, payload: bytes) -> None:
        super().append(payload)
        self.bytes += len(payload)

    def popleft(self) -> bytes:
        payload = super().popleft()
        self.bytes -= len(payload)
        return payload

    def pop(self) -> bytes:
        payload = super().pop()
        self.bytes -= len(payload)
        return payload

    def clear(self) -> None:
        super().clear()
        self.bytes = 0


INLINE_SPEC_BYTES = 128 << 10  # larger spawn specs (a program's source, mostly) go through a file

class Proc:
    """A running program: its pid, its channel, its stdio pipes, and the judge's view of its fate."""

    def __init__(self, worker: "Worker", req: dict, deadline: float, stdin: int | None = None):
        """stdin: the fd of the program's input file (input_file), given to it as fd 0 and closed here; None: the
        program keeps the zygote's /dev/null, the same empty stream."""
        self.worker, self.req, self.deadline = worker, req, deadline
        # _socket's pair: socket.socketpair() wraps each end again, one getsockname syscall each
        chan_j, chan_c = _socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        given = [chan_c.fileno(), out_w, err_w] + ([stdin] if stdin is not None else [])
        self.chan, self.out_r, self.err_r = chan_j, out_r, err_r  # chan: sent with MSG_DONTWAIT
        self.pid = worker.spawn(req, given, chan_j.fileno())
        for fd in given[1:]:
            os.close(fd)
        chan_c.close()
        self.reader = codec.FrameReader()
        self.frames = _Frames()
        self.out, self.err = bytearray(), bytearray()
        self.open = {self.chan.fileno(), out_r, err_r}
        self.exit_status = None
        self.cpu_s = 0.0
        self.exited_at = None
        self.next_watch = time.monotonic() + WATCH_INTERVAL_S  # nothing to see at the start; a read is dear in gVisor

    def pump(self, wait: float) -> None:
        """One round of I/O for at most `wait` seconds; raises Limit when a limit is hit."""
        now = time.monotonic()
        if now >= self.deadline:
            raise Limit("timeout", "Timeout", judge.timeout_message(self.req["timeout_s"]))
        if self.worker.watch_memory and now >= self.next_watch:
            self.next_watch = now + WATCH_INTERVAL_S
            over = self.over_memory()
            if over is not None:
                raise over
        wait = max(0.0, min(wait, self.deadline - now, WATCH_INTERVAL_S if self.worker.watch_memory else wait))
        ready, _, _ = select.select(list(self.open) + [self.worker.zsock], [], [], wait)
        for fd in ready:
            if fd == self.worker.zsock:
                for pid, status, cpu in self.worker.read_exit():
                    if pid == self.pid:
                        self.exit_status, self.cpu_s, self.exited_at = status, cpu, time.monotonic()
                continue
            try:
                chunk = self.chan.recv(1 << 16) if fd == self.chan.fileno() else os.read(fd, 1 << 16)
            except ConnectionResetError:  # the program's end closed with our data unread: the channel is over
                chunk = b""
            if not chunk:
                self.open.discard(fd)
                continue
            if fd == self.chan.fileno():
                self.reader.feed(chunk)
                while True:
                    try:
                        payload = self.reader.next()
                    except codec.CodecError as e:
                        raise Gone("ProtocolError", f"the program broke the channel protocol: {e}") from None
                    if payload is None:
                        break
                    self.frames.append(payload)
                    if len(self.frames) > MAX_PENDING_FRAMES:
                        # more than any exchange of the protocol leaves unread (one answer per request): a flood,
                        # which would cost the judge time past every limit (their bytes: held_bytes)
                        raise Gone("ProtocolError", "the program flooded its channel")
                if self.held_bytes() > self.req["memory_mb"] << 20:
                    raise self._memory_limit()
            else:
                (self.out if fd == self.out_r else self.err).extend(chunk)
                if len(self.out) + len(self.err) > OUTPUT_LIMIT_BYTES:
                    raise Limit("error", "OutputLimitExceeded",
                                f"program wrote more than {OUTPUT_LIMIT_BYTES} bytes of output")

    def held_bytes(self) -> int:
        """What the judge holds for the program: its frames not yet read (and the one arriving). The program's memory
        (program_memory_used leaves out the judge's own): 60 frames of 32 MiB, written faster than the judge read
        them, took the sandbox down when they were not counted (red-team round 12)."""
        return self.frames.bytes + len(self.reader.buf)

    def over_memory(self) -> Limit | None:
        """The memory verdict, if the program's processes together use more than the request allows."""
        if program_memory_used() - self.worker.memory_base + self.held_bytes() > self.req["memory_mb"] << 20:
            return self._memory_limit()
        return None

    def _memory_limit(self) -> Limit:
        return Limit("memory", "MemoryError", f"the program's processes used more than {self.req['memory_mb']} MB "
                                              "together (counting what it sent the judge that was not yet read)")

    def fate(self) -> Gone:
        """How the process ended (it has exited), as a Gone."""
        st = self.exit_status
        if os.WIFSIGNALED(st):
            sig = os.WTERMSIG(st)
            limit = int(self.req["timeout_s"]) + 1
            if sig in (signal.SIGXCPU, signal.SIGKILL) and self.cpu_s >= limit - 0.05:
                return Gone("Timeout", f"CPU-time limit exceeded ({_signal_name(sig)})", "timeout")
            return Gone(_signal_name(sig), f"program killed by {_signal_name(sig)}")
        return Gone("ProcessExit", f"program exited (code {os.WEXITSTATUS(st)}) before the tests finished")

    def message(self):
        """The next message from the program (blocking, bounded by the deadline). Raises Gone."""
        while not self.frames:
            if self.chan.fileno() not in self.open or (self.exit_status is not None and
                                                        time.monotonic() - self.exited_at > EXIT_GRACE_S):
                if self.exit_status is None:
                    self.wait_exit()
                raise self.fate()
            self.pump(1.0)
        try:
            msg = codec.decode(self.frames.popleft(), self.worker.handles)
        except codec.CodecError as e:
            raise Gone("ProtocolError", f"the program sent malformed data: {e}") from None
        if type(msg) is not dict or type(msg.get("t")) is not str or type(msg.get("seq", 0)) is not int:
            raise Gone("ProtocolError", "the program sent a non-message")  # (a handle as "t" would refuse ==)
        return msg

    def send(self, payload: bytes) -> None:
        """Send one encoded message (codec.encode) without waiting when the channel has room (one
        syscall); otherwise wait for room while still reading the program's output and checking the limits."""
        data = memoryview(codec.frame(payload))
        while data:
            try:
                data = data[self.chan.send(data, socket.MSG_DONTWAIT):]
                continue
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                self.wait_exit()
                raise self.fate() from None
            select.select([], [self.chan], [], max(0.0, min(WATCH_INTERVAL_S, self.deadline - time.monotonic())))
            self.pump(0)  # raises at the deadline

    def wait_exit(self) -> None:
        """Until the process exited and its stdout/stderr closed (or a short grace after the exit)."""
        while self.exit_status is None or (self.open - {self.chan.fileno()} and
                                           time.monotonic() - self.exited_at < EXIT_GRACE_S):
            self.pump(0.05 if self.exit_status is not None else 1.0)

    def partial_trace(self):
        """Ask a timed-out traced program for its trace so far (SIGUSR1), briefly: only frames sent after the
        signal are read, and decoding them is timed too (frames queued for the judge to decode at this point, of
        millions of items each, held it past every limit: sandbox_error at will)."""
        self.frames.clear()
        try:
            os.kill(self.pid, signal.SIGUSR1)
        except OSError:
            return None
        end = time.monotonic() + PARTIAL_TRACE_WAIT_S
        self.deadline = end
        judge._test_alarm(end)
        try:
            try:
                while time.monotonic() < end:
                    while self.frames:
                        try:
                            msg = codec.decode(self.frames.popleft())
                        except codec.CodecError:
                            continue
                        if type(msg) is dict and msg.get("t") == "trace":
                            return judge._claimed_trace(msg.get("trace"))  # checked within the time given
                    self.pump(0.05)
            finally:
                judge._cancel_alarm()
        except (Limit, Gone):  # (a tick may land in the finally, before the timer is down: it must not escape)
            pass
        return None

    def drain(self) -> None:
        """Take what is still in the stdout/stderr pipes (the program may be gone), up to the limit."""
        for fd, buf in ((self.out_r, self.out), (self.err_r, self.err)):
            if fd not in self.open:
                continue
            os.set_blocking(fd, False)
            try:
                while len(self.out) + len(self.err) <= OUTPUT_LIMIT_BYTES:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        break
                    buf.extend(chunk)
            except OSError:
                pass

    def close(self) -> None:
        self.chan.close()
        for fd in (self.out_r, self.err_r):
            os.close(fd)


# --- the worker ---------------------------------------------------------------------------------------
class Worker:
    """Runs requests one at a time; owns the zygote and each program's scratch."""

    def __init__(self, zsock: socket.socket, zygote_pid: int, scratch_root: str | None = None,
                 child_uid: int | None = None, isolation: str = "process"):
        self.zsock_obj, self.zsock, self.zygote_pid = zsock, zsock.fileno(), zygote_pid
        self.scratch_root = scratch_root or tempfile.gettempdir()
        self.child_uid = child_uid
        self.isolation = isolation
        # Private tmpfs and IPC namespace per program, and the memory watchdog, where the worker is the
        # sandbox's root (gVisor); the unisolated process backend uses a scratch dir.
        self.isolated = child_uid is not None
        self.watch_memory = self.isolated
        self.pid = os.getpid()
        self.mount_point = os.path.join(self.scratch_root, "run") if self.isolated and _LIBC is not None else None
        if self.mount_point is not None:
            os.makedirs(self.mount_point, exist_ok=True)  # once: each program gets a fresh tmpfs mounted here
        self._exits: list = []
        self._handles: dict[int, judge.RemoteObject] = {}
        self.proc: Proc | None = None
        self.marks: list = []
        self.tainted = False  # a process of a program outlived kill_program: this sandbox must not run another

    def mark(self, phase: str) -> None:
        """Debug mode (IETA_SANDBOX_PROFILE=1): note when `phase` ended; run() reports the durations."""
        if PROFILE:
            self.marks.append((phase, time.perf_counter()))

    # zygote protocol
    def spawn(self, req: dict, fds: list, chan: int) -> int:
        """Fork a program process with `fds` (its channel's end first) and send its spec on `chan`, the judge's
        end: the zygote gets only the fds (see program.zygote)."""
        spec = {"scratch": self.scratch, "cpu_s": int(req["timeout_s"]) + 1, "memory_mb": req["memory_mb"],
                "uid": self.child_uid,
                "private_ipc": self.isolated, "mode": self.mode, "solution": req["solution"],
                "trace": bool(req.get("trace"))}
        data = codec.encode(spec)
        if len(data) > INLINE_SPEC_BYTES:
            # The source goes through a file in the program's fresh scratch, which its process reads and removes
            # before running anything of it: the spec written below then always fits the channel's buffer.
            path = os.path.join(self.scratch, program.SOLUTION_FILE)
            with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644), "wb") as f:
                f.write(req["solution"].encode("utf-8", "surrogatepass"))
            data = codec.encode({**spec, "solution": None, "solution_file": path})
        socket.send_fds(self.zsock_obj, [b"s"], fds)
        while True:
            kind, pid, status, cpu = self._zmsg(blocking=True)
            if kind == b"S":
                break
            self._exits.append((pid, status, cpu))
        codec.write_all(chan, codec.frame(data))  # the process reads it first thing: a blocking write
        return pid

    def _zmsg(self, blocking: bool):
        try:
            data = self.zsock_obj.recv(64, 0 if blocking else socket.MSG_DONTWAIT)
        except BlockingIOError:
            return None
        if not data:
            raise RuntimeError("the zygote died")
        return program.ZYGOTE_MSG.unpack(data)

    def read_exit(self):
        """The exits reported so far, after reading one message of the zygote (its socket is readable:
        one message per wake-up, not a read until EAGAIN)."""
        msg = self._zmsg(blocking=True)
        if msg[0] == b"E":
            self._exits.append(msg[1:])
        out, self._exits = self._exits, []
        return out

    def read_exits(self):
        """Every exit reported so far, without waiting."""
        while True:
            msg = self._zmsg(blocking=False)
            if msg is None:
                break
            if msg[0] == b"E":
                self._exits.append(msg[1:])
        out, self._exits = self._exits, []
        return out

    def kill_program(self, rounds: int = 50) -> None:
        """Kill what is left of the program: every process it started, whatever its parent or state (a process whose
        main thread exited reads 'Z' in /proc while its other threads run on), and reap what comes to us. Under gVisor
        the sandbox is its own pid namespace, so that is every process but the worker and the zygote. If some survive
        KILL_WAIT_S the sandbox is `tainted`: the worker ends after this request's result (a fresh one follows)."""
        if self.isolated:
            give_up = time.monotonic() + KILL_WAIT_S
            for i in itertools.count():
                others = self._others()
                if not others:
                    return
                for p in others:
                    try:
                        os.kill(p, signal.SIGKILL)
                    except OSError:
                        pass
                self._reap_orphans()
                table = _process_table()
                if all(table[p] == (self.zygote_pid, b"Z") for p in table if p not in (self.pid, self.zygote_pid)):
                    return  # what is left is killed programs the zygote is reaping (it spawns again only then)
                if time.monotonic() > give_up:
                    self.tainted = True
                    return
                time.sleep(min(0.05, 0.0005 * (i + 1)))  # a kill takes effect asynchronously (later on a busy host)
        if self.proc is not None:
            for kill in (os.killpg, os.kill):
                try:
                    kill(self.proc.pid, signal.SIGKILL)
                except OSError:
                    pass
        for _ in range(rounds):
            table = _process_table()
            pids = _descendants(self.pid, table, exclude=self.zygote_pid)
            for p in pids:  # 'Z' ones too: a zombie leader may still have live threads
                try:
                    os.kill(p, signal.SIGKILL)
                except OSError:
                    pass
            self._reap_orphans()
            if all(table.get(p, (0, b"Z"))[1] == b"Z" for p in pids):
                return

    def _reap_orphans(self) -> None:
        """Reap the exited processes that came to us (subreaper), never the zygote."""
        while True:
            try:
                pid, _ = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.zygote_pid:
                raise RuntimeError("the zygote died")

    def _others(self) -> set:
        """The pids in the sandbox but the worker's and the zygote's (its own pid namespace: /proc lists only its
        processes, and no stat file needs reading). Never 0: gVisor's /proc can list a process that is leaving the
        namespace as "0" (a program reaped as the listing ran), and kill(0) is the worker's own process group: the
        worker and the zygote were killed so, about once in 500 timed-out programs on a busy host (CI)."""
        try:
            return {int(n) for n in os.listdir("/proc") if n.isdigit()} - {0, self.pid, self.zygote_pid}
        except OSError:
            return set()

    # handles of program objects (valid for one request)
    def handles(self, hid: int, data=None):
        """The judge's object for the program's object `hid`: a proxy, or for an immutable value that crossed as
        data ((class name, value), an Enum member) a judge.data_object; one per program object, so `is` holds."""
        if data is not None:
            obj = self._data_objects.get(hid)
            if obj is None:
                obj = self._data_objects[hid] = judge.data_object(*data, self)
                self._data_hids[id(obj)] = hid
            return obj
        obj = self._handles.get(hid)
        if obj is None:
            obj = self._handles[hid] = judge.RemoteObject(self, hid)
        return obj

    def data_handle(self, obj):
        """The handle of the program's object that the data object `obj` stands for; None if it stands for none."""
        hid = self._data_hids.get(id(obj))
        return hid if hid is not None and self._data_objects.get(hid) is obj else None

    def handle_id(self, obj) -> int:
        """The program's object that `obj` stands for (a proxy, or a data object: `name_of(Color.RED)` gets the
        program's own member back)."""
        if isinstance(obj, judge.RemoteObject) and self._handles.get(obj._hid) is obj:
            return obj._hid
        hid = self.data_handle(obj)
        if hid is not None:
            return hid
        raise codec.CodecError(f"a {type(obj).__name__[:60]} cannot be sent to the program")

    # scratch
    def _make_scratch(self) -> None:
        if self.mount_point is not None:
            self.scratch = self.mount_point
            if program.mount_scratch(_LIBC, self.scratch, SCRATCH_MB, self.child_uid):
                self._mounted = True
                return
        self._mounted = False
        self.scratch = tempfile.mkdtemp(prefix="run-", dir=self.scratch_root)
        if self.child_uid is not None:
            os.chown(self.scratch, self.child_uid, self.child_uid)

    def _drop_scratch(self) -> None:
        if self._mounted:
            _LIBC.umount2(self.scratch.encode(), program.MNT_DETACH)
        else:
            shutil.rmtree(self.scratch, ignore_errors=True)

    # running a request
    def start(self, req: dict, mode: str, deadline: float, stdin: bytes = b"") -> Proc:
        self.mode = mode
        self.seq = 0  # of the calls to this program process (judge._next_seq)
        self._handles = {}
        self._data_objects = {}
        self._data_hids: dict[int, int] = {}  # id(data object) -> its handle (each is kept in _data_objects)
        stdin_fd = input_file(stdin) if stdin else None  # first: the input is the judge's memory, not the program's
        if self.watch_memory:
            self.memory_base = program_memory_used()
        self._make_scratch()
        self.mark("scratch")
        self.proc = Proc(self, req, deadline, stdin_fd)
        if self.watch_memory:
            judge._watch[:] = [self.proc.over_memory, WATCH_FIRST_TICK_S, WATCH_INTERVAL_S]
        self.mark("spawn")
        return self.proc

    def finish(self) -> None:
        # the zygote reports one exit per program: if it was seen, there is nothing more to read
        exit_seen = self.proc is not None and self.proc.exit_status is not None
        judge._watch[0] = None
        try:
            self.kill_program()
        finally:
            if self.proc is not None:
                self.proc.close()
                self.proc = None
            self.mark("kill")
            self._drop_scratch()
            if not exit_seen:
                self.read_exits()
            self.mark("drop_scratch")

    def run(self, req: dict) -> dict:
        t0 = time.monotonic()
        self.marks = [("start", time.perf_counter())] if PROFILE else []
        result = judge.judge(self, req, t0 + req["timeout_s"], OUTPUT_CAP_CHARS)
        result.update(id=req["id"], duration_s=round(time.monotonic() - t0, 6), isolation=self.isolation)
        if PROFILE:
            self.mark("verdict")
            result["profile_ms"] = [(name, round((t - self.marks[i][1]) * 1e3, 3))
                                    for i, (name, t) in enumerate(self.marks[1:])]
        return result


def main(zsock, zygote_pid):
    # The protocol owns the original stdout; fd 1 is pointed at /dev/null so stray writes cannot corrupt it.
    proto = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans of programs come to us, to be killed
    uid = os.environ.get("IETA_SANDBOX_CHILD_UID")
    if uid:
        # Programs (unprivileged) may only write inside their own scratch: shared writable places
        # would let one program leave state for the next.
        for shared in ("/tmp", "/dev/shm", os.environ.get("IETA_SANDBOX_SCRATCH") or "/tmp"):
            try:
                os.chmod(shared, 0o711)
            except OSError:
                pass
    worker = Worker(zsock, zygote_pid, scratch_root=os.environ.get("IETA_SANDBOX_SCRATCH") or None,
                    child_uid=int(uid) if uid else None,
                    isolation=os.environ.get("IETA_SANDBOX_ISOLATION", "process"))
    if uid and worker.mount_point is not None:
        # /dev/shm, where multiprocessing's semaphores live (unlinked as soon as made), is each program's own: a link
        # to where its fresh tmpfs is mounted, so nothing written there outlives the program.
        try:
            os.rmdir("/dev/shm")
            os.symlink(worker.mount_point, "/dev/shm")
        except OSError:
            pass
    codec.write_all(proto, (json.dumps({"ready": True, "pid": os.getpid()}) + "\n").encode())
    buf = b""
    chunk = memoryview(bytearray(1 << 20))  # reused: a fresh 1 MiB per read is an mmap + munmap
    while True:
        while b"\n" not in buf:
            n = os.readv(0, [chunk])
            if not n:
                return
            buf += chunk[:n]
        line, buf = buf.split(b"\n", 1)
        req = None
        try:
            req = json.loads(line)
            result = worker.run(req)
            if worker.tainted:
                result["retire"] = True  # the host replaces this sandbox before the next request (no failure)
            text = json.dumps(result)
        except BaseException as e:  # noqa: B036 - a judge bug must not take the sandbox down silently
            result = {"id": req.get("id") if isinstance(req, dict) else None, "status": "sandbox_error",
                      "error_type": "WorkerError", "error_message": f"{type(e).__name__}: {judge._message(e)[:500]}",
                      "isolation": worker.isolation}
            text = json.dumps(result)
        try:
            codec.write_all(proto, (text + "\n").encode())
        except BrokenPipeError:  # the host went away (its next read would see EOF too)
            return
        if worker.tainted:
            return  # announced with the result ("retire"): the host starts a fresh sandbox for the next request
