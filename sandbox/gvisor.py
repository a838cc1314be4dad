"""gVisor backend: each worker is a long-lived runsc container (ptrace platform by default, no network).

The container's root filesystem is an empty read-only directory; the host's Python runtime
(sys.base_prefix), /usr/lib, /usr/lib64 and this package are bind-mounted read-only, /tmp is a
size-limited tmpfs (the only writable place), the environment is a fixed clean one and the OCI
spec caps pids, memory and open files. Nothing of the host's /root, /home, /tmp, project checkout
or environment is visible.

Cleanup: containers live under a per-executor runsc --root directory named after the owning pid
(/run/ieta-sandbox/<pid>-<token>). close() deletes them; if the caller crashes, each worker sees
EOF on stdin and exits, which ends its container, and the next GVisorBackend removes state
directories whose owner pid is dead.
"""
from __future__ import annotations

import glob
import itertools
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import NamedTuple

from .backends import BOOT, PipeWorker, SANDBOX_DIR, WorkerCrashed

STATE_PARENT = "/run/ieta-sandbox"
# runsc's platforms (how the sentry intercepts a program's syscalls and faults). ptrace works on every host; systrap is
# ptrace's successor (slower on these hosts: measured by `python -m sandbox.bench --platform`); kvm needs /dev/kvm
# (a bare-metal or nested-virtualisation host) and may be the fastest where it works.
PLATFORMS = ("ptrace", "systrap", "kvm")
SANDBOX_PKG_MOUNT = "/opt/ieta_sandbox"
BUNDLE_PREFIX = "ieta-gvisor-bundle-"
CHILD_UID = 65534
# CAP_SYS_ADMIN: a private tmpfs and SysV IPC namespace per program. Programs hold none of these: they
# run as CHILD_UID after setuid, which drops every capability.
WORKER_CAPS = ["CAP_CHOWN", "CAP_SETUID", "CAP_SETGID", "CAP_KILL", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SYS_ADMIN"]
INSTALL_HINT = ("install gVisor with `apt-get install -y runsc` (Debian/Ubuntu) or see https://gvisor.dev/docs/user_guide/install/, "
                "or choose the unisolated backend explicitly with backend='process' / --backend process")


class GVisorUnavailable(RuntimeError):
    pass


def find_runsc() -> str:
    path = shutil.which("runsc") or ("/usr/bin/runsc" if os.path.exists("/usr/bin/runsc") else None)
    if path is None:
        raise GVisorUnavailable(f"runsc (gVisor) is not installed: {INSTALL_HINT}")
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _runsc(runsc: str, root: str, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess:
    return subprocess.run([runsc, "--root", root, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, check=False)


def remove_state_dir(runsc: str, root: str) -> None:
    """Force-delete every container recorded under a runsc --root, then the directory."""
    try:
        listed = _runsc(runsc, root, "list", "-quiet").stdout.decode().split()
    except (OSError, subprocess.TimeoutExpired):
        listed = []
    for cid in listed:
        try:
            _runsc(runsc, root, "delete", "-force", cid)
        except (OSError, subprocess.TimeoutExpired):
            pass
    shutil.rmtree(root, ignore_errors=True)


def clean_stale_state(runsc: str) -> list[str]:
    """Remove runsc state dirs and bundles of executors whose process is gone (crashed callers).
    Returns the state dirs removed."""
    removed = []
    try:
        entries = os.listdir(STATE_PARENT)
    except OSError:
        return removed
    for name in entries:
        try:
            pid = int(name.split("-", 1)[0])
        except ValueError:
            continue
        if pid != os.getpid() and not _pid_alive(pid):
            remove_state_dir(runsc, os.path.join(STATE_PARENT, name))
            removed.append(name)
    tmp = tempfile.gettempdir()
    for name in os.listdir(tmp):
        if name.startswith(BUNDLE_PREFIX):
            try:
                pid = int(name[len(BUNDLE_PREFIX):].split("-", 1)[0])
            except ValueError:
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(os.path.join(tmp, name), ignore_errors=True)
    _remove_stale_cgroups()
    return removed


_CGROUP_NAME = re.compile(r"ieta-(\d+)-[0-9a-f]{8}-\d+-\d+\Z")  # container ids (GVisorBackend._start)


def _remove_stale_cgroups(root: str = "/sys/fs/cgroup") -> None:
    """Remove the host cgroups runsc made for the sandboxes of executors whose process is gone. `runsc delete`
    removes a sandbox's cgroups while its sandbox lives; a caller killed with its sandboxes leaves them behind,
    empty (one per sandbox and controller). Only empty cgroups can be removed: rmdir refuses the rest."""
    for path in glob.glob(os.path.join(root, "ieta-*")) + glob.glob(os.path.join(root, "*", "ieta-*")):
        m = _CGROUP_NAME.match(os.path.basename(path))
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            try:
                os.rmdir(path)
            except OSError:
                pass


def _mkdirs(rootfs: str, path: str) -> None:
    cur = rootfs
    for part in path.strip("/").split("/"):
        cur = os.path.join(cur, part)
        if not os.path.isdir(cur):
            os.mkdir(cur, 0o755)
        os.chmod(cur, 0o755)


def build_bundle(bundle: str, *, memory_mb: int, scratch_mb: int, pids: int, boot: str = BOOT) -> None:
    prefix = os.path.realpath(sys.base_prefix)
    exe = os.path.realpath(sys.executable)
    if not exe.startswith(prefix + os.sep):
        raise GVisorUnavailable(f"python executable {exe} is not inside its prefix {prefix}; cannot mount it")
    rootfs = os.path.join(bundle, "rootfs")
    os.makedirs(rootfs, exist_ok=True)
    os.chmod(bundle, 0o755)
    os.chmod(rootfs, 0o755)
    mounts = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "nodev", f"size={scratch_mb}m", "mode=1777"]},
    ]
    binds = [(prefix, prefix), (SANDBOX_DIR, SANDBOX_PKG_MOUNT)]
    for lib in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo"):  # (zoneinfo: time zones)
        real = os.path.realpath(lib)
        if os.path.isdir(real) and (real, real) not in binds and real != "/":
            binds.append((real, real))
    for src, dst in binds:
        _mkdirs(rootfs, dst)
        mounts.append({"destination": dst, "type": "bind", "source": src, "options": ["rbind", "ro"]})
    # The users a program may look up (getpass.getuser(), pwd.getpwuid(os.getuid())): root and its own uid; and the
    # name of its loopback (socket.getaddrinfo("localhost", ...)).
    os.makedirs(os.path.join(rootfs, "etc"), exist_ok=True)
    for name, text in (("passwd", f"root:x:0:0:root:/root:/bin/sh\nnobody:x:{CHILD_UID}:{CHILD_UID}:nobody:/tmp:/bin/sh\n"),
                       ("group", f"root:x:0:\nnogroup:x:{CHILD_UID}:\n"),
                       ("hosts", "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n")):
        with open(os.path.join(rootfs, "etc", name), "w") as f:
            f.write(text)
        os.chmod(os.path.join(rootfs, "etc", name), 0o644)
    for link in ("lib", "lib64"):  # merged-/usr layouts: /lib -> usr/lib
        host = "/" + link
        if os.path.islink(host) and not os.path.lexists(os.path.join(rootfs, link)):
            os.symlink(os.readlink(host), os.path.join(rootfs, link))
    env = ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "HOME=/tmp", f"IETA_SANDBOX_CHILD_UID={CHILD_UID}",
           "IETA_SANDBOX_ISOLATION=gvisor", "IETA_SANDBOX_SCRATCH=/tmp", "PYTHONDONTWRITEBYTECODE=1"]
    if os.environ.get("IETA_SANDBOX_PROFILE"):
        env.append("IETA_SANDBOX_PROFILE=1")  # debug: per-phase timings in each result (worker.PROFILE)
    config = {
        "ociVersion": "1.0.0",
        "process": {
            "terminal": False, "user": {"uid": 0, "gid": 0},
            "args": [exe, "-I", "-S", "-c", boot.format(dir=SANDBOX_PKG_MOUNT)],
            "env": env, "cwd": "/tmp",
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024},
                        {"type": "RLIMIT_CORE", "hard": 0, "soft": 0}],
            "noNewPrivileges": True,
            # The worker needs these to prepare each child's scratch dir, drop it to CHILD_UID and
            # kill what it leaves behind; the child loses them all when it calls setuid.
            "capabilities": {k: WORKER_CAPS for k in ("bounding", "effective", "permitted")},
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "sandbox",
        "mounts": mounts,
        "linux": {
            "namespaces": [{"type": t} for t in ("pid", "network", "ipc", "uts", "mount")],
            # No host pids limit: under ptrace every guest address space is a host stub process, and a
            # sentry that hits a host pids limit panics. Guest process counts are bounded by the
            # worker's RLIMIT_NPROC on the unprivileged child uid instead.
            "resources": {"memory": {"limit": memory_mb << 20}},
        },
    }
    with open(os.path.join(bundle, "config.json"), "w") as f:
        json.dump(config, f, indent=1)


