"""Shared trainer machinery: the sharded train state, the jitted step, the loop, checkpoints and metrics.

A trainer splits its nnx model once into a graph definition and a pure pytree
of float32 master parameters, and trains that pytree with a plain
``train_step(state, aux, batch) -> (state, metrics)`` that is jitted once
with explicit in/out shardings on the mesh and donates ``state``. Subclasses
supply only ``loss_fn(params, aux, batch, rng) -> (loss, metrics)`` and how
to turn their data into fixed-shape host batches.

Data order is a pure function of the step (``batching.stream_indices``), and
the checkpoint holds params, optimizer state, step, RNG, the skipped-step
count and (as JSON) the data position and metric history; so a run killed at
any point and started again with the same command resumes from the last
checkpoint and finishes with the same metrics as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from typing import Any, Callable, Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
from tqdm.auto import tqdm

from ieta_jax import losses, optim, sharding
from ieta_jax.checkpointing import Checkpointer, abstract_like
from ieta_jax.metric_writer import MetricWriter

# Dense bf16 peak FLOP/s per device, for perf/mfu. Unknown devices (CPUs) get no MFU.
PEAK_BF16_FLOPS = {
    "NVIDIA H100 80GB HBM3": 989e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA A100-SXM4-80GB": 312e12,
    "NVIDIA A100-SXM4-40GB": 312e12,
    "NVIDIA A100 80GB PCIe": 312e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v6 lite": 918e12,
}


def device_peak_flops(device: jax.Device) -> Optional[float]:
    kind = getattr(device, "device_kind", "")
    if kind in PEAK_BF16_FLOPS:
        return PEAK_BF16_FLOPS[kind]
    for name, peak in PEAK_BF16_FLOPS.items():
        if kind.startswith(name):
            return peak
    return None


@flax.struct.dataclass
class TrainState:
    """Everything a step changes: optimizer step, fp32 params, optimizer state, RNG, skipped-update count."""

    step: jax.Array
    params: Any
    opt_state: Any
    rng: jax.Array  # raw uint32[2] key (checkpointable)
    skipped: jax.Array


@dataclasses.dataclass
class TrainerConfig:
    """Settings every trainer shares."""

    batch_size: int = 8  # examples (pairs for DPO / reward) per optimizer update, all micro-batches together
    # prompt + completion tokens, padded; one static shape, one compilation. Longer examples keep the end of the
    # prompt and the start of the completion (batching._fit), unlike TRL's default (keep_start: the end of
    # prompt + completion is cut, and an example whose prompt fills max_length is dropped): a truncated program
    # stays next to its task, and no example silently disappears.
    max_length: int = 256
    pad_token_id: int = 0
    optim: optim.OptimConfig = dataclasses.field(default_factory=optim.OptimConfig)
    seed: int = 0
    shuffle: bool = True
    save_every: int = 100  # checkpoint every N steps (and at the end of fit) when a workdir is given
    keep_checkpoints: int = 3
    log_every: int = 1  # TensorBoard write interval (history keeps every step)
    peak_flops: Optional[float] = None  # per-device peak for perf/mfu; None = look the device up
    progress: bool = True  # tqdm bar

    def __post_init__(self):
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if self.batch_size % self.optim.grad_accum_steps:
            raise ValueError(f"batch_size={self.batch_size} is not divisible by "
                             f"optim.grad_accum_steps={self.optim.grad_accum_steps}")
        if self.max_length < 2:
            raise ValueError(f"max_length must be >= 2, got {self.max_length}")


def pure_values(state: nnx.State) -> nnx.State:
    """An nnx.State of plain arrays (Variables unwrapped), the form jit and Orbax take."""
    return jax.tree.map(lambda v: v.get_value() if isinstance(v, nnx.Variable) else v, state,
                        is_leaf=lambda x: isinstance(x, nnx.Variable))


def split_model(model: nnx.Module, mesh: Mesh) -> tuple[nnx.GraphDef, Any, Any, Any, Any]:
    """``(graphdef, params, params_shardings, frozen, frozen_shardings)`` with arrays placed on ``mesh``.

    ``params`` are the trainable ``nnx.Param`` leaves in float32 (master
    weights); ``frozen`` is every other variable (buffers), left as is. Both
    are fresh buffers, never aliases of the model's arrays.
    """
    graphdef, params, frozen = nnx.split(model, nnx.Param, ...)
    p_sh = sharding.state_shardings(params, mesh)
    f_sh = sharding.state_shardings(frozen, mesh)
    params = optim.to_master(pure_values(params))
    frozen = pure_values(frozen)
    # Own copies: the train step donates its state, which must never delete the caller's model arrays.
    # (device_put may alias the source buffer on one of the devices, so the copy is an explicit jitted one).
    copy = lambda tree, sh: jax.jit(lambda t: jax.tree.map(jnp.copy, t), out_shardings=sh)(  # noqa: E731
        jax.tree.map(jax.device_put, tree, sh))
    params, frozen = copy(params, p_sh), copy(frozen, f_sh)
    return graphdef, params, p_sh, frozen, f_sh


def _opt_state_shardings(abstract_opt: Any, params: Any, p_sh: Any, mesh: Mesh) -> Any:
    """Moments take their parameter's sharding (matched by path suffix and shape); scalars are replicated."""
    by_path = {}
    for (path, leaf), (_, sh) in zip(jax.tree_util.tree_flatten_with_path(params)[0],
                                     jax.tree_util.tree_flatten_with_path(p_sh)[0]):
        by_path[jax.tree_util.keystr(path)] = (leaf.shape, sh)
    replicated = NamedSharding(mesh, P())

    def one(path, leaf):
        key = jax.tree_util.keystr(path)
        for p_key, (shape, sh) in by_path.items():
            if key.endswith(p_key) and tuple(leaf.shape) == tuple(shape):
                return sh
        return replicated

    return jax.tree_util.tree_map_with_path(one, abstract_opt)


