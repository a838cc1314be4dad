"""The TPU pod launcher's dry run prints the exact gcloud commands; the GPU script refuses to run without a GPU."""
import shlex
import subprocess
import sys

from conftest import REPO, run_env
from launch import tpu_pod


def test_dry_run_prints_exact_commands():
    out = subprocess.run([sys.executable, "-m", "launch.tpu_pod", "--tpu=my-pod", "--zone=us-central2-b",
                          "--project=proj", "--workdir=runs/pod", "--copy", "--setup", "--dry_run", "--",
                          "--config.num_iterations=5", "--config.dpo.beta=0.2"],
                         cwd=REPO, env=run_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert lines == [
        "gcloud compute tpus tpu-vm scp --recurse . 'my-pod:~/ieta-jax' --zone us-central2-b --project proj "
        "--worker=all",
        "gcloud compute tpus tpu-vm ssh my-pod --zone us-central2-b --project proj --worker=all --command "
        "'cd ~/ieta-jax && python3 -m pip install -q -e . '\"'\"'jax[tpu]'\"'\"' && sudo apt-get install -y -qq runsc libtcmalloc-minimal4'",
        "gcloud compute tpus tpu-vm ssh my-pod --zone us-central2-b --project proj --worker=all --command "
        "'cd ~/ieta-jax && python3 -m launch.main --config=configs/tpu_pod.py --workdir=runs/pod --distributed "
        "--config.num_iterations=5 --config.dpo.beta=0.2'",
    ]
    # What each worker's shell runs: every host joins jax.distributed before touching a device.
    remote = shlex.split(lines[-1])[-1]
    assert remote.startswith("cd ~/ieta-jax && ") and "--distributed" in shlex.split(remote)


def test_build_commands_requires_tpu_and_zone():
    import pytest

    with pytest.raises(ValueError, match="--tpu and --zone"):
        tpu_pod.build_commands(tpu="", zone="z", config="c", workdir="w")
