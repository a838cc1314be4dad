"""The smoke experiment on one GPU: same suite and tiny model, larger batches, bf16 compute.

    python -m launch.main --config=configs/gpu_smoke.py --workdir=runs/gpu_smoke
(or launch/gpu_smoke.sh, which checks that JAX sees the GPU first).
"""
from configs import smoke


def get_config():
    c = smoke.get_config()
    c.dtype = "bfloat16"
    c.param_dtype = "float32"
    c.tiny.hidden_size = 256
    c.tiny.intermediate_size = 768
    c.tiny.num_layers = 4
    c.tiny.num_heads = 8
    c.tiny.num_kv_heads = 4
    c.sample_batch_size = 256
    c.batch_size = 32
    c.rlaif.prompts_per_step = 8   # 8 x num_samples completions per RL step: two mini-batches of 32
    c.num_iterations = 3
    return c
