"""Orbax checkpoints of a trainer: state pytree (params, optimizer state, step, RNG) + JSON metadata.

One ``CheckpointManager`` per run directory, saving asynchronously (training
continues while the arrays are written) and keeping the last ``max_to_keep``
steps. Orbax writes each step into a temporary directory and renames it when
complete, so a process killed mid-save (even ``kill -9``) leaves the previous
checkpoint as the latest readable one.

Layout::

    <directory>/<step>/state/...      arrays (sharded, OCDBT)
    <directory>/<step>/meta/...       JSON: data position, metric history, config
"""

from __future__ import annotations

import os
from typing import Any, Optional

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Save / restore ``(state, meta)`` pairs under ``directory``.

    ``state`` is any pytree of arrays (typically a trainer's ``TrainState``);
    ``meta`` a JSON-serialisable dict. ``save_every`` steps are saved (plus any
    ``force=True`` save, e.g. the final step).
    """

    def __init__(self, directory: str, *, max_to_keep: int = 3, save_every: int = 100,
                 async_save: bool = True):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        if save_every < 1:
            raise ValueError(f"save_every must be >= 1, got {save_every}")
        self.directory = os.path.abspath(directory)
        self.save_every = save_every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            create=True,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options)

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
        """Start an (async) save of ``state`` and ``meta`` at ``step``; returns whether one started."""
        if not force and step % self.save_every:
            return False
        if step in self._manager.all_steps():
            return False
        return self._manager.save(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)),
            force=True,
        )

    def restore(self, abstract_state: Any, step: Optional[int] = None) -> Optional[tuple[int, Any, dict]]:
        """Restore ``(step, state, meta)`` (latest step by default), or None when there is none.

        ``abstract_state`` is a pytree of ``jax.ShapeDtypeStruct`` with shardings
        (``jax.eval_shape`` output plus shardings); arrays come back laid out on
        those shardings, whatever mesh wrote them.
        """
        step = self._manager.latest_step() if step is None else step
        if step is None:
            return None
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state), meta=ocp.args.JsonRestore()),
        )
        return step, out["state"], dict(out["meta"])

    def wait(self) -> None:
        """Block until pending async saves are on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()

    def __enter__(self) -> "Checkpointer":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def abstract_like(tree: Any) -> Any:
    """``ShapeDtypeStruct`` (with sharding) for every array leaf of ``tree``."""
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)), tree)
