"""One process of the 2-process sharding test (run by test_models_sharding.py, not collected by pytest).

usage: python models_multiprocess_worker.py PROCESS_ID PORT OUT.npz ; expects XLA_FLAGS to give 4 CPU devices.
"""
import sys

import jax

jax.config.update("jax_cpu_collectives_implementation", "gloo")


def main():
    process_id, port, out_path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2, process_id=process_id,
                               initialization_timeout=120)
    import numpy as np
    from models_helpers import sharding_case, loss_and_grads

    from ieta_jax import sampling, sharding

    assert jax.process_count() == 2 and len(jax.devices()) == 8 and len(jax.local_devices()) == 4
    model, batch = sharding_case()
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    sharding.shard_model(model, mesh)
    loss, grads = loss_and_grads(model, sharding.shard_batch(batch, mesh), mesh)
    flat = {"/".join(map(str, k)): sharding.gather_to_host(v) for k, v in grads.items()}
    out = sampling.generate(model, batch["ids"][:, :5], max_new_tokens=4)
    if process_id == 0:
        np.savez(out_path, loss=sharding.gather_to_host(loss), tokens=out.tokens, **flat)
    jax.distributed.shutdown()


if __name__ == "__main__":
    main()
