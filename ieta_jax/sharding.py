"""Device mesh and the single table that maps logical axis names to mesh axes.

Parameters carry logical axis names (`nnx.Param(..., sharding_names=("embed", "mlp"))`); nothing else in the code
base names a mesh axis for a weight. Batches are sharded over ("data", "fsdp"). A dimension that a mesh axis does not
divide stays replicated on that axis (tiny vocabularies, odd head counts), so every config runs on every mesh.
"""
from __future__ import annotations

import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

MESH_AXES = ("data", "fsdp", "tensor")
BATCH_AXES = ("data", "fsdp")

# logical axis name -> mesh axis (or tuple of axes, or None = replicated). The one place this mapping lives.
LOGICAL_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", BATCH_AXES),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("q_heads", "tensor"),   # flattened num_heads * head_dim
    ("kv_heads", "tensor"),  # flattened num_kv_heads * head_dim
    ("mlp", "tensor"),
    ("norm", None),
    ("seq", None),
    ("classes", None),
)
_RULES = dict(LOGICAL_RULES)


def make_mesh(data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ("data", "fsdp", "tensor") mesh; one size may be -1 meaning "all remaining devices"."""
    devices = list(jax.devices() if devices is None else devices)
    sizes = [data, fsdp, tensor]
    if sizes.count(-1) > 1:
        raise ValueError(f"at most one mesh axis may be -1, got data={data} fsdp={fsdp} tensor={tensor}")
    known = math.prod(s for s in sizes if s != -1)
    if any(s == 0 or s < -1 for s in sizes):
        raise ValueError(f"mesh sizes must be positive or -1, got data={data} fsdp={fsdp} tensor={tensor}")
    if -1 in sizes:
        if len(devices) % known:
            raise ValueError(f"{len(devices)} devices are not divisible by fixed mesh sizes (product {known})")
        sizes[sizes.index(-1)] = len(devices) // known
    if math.prod(sizes) != len(devices):
        raise ValueError(f"mesh data={sizes[0]} x fsdp={sizes[1]} x tensor={sizes[2]} = {math.prod(sizes)} "
                         f"does not match {len(devices)} devices")
    # Sort so that devices of one process are contiguous (the multi-process case); then reshape.
    devices = sorted(devices, key=lambda d: (d.process_index, d.id))
    return Mesh(np.asarray(devices, dtype=object).reshape(sizes), MESH_AXES, axis_types=(AxisType.Auto,) * 3)


def logical_to_spec(logical: Sequence[str | None], shape: Sequence[int] | None = None,
                    mesh: Mesh | None = None) -> P:
    """Maps logical axis names to a PartitionSpec via LOGICAL_RULES.

    With `shape` and `mesh`, a mesh axis that does not divide its dimension is dropped (that dim is replicated).
    """
    spec = []
    for i, name in enumerate(logical):
        if name is not None and name not in _RULES:
            raise KeyError(f"logical axis {name!r} has no rule in sharding.LOGICAL_RULES")
        axes = _RULES.get(name) if name is not None else None
        if axes is not None and shape is not None and mesh is not None:
            axes_t = (axes,) if isinstance(axes, str) else tuple(axes)
            kept = []
            size = shape[i]
            for a in axes_t:
                n = mesh.shape[a]
                if size % n == 0:
                    kept.append(a)
                    size //= n
            axes = None if not kept else (kept[0] if len(kept) == 1 else tuple(kept))
        spec.append(axes)
    return P(*spec)


def _variable_logical_names(var: nnx.Variable) -> tuple | None:
    meta = var.get_metadata()
    return meta.get("out_sharding") or meta.get("sharding_names") or meta.get("sharding")


def state_shardings(state: nnx.State, mesh: Mesh) -> Any:
    """NamedShardings for every variable of an nnx.State (abstract or concrete), from its logical names."""
    def one(var):
        names = _variable_logical_names(var)
        shape = var.get_value().shape
        spec = logical_to_spec(names, shape, mesh) if names else P()
        return NamedSharding(mesh, spec)

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model: nnx.Module, mesh: Mesh) -> nnx.Module:
    """Moves an existing model's parameters into the mesh layout (in place) and returns it."""
    graphdef, state = nnx.split(model)
    shardings = state_shardings(state, mesh)
    values = jax.tree.map(lambda v: v.get_value() if isinstance(v, nnx.Variable) else v, state,
                          is_leaf=lambda x: isinstance(x, nnx.Variable))
    placed = jax.tree.map(_put_global, values, shardings)
    nnx.update(model, placed)
    return model


def create_sharded(make_model, mesh: Mesh) -> nnx.Module:
    """Initialises `make_model()` directly in its sharded layout (no full host or single-device copy)."""
    abstract = nnx.eval_shape(make_model)
    graphdef, abstract_state = nnx.split(abstract)
    shardings = state_shardings(abstract_state, mesh)

    init = jax.jit(lambda: nnx.split(make_model())[1], out_shardings=shardings)
    return nnx.merge(graphdef, init())


def batch_sharding(mesh: Mesh, ndim: int, batch_size: int | None = None) -> NamedSharding:
    """Sharding of an array whose leading dim is the batch: over ("data","fsdp") where it divides."""
    spec = logical_to_spec(("batch",) + (None,) * (ndim - 1),
                           None if batch_size is None else (batch_size,) + (1,) * (ndim - 1), mesh)
    return NamedSharding(mesh, spec)


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Places a pytree of global host arrays (identical on every process) with the batch dim over ("data","fsdp")."""
    def one(x):
        x = np.asarray(x)
        return _put_global(x, batch_sharding(mesh, x.ndim, x.shape[0]))

    return jax.tree.map(one, batch)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Places a pytree of host arrays replicated on every device of the mesh."""
    return jax.tree.map(lambda x: _put_global(np.asarray(x), NamedSharding(mesh, P())), tree)


def mesh_of(tree: Any) -> Mesh | None:
    """The mesh the arrays of `tree` live on, or None when they are not NamedSharding-placed."""
    for leaf in jax.tree.leaves(tree):
        sharding = getattr(leaf, "sharding", None)
        if isinstance(sharding, NamedSharding):
            return sharding.mesh
    return None


def constrain(x: jax.Array, logical: Sequence[str | None]) -> jax.Array:
    """Sharding constraint by logical names when tracing under `jax.set_mesh(mesh)`; a no-op otherwise."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        return x
    return jax.lax.with_sharding_constraint(x, logical_to_spec(logical, x.shape, mesh))


def gather_to_host(x: jax.Array) -> np.ndarray:
    """The full value of a (possibly multi-process sharded) array as a host numpy array, on every process."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        from jax.experimental import multihost_utils
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(jax.device_get(x))


def _put_global(x, sharding: NamedSharding) -> jax.Array:
    """Places a host or device array with `sharding`, also when the mesh spans several processes."""
    if jax.process_count() == 1:
        return jax.device_put(x, sharding)
    host = np.asarray(jax.device_get(x)) if isinstance(x, jax.Array) and x.is_fully_addressable else x
    if isinstance(host, jax.Array):  # already global: reshard on device
        return jax.jit(lambda a: a, out_shardings=sharding)(host)
    return jax.make_array_from_callback(host.shape, sharding, lambda idx: host[idx])
