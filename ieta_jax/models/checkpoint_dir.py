"""A local checkpoint directory checked before anything loads it, so a command-line tool names the bad file.

`check` reads what a loader would trip over (config.json, the safetensors headers, the tokenizer files) and raises
`CheckpointError` with one line naming the file and the problem, relative to the directory; the caller puts its flag
and the directory in front (`--model DIR: config.json is not valid JSON ...`). It reads headers only, never weights.
"""
from __future__ import annotations

import json
import os
from typing import Any


class CheckpointError(ValueError):
    """A checkpoint directory that cannot be loaded; the message names the file and the problem."""


_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json")
# Files a transformers tokenizer is built from: at least one must be there (tokenizer_config.json alone is not enough).
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "spiece.model", "vocab.json", "vocab.txt")


def _first_line(e: BaseException) -> str:
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[0] if lines else type(e).__name__


def check(model_dir: str) -> dict[str, Any]:
    """config.json of the checkpoint in `model_dir` (a dict), after checking the files a loader reads."""
    from ieta_jax.models.checkpoint import SafetensorsFile
    from ieta_jax.models.config import ModelConfig

    if not os.path.isdir(model_dir):
        raise CheckpointError("not a directory")
    config_path = os.path.join(model_dir, "config.json")
    if not os.path.isfile(config_path):
        raise CheckpointError("no config.json there (expected a checkpoint directory)")
    try:
        with open(config_path, encoding="utf-8") as f:
            hf = json.load(f)
    except (ValueError, OSError) as e:  # ValueError: bad JSON or not UTF-8
        raise CheckpointError(f"config.json is not valid JSON: {_first_line(e)}") from None
    if not isinstance(hf, dict):
        raise CheckpointError(f"config.json must be a JSON object, got {type(hf).__name__}")
    positions = hf.get("max_position_embeddings")
    if positions is not None and (type(positions) is not int or positions < 1):
        raise CheckpointError(f"config.json: max_position_embeddings must be a positive integer, got {positions!r}")
    try:
        ModelConfig.from_hf(hf)
    except KeyError as e:
        raise CheckpointError(f"config.json lacks {e}") from None
    except (ValueError, TypeError, AttributeError) as e:
        raise CheckpointError(f"config.json: {_first_line(e)}") from None
    if not any(os.path.isfile(os.path.join(model_dir, name)) for name in _WEIGHT_FILES):
        raise CheckpointError(f"no {' or '.join(_WEIGHT_FILES)} (only safetensors checkpoints are supported)")
    for name in sorted(os.listdir(model_dir)):
        if name.endswith(".safetensors"):
            path = os.path.join(model_dir, name)
            try:
                SafetensorsFile(path)
            except Exception as e:  # noqa: BLE001 - whatever the header parse hit, the file is not safetensors
                line = _first_line(e)
                if isinstance(e, ValueError) and line.startswith(f"{path} is not a valid safetensors file"):
                    raise CheckpointError(name + line[len(path):]) from None  # its own words, the name relative
                raise CheckpointError(f"{name} is not a valid safetensors file ({type(e).__name__}: {line})") from None
    if not any(os.path.isfile(os.path.join(model_dir, name)) for name in _TOKENIZER_FILES):
        raise CheckpointError(f"no tokenizer files (none of {', '.join(_TOKENIZER_FILES)})")
    return hf


def load_error(e: BaseException) -> str:
    """One line for a loader failure that `check` did not foresee (a tensor missing, a shape that does not fit)."""
    return f"cannot be loaded: {_first_line(e)}"
