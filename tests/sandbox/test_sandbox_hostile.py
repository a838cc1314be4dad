"""The hostile corpus: programs that try to fool the judge or escape, run against real gVisor.

Every program here defines a WRONG `add` (or none), so "passed" could only come from fooling the
judge. After each one the pool must still run an honest program correctly.
"""
import builtins
import os
import socket
import sys

import pytest

HE_TEST = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
WRONG = "\ndef add(a, b):\n    return a - b\n"
GOOD = {"id": "good", "solution": "def add(a, b):\n    return a + b\n",
        "test": {"kind": "humaneval", "test": HE_TEST, "entry_point": "add"}}

# name -> (program, allowed statuses, expected error_type or None for "any")
FOOLING = {
    "sys_exit_0": ("import sys\n" + WRONG + "sys.exit(0)\n", {"error"}, "SystemExit"),
    "raise_systemexit_in_test": ("def add(a, b):\n    raise SystemExit(0)\n", {"error"}, "SystemExit"),
    "keyboard_interrupt": ("def add(a, b):\n    raise KeyboardInterrupt\n", {"error"}, "KeyboardInterrupt"),
    "os_exit_0": ("import os\n" + WRONG + "os._exit(0)\n", {"error"}, "ProcessExit"),
    "os_exit_in_test": ("import os\ndef add(a, b):\n    os._exit(0)\n", {"error"}, "ProcessExit"),
    "kill_self": ("import os, signal\n" + WRONG + "os.kill(os.getpid(), signal.SIGKILL)\n", {"error"}, "SIGKILL"),
    "close_all_fds": ("import os\n" + WRONG + "os.closerange(0, 4096)\n", {"error", "failed"}, None),
    "close_stdout": ("import os, sys\nos.close(1)\nos.close(2)\n" + WRONG, {"failed"}, "AssertionError"),
    "fake_markers": ("import json\n" + WRONG +
                     "print('passed'); print(json.dumps({'status': 'passed', 'tests_passed': 2}))\n"
                     "for fd in range(3, 1024):\n"
                     "    try:\n        __import__('os').write(fd, b'x {\"t\": \"end\", \"passed\": 2, \"total\": 2}\\n')\n"
                     "    except OSError:\n        pass\n", {"failed", "error"}, None),
    # patching builtins only changes the program's own process (it may break its side of the channel)
    "patch_builtins_assert": ("import builtins\nbuiltins.AssertionError = type('X', (Exception,), {})\n"
                              "builtins.abs = lambda x: 0\nbuiltins.len = lambda x: 0\n" + WRONG,
                              {"failed", "error"}, None),
    "patch_builtins_in_call": ("import builtins\ndef add(a, b):\n    builtins.AssertionError = KeyError\n"
                               "    builtins.isinstance = lambda *a: True\n    return -1\n", {"failed", "error"}, None),
    "fork_and_exit_early": ("import os\n" + WRONG + "if os.fork():\n    os._exit(0)\n", {"failed", "error"}, None),
    # a forked copy answering is still the program computing its own answer; the duplicate answer is
    # out of turn (error), or the copy outlives the tests (timeout)
    "fork_child_reports": ("import os\ndef add(a, b):\n    if os.fork() == 0:\n        return a + b\n"
                           "    os.wait()\n    return a - b\n", {"failed", "error", "timeout"}, None),
    # objects of the program never reach the judge: comparing one is the documented UnencodableValue error
    "always_equal_object": ("class Eq:\n    def __eq__(self, other):\n        return True\n"
                            "def add(a, b):\n    return Eq()\n", {"error"}, "UnencodableValue"),
    "always_equal_int_subclass": ("class Eq(int):\n    __eq__ = lambda self, other: True\n"
                                  "def add(a, b):\n    return [Eq(0)][0]\n", {"failed"}, "AssertionError"),
    "always_equal_forged_filename": ("ns = {}\nexec(compile('class Eq:\\n    def __eq__(s, o): return True\\n', "
                                     "__import__('fractions').__file__, 'exec'), ns)\n"
                                     "def add(a, b):\n    return ns['Eq']()\n", {"error"}, "UnencodableValue"),
    "atexit_and_del": ("import atexit\natexit.register(lambda: print('passed'))\n" + WRONG, {"failed"}, "AssertionError"),
}


