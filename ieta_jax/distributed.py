"""Cross-process coordination for the experiment loop (multi-host TPU pods, multi-process GPU/CPU).

The loop's rule: every process builds the same mesh and runs every jitted computation with the same inputs;
process 0 alone does the host-side work that must happen once (train the tokenizer, run programs in the
sandbox fleet, write files) and hands its results to the others with ``on_primary``. With one process
every helper here is a plain call: no barrier, no broadcast, no extra cost.
"""
from __future__ import annotations

import json
from typing import Any, Callable, TypeVar

import jax
import numpy as np

from ieta_jax.workdir import json_default

T = TypeVar("T")


def is_multiprocess() -> bool:
    return jax.process_count() > 1


def is_primary() -> bool:
    """True on process 0: the one that runs sandboxes and writes the workdir."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Wait until every process reaches the barrier ``name`` (a no-op with one process)."""
    if is_multiprocess():
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def broadcast_json(value: Any) -> Any:
    """Process 0's JSON-serialisable ``value`` on every process (others pass anything, e.g. None).

    The length goes first, then the bytes padded to a power of two, so a run compiles the broadcast
    for a handful of sizes, not once per message.
    """
    if not is_multiprocess():
        return value
    from jax.experimental import multihost_utils

    payload = json.dumps(value, default=json_default).encode() if is_primary() else b""
    length = int(multihost_utils.broadcast_one_to_all(np.int64(len(payload))))
    size = 1 << max(10, (length - 1).bit_length())
    buf = np.zeros(size, np.uint8)
    if is_primary():
        buf[:length] = np.frombuffer(payload, np.uint8)
    buf = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    return json.loads(buf[:length].tobytes().decode())


def on_primary(fn: Callable[[], T]) -> T:
    """``fn()`` run on process 0 only; its (JSON-serialisable) result returned on every process.

    An exception on process 0 is re-raised on every process (as RuntimeError on the others), so no
    process is left waiting in a collective that the failed one will never join.
    """
    if not is_multiprocess():
        return fn()
    result, error = None, None
    if is_primary():
        try:
            result = fn()
        except Exception as e:  # noqa: BLE001 - reported to every process below
            error = e
    msg = broadcast_json({"ok": error is None, "value": result if error is None else None,
                          "error": None if error is None else f"{type(error).__name__}: {error}"})
    if error is not None:
        raise error
    if not msg["ok"]:
        raise RuntimeError(f"process 0 failed: {msg['error']}")
    return msg["value"]
