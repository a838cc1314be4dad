"""The IETA experiment as stages: sample -> execute -> pairs/rewards -> train -> evaluate, per method.

Read top to bottom:

* ``start``: ``check_workdir`` and ``start_run`` refuse a run that cannot work before anything is written (a workdir
  that is a file or holds another config, a mesh that does not tile the devices, tasks that do not load, a model
  that does not resolve); then ``config.json`` is written and the :class:`Run` every stage reads is returned.
* ``library_configs``: config -> optimizer, DPO, reward-model, RL and executor configs (pure functions).
* ``policy``: the :class:`Policy` interface the rollout samples from (``prompt``, ``generate``), implemented for
  local checkpoints by :class:`LocalPolicy`.
* ``rollout``: ``num_samples`` completions per task, each decoded batch submitted to the sandbox fleet at once,
  so the sandboxes execute it while the policy samples the next batch.
* ``signals``: verdicts and traces -> preference pairs (``feedback.build_pairs``) and execution rewards.
* ``methods``: ``train_dpo`` / ``train_rlaif`` take the policy at the start of an iteration and return the
  trained one (DPO's reference is that policy; RLAIF continues its Bradley-Terry reward model on the pairs, then
  runs group-relative RL against it, with the KL to the starting policy).
* ``heldout``: ``eval_num_samples`` completions per held-out task -> pass@k, execution rate, error frequencies.
* ``runner``: the starting policy is evaluated once (``baseline``, and iteration 0 of every method), then each
  method is a loop over iterations.

Every stage writes its output atomically under the workdir (``<method>/iter_<k>/samples.jsonl``, ``pairs.jsonl``,
``train.json``, ``policy/``, ``eval.json``, ``iteration.json``); the trainers checkpoint with Orbax under
``<method>/iter_<k>/train``. A run killed at any moment and restarted with the same command skips finished
stages and resumes an interrupted fit from its last checkpoint.

Multi-host (``launch.main --distributed``): every process builds the same global mesh and runs every jitted
computation (sampling, warm start, trainers) on the same inputs. Process 0 alone trains the tokenizer, runs the
sandbox executor and writes the workdir; verdicts, execution rewards and every file it reads to decide what to
resume are broadcast (``ieta_jax.workdir.Workdir``, ``ieta_jax.distributed.on_primary``), so pairs, rewards
and metrics are identical on every process. The workdir must be a filesystem all hosts see.
"""
from ieta_jax.experiment.policy import LocalPolicy, Policy
from ieta_jax.experiment.runner import run_experiment
from ieta_jax.experiment.start import Run, StartError, check_workdir, start_run

__all__ = ["LocalPolicy", "Policy", "Run", "StartError", "check_workdir", "run_experiment", "start_run"]