def _req(name, program, timeout_s=3.0, **kw):
    return {"id": name, "solution": program, "timeout_s": timeout_s,
            "test": {"kind": "humaneval", "test": HE_TEST, "entry_point": "add"}, **kw}


@pytest.mark.parametrize("name", sorted(FOOLING))
def test_cannot_be_fooled(executor, name):
    program, statuses, etype = FOOLING[name]
    [r] = executor.run([_req(name, program)])
    assert r.status != "passed"
    assert r.status in statuses, (r.status, r.error_type, r.error_message)
    if etype is not None:
        assert r.error_type == etype, (r.error_type, r.error_message)


def test_call_kind_rejects_rigged_eq(executor):
    prog = "class Eq(list):\n    def __eq__(self, o):\n        return True\ndef f(x):\n    return Eq()\n"
    [r] = executor.run([{"id": "eq", "solution": prog,
                         "test": {"kind": "call", "fn_name": "f", "cases": [{"args": [1], "expected": [3]}]}}])
    assert (r.status, r.tests_passed) == ("failed", 0)


# name -> (program, allowed statuses, error_type or None). Destructive ones run only in gVisor.
CONTAINED = {
    "fork_bomb": ("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
                  {"timeout", "memory"}, None),
    "memory_bomb": ("x = []\nwhile True:\n    x.append(bytearray(50 << 20))\n", {"memory"}, None),
    "unkillable_loop": ("import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGXCPU, signal.SIGALRM, signal.SIGHUP):\n"
                        "    signal.signal(s, signal.SIG_IGN)\nwhile True:\n    try:\n        pass\n"
                        "    except BaseException:\n        pass\n", {"timeout"}, "Timeout"),
    "endless_output": ("while True:\n    print('y' * 1000)\n", {"error"}, "OutputLimitExceeded"),
    "fill_scratch": ("i = 0\nwhile True:\n    open(f'f{i}', 'wb').write(b'0' * (8 << 20))\n    i += 1\n", {"error"}, None),
    "write_outside_scratch": ("import os, sys\nfor p in ['/opt/ieta_sandbox/x.py', sys.executable, '/etc/passwd', '/x']:\n"
                              "    try:\n        open(p, 'a').write('pwned')\n    except OSError:\n        continue\n"
                              "    raise RuntimeError('wrote ' + p)\n" + WRONG, {"failed"}, "AssertionError"),
    "delete_outside_scratch": ("import os, shutil, sys\nshutil.rmtree('/opt/ieta_sandbox')\n", {"error"}, "PermissionError"),
    # pid 1 is the program itself, in a pid namespace of its own: the worker and the zygote are not even visible
    "signal_everyone": ("import os\nos.kill(1, 9)\n", {"error"}, "SIGKILL"),
    # as the unprivileged child uid, -1 reaches only the program itself (or nothing): never the worker
    "kill_minus_one": ("import os\nos.kill(-1, 9)\n" + WRONG, {"error", "failed"}, None),
    # ctypes is allowed (the program's own memory holds no secret): reading address 0 is SIGSEGV
    "segfault_ctypes": ("import ctypes\nctypes.string_at(0)\n", {"error"}, "SIGSEGV"),
    # Python 3.11 frames live on the heap; C-level recursion (repr of a deeply nested list) overflows the C stack
    "c_stack_overflow": ("import sys\nsys.setrecursionlimit(10**8)\nx = []\nfor _ in range(2 * 10**5):\n    x = [x]\n"
                         "repr(x)\n", {"error"}, "SIGSEGV"),
    "python_recursion_unbounded": ("import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1) + 1\nf(0)\n",
                                   {"timeout", "memory", "error"}, None),
    "spawn_shell": ("import subprocess\nsubprocess.run(['/bin/sh', '-c', 'echo pwned'])\n", {"error"}, "FileNotFoundError"),
    "spinning_threads": ("import threading\ndef spin():\n    while True:\n        pass\n"
                         "for _ in range(4):\n    threading.Thread(target=spin).start()\nspin()\n", {"timeout"}, None),
    "orphan_daemon": ("import os, time\nif os.fork() == 0:\n    os.setsid()\n    while True:\n        time.sleep(1)\n" + WRONG,
                      {"failed"}, "AssertionError"),
}


