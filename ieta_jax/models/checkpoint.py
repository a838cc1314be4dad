"""Hugging Face checkpoints in and out: config.json + safetensors (single file or sharded with an index).

Loading memory-maps each safetensors file and builds every parameter with `jax.make_array_from_callback`, so each
device (and each process) reads only its own slice of one tensor at a time: there is never a full host copy of the
model. Saving streams tensor by tensor into files that `transformers.AutoModelForCausalLM` loads.
"""
from __future__ import annotations

import json
import logging
import os
import struct
from typing import Any

import jax
import ml_dtypes
import numpy as np
from flax import nnx
from jax.sharding import Mesh, SingleDeviceSharding
from tqdm.auto import tqdm

from ieta_jax import distributed, sharding
from ieta_jax.models.config import ModelConfig
from ieta_jax.models.llama import CausalLM, RewardModel

log = logging.getLogger(__name__)
PROGRESS_MIN_PARAMS = 100_000_000  # show a progress bar when loading/saving models at least this large

SAFE_DTYPES = {
    "F64": np.dtype(np.float64), "F32": np.dtype(np.float32), "F16": np.dtype(np.float16),
    "BF16": np.dtype(ml_dtypes.bfloat16), "I64": np.dtype(np.int64), "I32": np.dtype(np.int32),
    "I16": np.dtype(np.int16), "I8": np.dtype(np.int8), "U8": np.dtype(np.uint8), "BOOL": np.dtype(bool),
}
_DTYPE_CODES = {v: k for k, v in SAFE_DTYPES.items()}
# Tensors that HF checkpoints may carry and our models derive or do not use.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


# ---------------------------------------------------------------------------------------------- safetensors I/O
class SafetensorsFile:
    """Memory-mapped safetensors file: `file[name]` is a lazy numpy view (nothing is read until sliced)."""

    def __init__(self, path: str):
        self.path = path
        header_len, header = _read_header(path)
        self.metadata = header.pop("__metadata__", None) or {}
        self.entries = header
        self._data_start = 8 + header_len
        self._mmap = np.memmap(path, dtype=np.uint8, mode="r")

    def keys(self):
        return self.entries.keys()

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.entries[name]["shape"])

    def __getitem__(self, name: str) -> np.ndarray:
        entry = self.entries[name]
        if entry["dtype"] not in SAFE_DTYPES:
            raise ValueError(f"{self.path}: tensor {name!r} has unsupported dtype {entry['dtype']}")
        start, end = entry["data_offsets"]
        raw = self._mmap[self._data_start + start:self._data_start + end]
        return raw.view(SAFE_DTYPES[entry["dtype"]]).reshape(entry["shape"])