def train_step(state: TrainState, aux: dict, batch: dict, *, loss_fn: Callable, tx: optax.GradientTransformation,
               schedule: optax.Schedule, grad_accum_steps: int) -> tuple[TrainState, dict]:
    """One optimizer update: gradients of ``loss_fn(params, aux, batch, rng)`` (accumulated over micro-batches),
    the guarded AdamW update, and the step's metrics (``train/*`` added to the loss's own)."""
    rng, step_rng = jax.random.split(state.rng)
    loss, metrics, grads = optim.accumulate_gradients(
        lambda p, mb: loss_fn(p, aux, mb, step_rng), state.params, batch, grad_accum_steps)
    params, opt_state, grad_norm, skipped = optim.guarded_update(tx, state.params, state.opt_state, grads, loss)
    new_state = TrainState(step=state.step + 1, params=params, opt_state=opt_state, rng=rng,
                           skipped=state.skipped + skipped.astype(jnp.int32))
    metrics = dict(metrics)
    metrics.update({
        "train/loss": loss,
        "train/grad_norm": grad_norm,
        "train/learning_rate": schedule(state.step - state.skipped),
        "train/skipped_steps": new_state.skipped,
    })
    return new_state, metrics


def compile_train_step(loss_fn: Callable, tx: optax.GradientTransformation, schedule: optax.Schedule,
                       grad_accum_steps: int, state_shardings: TrainState, aux_shardings: Any, batch_shardings: Any,
                       replicated: NamedSharding) -> Callable:
    """``train_step`` jitted once: explicit in/out shardings, the state donated (updated in place)."""
    step = functools.partial(train_step, loss_fn=loss_fn, tx=tx, schedule=schedule,
                             grad_accum_steps=grad_accum_steps)
    return jax.jit(step, in_shardings=(state_shardings, aux_shardings, batch_shardings),
                   out_shardings=(state_shardings, replicated), donate_argnums=(0,))


