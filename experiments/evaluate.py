r"""Evaluates a trained workdir on a held-out split.

  python -m experiments.evaluate --workdir=/tmp/vae [--split=test] [--iwae_k=100]
  python -m experiments.evaluate --workdir=/tmp/ddpm --vlb_num_steps=0   # the full T-term bound

Prints a human-readable line, then (last line) one JSON object with at least
`bits_per_dim` (null for families without a likelihood), `bound` and `split`
(and `nats_per_token` for text); also writes it to `<workdir>/eval.json` and appends it to
`<workdir>/eval_history.jsonl` (every evaluation keeps its step).
"""
from __future__ import annotations

import json

from absl import app, flags

from experiments import common
from gen_jax import workdir as workdir_lib

flags.DEFINE_string("workdir", None, "A trained workdir.")
flags.DEFINE_string("split", "test", "Split to evaluate.")
flags.DEFINE_integer("iwae_k", 0, "For bound families with samples (VAE): k of the "
                     "importance-weighted bound; 0 = the config's model.eval_num_samples.")
flags.DEFINE_integer("vlb_num_steps", -1, "ddpm: terms of the variational bound, 0 = all T "
                     "(the full bound); -1 = the config's model.vlb_num_steps.")
flags.DEFINE_integer("max_examples", 0, "Evaluate on the first N examples only (0 = all).")
flags.DEFINE_integer("num_samples", 0, "Also score this many samples against the split with "
                     "the dataset's feature classifier (FD, precision, recall); the default "
                     "does so with 1,000 samples for families without a likelihood.")
FLAGS = flags.FLAGS


def image_source(cfg):
  """The config whose dataset the samples are images of: a two-stage run's stage 1, else `cfg`.

  A stage-2 run trains on the "encoded" dataset but samples images of its
  stage-1 dataset, so FD / precision / recall compare against those.
  """
  if cfg.get("stage1") is not None and cfg.stage1.get("workdir"):
    return image_source(workdir_lib.load_config(cfg.stage1.workdir))
  return cfg


def sample_scores(workdir: str, split: str, num: int) -> dict:
  """FD / precision / recall of `num` samples vs the split, on the project's feature classifier
  (`gen_jax.eval.classifier.Reference`; the samples drawn by `gen_jax.eval.sampling.draw_run`)."""
  import jax
  from gen_jax.eval import classifier, sampling
  run, state, _ = workdir_lib.restore(workdir)
  cfg = image_source(run.config)
  reference = classifier.reference(cfg.dataset, split, cfg.data_dir, cfg.manual_dir)
  return reference.scores(sampling.draw_run(run, state, jax.random.key(0), num).samples)


def main(argv):
  del argv
  common.maybe_initialize_distributed()
  result = workdir_lib.evaluate(FLAGS.workdir, FLAGS.split, FLAGS.iwae_k, FLAGS.max_examples,
                                 vlb_num_steps=FLAGS.vlb_num_steps, write=False)
  num = FLAGS.num_samples or (1000 if result["bits_per_dim"] is None else 0)
  if num and image_source(workdir_lib.load_config(FLAGS.workdir)).dataset in ("digits", "mnist_idx"):
    result.update(sample_scores(FLAGS.workdir, FLAGS.split, num))
  workdir_lib.write_eval(FLAGS.workdir, result)
  if result.get("bits_per_dim") is not None:
    kind = "bound" if result["bound"] else "exact"
    print(f"{result['paradigm']} on {result['dataset']} ({result['split']}, step {result['step']}): "
          f"{result['bits_per_dim']:.4f} bits/dim ({kind})")
  print(json.dumps(result))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(common.run_main(main), flags_parser=common.parse_flags)
