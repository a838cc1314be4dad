"""The floor of the design, for the benchmark: a minimal fork-server (one fork per program, the program
and its tests exec'd together, the exception name reported back) inside the same runsc sandbox as the
pool. No isolation inside the sandbox, no judge, no limits but the wall clock: nothing is cheaper
than this with one fresh process per program, so the pool's throughput is measured against it.

With `isolate`, each program process starts as the pool's do, by the same code, only without a judge: forked from a
server holding what the pool's zygote holds (program.preload, then gc.freeze), with a fresh private tmpfs as its
working directory, its own pid, IPC, mount and network namespaces with its own /proc, the unprivileged uid and the
fd-passing seccomp filter (program.enter_private_namespaces, program.drop_privileges). The pool's ratio to this
floor is then what its judge and protocol cost; this floor's ratio to the plain one what the isolation costs, less
what the preloaded imports save.

Protocol (like worker.py): one {"id", "program", "timeout_s"} per stdin line, one {"id", "exc"} per
stdout line ("" = ran clean, "Timeout" = killed at the limit).
"""
import json
import os
import select
import signal
import sys

SCRATCH = "/tmp/floor-run"


def serve(isolate: bool = False, scratch_mb: int = 64):
    """isolate: as the module says; scratch_mb: the size of each program's tmpfs (the pool's worker.SCRATCH_MB)."""
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    if isolate:
        import ctypes
        import gc
        import program
        program.preload()
        libc = ctypes.CDLL(None, use_errno=True)
        program._SECCOMP = program._fd_passing_filter(libc)
        uid = int(os.environ["IETA_SANDBOX_CHILD_UID"])
        os.makedirs(SCRATCH, exist_ok=True)
        gc.freeze()
    proto.write(b'{"ready": true}\n')
    for line in sys.stdin.buffer:
        req = json.loads(line)
        r, w = os.pipe()
        if isolate and (not program.mount_scratch(libc, SCRATCH, scratch_mb, uid)
                        or libc.unshare(program.CLONE_NEWPID) != 0):
            raise OSError(ctypes.get_errno(), "the floor's isolation failed (mount or unshare)")
        pid = os.fork()
        if pid == 0:
            os.close(r)
            if isolate:
                os.setsid()
                os.chdir(SCRATCH)
                if not (program.enter_private_namespaces(libc) and program.drop_privileges(uid, libc)):
                    os._exit(125)
            try:
                exec(compile(req["program"], "<program>", "exec"), {"__name__": "__main__"})
                name = ""
            except BaseException as e:  # noqa: B036 - the program's fate is the measurement
                name = type(e).__name__
            os.write(w, name.encode())
            os._exit(0)
        os.close(w)
        ready, _, _ = select.select([r], [], [], req["timeout_s"])
        exc = os.read(r, 200).decode() if ready else "Timeout"
        if not ready:
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        os.close(r)
        if isolate:
            libc.umount2(SCRATCH.encode(), program.MNT_DETACH)
        proto.write((json.dumps({"id": req["id"], "exc": exc}) + "\n").encode())
