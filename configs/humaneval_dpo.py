"""DPO with feedback on MBPP train tasks, evaluated on HumanEval, with a real HF code model (Qwen2.5-Coder 1.5B), one accelerator or a pod slice.

The model field takes a local checkpoint directory or a hub id (needs a reachable hub or a local cache):
    python -m launch.main --config=configs/humaneval_dpo.py --workdir=runs/he_dpo \
        --config.model=/ckpt/Qwen2.5-Coder-1.5B
"""
from configs import base


def get_config():
    c = base.get_config()
    c.method = "dpo"
    c.dataset = "humaneval"          # held-out evaluation: the 164 HumanEval problems
    c.eval_split = "test"
    c.train_dataset = "mbpp"         # feedback tasks: MBPP train (HumanEval has no train split)
    c.train_split = "train"
    c.model = "Qwen/Qwen2.5-Coder-1.5B"
    c.dtype = "bfloat16"
    c.param_dtype = "float32"
    c.max_prompt_len = 1024          # repair prompts: the task twice, the previous program and its feedback
    c.max_new_tokens = 384
    c.num_iterations = 3
    c.num_samples = 16
    c.eval_num_samples = 100
    c.pass_at_k = (1, 10, 100)
    c.temperature = 0.8
    c.eval_temperature = 0.8
    c.sample_batch_size = 128
    c.batch_size = 16
    c.learning_rate = 5e-7
    c.warmup_steps = 10
    c.lr_schedule = "cosine"
    c.weight_decay = 0.0
    c.train_steps = 100
    c.dpo.beta = 0.1
    c.dpo.loss_type = "sigmoid"
    c.dpo.max_pairs_per_task = 16
    c.timeout_s = 10.0
    c.sandbox.backend = "gvisor"
    c.mesh.data = 1
    c.mesh.fsdp = -1
    c.mesh.tensor = 1
    return c
