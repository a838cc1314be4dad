"""RLAIF on HumanEval: reward model on execution-derived pairs, then group-relative RL against it.

    python -m launch.main --config=configs/humaneval_rlaif.py --workdir=runs/he_rlaif \
        --config.model=/ckpt/Qwen2.5-Coder-1.5B
"""
from configs import humaneval_dpo


def get_config():
    c = humaneval_dpo.get_config()
    c.method = "rlaif"
    c.learning_rate = 1e-6
    c.rlaif.reward_steps = 200
    c.rlaif.reward_learning_rate = 1e-5
    c.rlaif.kl_beta = 0.04
    c.rlaif.clip_eps = 0.2
    c.rlaif.inner_epochs = 1
    c.rlaif.execution_reward_weight = 0.5
    c.rlaif.prompts_per_step = 8
    return c
