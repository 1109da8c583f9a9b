r"""Evaluates a trained workdir on a held-out split.

  python -m experiments.evaluate --workdir=/tmp/vae [--split=test] [--iwae_k=100]

Prints a human-readable line, then (last line) one JSON object with at least
`bits_per_dim` (null for families without a likelihood), `bound` and `split`
(and `nats_per_token` for text); also writes it to `<workdir>/eval.json`.
"""
from __future__ import annotations

import json

from absl import app, flags

from experiments import common
from gen_jax.train import loop

flags.DEFINE_string("workdir", None, "A trained workdir.")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_integer("iwae_k", 0, "For bound families with samples (VAE): k of the "
                     "importance-weighted bound; 0 = the config's model.eval_num_samples.")
flags.DEFINE_integer("max_examples", 0, "Evaluate on the first N examples only (0 = all).")
FLAGS = flags.FLAGS


def main(argv):
  del argv
  common.maybe_initialize_distributed()
  result = loop.evaluate_workdir(FLAGS.workdir, FLAGS.split, FLAGS.iwae_k, FLAGS.max_examples)
  if result.get("bits_per_dim") is not None:
    kind = "bound" if result["bound"] else "exact"
    print(f"{result['paradigm']} on {result['dataset']} ({result['split']}, step {result['step']}): "
          f"{result['bits_per_dim']:.4f} bits/dim ({kind})")
  print(json.dumps(result))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(common.run_main(main), flags_parser=common.parse_flags)
