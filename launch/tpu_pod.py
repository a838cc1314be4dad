"""Start the experiment on every worker of a TPU VM pod slice.

    python -m launch.tpu_pod --tpu=NAME --zone=ZONE --config=configs/tpu_pod.py --workdir=runs/pod \
        [--project=P] [--setup] [--copy] [--dry_run] [-- --config.num_iterations=5 ...]

Each step is one ``gcloud compute tpus tpu-vm ssh NAME --zone ZONE --worker=all --command ...``
(and ``scp`` with ``--copy``); every worker runs the same ``launch.main`` command with
``--distributed``, so each host calls ``jax.distributed.initialize()`` (coordinator and process ids
come from the TPU metadata) before it touches a device. The remote command line (config file and
overrides) is checked here first, exactly as ``launch.main`` will check it, so a mistake is one line
before anything is copied to or run on a host. ``--dry_run`` prints the exact commands instead of
running them.
"""
from __future__ import annotations

import argparse
import shlex
import subprocess
import sys

from launch import main as launch_main


def build_commands(*, tpu: str, zone: str, config: str, workdir: str, project: str | None = None,
                   repo_dir: str = "~/ieta-jax", setup: bool = False, copy: bool = False,
                   extra_args: list[str] | None = None, python: str = "python3") -> list[list[str]]:
    """The gcloud argv lists, in the order they must run."""
    if not tpu or not zone:
        raise ValueError("--tpu and --zone are required")
    scope = ["--zone", zone] + (["--project", project] if project else [])
    ssh = ["gcloud", "compute", "tpus", "tpu-vm", "ssh", tpu, *scope, "--worker=all"]
    cmds = []
    if copy:
        cmds.append(["gcloud", "compute", "tpus", "tpu-vm", "scp", "--recurse", ".", f"{tpu}:{repo_dir}",
                     *scope, "--worker=all"])
    if setup:
        cmds.append(ssh + ["--command", f"cd {repo_dir} && {python} -m pip install -q -e . 'jax[tpu]' "
                           f"&& sudo apt-get install -y -qq runsc libtcmalloc-minimal4"])
    run = [python, "-m", "launch.main", f"--config={config}", f"--workdir={workdir}", "--distributed",
           *(extra_args or [])]
    cmds.append(ssh + ["--command", f"cd {repo_dir} && " + " ".join(shlex.quote(a) for a in run)])
    return cmds


def check_remote_command(config: str, workdir: str, extra_args: list[str]) -> None:
    """Parse and validate what every worker will run (launch.main's own parser, on a private flag set)."""
    from absl import flags

    flag_values = flags.FlagValues()
    launch_main.define_flags(flag_values)
    launch_main.parse(["launch.main", f"--config={config}", f"--workdir={workdir}", "--distributed", *extra_args],
                      flag_values)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    extra = []
    if "--" in argv:
        i = argv.index("--")
        argv, extra = argv[:i], argv[i + 1:]
    p = argparse.ArgumentParser(description="Run launch.main on every worker of a TPU VM pod slice.")
    p.add_argument("--tpu", required=True, help="TPU VM name")
    p.add_argument("--zone", required=True, help="GCP zone of the TPU VM, e.g. us-central2-b")
    p.add_argument("--project", default=None, help="GCP project (default: gcloud's configured one)")
    p.add_argument("--config", default="configs/tpu_pod.py")
    p.add_argument("--workdir", required=True, help="workdir on each host (the same path everywhere)")
    p.add_argument("--repo_dir", default="~/ieta-jax", help="checkout location on the workers")
    p.add_argument("--copy", action="store_true", help="scp this checkout to every worker first")
    p.add_argument("--setup", action="store_true", help="pip install the package and jax[tpu] on every worker first")
    p.add_argument("--dry_run", action="store_true", help="print the commands, run nothing")
    args = p.parse_args(argv)
    for name in ("tpu", "zone", "workdir"):
        if not getattr(args, name):
            print(f"error: --{name} must not be empty", file=sys.stderr)
            return 2
    try:
        check_remote_command(args.config, args.workdir, extra)
    except launch_main.UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    cmds = build_commands(tpu=args.tpu, zone=args.zone, config=args.config, workdir=args.workdir,
                          project=args.project, repo_dir=args.repo_dir, setup=args.setup, copy=args.copy,
                          extra_args=extra)
    for cmd in cmds:
        print(shlex.join(cmd), flush=True)
        if not args.dry_run:
            rc = subprocess.call(cmd)
            if rc != 0:
                print(f"error: command failed with exit code {rc}", file=sys.stderr)
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
