"""Fixtures for the data tests: one sandbox executor for the whole session.

Verdict tests run against real gVisor when runsc works (CI installs it); set
IETA_DATA_TEST_BACKEND=process to use the unisolated backend (same harness, same verdicts).
"""
import os
import pathlib
import warnings

import pytest

FIXTURES = pathlib.Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def fixtures_dir():
    return FIXTURES


@pytest.fixture(scope="session")
def executor():
    from sandbox import Executor
    backend = os.environ.get("IETA_DATA_TEST_BACKEND", "gvisor")
    try:
        ex = Executor(backend=backend, workers=2, timeout_s=10.0)
    except Exception as e:  # runsc missing or unable to start here
        if backend != "gvisor":
            raise
        warnings.warn(f"gVisor unavailable ({e}); data tests use the process backend")
        ex = Executor(backend="process", workers=2, timeout_s=10.0)
    with ex:
        yield ex