CGROUP_ROOT = "/sys/fs/cgroup"


class MemoryCgroup(NamedTuple):
    """A container's memory cgroup: its directory, the file of the bytes charged to it (a counter, read in 9 us;
    memory.stat would first flush the statistics of every cgroup) and the file holding its OOM-kill count."""
    path: str
    usage: str
    oom_events: str


def make_memory_cgroup(cid: str, limit_bytes: int, root: str = CGROUP_ROOT) -> MemoryCgroup | None:
    """A memory cgroup for container `cid`, made before runsc starts it: runsc joins a cgroup that exists rather than
    making (and, as it exits, removing) its own, so the host can still read how the container ended. None where
    none can be made here (runsc then makes its own, as with --ignore-cgroups)."""
    if os.path.isdir(os.path.join(root, "memory")):  # cgroup v1
        path = os.path.join(root, "memory", cid)
        limit_file, usage, events = "memory.limit_in_bytes", "memory.usage_in_bytes", "memory.oom_control"
    elif os.path.exists(os.path.join(root, "cgroup.controllers")):  # v2 (not available on the machines tested)
        path = os.path.join(root, cid)
        limit_file, usage, events = "memory.max", "memory.current", "memory.events"
    else:
        return None
    try:
        os.mkdir(path)
    except OSError:
        return None
    try:
        with open(os.path.join(path, limit_file), "w") as f:
            f.write(str(limit_bytes))
    except OSError:
        remove_cgroup(path)
        return None
    return MemoryCgroup(path, os.path.join(path, usage), os.path.join(path, events))


