r"""Trains a paradigm; relaunching the same command resumes.

  python -m experiments.train --config=experiments/configs/vae.py:digits --workdir=/tmp/vae \
      [--config.num_train_steps=5000 --config.optimizer.learning_rate=3e-4 ...]

At the end it evaluates on the test split and prints one JSON line (see
experiments/evaluate.py).
"""
from __future__ import annotations

import json

from absl import app, flags
from ml_collections import config_flags

from experiments import common
from gen_jax.train import loop

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
  import jax
  if int(jax.device_get(state.step)) < config.num_train_steps:
    print(f"Stopped at step {int(jax.device_get(state.step))} (SIGTERM); relaunch to resume.")
    return
  result = loop.evaluate_workdir(FLAGS.workdir)
  print(json.dumps(result))


if __name__ == "__main__":
  app.run(common.run_main(main))
