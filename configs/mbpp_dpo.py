"""DPO on MBPP (standard prompt: description + first test) with Qwen2.5-Coder 1.5B.

    python -m launch.main --config=configs/mbpp_dpo.py --workdir=runs/mbpp_dpo \
        --config.model=/ckpt/Qwen2.5-Coder-1.5B
"""
from configs import humaneval_dpo


def get_config():
    c = humaneval_dpo.get_config()
    c.dataset = "mbpp"
    c.train_dataset = "mbpp"
    c.train_split = "train"
    c.eval_split = "test"
    c.max_prompt_len = 768           # room for repair prompts (task, previous program, feedback)
    c.max_new_tokens = 256
    return c
