"""Smoke experiment: synthetic suite, embedded tiny model, CPU, baseline vs DPO vs RLAIF.

Budget: at most 15 minutes on 2 CPU cores, warm start included.
    python -m launch.main --config=configs/smoke.py --workdir=runs/smoke
"""
from configs import base


def get_config():
    c = base.get_config()
    c.method = "all"
    c.dataset = "synthetic"
    c.model = "tiny"
    c.num_iterations = 2
    c.sandbox.backend = "gvisor"
    return c
