"""The smoke experiment with two-turn repair episodes (issue 12): the policy sees the public-test trace of its
failing program and writes a fix; DPO also trains on repair pairs.

Not yet within the smoke's 15-minute budget: under load (2 cores shared), the warm start alone took ~15 min and
the run reached DPO iteration 1 after ~29 min.
    python -m launch.main --config=configs/smoke_repair.py --workdir=runs/smoke_repair
"""
from configs import smoke


def get_config():
    c = smoke.get_config()
    c.max_turns = 2
    # Repair prompts (the task, the failing program, its feedback) are ~200 tiny-BPE tokens on average, 289 at the
    # 95th percentile, 496 at most; turn-1 prompts 55 / 80 / 125. Longer ones are left-truncated (the task's
    # own prompt, at the end, stays).
    c.max_prompt_len = 320
    c.tiny.max_position_embeddings = 384
    c.tiny.repair_examples_per_task = 1   # the starting policy has seen feedback -> fix examples
    return c
