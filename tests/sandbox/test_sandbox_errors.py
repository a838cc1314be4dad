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
    with pytest.raises(ValueError, match="takes no options"):
        Executor(backend="process", ray_address="auto")


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
