"""Orbax checkpoints: exact round trip onto a sharding, keep-last-K, metadata."""

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from ieta_jax.checkpointing import Checkpointer, abstract_like


def _state(mesh, scale):
    w = jax.device_put(jnp.arange(32, dtype=jnp.float32).reshape(8, 4) * scale, NamedSharding(mesh, P("data")))
    return {"params": {"w": w}, "step": jnp.int32(scale), "rng": jax.random.PRNGKey(scale)}


def test_round_trip_keep_last_k_and_meta(tmp_path):
    mesh = Mesh(np.array(jax.devices()), ("data",))
    with Checkpointer(str(tmp_path), max_to_keep=2, save_every=2) as ckpt:
        assert ckpt.restore(abstract_like(_state(mesh, 1))) is None
        for step in range(1, 7):
            ckpt.save(step, _state(mesh, step), {"data_position": step * 4, "history": [1.5, 2.5]})
        ckpt.wait()
        assert ckpt.all_steps() == [4, 6]
        assert ckpt.save(7, _state(mesh, 7), {"data_position": 28}, force=True)
        ckpt.wait()
        assert ckpt.all_steps() == [6, 7]

    # A fresh manager (as after a restart) sees the same steps and restores exact values and shardings.
    target = abstract_like(_state(mesh, 0))
    with Checkpointer(str(tmp_path), max_to_keep=2) as ckpt:
        step, state, meta = ckpt.restore(target)
        assert step == 7 and meta == {"data_position": 28}
        np.testing.assert_array_equal(np.asarray(state["params"]["w"]), np.asarray(_state(mesh, 7)["params"]["w"]))
        np.testing.assert_array_equal(np.asarray(state["rng"]), np.asarray(jax.random.PRNGKey(7)))
        assert state["params"]["w"].sharding == target["params"]["w"].sharding
        step, _, meta = ckpt.restore(target, step=6)
        assert meta == {"data_position": 24, "history": [1.5, 2.5]}