@pytest.mark.parametrize("name", sorted(CONTAINED))
def test_hostile_program_is_contained(gvisor_executor, name):
    program, statuses, etype = CONTAINED[name]
    # The C-stack overflow took 1.9-2.6 s to die in gVisor alone (4 runs, 1 sandbox), and it hit a
    # 5 s limit once in CI under load: the verdict asked for is the signal, so it gets room.
    timeout_s = 20.0 if name == "c_stack_overflow" else 2.0
    r, good = gvisor_executor.run([_req(name, program, timeout_s=timeout_s, memory_mb=256), GOOD])
    assert r.status in statuses, (r.status, r.error_type, r.error_message, r.stderr[-500:])
    if etype is not None:
        assert r.error_type == etype, (r.error_type, r.error_message)
    assert r.isolation == "gvisor"
    assert good.status == "passed", good  # the pool is healthy afterwards


def test_no_state_survives_into_the_next_program(gvisor_executor):
    leave = ("import os\nfor p in ['/tmp/leak', '/dev/shm/leak', '../leak', os.path.expanduser('~/leak')]:\n"
             "    try:\n        open(p, 'w').write('x')\n    except OSError:\n        pass\n" + WRONG)
    look = ("import os\nfound = [p for p in ['/tmp/leak', '/dev/shm/leak', '../leak'] if os.path.exists(p)]\n"
            "assert not found, found\nassert os.listdir('.') == []\n" + GOOD["solution"])
    for _ in range(2):  # with 2 workers, at least one run follows a leaker in the same sandbox
        results = gvisor_executor.run([_req("leak1", leave), _req("leak2", leave), _req("look1", look), _req("look2", look)])
        assert [r.status for r in results[2:]] == ["passed", "passed"], [r.error_message for r in results]


def _host_ip() -> str:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.connect(("10.255.255.255", 1))   # no packet is sent: picks the outgoing interface's address
        return s.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        s.close()


def test_network_is_unreachable(gvisor_executor):
    # A listener on the host; the program connects to it (by the host's address and by loopback) and
    # would return the right answer if any connection got through.
    srv = socket.socket()
    srv.bind(("0.0.0.0", 0))
    srv.listen(8)
    srv.setblocking(False)
    port = srv.getsockname()[1]
    prog = (f"import socket\ndef add(a, b):\n    for host in ({_host_ip()!r}, '127.0.0.1'):\n"
            f"        socket.create_connection((host, {port}), timeout=1).close()\n    return a + b\n")
    try:
        [r] = gvisor_executor.run([_req("network", prog, timeout_s=5.0)])
        with pytest.raises(BlockingIOError):
            srv.accept()                                      # nothing ever connected
    finally:
        srv.close()
    assert r.status == "error", (r.status, r.error_type, r.error_message)
    assert issubclass(getattr(builtins, r.error_type), OSError), r.error_type


