"""Clear errors when gVisor is unavailable, and the loud warning of the unisolated backend."""
import os

import pytest

from sandbox import Executor
from sandbox import gvisor


def test_missing_runsc_says_how_to_install(monkeypatch):
    monkeypatch.setattr(gvisor.shutil, "which", lambda name: None)
    real_exists = os.path.exists
    monkeypatch.setattr(gvisor.os.path, "exists", lambda p: False if p == "/usr/bin/runsc" else real_exists(p))
    with pytest.raises(gvisor.GVisorUnavailable, match=r"not installed: install gVisor with `apt-get install -y runsc`"):
        Executor(backend="gvisor")


def test_runsc_that_cannot_start_is_reported(monkeypatch, tmp_path):
    fake = tmp_path / "runsc"
    fake.write_text("#!/bin/sh\necho 'runsc: boom' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setattr(gvisor, "find_runsc", lambda: str(fake))
    with pytest.raises(gvisor.GVisorUnavailable, match=r"runsc could not start a sandbox: .*runsc: boom.*apt-get install"):
        Executor(backend="gvisor", workers=1)


def test_process_backend_warns_loudly(capsys):
    with pytest.warns(RuntimeWarning, match="UNISOLATED"):
        ex = Executor(backend="process", workers=1)
    ex.close()
    assert "WARNING" in capsys.readouterr().err


def test_unknown_backend_and_options():
    with pytest.raises(ValueError, match="unknown sandbox backend 'docker'"):
        Executor(backend="docker")
    with pytest.raises(ValueError, match="backend 'process' takes no option ray_address"):
        Executor(backend="process", ray_address="auto")
    with pytest.raises(ValueError, match="backend 'gvisor' takes no option ray_address"):
        Executor(backend="gvisor", ray_address="auto")
    with pytest.raises(ValueError, match="backend 'process' takes no option platform"):
        Executor(backend="process", platform="ptrace")
    with pytest.raises(ValueError, match=r"unknown runsc platform 'vmx' \(expected one of ptrace, systrap, kvm\)"):
        Executor(backend="gvisor", platform="vmx")


def test_the_runsc_platform_is_the_callers():
    """`platform` picks runsc's (ptrace by default): the same verdicts on systrap, which every host here runs."""
    from tests.sandbox.conftest import HAS_RUNSC
    if not HAS_RUNSC:
        pytest.skip("runsc (gVisor) is not installed: apt-get install -y runsc")
    program = {"id": "p", "solution": "def add(a, b):\n    return a + b\n",
               "test": {"kind": "humaneval", "entry_point": "add",
                        "test": "def check(candidate):\n    assert candidate(1, 2) == 3\n"}}
    with Executor(backend="gvisor", workers=1, timeout_s=10.0, memory_mb=256, platform="systrap") as ex:
        assert "--platform=systrap" in ex.backend._argv("c")
        passed, wrong = ex.run([program, {**program, "id": "w", "solution": "def add(a, b):\n    return a - b\n"}])
    assert (passed.status, passed.isolation, wrong.status) == ("passed", "gvisor", "failed")
    with Executor(backend="gvisor", workers=1) as ex:
        assert "--platform=ptrace" in ex.backend._argv("c")


def test_a_request_may_not_ask_for_more_memory_than_its_pool():
    # The pool's sandboxes are sized for its memory_mb: a program allowed more could take its sandbox down before the
    # memory watch sees it (sandbox_error instead of its `memory` verdict).
    from sandbox.schema import RequestError
    with pytest.warns(RuntimeWarning, match="UNISOLATED"):
        ex = Executor(backend="process", workers=1, memory_mb=256)
    try:
        with pytest.raises(RequestError, match="memory_mb 512 is more than the pool's 256.*memory_mb=512"):
            ex.submit({"id": "big", "solution": "", "memory_mb": 512, "test": {"kind": "asserts", "asserts": ["assert 1"]}})
        assert ex.run([{"id": "ok", "solution": "", "memory_mb": 128,
                        "test": {"kind": "asserts", "asserts": ["assert 1"]}}])[0].status == "passed"
    finally:
        ex.close()