def remove_cgroup(path: str, wait_s: float = 2.0) -> None:
    """Remove an empty cgroup (its last processes may still be exiting: retried briefly)."""
    give_up = time.monotonic() + wait_s
    while True:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() > give_up:
                return
            time.sleep(0.02)


def read_field(path: str, key: str) -> int:
    """The number after `key` on its line of a `key value` file (`oom_kill` in v1's memory.oom_control or v2's
    memory.events, `FDSize:` in /proc/<pid>/status); 0 where there is none or the file is gone."""
    try:
        with open(path) as f:
            for line in f:
                words = line.split()
                if len(words) == 2 and words[0] == key:
                    return int(words[1])
    except (OSError, ValueError):
        pass
    return 0


# Between requests a sandbox holds what it held after boot: a program's memory and files go with it. Past these, what
# a program left behind outlives it (an SCM_RIGHTS cycle of fds, which this gVisor never collects, kept 9000 host
# files or 1.4 GB of pipe buffers open after the program was killed: later programs failed to import, or were
# OOM-killed; red-team round 13), and the sandbox is replaced before the next request.
LEFT_BEHIND_MB = 128      # more memory charged to the container's cgroup than after boot
LEFT_BEHIND_FDS = 4096    # a larger host fd table of the sentry (FDSize: it never shrinks; 512 after boot)
# Reading the sentry's /proc status after every request cost the pool 5% (measured A/B), so it is read at most this
# often: round 13's program opened 9100 files in 0.75 s, so between two looks a sandbox gains at most a few thousand
# open files, far from the 20 000 at which gVisor's own opens fail.
FD_CHECK_INTERVAL_S = 0.2