def test_host_is_invisible_and_untouched(gvisor_executor, tmp_path, monkeypatch):
    secret = "ieta-secret-" + os.urandom(8).hex()
    monkeypatch.setenv("IETA_TEST_SECRET", secret)
    marker = tmp_path / "host_file.txt"
    marker.write_text(secret)
    home_marker = os.path.join(os.path.expanduser("~"), f".ieta-marker-{os.urandom(4).hex()}")
    open(home_marker, "w").write(secret)
    # The only things under / are the read-only binds (python prefix, libs, the sandbox package).
    prefix_top = "/" + sys.base_prefix.strip("/").split("/")[0]
    prog = f"""
import os, glob
def add(a, b):
    return a + b
assert {secret!r} not in repr(dict(os.environ)), 'secret visible in env'
assert not os.path.exists({str(marker)!r}), 'host tmp visible'
assert not os.path.exists({home_marker!r}), 'host home visible'
assert not os.path.exists('/work'), 'project checkout visible'
assert not os.path.exists('/home') or not os.listdir('/home'), 'home visible'
if {prefix_top!r} == '/root':
    assert os.listdir('/root') == [{sys.base_prefix.strip("/").split("/")[1]!r}], os.listdir('/root')
else:
    assert not os.path.exists('/root') or os.listdir('/root') == [], os.listdir('/root')
assert set(os.environ) <= {{'PATH', 'HOME', 'TMPDIR', 'LANG'}}, sorted(os.environ)
for pid in os.listdir('/proc'):
    if pid.isdigit():
        try:
            assert {secret!r} not in open(f'/proc/{{pid}}/environ').read()
        except PermissionError:
            pass
"""
    try:
        [r] = gvisor_executor.run([_req("host", prog)])
    finally:
        os.unlink(home_marker)
    assert r.status == "passed", (r.error_type, r.error_message)
    assert marker.read_text() == secret
    # Writes land in the program's own tmpfs (and /tmp is not writable for it), never on the host.
    write = ("import os\npath = os.path.abspath('ieta_escape_probe')\nopen(path, 'w').write('x')\n"
             "assert open(path).read() == 'x'\ntry:\n    open('/tmp/ieta_escape_probe', 'w')\n"
             "except PermissionError:\n    tmp = 'refused'\nelse:\n    tmp = 'written'\nprint(path, tmp)\n"
             + GOOD["solution"])
    [w] = gvisor_executor.run([_req("write", write)])
    assert w.status == "passed", (w.error_type, w.error_message)
    path, tmp = w.stdout.split()
    assert path.startswith("/tmp/") and path.endswith("/ieta_escape_probe") and tmp == "refused"
    assert not os.path.exists(path) and not os.path.exists("/tmp/ieta_escape_probe")


def test_process_count_is_limited(gvisor_executor_1g):
    prog = ("import os, time\nn = 0\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(100)\n"
            "            os._exit(0)\n        n += 1\nexcept OSError as e:\n    print(n, e.errno)\n" + GOOD["solution"])
    # 32 forked interpreters take ~8 MB each in gVisor: give them room under the memory watchdog
    r, good = gvisor_executor_1g.run([_req("nproc", prog, timeout_s=5.0, memory_mb=768), GOOD])
    count, errno = map(int, r.stdout.split())
    assert count <= 32 and errno == 11  # EAGAIN from RLIMIT_NPROC
    assert r.status == "passed" and good.status == "passed"  # sleeping children are killed after the run


def test_memory_is_watched_while_the_judge_decodes(gvisor_executor_1g):
    """Red-team round 10: children that allocate only once the program's reply is sent, while the judge spends
    seconds decoding it (600k one-item Counters), were never seen by a memory watch that ran only in the judge's
    I/O loop. Together they went past the sandbox's own limit: sandbox_error at will, two sandboxes lost. The
    verdict is the program's `memory`, and the pool runs the next program."""
    prog = ("import collections, os, sys, time\n"
            "def add(a, b):\n"
            "    r, w = os.pipe()\n"
            "    for _ in range(16):\n"
            "        if os.fork() == 0:\n"
            "            os.close(w)\n"
            "            os.read(r, 1)\n"
            "            x = b'1' * (200 << 20)\n"
            "            time.sleep(30)\n"
            "            os._exit(0)\n"
            "    os.close(r)\n"
            "    codec = sys.modules['codec']\n"
            "    send = codec.send\n"
            "    def send_then_release(*args, **kwargs):\n"
            "        send(*args, **kwargs)\n"
            "        os.write(w, b'x' * 64)\n"
            "    codec.send = send_then_release\n"
            "    return [collections.Counter({i: 1}) for i in range(600_000)]\n")
    failed_before = gvisor_executor_1g.failed_attempts
    r, good = gvisor_executor_1g.run([_req("alloc_while_decoded", prog, timeout_s=10.0, memory_mb=512), GOOD])
    assert (r.status, r.error_type) == ("memory", "MemoryError"), (r.status, r.error_type, r.error_message)
    assert good.status == "passed" and gvisor_executor_1g.failed_attempts == failed_before  # no sandbox was lost
