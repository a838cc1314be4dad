"""Forward + backward on 1 device equals the same step on 8 fake CPU devices (several mesh shapes) and across two
processes joined with jax.distributed."""
import os
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from models_helpers import loss_and_grads, sharding_case

from ieta_jax import sampling, sharding

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope="module")
def single_device_reference():
    model, batch = sharding_case()
    loss, grads = loss_and_grads(model, batch)
    tokens = sampling.generate(model, batch["ids"][:, :5], max_new_tokens=4).tokens
    return float(loss), {"/".join(map(str, k)): np.asarray(v) for k, v in grads.items()}, tokens


def test_make_mesh_sizes():
    assert dict(sharding.make_mesh(data=-1).shape) == {"data": 8, "fsdp": 1, "tensor": 1}
    assert dict(sharding.make_mesh(data=2, fsdp=-1, tensor=2).shape) == {"data": 2, "fsdp": 2, "tensor": 2}
    with pytest.raises(ValueError, match="does not match 8 devices"):
        sharding.make_mesh(data=3, fsdp=1, tensor=1)
    with pytest.raises(ValueError, match="at most one"):
        sharding.make_mesh(data=-1, fsdp=-1)


@pytest.mark.parametrize("shape", [(8, 1, 1), (2, 2, 2), (1, 4, 2)], ids=lambda s: "x".join(map(str, s)))
def test_forward_backward_same_on_mesh(single_device_reference, shape):
    ref_loss, ref_grads, _ = single_device_reference
    mesh = sharding.make_mesh(*shape)
    model, batch = sharding_case()
    sharding.shard_model(model, mesh)
    kernel = model.model.layers[0].mlp.gate_proj.kernel[...]
    assert kernel.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")  # from LOGICAL_RULES
    assert len(kernel.addressable_shards) == 8
    loss, grads = loss_and_grads(model, sharding.shard_batch(batch, mesh), mesh)
    np.testing.assert_allclose(float(loss), ref_loss, rtol=1e-6)
    assert len(grads) == len(ref_grads)
    for k, g in grads.items():
        name = "/".join(map(str, k))
        np.testing.assert_allclose(np.asarray(g), ref_grads[name], rtol=1e-4, atol=2e-6, err_msg=name)
        if name.endswith("up_proj/kernel") and mesh.shape["tensor"] > 1:
            assert g.sharding.spec[1] == "tensor"  # gradients come back in the parameter layout


def test_two_processes_match_single_process(single_device_reference, tmp_path):
    ref_loss, ref_grads, ref_tokens = single_device_reference
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "two_process.npz"
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu",
           "PYTHONPATH": os.pathsep.join([HERE, os.getcwd(), os.environ.get("PYTHONPATH", "")])}
    procs = [subprocess.Popen([sys.executable, os.path.join(HERE, "models_multiprocess_worker.py"), str(i), str(port),
                               str(out)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i in range(2)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=240)[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert all(p.returncode == 0 for p in procs), "\n---\n".join(l[-3000:] for l in logs)
    result = np.load(out)
    np.testing.assert_allclose(float(result["loss"]), ref_loss, rtol=1e-6)
    for name, ref in ref_grads.items():
        np.testing.assert_allclose(result[name], ref, rtol=1e-4, atol=2e-6, err_msg=name)
    np.testing.assert_array_equal(result["tokens"], ref_tokens)


def test_create_sharded_initialises_in_place_with_same_values():
    from flax import nnx

    from ieta_jax import models

    cfg = models.ModelConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_attention_heads=4,
                             num_key_value_heads=2)
    mesh = sharding.make_mesh(data=1, fsdp=4, tensor=2)
    sharded = sharding.create_sharded(lambda: models.CausalLM(cfg, rngs=nnx.Rngs(3)), mesh)
    plain = models.CausalLM(cfg, rngs=nnx.Rngs(3))
    embed = sharded.model.embed_tokens.weight[...]
    assert embed.sharding.spec == jax.sharding.PartitionSpec("tensor", "fsdp")
    assert embed.addressable_shards[0].data.shape == (64, 16)
    for (path, a), (_, b) in zip(nnx.to_flat_state(nnx.state(sharded)), nnx.to_flat_state(nnx.state(plain))):
        np.testing.assert_allclose(np.asarray(a.get_value()), np.asarray(b.get_value()), rtol=1e-6,
                                   err_msg=str(path))
