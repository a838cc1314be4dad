"""Fixtures for the data tests: one sandbox executor for the whole session.

Verdict tests run against real gVisor (CI installs runsc). When gVisor cannot start, the tests that
need the executor FAIL with the reason; set IETA_DATA_TEST_BACKEND=process to run them on the
unisolated backend instead (same judge, same verdicts), which is then said in the test report.
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
    if backend not in ("gvisor", "process"):
        pytest.fail(f"IETA_DATA_TEST_BACKEND must be 'gvisor' or 'process', got {backend!r}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # the process backend's warning: asked for here
            ex = Executor(backend=backend, workers=2, timeout_s=10.0)
    except Exception as e:  # runsc missing or unable to start here
        pytest.fail(f"the {backend} sandbox could not start ({e}); set IETA_DATA_TEST_BACKEND=process to run "
                    "the data tests on the unisolated backend")
    with ex:
        yield ex