class SandboxWorker(PipeWorker):
    """The worker of one runsc container.

    The judge's memory watch sees what the sandbox's memory file holds; what a program pins in the sentry's own
    memory (pipe and socket buffers: 4 processes x 500 full 1 MiB pipes, red-team round 12) only the container's
    host cgroup counts, and its OOM killer ends the whole sandbox. A worker that died so under a request ran only
    that request's program (the sandbox held no more than after boot when it started, see LEFT_BEHIND_MB): its
    verdict is `memory`, not a sandbox failure to retry elsewhere. `cgroup`: the container's memory cgroup
    (make_memory_cgroup), or None (then neither the verdict nor the checks after each request)."""

    def __init__(self, argv: list[str], env: dict, on_close, cgroup: MemoryCgroup | None):
        self.cgroup = cgroup
        super().__init__(argv, env=env, on_close=on_close)
        if cgroup is not None:
            self.sentry_status = _sentry_status(cgroup.path)
            self.boot_memory = _counter(cgroup.usage)
            self.next_fd_check = 0.0

    def execute(self, request: dict, timeout_s: float) -> dict:
        t0 = time.monotonic()
        try:
            result = super().execute(request, timeout_s)
        except WorkerCrashed:
            if self.cgroup is None or not read_field(self.cgroup.oom_events, "oom_kill"):
                raise
            self.retired = True
            return {"id": request["id"], "status": "memory", "error_type": "MemoryError",
                    "error_message": "the program's processes used more memory than its sandbox has "
                                     f"(over {request['memory_mb']} MB; pipe and socket buffers count too)",
                    "duration_s": round(time.monotonic() - t0, 6), "isolation": GVisorBackend.isolation}
        if self.cgroup is not None:
            if _counter(self.cgroup.usage) - self.boot_memory > LEFT_BEHIND_MB << 20:
                self.retired = True
            elif time.monotonic() >= self.next_fd_check:
                self.next_fd_check = time.monotonic() + FD_CHECK_INTERVAL_S
                if self.sentry_status is not None and read_field(self.sentry_status, "FDSize:") > LEFT_BEHIND_FDS:
                    self.retired = True
        return result


def _counter(path: str) -> int:
    """A file holding one number (a cgroup counter); 0 where it is gone."""
    try:
        with open(path) as f:
            return int(f.read())
    except (OSError, ValueError):
        return 0


def _sentry_status(cgroup_dir: str) -> str | None:
    """/proc/<pid>/status of the container's sentry (runsc-sandbox), found in its cgroup."""
    try:
        with open(os.path.join(cgroup_dir, "cgroup.procs")) as f:
            pids = f.read().split()
    except OSError:
        return None
    for pid in pids:
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                if f.read(64).startswith(b"runsc-sandbox"):
                    return f"/proc/{pid}/status"
        except OSError:
            continue
    return None


