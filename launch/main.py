"""The experiment runner: ``python -m launch.main --config=configs/<name>.py --workdir=<dir>``.

Any config field can be overridden on the command line (``--config.dpo.beta=0.2``). The config is
validated before JAX starts, so a bad value fails at once with a message naming the field.
Restarting a killed run with the same command resumes it from the state files in the workdir.
"""
from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).",
                                          lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "Directory for every artefact of the run (checkpoints, "
                               "TensorBoard events, results.json, report.md).")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host "
                                 "TPU pods / multi-process GPU; the coordinator comes from the environment).")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for --distributed "
                                   "outside TPU/SLURM auto-detection (e.g. two local CPU processes).")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "Process count, with --coordinator_address.")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "This process's id, with --coordinator_address.")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    from configs import base

    config = _CONFIG.value
    try:
        base.validate(config)
    except base.ConfigError as e:
        logging.error("%s", e)
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if _DISTRIBUTED.value:
        import jax

        # CPU processes (local tests, CPU clusters) need a cross-process collectives backend; TPU/GPU ignore this.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=_COORDINATOR.value, num_processes=_NUM_PROCESSES.value,
                                   process_id=_PROCESS_ID.value)
        logging.info("jax.distributed: process %d of %d, %d local / %d global devices", jax.process_index(),
                     jax.process_count(), jax.local_device_count(), jax.device_count())
    from ieta_jax import loop

    loop.run_experiment(config, _WORKDIR.value)


def _parse_flags(argv):
    """absl's parser, but an unknown ``--config.<field>`` is a one-line error naming it, not a traceback."""
    try:
        return flags.FLAGS(argv)
    except (AttributeError, KeyError) as e:
        bad = [a.split("=")[0].lstrip("-") for a in argv[1:] if a.startswith("--config.")]
        detail = str(e).replace("\\'", "'").replace("\\n", " ").replace("\n", " ").strip("'\" ")
        print(f"error: unknown config field among {bad}: {detail}", file=sys.stderr)
        sys.exit(2)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)
