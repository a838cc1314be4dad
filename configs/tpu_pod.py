"""DPO + RLAIF on a TPU v5e-64 pod slice (16 hosts x 4 chips), bf16, FSDP x tensor mesh.

Start it on every worker with the pod launcher:
    python -m launch.tpu_pod --tpu=NAME --zone=ZONE --config=configs/tpu_pod.py --workdir=runs/pod
Each host calls jax.distributed.initialize(); the sandbox fleet uses the hosts' CPUs via Ray.
"""
from configs import humaneval_dpo


def get_config():
    c = humaneval_dpo.get_config()
    c.method = "all"
    c.model = "Qwen/Qwen2.5-Coder-7B"
    c.dtype = "bfloat16"
    c.param_dtype = "float32"
    c.mesh.data = 4
    c.mesh.fsdp = -1
    c.mesh.tensor = 4
    c.sample_batch_size = 1024
    c.batch_size = 64
    c.num_samples = 32
    c.sandbox.backend = "ray"
    c.sandbox.ray_address = "auto"
    c.sandbox.workers = 0                        # per pod host: one sandbox per CPU Ray gives the actor
    c.sandbox.ray_node_resource = "sandbox_host"  # the pod hosts, started with --resources='{"sandbox_host": 1}'
    return c
