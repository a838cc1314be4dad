"""The experiment runner: ``python -m launch.main --config=configs/<name>.py --workdir=<dir>``.

Any config field can be overridden on the command line (``--config.dpo.beta=0.2``). Everything a user can get
wrong is checked before anything is written: the config file, every field, the splits of the datasets, the
workdir (a directory, holding no run with another config), then (once JAX is up) the mesh, the tasks and the
model. Each mistake is one line on stderr naming what to fix, and exit status 2. Restarting a killed run with
the same command resumes it from the state files in the workdir; Ctrl-C says so, with exit status 130.
"""
from __future__ import annotations

if __name__ == "__main__":  # the host allocator is chosen at process start, before JAX is imported
    from ieta_jax import allocator

    allocator.use_tcmalloc()

import re
import sys

from absl import app, flags
from ml_collections import config_flags

from ieta_jax import cli


def define_flags(flag_values: flags.FlagValues) -> None:
    """The runner's flags on ``flag_values`` (the TPU launcher checks its remote command with a private copy)."""
    config_flags.DEFINE_config_file("config", None, "Experiment config file (configs/*.py).", lock_config=True,
                                    flag_values=flag_values)
    flags.DEFINE_string("workdir", None, "Directory for every artefact of the run (checkpoints, TensorBoard "
                        "events, results.json, report.md).", flag_values=flag_values)
    flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host TPU pods / "
                      "multi-process GPU; the coordinator comes from the environment).", flag_values=flag_values)
    flags.DEFINE_string("coordinator_address", None, "host:port of process 0, for --distributed outside TPU/SLURM "
                        "auto-detection (e.g. two local CPU processes).", flag_values=flag_values)
    flags.DEFINE_integer("num_processes", None, "Process count, with --coordinator_address.",
                         flag_values=flag_values)
    flags.DEFINE_integer("process_id", None, "This process's id, with --coordinator_address.",
                         flag_values=flag_values)


define_flags(flags.FLAGS)
FLAGS = flags.FLAGS


class UsageError(ValueError):
    """A bad command line; the message is the one line to print."""


def parse(argv: list[str], flag_values: flags.FlagValues = FLAGS):
    """Parse and check a command line: ``(config, workdir)``, or :class:`UsageError` with one line."""
    from configs import base

    try:
        rest = flag_values(argv)
    except (AttributeError, KeyError) as e:  # an unknown --config.<field>
        bad = [a.split("=")[0] for a in argv[1:] if a.startswith("--config.")]
        text = str(e).replace("\\'", "'").replace("\\n", " ")
        hint = re.search(r'Did you mean "([^"]+)"', text)
        raise UsageError(f"unknown config field among {' '.join(bad)}"
                         + (f' (did you mean "{hint.group(1)}"?)' if hint else "")) from None
    except flags.Error as e:
        raise UsageError(str(e).splitlines()[0]) from None
    if len(rest) > 1:
        raise UsageError(f"unexpected arguments {' '.join(rest[1:])} (fields are set as --config.<field>=<value>)")
    if not flag_values["config"].present:
        raise UsageError("--config is required")
    config = flag_values["config"].value
    try:
        config.to_dict()  # a config file that failed to load is a placeholder that raises on first use
    except Exception as e:  # noqa: BLE001
        raise UsageError(f"--config={flag_values['config'].config_filename} cannot be loaded: {_last_line(e)}"
                         ) from None
    try:
        base.validate(config)
    except base.ConfigError as e:
        raise UsageError(str(e)) from None
    workdir = flag_values["workdir"].value
    if not workdir:
        raise UsageError("--workdir is required")
    return config, workdir


def _last_line(e: BaseException) -> str:
    """The informative line of a config-loading error (ml_collections chains them; the errno line is last)."""
    lines = [s.strip() for s in str(e).splitlines() if s.strip()]
    return lines[-1] if lines else type(e).__name__


def main(argv):
    """Exit status 0, 2 for a mistake (one line on stderr), 130 for Ctrl-C (the workdir stays resumable)."""
    try:
        return _main(argv)
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        # At once (cli.exit): every workdir file is written atomically, so the workdir is as resumable as after kill -9.
        cli.exit(cli.INTERRUPTED)


def _main(argv):
    from ieta_jax.experiment import start as start_lib

    try:
        config, workdir = parse(argv)
        start_lib.check_workdir(config, workdir)
    except (UsageError, start_lib.StartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if FLAGS.distributed:
        import jax

        # CPU processes (local tests, CPU clusters) need a cross-process collectives backend; TPU/GPU ignore this.
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(coordinator_address=FLAGS.coordinator_address, num_processes=FLAGS.num_processes,
                                   process_id=FLAGS.process_id)
    from ieta_jax.experiment import run_experiment

    from ieta_jax.api import APIError
    from ieta_jax.workdir import CorruptFileError

    try:
        run_experiment(config, workdir)
    # APIError: a key, model or request the endpoint refused; CorruptFileError: a stage output that does not parse
    except (start_lib.StartError, APIError, CorruptFileError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    app.define_help_flags()  # --help / --helpfull, as absl's app.run would offer
    sys.exit(main(sys.argv))
