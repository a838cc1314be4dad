"""The entry points' tcmalloc re-execution (ieta_jax.allocator)."""
import os
import subprocess
import sys

import pytest

from ieta_jax import allocator

LIB = "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4"


def _only(*paths):
    return lambda p: p in paths


def test_preload_env_adds_the_library_found():
    env = allocator.preload_env({"PATH": "/bin"}, exists=_only(LIB))
    assert env == {"PATH": "/bin", "LD_PRELOAD": LIB}


def test_preload_env_keeps_an_existing_preload_after_tcmalloc():
    env = allocator.preload_env({"LD_PRELOAD": "/opt/libother.so"}, exists=_only(LIB))
    assert env["LD_PRELOAD"] == f"{LIB} /opt/libother.so"


@pytest.mark.parametrize("environ", [
    {"IETA_TCMALLOC": "0"},                       # turned off
    {"IETA_TCMALLOC": "off"},
    {"LD_PRELOAD": LIB},                          # already preloaded: a re-executed process does not loop
    {"LD_PRELOAD": "/usr/local/lib/libtcmalloc.so.4"},
])
def test_preload_env_leaves_the_process_alone(environ):
    assert allocator.preload_env(environ, exists=_only(LIB)) is None


def test_preload_env_without_a_library_carries_on():
    assert allocator.preload_env({}, exists=_only()) is None


def test_preload_env_takes_an_explicit_library_path():
    env = allocator.preload_env({"IETA_TCMALLOC": "/opt/tc/libtcmalloc.so"}, exists=_only(LIB, "/opt/tc/libtcmalloc.so"))
    assert env["LD_PRELOAD"] == "/opt/tc/libtcmalloc.so"
    assert allocator.preload_env({"IETA_TCMALLOC": "/missing/libtcmalloc.so"}, exists=_only(LIB)) is None


@pytest.mark.skipif(allocator.find_library() is None,
                    reason="no tcmalloc installed: apt-get install -y libtcmalloc-minimal4")
@pytest.mark.parametrize("setting,mapped", [("", True), ("0", False)])
def test_use_tcmalloc_reexecutes_the_same_command_with_it_mapped(setting, mapped):
    # The re-executed process runs the same command (here -c with an argument) and has tcmalloc mapped.
    code = ("import sys; from ieta_jax import allocator; allocator.use_tcmalloc(); "
            "print(sys.argv[1:], 'tcmalloc' in open('/proc/self/maps').read())")
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    env["IETA_TCMALLOC"] = setting
    out = subprocess.run([sys.executable, "-c", code, "--flag=x"], env=env, capture_output=True, text=True,
                         timeout=60, check=True)
    assert out.stdout.strip() == f"['--flag=x'] {mapped}"
