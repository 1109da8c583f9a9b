r"""Draws samples from a trained workdir.

  python -m experiments.sample --workdir=/tmp/vae --num=64 --out=/tmp/vae.png
  python -m experiments.sample --workdir=/tmp/gpt --prompt="ROMEO:" --temperature=0.8 --top_k=10
  python -m experiments.sample --workdir=/tmp/cgan --per_class --out=classes.png
  python -m experiments.sample --workdir=/tmp/ddpm --animate=/tmp/ddpm.gif

Images are written as a PNG grid, 2-D points as a scatter PNG, text is printed.
Options are passed to the paradigm's `sample` only when given; a paradigm that
does not take one says so.
"""
from __future__ import annotations

import os

import jax
import numpy as np
from absl import app, flags

from experiments import common
from gen_jax.errors import UserError
from gen_jax.train import loop
from gen_jax.utils import images

flags.DEFINE_string("workdir", None, "A trained workdir.")
flags.DEFINE_integer("num", 64, "Number of samples (per class with --per_class).")
flags.DEFINE_string("out", None, "Output PNG (default <workdir>/samples/sample.png).")
flags.DEFINE_integer("seed", 0, "Sampling seed.")
flags.DEFINE_string("prompt", None, "Text prompt / prefix (text and text-to-image models).")
flags.DEFINE_float("temperature", None, "Sampling temperature.")
flags.DEFINE_integer("top_k", None, "Keep the k most likely tokens.")
flags.DEFINE_float("top_p", None, "Nucleus sampling: keep the smallest set with mass >= p.")
flags.DEFINE_integer("num_tokens", None, "Tokens to generate (text).")
flags.DEFINE_integer("num_steps", None, "Sampler steps (diffusion).")
flags.DEFINE_float("guidance", None, "Classifier-free guidance scale.")
flags.DEFINE_integer("label", None, "Class label for conditional models.")
flags.DEFINE_bool("per_class", False, "Conditional models: one row of samples per class.")
flags.DEFINE_string("animate", None, "Write an animated GIF of the sampling trajectory here.")
FLAGS = flags.FLAGS

_OPTIONS = ("prompt", "temperature", "top_k", "top_p", "num_tokens", "num_steps", "guidance",
            "label")


def sample_options() -> dict:
  return {k: getattr(FLAGS, k) for k in _OPTIONS if getattr(FLAGS, k) is not None}


def call_sample(run, params, rng, num, **options):
  try:
    return run.paradigm.sample(params, rng, num, **options)
  except TypeError as e:
    if options and "unexpected keyword" in str(e):
      raise UserError(f"The {run.config.paradigm} paradigm does not take the option(s) "
                      f"{sorted(options)} ({e}); drop those flags.") from None
    raise
  except ValueError as e:        # a bad option value (e.g. prompt characters outside the vocabulary)
    raise UserError(str(e)) from None


def main(argv):
  del argv
  run, state, step = loop.restore(FLAGS.workdir)
  params = run.sampling_params(state)
  rng = jax.random.key(FLAGS.seed)
  options = sample_options()
  out = FLAGS.out or os.path.join(FLAGS.workdir, "samples", "sample.png")
  if FLAGS.animate:
    samples, trajectory = call_sample(run, params, rng, FLAGS.num, return_trajectory=True,
                                      **options)
    frames = [images.to_picture(np.asarray(f)) for f in np.asarray(trajectory)]
    images.save_gif(frames, FLAGS.animate)
    print(f"wrote {FLAGS.animate} ({len(frames)} frames)")
  elif FLAGS.per_class:
    if not run.info.num_classes:
      raise UserError(f"--per_class needs labelled data; {run.info.name!r} has no classes.")
    rows = [np.asarray(call_sample(run, params, jax.random.fold_in(rng, c), FLAGS.num,
                                   **{**options, "label": c}))
            for c in range(run.info.num_classes)]
    samples = np.concatenate(rows)
    images.save_png(images.image_grid(samples, ncols=FLAGS.num), out)
    print(f"wrote {out} ({run.info.num_classes} classes x {FLAGS.num})")
    return
  else:
    samples = call_sample(run, params, rng, FLAGS.num, **options)
  samples = np.asarray(jax.device_get(samples))
  if run.info.kind == "text":
    for row in samples:
      print("".join(run.info.vocab[t] for t in row))
      print("-" * 40)
    return
  images.save_png(images.to_picture(samples), out)
  print(f"wrote {out} ({len(samples)} samples, step {step})")


if __name__ == "__main__":
  flags.mark_flags_as_required(["workdir"])
  app.run(common.run_main(main), flags_parser=common.parse_flags)