class GVisorBackend:
    """A pool of runsc containers, one per worker slot."""

    isolation = "gvisor"

    def __init__(self, memory_mb: int = 512, scratch_mb: int = 64, pids: int = 128, platform: str = "ptrace",
                 boot: str = BOOT):
        """platform: runsc's (PLATFORMS); boot: the Python command the container runs (the worker; the benchmark's
        floor server)."""
        if platform not in PLATFORMS:
            raise ValueError(f"unknown runsc platform {platform!r} (expected one of {', '.join(PLATFORMS)})")
        self.runsc = find_runsc()
        os.makedirs(STATE_PARENT, mode=0o700, exist_ok=True)
        clean_stale_state(self.runsc)
        # Container ids must be unique machine-wide, not just per --root: runsc names each sandbox's control
        # socket after its id, so two pools of one process (or a pid reused) would collide.
        self.name = f"{os.getpid()}-{secrets.token_hex(4)}"
        self.root = os.path.join(STATE_PARENT, self.name)
        os.makedirs(self.root, mode=0o700)
        self.bundle = tempfile.mkdtemp(prefix=f"{BUNDLE_PREFIX}{os.getpid()}-")
        # The container holds the worker, the zygote and one program whose processes the worker's watchdog
        # keeps under the request's memory_mb together; the rest is headroom for the watchdog's period.
        self.sandbox_memory_mb = max(1024, 2 * memory_mb + 512)
        build_bundle(self.bundle, memory_mb=self.sandbox_memory_mb, scratch_mb=scratch_mb, pids=pids, boot=boot)
        self.platform = platform
        self.ignore_cgroups = False
        self._ids = itertools.count()
        self._live: set[str] = set()
        self._lock = threading.Lock()
        self._closed = False

    def default_workers(self) -> int:
        # One sandbox per core. Under the ptrace platform every syscall and page fault of a program is a
        # hand-off between host threads; with more sandboxes than cores those hand-offs wait for a core.
        # Measured on 2 cores (HumanEval canonical + buggy, `python -m sandbox.bench`): 80 programs/s with
        # 2 sandboxes, 62 with 3, 60-66 with 4, and 24 against 29 CPU ms a program. Programs that sleep or
        # block hold their sandbox idle: raise `workers` for workloads where many do.
        return os.cpu_count() or 1

    def _argv(self, cid: str) -> list[str]:
        argv = [self.runsc, "--root", self.root, "--network=none", f"--platform={self.platform}"] + (["--debug", "--debug-log=/tmp/rdbg/"] if os.environ.get("IETA_RUNSC_DEBUG") else [])
        if self.ignore_cgroups:
            argv.append("--ignore-cgroups")
        return argv + ["run", "--bundle", self.bundle, cid]

    def _start(self, slot: int) -> PipeWorker:
        cid = f"ieta-{self.name}-{slot}-{next(self._ids)}"
        with self._lock:
            if self._closed:
                raise RuntimeError("backend is closed")
            self._live.add(cid)
        cgroup = None if self.ignore_cgroups else make_memory_cgroup(cid, self.sandbox_memory_mb << 20)
        try:
            return SandboxWorker(self._argv(cid), env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                                 on_close=lambda: self._delete(cid, cgroup), cgroup=cgroup)
        except BaseException:
            if cgroup is not None:
                remove_cgroup(cgroup.path)
            raise

    def start_worker(self, slot: int) -> PipeWorker:
        try:
            return self._start(slot)
        except Exception as first:
            if self.ignore_cgroups:
                raise
            # Hosts without usable cgroups: rlimits inside the worker still bound every program.
            self.ignore_cgroups = True
            try:
                return self._start(slot)
            except Exception:
                self.ignore_cgroups = False
                raise GVisorUnavailable(f"runsc could not start a sandbox: {first}. {INSTALL_HINT}") from None

    def _delete(self, cid: str, cgroup: MemoryCgroup | None = None) -> None:
        try:
            _runsc(self.runsc, self.root, "delete", "-force", cid)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if cgroup is not None:
            remove_cgroup(cgroup.path)
        with self._lock:
            self._live.discard(cid)

    def close(self) -> None:
        with self._lock:
            self._closed = True
        remove_state_dir(self.runsc, self.root)
        shutil.rmtree(self.bundle, ignore_errors=True)
