"""The floor of the design, for the benchmark: a minimal fork-server (one fork per program, the program
and its tests exec'd together, the exception name reported back) inside the same runsc sandbox as the
pool. No isolation inside the sandbox, no judge, no limits but the wall clock: nothing is cheaper
than this with one fresh process per program, so the pool's throughput is measured against it.

Protocol (like worker.py): one {"id", "program", "timeout_s"} per stdin line, one {"id", "exc"} per
stdout line ("" = ran clean, "Timeout" = killed at the limit).
"""
import json
import os
import select
import signal
import sys


def serve():
    proto = os.fdopen(os.dup(1), "wb", buffering=0)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 1)
    proto.write(b'{"ready": true}\n')
    for line in sys.stdin.buffer:
        req = json.loads(line)
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            os.close(r)
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
        proto.write((json.dumps({"id": req["id"], "exc": exc}) + "\n").encode())
