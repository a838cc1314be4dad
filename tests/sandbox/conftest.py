"""Shared sandbox executors: one gVisor pool and one process pool for the whole session."""
import shutil
import warnings

import pytest

from sandbox import Executor

HAS_RUNSC = shutil.which("runsc") is not None or __import__("os").path.exists("/usr/bin/runsc")


def _gvisor_pool(workers: int, memory_mb: int):
    if not HAS_RUNSC:
        pytest.skip("runsc (gVisor) is not installed: apt-get install -y runsc")
    with Executor(backend="gvisor", workers=workers, timeout_s=5.0, memory_mb=memory_mb) as ex:
        yield ex


@pytest.fixture(scope="session")
def gvisor_executor():
    yield from _gvisor_pool(workers=2, memory_mb=256)


@pytest.fixture(scope="session")
def gvisor_executor_1g():
    """A pool whose requests may ask for up to 1 GiB (a request may not ask for more than its pool's memory_mb)."""
    yield from _gvisor_pool(workers=1, memory_mb=1024)


@pytest.fixture(scope="session")
def process_executor():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with Executor(backend="process", workers=2, timeout_s=5.0, memory_mb=256) as ex:
            yield ex


@pytest.fixture(params=["process", "gvisor"])
def executor(request):
    """Both backends: verdicts must not depend on the isolation layer."""
    return request.getfixturevalue(f"{request.param}_executor")
