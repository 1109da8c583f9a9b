r"""Trains the feature classifier behind the sample metrics (FD, precision/recall).

  python -m experiments.train_classifier --dataset=digits --workdir=/tmp/gen_jax_classifier/digits
  python -m experiments.train_classifier --dataset=mnist_idx --workdir=DIR   # mnist10k: 8,000 train / 2,000 test

Writes `params/` and `classifier.json` (with the measured test accuracy) to `workdir`;
the training, its defaults and measured accuracies are `gen_jax.eval.classifier`'s
(`train`, `load_or_train`, `load_split`, re-exported here).
"""
from __future__ import annotations

import json

from absl import app
from absl import flags
from absl import logging

from gen_jax.eval.classifier import load_or_train, load_split, train  # noqa: F401  (re-exported)


def main(argv):
  del argv
  f = flags.FLAGS
  logging.set_verbosity(logging.WARNING)   # Orbax logs every file it writes at INFO
  if not f.workdir:
    raise app.UsageError("--workdir is required (where the classifier checkpoint goes).")
  meta = train(f.dataset, f.workdir, f.num_steps, f.batch_size, f.learning_rate, f.seed,
               f.data_dir, f.manual_dir)
  print(f"test accuracy {meta['test_accuracy']:.4f} on {meta['num_test']} {meta['dataset']} test images "
        f"({meta['train_seconds']} s); saved to {f.workdir}")
  print(json.dumps(meta))


if __name__ == "__main__":
  # Flags are defined only when this file is the program, so that other entry
  # points can import it without clashes.
  flags.DEFINE_string("dataset", "digits", "digits | mnist_idx")
  flags.DEFINE_string("workdir", None, "Where to write params/ and classifier.json.")
  flags.DEFINE_integer("num_steps", None, "Training steps (default: per dataset).")
  flags.DEFINE_integer("batch_size", 128, "Batch size.")
  flags.DEFINE_float("learning_rate", 2e-3, "Peak Adam learning rate.")
  flags.DEFINE_integer("seed", 0, "PRNG seed.")
  flags.DEFINE_string("data_dir", "", "TFDS data dir (default: gen_jax.data's).")
  flags.DEFINE_string("manual_dir", "", "mnist_idx: folder of the IDX files "
                    "(default: gen_jax.data's, ../shared/data/mnist).")
  app.run(main)
