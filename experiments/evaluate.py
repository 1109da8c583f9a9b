r"""Evaluates a trained workdir on a held-out split.

  python -m experiments.evaluate --workdir=/tmp/vae [--split=test] [--iwae_k=100]
  python -m experiments.evaluate --workdir=/tmp/ddpm --vlb_num_steps=0   # the full T-term bound
  python -m experiments.evaluate --workdir=/tmp/ddpm --inception_weights=pt_inception-2015-12-05-6726825d.pth

--inception_weights=FILE (or --inception_fid with $GEN_JAX_INCEPTION=FILE) adds Inception
"FID", "KID", "KID_std" of --num_samples samples (default 10,000) against the whole split
(gen_jax.eval.inception; results/metrics/README.md); without the file it stops at once, in one
line saying where to get it.

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
flags.DEFINE_bool("inception_fid", False, "Also report Inception FID and KID (pytorch-fid's "
                  "weights, gen_jax.eval.inception) of --num_samples samples (default 10,000) "
                  "against the split; implied by --inception_weights.")
flags.DEFINE_string("inception_weights", "", "pytorch-fid's pt_inception-2015-12-05-6726825d.pth "
                    "(needs torch) or its .npz (python -m experiments.convert_inception); "
                    "default $GEN_JAX_INCEPTION.")
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


def split_images_uint8(cfg, split: str):
  """A whole image split as uint8 0..255 [N, H, W, C] (levels k -> round(255 k / (L - 1)))."""
  import numpy as np
  from gen_jax import data as data_lib
  from gen_jax.errors import UserError
  from gen_jax.eval import features, inception
  kwargs = dict(data_dir=cfg.data_dir or None, manual_dir=cfg.manual_dir or None)
  info = data_lib.get_info(cfg.dataset, **kwargs)
  if info.kind != "image":
    raise UserError(f"Inception FID needs images; {cfg.dataset!r} is {info.kind!r} data: drop --inception_fid.")
  levels = [b["image"][b["mask"]] for b in data_lib.eval_batches(cfg.dataset, split=split, batch_size=1024, **kwargs)]
  return inception.to_uint8(features.levels_to_unit(np.concatenate(levels), info.num_levels))


def inception_scores(workdir: str, split: str, num: int, weights: str) -> dict:
  """Inception FID / KID (`gen_jax.eval.inception.scores`) of `num` samples vs the split; the
  weight file is checked first (a missing one is one line saying where to get it)."""
  import jax
  from experiments import convert_inception
  from gen_jax.eval import inception, sampling
  net = convert_inception.load(weights)
  run, state, _ = workdir_lib.restore(workdir)
  real = split_images_uint8(image_source(run.config), split)
  return inception.scores(net, real, sampling.draw_run(run, state, jax.random.key(1), num).samples)


def main(argv):
  del argv
  weights = None
  if FLAGS.inception_fid or FLAGS.inception_weights:    # a missing file stops before any work
    from gen_jax.eval import inception
    weights = inception.resolve_weights(FLAGS.inception_weights)
  common.maybe_initialize_distributed()
  result = workdir_lib.evaluate(FLAGS.workdir, FLAGS.split, FLAGS.iwae_k, FLAGS.max_examples,
                                 vlb_num_steps=FLAGS.vlb_num_steps, write=False)
  num = FLAGS.num_samples or (1000 if result["bits_per_dim"] is None else 0)
  if num and image_source(workdir_lib.load_config(FLAGS.workdir)).dataset in ("digits", "mnist_idx"):
    result.update(sample_scores(FLAGS.workdir, FLAGS.split, num))
  if weights:
    result.update(inception_scores(FLAGS.workdir, FLAGS.split, FLAGS.num_samples or 10000, weights))
  workdir_lib.write_eval(FLAGS.workdir, result)
  if result.get("bits_per_dim") is not None:
    kind = "bound" if result["bound"] else "exact"
    print(f"{result['paradigm']} on {result['dataset']} ({result['split']}, step {result['step']}): "
          f"{result['bits_per_dim']:.4f} bits/dim ({kind})")
  print(json.dumps(result))


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(common.run_main(main), flags_parser=common.parse_flags)
