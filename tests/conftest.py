"""Session-wide test setup.

Eight fake CPU devices let the sharding tests build real meshes on one host; the
flag must be set before JAX is first imported, so it lives here.
"""
import os

import pytest

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

# Session fixtures that take tens of seconds to build (a whole tiny experiment run, a saved policy, the serving
# checkpoint, the HF reference models). Under pytest-xdist (`-n 2 --dist loadgroup`, the README's command) every
# file that uses one runs on the same worker, so each is built once; every other file is a group of its own, so
# its module fixtures (the multi-host runs, the Ray cluster) are built once too.
SHARED_SESSION_FIXTURES = ("tiny_run", "saved_tiny_policy", "tiny_checkpoint", "hf_checkpoints")


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which reads the marks
def pytest_collection_modifyitems(config, items):
    """Marks each test with its xdist group: its file, merged with every file sharing an expensive session
    fixture with it (union-find over files and fixtures)."""
    parent = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    files = [item.nodeid.split("::")[0] for item in items]
    for item, path in zip(items, files):
        for name in SHARED_SESSION_FIXTURES:
            if name in getattr(item, "fixturenames", ()):
                parent[find(path)] = find("fixture:" + name)
    for item, path in zip(items, files):
        item.add_marker(pytest.mark.xdist_group(find(path)))
