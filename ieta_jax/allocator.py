"""tcmalloc for the host side of XLA, chosen at process start by the command-line entry points.

XLA:CPU allocates each execution's buffers afresh; glibc serves allocations this large with mmap and unmaps them
at free, so every train step and every `generate` call first-touches its temporaries again: about 94,000 page
faults per train step of `bench.model`'s tiny preset (8 x 256 tokens) and 200,000 per smoke-sized `generate`
call. tcmalloc keeps freed spans for reuse: 143 faults per step and 13% less CPU per step on 2 cores, with
bitwise-identical losses, gradients and samples. (MaxText preloads tcmalloc for the same reason.)

`python -m launch.main`, `python -m ieta_jax.evaluate` and `python -m ieta_jax.serve` call `use_tcmalloc()`
before anything imports JAX: where a tcmalloc library is installed (Debian: `apt-get install -y
libtcmalloc-minimal4`) and not yet preloaded, the process re-executes itself with it in LD_PRELOAD. Without one
it carries on with glibc. `IETA_TCMALLOC=0` turns this off; `IETA_TCMALLOC=<path>` picks the library.
The benchmarks do not re-execute: they compare against PyTorch in the same process, under the same allocator.
"""
from __future__ import annotations

import os
import sys
from typing import Callable, Mapping

ENV = "IETA_TCMALLOC"
LIBRARIES = ("libtcmalloc_minimal.so.4", "libtcmalloc.so.4")
LIBRARY_DIRS = ("/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/usr/lib64", "/usr/lib",
                "/usr/local/lib")


def find_library(exists: Callable[[str], bool] = os.path.exists) -> str | None:
    """Path of an installed tcmalloc library, or None."""
    for directory in LIBRARY_DIRS:
        for name in LIBRARIES:
            path = os.path.join(directory, name)
            if exists(path):
                return path
    return None


def preload_env(environ: Mapping[str, str], exists: Callable[[str], bool] = os.path.exists) -> dict | None:
    """The environment to re-execute with (tcmalloc added to LD_PRELOAD), or None to carry on as is: turned off
    (IETA_TCMALLOC=0), no library found, or one already preloaded (so a re-executed process never loops)."""
    choice = environ.get(ENV, "").strip()
    if choice.lower() in ("0", "false", "no", "off"):
        return None
    preloaded = environ.get("LD_PRELOAD", "")
    if "tcmalloc" in preloaded:
        return None
    path = choice if choice and choice.lower() not in ("1", "true", "yes", "on") else find_library(exists)
    if not path or not exists(path):
        return None
    env = dict(environ)
    env["LD_PRELOAD"] = f"{path} {preloaded}".strip() if preloaded else path
    return env


def use_tcmalloc() -> None:
    """Re-execute this process (same interpreter, same arguments) with tcmalloc preloaded where preload_env says
    so; return otherwise. Call it first thing in a `__main__` block, before JAX is imported."""
    env = preload_env(os.environ)
    if env is None or not sys.platform.startswith("linux"):
        return
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        os.execve(sys.executable, list(sys.orig_argv), env)
    except OSError as e:  # carry on with glibc: slower, not wrong
        print(f"warning: could not re-execute with {env['LD_PRELOAD']} ({e}); using the default allocator",
              file=sys.stderr)
