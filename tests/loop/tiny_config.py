"""A minutes-scale version of configs/smoke.py for the loop tests (not a pytest module)."""
from configs import smoke


def get_config():
    c = smoke.get_config()
    c.num_iterations = 2
    c.num_train_tasks = 24
    c.num_eval_tasks = 12
    c.num_family_tasks = 0         # as many as num_eval_tasks
    c.num_samples = 4
    c.eval_num_samples = 4
    c.pass_at_k = (1, 4)
    c.sample_batch_size = 48
    c.max_prompt_len = 64
    c.max_new_tokens = 48
    c.tiny.max_position_embeddings = 112
    c.tiny.hidden_size = 64
    c.tiny.intermediate_size = 128
    c.tiny.num_heads = 2
    c.tiny.num_kv_heads = 1
    c.tiny.vocab_size = 512
    c.tiny.solutions_per_task = 2
    c.tiny.warm_start_steps = 40
    c.tiny.bug_fraction = 0.5
    c.tiny.warm_start_batch_size = 16
    c.batch_size = 8
    c.train_steps = 3
    c.rlaif.reward_steps = 3
    c.rlaif.prompts_per_step = 2
    c.rlaif.execution_reward_weight = 0.5
    c.num_text_samples = 2
    # One turn keeps these CLI runs minutes-scale; tests/loop/test_loop_episodes.py covers repair turns in-process.
    c.max_turns = 1
    c.tiny.repair_examples_per_task = 0
    return c
