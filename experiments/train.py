r"""Trains a paradigm; relaunching the same command resumes.

  python -m experiments.train --config=experiments/configs/vae.py:digits --workdir=/tmp/vae \
      [--config.num_train_steps=5000 --config.optimizer.learning_rate=3e-4 ...]

At the end it prints the final test-split evaluation the loop logged
(bits/dim, exact or bound); `experiments/evaluate.py` recomputes it on demand.
"""
from __future__ import annotations

import json

import jax
from absl import app, flags
from ml_collections import config_flags

from experiments import common
from gen_jax.train import loop
from gen_jax.train.metrics import read_metrics

config_flags.DEFINE_config_file("config", None, "Config file, e.g. experiments/configs/vae.py:digits.",
                                lock_config=True)
flags.DEFINE_string("workdir", None, "Where checkpoints, metrics and samples go.")
flags.mark_flags_as_required(["config", "workdir"])
FLAGS = flags.FLAGS


def main(argv):
  del argv
  common.maybe_initialize_distributed()
  config = FLAGS.config
  state = loop.train(config, FLAGS.workdir)
  step = int(jax.device_get(state.step))
  if step < config.num_train_steps:
    print(f"Stopped at step {step} (SIGTERM); relaunch the same command to resume.")
    return
  evals = [r for r in read_metrics(FLAGS.workdir) if "eval/bits_per_dim" in r]
  summary = {"step": step, "workdir": FLAGS.workdir}
  if evals:
    summary.update({k.removeprefix("eval/"): v for k, v in evals[-1].items() if k != "step"})
    summary["bound"] = bool(summary.get("bound", 1.0))
  print(json.dumps(summary))


if __name__ == "__main__":
  app.run(common.run_main(main), flags_parser=common.parse_flags)
