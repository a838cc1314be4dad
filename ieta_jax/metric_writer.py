"""TensorBoard event files without TensorFlow.

Writes scalars, text and the run's hyperparameters with tensorboard's own
``EventFileWriter`` and protobufs, so ``tensorboard --logdir`` reads them and
nothing heavier than the ``tensorboard`` package is needed. Only process 0 of a
multi-host run writes (the others get a writer that drops everything), so
every host can call it unconditionally.
"""

from __future__ import annotations

import json
import time
from typing import Any, Mapping, Optional

import numpy as np
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.plugins.hparams import summary_v2 as hparams_summary
from tensorboard.plugins.text import metadata as text_metadata
from tensorboard.summary.writer.event_file_writer import EventFileWriter
from tensorboard.util import tensor_util


def _flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


class MetricWriter:
    """Scalars / text / hparams to ``<logdir>/events.out.tfevents.*``.

    ``writer.write_scalars(step, {"rewards/accuracies": 0.75})``. Values may be
    Python numbers, numpy or JAX scalars. Use as a context manager or call
    ``close()``; ``flush()`` makes everything written so far readable.
    """

    def __init__(self, logdir: str, *, enabled: Optional[bool] = None):
        if enabled is None:
            from ieta_jax import distributed

            enabled = distributed.is_primary()
        self.logdir = logdir
        self._writer = EventFileWriter(logdir) if enabled else None

    def _add(self, summary: summary_pb2.Summary, step: int) -> None:
        if self._writer is not None:
            self._writer.add_event(event_pb2.Event(summary=summary, step=int(step), wall_time=time.time()))

    def write_scalars(self, step: int, scalars: Mapping[str, Any]) -> None:
        values = []
        for name, value in scalars.items():
            v = float(np.asarray(value))
            values.append(summary_pb2.Summary.Value(tag=name, simple_value=v))
        self._add(summary_pb2.Summary(value=values), step)

    def write_text(self, step: int, texts: Mapping[str, str]) -> None:
        """Text summaries; text that is not valid UTF-8 (a program's lone surrogate) is written escaped."""
        meta = text_metadata.create_summary_metadata(display_name=None, description=None)
        values = [summary_pb2.Summary.Value(tag=name, metadata=meta,
                                            tensor=tensor_util.make_tensor_proto(_utf8(str(text))))
                  for name, text in texts.items()]
        self._add(summary_pb2.Summary(value=values), step)

    def write_hparams(self, hparams: Mapping[str, Any]) -> None:
        """Hyperparameters for TensorBoard's HParams tab (nested dicts flattened with dots).

        Values that are not bool/int/float/str are stored as their JSON text; the
        full config is also written as a text summary ``hparams`` for reading.
        """
        flat = {}
        for k, v in _flatten(hparams).items():
            if v is None:
                v = "None"
            elif not isinstance(v, (bool, int, float, str)):
                v = json.dumps(v, default=str)
            flat[k] = v
        self._add(hparams_summary.hparams_pb(flat), 0)
        self.write_text(0, {"hparams": "```\n" + json.dumps(flat, indent=1, sort_keys=True) + "\n```"})

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> "MetricWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_scalars(logdir: str) -> dict[str, list[tuple[int, float]]]:
    """All scalar series under ``logdir`` as ``{tag: [(step, value), ...]}`` (via TensorBoard's reader)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(logdir, size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def _utf8(text: str) -> str:
    """`text` as UTF-8 can carry it: lone surrogates escaped (the protobuf writer refuses them)."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")
