"""The benchmark's floors (sandbox/floor.py): the isolated floor isolates each program as the pool does, the plain one
does not, so the bench's split of the pool's gap (isolation against judge) measures what it says."""
import pytest

from sandbox import bench, floor
from sandbox.gvisor import CHILD_UID

from tests.sandbox.conftest import HAS_RUNSC

# True only in a process isolated as the pool's program processes are.
PROBE = '''
import array, os, socket

def isolated():
    a, b = socket.socketpair()
    try:
        a.sendmsg([b"x"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [0]))])
        passes_fds = True
    except PermissionError:
        passes_fds = False
    return (os.getuid() == os.getgid() == {uid} and os.getpid() == 1 and os.getcwd() == "{scratch}"
            and [n for n in os.listdir("/proc") if n.isdigit()] == ["1"] and os.listdir(".") == [] and not passes_fds)
'''.replace("{uid}", str(CHILD_UID)).replace("{scratch}", floor.SCRATCH)
CHECK = {"test": "def check(candidate):\n    assert candidate()\n", "entry_point": "isolated"}


@pytest.mark.skipif(not HAS_RUNSC, reason="runsc (gVisor) is not installed")
@pytest.mark.parametrize("isolate", [False, True])
def test_isolated_floor_isolates_each_program_as_the_pool_does(isolate):
    corpus = [({}, {"solution": PROBE, "test": CHECK}, PROBE)] * 3
    with bench.floor_runner(1, corpus, timeout_s=10.0, isolate=isolate) as (_, run):
        _, _, passed = run()
    assert passed == [isolate] * 3