class Trainer:
    """Base class. Subclasses define ``loss_fn`` and ``_prepare`` (data -> host arrays), and set ``name``."""

    name = "trainer"

    def __init__(self, model: nnx.Module, config: TrainerConfig, *, mesh: Optional[Mesh] = None,
                 workdir: Optional[str] = None, writer: Optional[MetricWriter] = None):
        self.config = config
        self.mesh = mesh if mesh is not None else sharding.make_mesh()
        self.model_config = getattr(model, "config", None)
        self.graphdef, params, self.params_shardings, frozen, frozen_sh = split_model(model, self.mesh)
        # Inputs of the step that it does not train: the model's non-Param state, plus what subclasses add
        # (e.g. a reference model's params). Passed as an argument, never baked in as constants.
        self.aux: dict[str, Any] = {"frozen": frozen}
        self.aux_shardings: dict[str, Any] = {"frozen": frozen_sh}
        self.num_params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
        self.tx = optim.make_optimizer(config.optim)
        self.schedule = optim.make_schedule(config.optim)
        replicated = NamedSharding(self.mesh, P())
        self._replicated = replicated
        abstract_opt = jax.eval_shape(self.tx.init, params)
        opt_sh = _opt_state_shardings(abstract_opt, params, self.params_shardings, self.mesh)
        opt_state = jax.jit(self.tx.init, out_shardings=opt_sh)(params)
        self.state_shardings = TrainState(step=replicated, params=self.params_shardings, opt_state=opt_sh,
                                          rng=replicated, skipped=replicated)
        self.state = TrainState(
            step=jax.device_put(jnp.int32(0), replicated), params=params, opt_state=opt_state,
            rng=jax.device_put(jax.random.PRNGKey(config.seed), replicated),
            skipped=jax.device_put(jnp.int32(0), replicated))
        self.history: list[dict[str, float]] = []
        self.meta: dict[str, Any] = {}
        self.workdir = workdir
        self.checkpointer = None
        if writer is None and workdir is not None:
            writer = MetricWriter(os.path.join(workdir, "tensorboard"))
        self.writer = writer
        self._step_fn = None
        self._resumable_fit = False  # the restored checkpoint may hold an unfinished fit() to continue
        self._peak = config.peak_flops if config.peak_flops is not None else device_peak_flops(self.mesh.devices.flat[0])
        if workdir is not None:
            self.checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"), max_to_keep=config.keep_checkpoints,
                                             save_every=config.save_every)
            self._restore()
        if self.writer is not None and not self.history:
            hp = {"trainer": self.name, **dataclasses.asdict(config)}
            if self.model_config is not None and dataclasses.is_dataclass(self.model_config):
                hp["model"] = dataclasses.asdict(self.model_config)
            hp["num_params"] = self.num_params
            hp["mesh"] = dict(self.mesh.shape)
            self.writer.write_hparams(hp)

    # ------------------------------------------------------------------ model access
    @property
    def step(self) -> int:
        return int(self.state.step)

    @property
    def model(self) -> nnx.Module:
        """The current policy as an nnx module (shares the trainer's arrays; read-only use)."""
        return nnx.merge(self.graphdef, self.state.params, self.aux["frozen"])

    def merge(self, params: Any, aux: dict) -> nnx.Module:
        """The nnx module for ``params`` inside a traced function (``aux`` is the step's aux argument)."""
        return nnx.merge(self.graphdef, params, aux["frozen"])

    # ------------------------------------------------------------------ to implement
    def loss_fn(self, params: Any, aux: dict, batch: dict, rng: jax.Array) -> tuple[jax.Array, dict]:
        raise NotImplementedError

    @staticmethod
    def count_tokens(batch: dict[str, np.ndarray]) -> int:
        """Non-padding tokens in a host batch (every ``*attention_mask`` array)."""
        return int(sum(v.sum() for k, v in batch.items() if k.endswith("attention_mask")))

    def flops_per_example(self, batch: dict) -> float:
        """Model FLOPs of one train step per example, for perf/mfu (default 6 N x tokens)."""
        return 6.0 * self.num_params * batch["input_ids"].shape[-1]

    # ------------------------------------------------------------------ the jitted step
    def train_step(self, host_batch: dict[str, np.ndarray]) -> dict[str, jax.Array]:
        """One optimizer update on a host batch (global arrays); returns device metrics (async)."""
        if self._step_fn is None:
            batch_sh = {k: sharding.batch_sharding(self.mesh, v.ndim, v.shape[0]) for k, v in host_batch.items()}
            self._step_fn = compile_train_step(self.loss_fn, self.tx, self.schedule,
                                               self.config.optim.grad_accum_steps, self.state_shardings,
                                               self.aux_shardings, batch_sh, self._replicated)
        batch = sharding.shard_batch(host_batch, self.mesh)  # global host arrays -> batch-sharded (multi-host safe)
        with jax.set_mesh(self.mesh):
            self.state, metrics = self._step_fn(self.state, self.aux, batch)
        return metrics

    # ------------------------------------------------------------------ checkpoint / metrics
    def _restore(self) -> None:
        out = self.checkpointer.restore(abstract_like(self.state))
        if out is None:
            return
        _, self.state, self.meta = out
        self.history = list(self.meta.get("history", []))
        self._resumable_fit = True

    def save(self, force: bool = False) -> None:
        """Checkpoint (every ``save_every`` steps, or now with ``force``); the history is saved with it."""
        if self.checkpointer is None:
            return
        self.meta["history"] = self.history
        self.checkpointer.save(self.step, self.state, self.meta, force=force)

    def _record(self, metrics: dict[str, Any], *, step: int, tokens: int, seconds: float, flops: float
                ) -> dict[str, float]:
        row = {k: float(np.asarray(v)) for k, v in jax.device_get(metrics).items()}
        row["step"] = step
        if seconds > 0:
            row["perf/tokens_per_sec"] = tokens / seconds
            if self._peak:
                row["perf/mfu"] = flops / seconds / (self._peak * self.mesh.devices.size)
        self.history.append(row)
        if self.writer is not None and (step % self.config.log_every == 0):
            self.writer.write_scalars(step, {k: v for k, v in row.items() if k != "step"})
        return row

    def close(self) -> None:
        if self.checkpointer is not None:
            self.checkpointer.close()
        if self.writer is not None:
            self.writer.flush()

    # ------------------------------------------------------------------ the loop
    def _prepare(self, data: Any) -> dict[str, np.ndarray]:
        raise NotImplementedError

    def _finalize_batch(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return batch

    def _fit_inputs(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Per-example inputs that ``fit`` computes once per data set (DPO: reference log-probs)."""
        return batch

    def make_batch(self, data: Any, indices: Optional[Sequence[int]] = None) -> dict[str, np.ndarray]:
        """The host batch ``train_step`` takes, for examples ``indices`` of ``data`` (default: the first ``batch_size``).

        The same arrays ``fit`` feeds the step (padding, masks, and what fit precomputes, such as DPO's reference
        log-probs): for benchmarks, tests and custom loops.
        """
        arrays = self._prepare(data)
        n = next(iter(arrays.values())).shape[0]
        idx = np.arange(min(self.config.batch_size, n)) if indices is None else np.asarray(indices)
        return self._finalize_batch(self._fit_inputs({k: v[idx] for k, v in arrays.items()}))

    def _batch_indices(self, arrays: dict[str, np.ndarray], start: int, count: int) -> np.ndarray:
        """Examples ``start .. start + count`` of fit's data order (a pure function of the position)."""
        from ieta_jax.trainers.batching import stream_indices

        n = next(iter(arrays.values())).shape[0]
        return stream_indices(n, start, count, self.config.seed, self.config.shuffle)

    def _begin_fit(self, arrays: dict[str, np.ndarray], num_steps: int) -> int:
        """The step this fit started at: resumed from the checkpoint when it holds the same data set."""
        fp = self._fingerprint(arrays)
        fit = self.meta.get("fit")
        resumable, self._resumable_fit = self._resumable_fit, False  # only the first fit after a restore resumes
        if resumable and fit is not None and fit.get("fingerprint") == fp and fit.get("num_steps") == num_steps:
            return int(fit["start_step"])
        self.meta["fit"] = {"fingerprint": fp, "start_step": self.step, "num_steps": num_steps}
        return self.step

    @staticmethod
    def _fingerprint(arrays: dict[str, np.ndarray]) -> str:
        from ieta_jax.trainers.batching import fingerprint

        return fingerprint(*(arrays[k] for k in sorted(arrays)))

    def fit(self, data: Any, num_steps: int) -> list[dict[str, float]]:
        """Train ``num_steps`` optimizer updates on ``data``; returns this fit's metric rows.

        Re-running the same call after a crash (same workdir, data and
        ``num_steps``) continues from the last checkpoint instead of starting over.
        """
        if num_steps < 1:
            raise ValueError(f"num_steps must be >= 1, got {num_steps}")
        arrays = self._prepare(data)
        start = self._begin_fit(arrays, num_steps)
        bs = self.config.batch_size

        def one_step(k: int):
            idx = self._batch_indices(arrays, k * bs, bs)
            batch = self._finalize_batch({key: v[idx] for key, v in arrays.items()})
            return self.train_step(batch), self.count_tokens(batch), self.flops_per_example(batch) * bs

        return self._loop(start, num_steps, 1, one_step, "train/loss")

    def _loop(self, start: int, num_units: int, steps_per_unit: int, run_unit: Callable[[int], tuple],
              postfix: str) -> list[dict[str, float]]:
        """The training loop every trainer shares: ``num_units`` calls of ``run_unit(k)`` from step ``start``.

        ``run_unit(k)`` (``k``: the unit's index in this fit) dispatches
        ``steps_per_unit`` optimizer updates and returns ``(metrics, tokens,
        flops)``; device metrics are fetched one unit late, after the next
        unit is dispatched, so the host never waits for the device in between
        (a unit's time is the time between two fetches). Rows are recorded,
        checkpoints saved (every ``save_every`` units and at the end) and
        metrics written; returns this fit's rows.
        """
        end = start + num_units * steps_per_unit
        first_row = len(self.history) - (self.step - start) // steps_per_unit
        bar = tqdm(total=num_units, initial=(self.step - start) // steps_per_unit, desc=self.name,
                   disable=not self.config.progress, leave=False)
        pending = None
        t_last = time.perf_counter()

        def finish(p):
            nonlocal t_last
            step, metrics, tokens, flops = p
            metrics = jax.block_until_ready(metrics)
            now = time.perf_counter()
            row = self._record(metrics, step=step, tokens=tokens, seconds=now - t_last, flops=flops)
            t_last = now
            bar.update(1)
            bar.set_postfix({postfix: f"{row.get(postfix, float('nan')):.4f}"})

        while self.step < end:
            k = (self.step - start) // steps_per_unit
            metrics, tokens, flops = run_unit(k)
            if pending is not None:
                finish(pending)
            pending = (self.step, metrics, tokens, flops)
            if self.checkpointer is not None and (self.step == end or (k + 1) % self.config.save_every == 0):
                finish(pending)  # the checkpoint's history must hold this step's row
                pending = None
                self.save(force=True)
        if pending is not None:
            finish(pending)
        bar.close()
        if self.checkpointer is not None:
            self.checkpointer.wait()
        if self.writer is not None:
            self.writer.flush()
        return self.history[max(first_row, 0):]


def batched_apply(fn: Callable[[dict], Any], arrays: dict[str, np.ndarray], batch_size: int, mesh: Mesh, *,
                  desc: str = "", progress: bool = False, trim: int = 0) -> Any:
    """``fn`` (jitted, device batch -> pytree of ``[rows, ...]`` arrays) over host arrays in fixed ``batch_size`` chunks.

    The one inference loop of the trainers (reference log-probs, old log-probs, reward scores): every chunk has
    the same shape (the last wraps around to the first rows, whose outputs are dropped), so ``fn`` compiles once;
    inputs are batch-sharded over the mesh and outputs gathered to host numpy on every process.

    ``trim > 0``: each chunk is cut to ``batching.used_columns`` of its ``attention_mask`` (widths
    a multiple of ``trim``: one compilation per width), and per-token outputs (``[rows, width - 1]``, the values of
    tokens 1..width-1) are put back at their columns of the full width, zeros elsewhere. Callers put rows of similar
    length next to each other for this to pay.
    """
    from ieta_jax.trainers.batching import cut_columns, used_columns

    n = next(iter(arrays.values())).shape[0]
    outs = []
    for start in tqdm(range(0, n, batch_size), desc=desc, disable=not progress, leave=False):
        idx = np.arange(start, start + batch_size) % n
        chunk = {k: v[idx] for k, v in arrays.items()}
        cols = used_columns(chunk["attention_mask"], trim) if trim else None
        batch = sharding.shard_batch(chunk if cols is None else cut_columns(chunk, cols), mesh)
        with jax.set_mesh(mesh):
            out = fn(batch)
        take = min(batch_size, n - start)
        out = jax.tree.map(lambda x: sharding.gather_to_host(x)[:take], out)
        if cols is not None:
            full = chunk["attention_mask"].shape[1]
            out = jax.tree.map(lambda x: _tokens_at(x, cols, full), out)
        outs.append(out)
    return jax.tree.map(lambda *xs: np.concatenate(xs), *outs)


def _tokens_at(x: np.ndarray, cols: slice, full: int) -> np.ndarray:
    """Per-token values of a trimmed chunk (``[rows, width - 1]``) at their columns of ``[rows, full - 1]``."""
    if x.ndim != 2 or x.shape[1] != cols.stop - cols.start - 1:
        return x
    out = np.zeros((x.shape[0], full - 1), x.dtype)
    out[:, cols.start:cols.stop - 1] = x
    return out


def sequence_logps(logits: jax.Array, input_ids: jax.Array, loss_mask: jax.Array
                   ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """Per-sequence sums over scored tokens: ``(sum log p, token count, sum mean-logit, per-token log p)``.

    ``loss_mask[:, t]`` scores token ``t`` with the logits at ``t - 1``. The logits are read in place (the targets
    are shifted instead of slicing off the last position, which would copy the ``[B, T, V]`` array).
    """
    targets = jnp.concatenate([input_ids[:, 1:], input_ids[:, :1]], axis=1)  # the last column is never scored
    tok_logp = losses.token_logps(logits, targets)[:, :-1]
    mean_logit = jnp.mean(logits.astype(jnp.float32), axis=-1)[:, :-1]
    mask = loss_mask[:, 1:].astype(jnp.float32)
    tok_logp = tok_logp * mask
    return tok_logp.sum(-1), mask.sum(-1), (mean_logit * mask).sum(-1), tok_logp