def _read_header(path: str) -> tuple[int, dict]:
    """(header length, header) of a safetensors file, every tensor's bytes inside the file; else a ValueError
    naming the file (a truncated copy or garbage, not a JSONDecodeError from deep inside the loader)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(8)
        header_len = struct.unpack("<Q", head)[0] if len(head) == 8 else None
        if header_len is None or header_len > size - 8:
            raise ValueError(f"{path} is not a valid safetensors file (truncated: {size} bytes, shorter than its "
                             "header)")
        try:
            header = json.loads(f.read(header_len))
        except (ValueError, RecursionError) as e:
            raise ValueError(f"{path} is not a valid safetensors file (bad header: {e})") from None
    if not isinstance(header, dict):
        raise ValueError(f"{path} is not a valid safetensors file (bad header: not a JSON object)")
    data_len = size - 8 - header_len
    for name, entry in header.items():
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if name != "__metadata__" and not (isinstance(offsets, list) and len(offsets) == 2
                                           and 0 <= offsets[0] <= offsets[1] <= data_len):
            raise ValueError(f"{path} is not a valid safetensors file (tensor {name!r} has data_offsets {offsets!r}; "
                             f"the file holds {data_len} data bytes: truncated?)")
    return header_len, header


def write_safetensors(path: str, tensors: list[tuple[str, tuple[int, ...], np.dtype]], produce,
                      metadata: dict[str, str] | None = None):
    """Writes a safetensors file from (name, shape, dtype) specs; `produce(name)` returns each array when its turn
    comes, so only one tensor is in host memory at a time."""
    header: dict[str, Any] = {"__metadata__": dict(metadata or {"format": "pt"})}
    offset = 0
    for name, shape, dtype in tensors:
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        header[name] = {"dtype": _DTYPE_CODES[np.dtype(dtype)], "shape": list(shape),
                        "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for name, shape, dtype in tensors:
            array = np.ascontiguousarray(produce(name), dtype=dtype)
            if array.shape != tuple(shape):
                raise ValueError(f"tensor {name}: produced shape {array.shape}, expected {tuple(shape)}")
            f.write(array.tobytes())


# ---------------------------------------------------------------------------------------------- name mapping
def _hf_entries(state: nnx.State) -> list[tuple[tuple, str, bool]]:
    """(our path, HF tensor name, transposed?) for every parameter: a `kernel` is the transposed HF `weight`."""
    out = []
    for path, _ in nnx.to_flat_state(state):
        parts = [str(p) for p in path]
        transposed = parts[-1] == "kernel"
        if transposed:
            parts[-1] = "weight"
        out.append((tuple(path), ".".join(parts), transposed))
    return out


def _resolve_dir(path_or_hub_id: str) -> str:
    if os.path.isdir(path_or_hub_id):
        return path_or_hub_id
    try:  # a hub id that is already in the local cache; never downloads
        from huggingface_hub import snapshot_download
        return snapshot_download(path_or_hub_id, local_files_only=True)
    except Exception as err:  # noqa: BLE001 - any failure means "not available locally"
        raise FileNotFoundError(
            f"{path_or_hub_id!r} is not a local checkpoint directory and is not in the local Hugging Face cache "
            f"(downloads are disabled): {err}") from None


def _open_weights(directory: str) -> dict[str, SafetensorsFile]:
    """Tensor name -> open file, from model.safetensors or model.safetensors.index.json."""
    index_path = os.path.join(directory, "model.safetensors.index.json")
    single_path = os.path.join(directory, "model.safetensors")
    if os.path.exists(index_path):
        with open(index_path) as f:
            weight_map = json.load(f)["weight_map"]
        files: dict[str, SafetensorsFile] = {}
        for fname in sorted(set(weight_map.values())):
            fpath = os.path.join(directory, fname)
            if not os.path.exists(fpath):
                raise FileNotFoundError(f"{index_path} lists {fname}, which is missing from {directory}")
            files[fname] = SafetensorsFile(fpath)
        return {name: files[fname] for name, fname in weight_map.items()}
    if os.path.exists(single_path):
        f = SafetensorsFile(single_path)
        return {name: f for name in f.keys()}
    present = sorted(os.listdir(directory))
    raise FileNotFoundError(f"no model.safetensors or model.safetensors.index.json in {directory} "
                            f"(found {present}); only safetensors checkpoints are supported")


def load_config(path_or_hub_id: str, **overrides) -> ModelConfig:
    directory = _resolve_dir(path_or_hub_id)
    config_path = os.path.join(directory, "config.json")
    if not os.path.exists(config_path):
        raise FileNotFoundError(f"no config.json in {directory}")
    with open(config_path) as f:
        return ModelConfig.from_hf(json.load(f), **overrides)


def from_pretrained(path_or_hub_id: str, dtype: str = "float32", mesh: Mesh | None = None, *,
                    param_dtype: str | None = None, model_class: type = CausalLM, seed: int = 0,
                    progress: bool | None = None, attention: str = "auto"):
    """Loads a HF Llama/Qwen2/Mistral checkpoint into a CausalLM (or RewardModel).

    dtype: compute dtype; param_dtype: storage dtype (default: dtype); attention: `ModelConfig.attention`. With `mesh`, every parameter is placed in
    its LOGICAL_RULES sharding directly from the memory-mapped file; without, on the default device.
    `progress` (default: only for models >= 100M parameters) shows a tqdm bar over tensors.
    A RewardModel loaded from a causal-LM checkpoint gets a freshly initialised `score` head (normal, std
    initializer_range, PRNG seed `seed`).
    """
    directory = _resolve_dir(path_or_hub_id)
    cfg = load_config(directory, dtype=dtype, param_dtype=param_dtype or dtype, attention=attention)
    weights = _open_weights(directory)

    abstract = nnx.eval_shape(lambda: model_class(cfg, rngs=nnx.Rngs(seed)))
    graphdef, abstract_state = nnx.split(abstract)
    if mesh is not None:
        shardings = dict(nnx.to_flat_state(sharding.state_shardings(abstract_state, mesh)))
    else:
        local = SingleDeviceSharding(jax.local_devices()[0])
        shardings = {path: local for path, _ in nnx.to_flat_state(abstract_state)}
    target_dtype = np.dtype(cfg.param_dtype)
    flat_abstract = dict(nnx.to_flat_state(abstract_state))
    values = {}
    missing = []
    show = cfg.num_params() >= PROGRESS_MIN_PARAMS if progress is None else progress
    entries = _hf_entries(abstract_state)
    for path, hf_name, transposed in tqdm(entries, desc=f"loading {os.path.basename(directory.rstrip('/'))}",
                                          unit="tensor", disable=not show or not distributed.is_primary()):
        expected = tuple(flat_abstract[path].get_value().shape)
        if hf_name not in weights:
            missing.append(hf_name)
            continue
        stored = weights[hf_name].shape(hf_name)
        if (stored[::-1] if transposed else stored) != expected:
            raise ValueError(f"{directory}: tensor {hf_name} has shape {stored}, but config.json implies "
                             f"{expected[::-1] if transposed else expected}")
        view = weights[hf_name][hf_name]
        view = view.T if transposed else view
        target = shardings[path]
        values[path] = jax.make_array_from_callback(
            expected, target, lambda idx, v=view: np.asarray(v[idx], dtype=target_dtype))
    if missing:
        if model_class is RewardModel and missing == ["score.weight"]:
            log.warning("%s has no score.weight: initialising the reward head randomly", directory)
            fresh = cfg.initializer_range * jax.random.normal(jax.random.key(seed), (cfg.hidden_size, 1))
            values[("score", "kernel")] = sharding._put_global(np.asarray(fresh, target_dtype),
                                                               shardings[("score", "kernel")])
        else:
            raise ValueError(f"{directory}: checkpoint lacks tensors {missing[:8]}"
                             f"{' ...' if len(missing) > 8 else ''} required by model_type={cfg.model_type!r}")
    expected_names = {name for _, name, _ in _hf_entries(abstract_state)}
    unexpected = [n for n in weights if n not in expected_names and not n.endswith(_IGNORED_SUFFIXES)
                  and not (n == "lm_head.weight" and (cfg.tie_word_embeddings or model_class is RewardModel))]
    if unexpected:
        log.warning("ignoring %d unexpected tensors in %s: %s", len(unexpected), directory, unexpected[:5])
    state = nnx.from_flat_state([(p, v.replace(values[p])) for p, v in nnx.to_flat_state(abstract_state)])
    return nnx.merge(graphdef, state)


def save_pretrained(model, out_dir: str, *, tokenizer=None, dtype: str | None = None,
                    max_shard_bytes: int = 2 * 1024 ** 3, progress: bool | None = None):
    """Writes config.json + safetensors (sharded with an index above `max_shard_bytes`) that transformers loads.

    Works for sharded and multi-process models: every process must call it (tensors are gathered one at a time);
    only process 0 writes files.
    """
    cfg: ModelConfig = model.config
    save_dtype = np.dtype(dtype or cfg.param_dtype)
    _, state = nnx.split(model, nnx.Param)
    flat = dict(nnx.to_flat_state(state))
    entries = _hf_entries(state)
    specs = []
    for path, name, transposed in entries:
        shape = tuple(flat[path].get_value().shape)
        specs.append((name, shape[::-1] if transposed else shape, save_dtype))
    by_name = {name: (path, transposed) for path, name, transposed in entries}

    def produce(name):
        path, transposed = by_name[name]
        host = sharding.gather_to_host(flat[path].get_value())
        return host.T if transposed else host

    # Greedy split into shards of at most max_shard_bytes.
    shards, current, size = [], [], 0
    for spec in specs:
        nbytes = int(np.prod(spec[1], dtype=np.int64)) * save_dtype.itemsize
        if current and size + nbytes > max_shard_bytes:
            shards.append(current)
            current, size = [], 0
        current.append(spec)
        size += nbytes
    shards.append(current)

    writer = distributed.is_primary()
    show = cfg.num_params() >= PROGRESS_MIN_PARAMS if progress is None else progress
    bar = tqdm(total=len(specs), desc=f"saving {out_dir}", unit="tensor", disable=not show or not writer)
    inner_produce = produce

    def produce(name):  # noqa: F811 - wraps the gather with the progress bar
        bar.update(1)
        return inner_produce(name)

    if writer:
        os.makedirs(out_dir, exist_ok=True)
    weight_map = {}
    for i, shard_specs in enumerate(shards):
        fname = "model.safetensors" if len(shards) == 1 else f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors"
        if writer:
            write_safetensors(os.path.join(out_dir, fname), shard_specs, produce)
        else:  # take part in the gathers in the same order
            for name, _, _ in shard_specs:
                produce(name)
        weight_map.update({name: fname for name, _, _ in shard_specs})
    bar.close()
    if not writer:
        return
    if len(shards) > 1:
        total = sum(int(np.prod(s[1], dtype=np.int64)) * save_dtype.itemsize for s in specs)
        with open(os.path.join(out_dir, "model.safetensors.index.json"), "w") as f:
            json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2)
    hf_config = cfg.replace(param_dtype=save_dtype.name).to_hf()
    if isinstance(model, RewardModel):
        arch = hf_config["architectures"][0].replace("ForCausalLM", "ForSequenceClassification")
        hf_config.update(architectures=[arch], num_labels=1, id2label={"0": "LABEL_0"}, label2id={"LABEL_0": 0})
    with open(os.path.join(out_dir, "config.json"), "w") as f:
        json.dump(hf_config, f, indent=2)
    if tokenizer is not None:
        tokenizer.save_pretrained(out_dir)


def load_tokenizer(path_or_hub_id: str):
    """The `transformers.AutoTokenizer` stored next to the checkpoint."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(_resolve_dir(path_or_hub_id))
