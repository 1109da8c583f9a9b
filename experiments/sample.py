r"""Draws samples from a trained workdir.

  python -m experiments.sample --workdir=/tmp/vae --num=64 --out=/tmp/vae.png
  python -m experiments.sample --workdir=/tmp/gpt --prompt="ROMEO:" --temperature=0.8 --top_k=10
  python -m experiments.sample --workdir=/tmp/cgan --per_class --out=classes.png
  python -m experiments.sample --workdir=/tmp/ddpm --animate=/tmp/ddpm.gif
  python -m experiments.sample --workdir=/tmp/t2i --prompt="a handwritten three" --out=three.png
  python -m experiments.sample --workdir=/tmp/t2i --per_class --classify --num=50
  python -m experiments.sample --workdir=/tmp/lmm --image_index=3 --question="is it even?"

Images are written as a PNG grid, 2-D points as a scatter PNG, text is printed
(text-to-image models turn a prompt into an image grid). Options are passed to
the paradigm's `sample` only when given; a paradigm that does not take one says so.
`--per_class --classify` also labels each class's samples with the project's
digit classifier (`experiments.train_classifier.load_or_train`, trained on first
use) and prints, last, one JSON line with the share labelled as the class asked
for, overall and per class (`gen_jax.eval.conditional`). `--image_index=N --question=Q` asks a
model that reads images (lmm, any2any) Q about test image N: it prints the answer and writes
the image (default <workdir>/samples/test_image_<N>.png).
"""
from __future__ import annotations

import json
import os

import jax
import numpy as np
from absl import app, flags

from experiments import common
from gen_jax.errors import UserError
from gen_jax import workdir as workdir_lib
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
flags.DEFINE_bool("classify", False, "With --per_class: score each class's samples with the "
                  "dataset's classifier and print the per-class accuracy as JSON.")
flags.DEFINE_string("animate", None, "Write an animated GIF of the sampling trajectory here.")
flags.DEFINE_integer("image_index", None, "Image-reading models (lmm, any2any): ask --question "
                     "about this test image.")
flags.DEFINE_string("question", None, "With --image_index: the question, e.g. \"is it even?\".")
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


def trajectory_frames(trajectory):
  """[frames, num, ...] samples -> pictures; 2-D points share one axis range across frames,
  so the animation shows the points moving rather than rescaled frames."""
  if trajectory.ndim == 3 and trajectory.shape[-1] == 2:
    lim = float(np.percentile(np.abs(trajectory), 99.5)) * 1.1 + 1e-6
    return [images.points_figure(f, lim=lim) for f in trajectory]
  return [images.to_picture(f) for f in trajectory]


def classifier_dataset(run) -> str:
  """The image dataset whose classifier labels the samples (a stage-2 run: its stage 1's)."""
  stage1 = getattr(run.info, "stage1", None)
  return stage1.config.dataset if stage1 is not None else run.config.dataset


def per_class(run, params, rng, options, out):
  """One row of FLAGS.num samples per class (class c drawn with fold_in(rng, c)); with
  --classify the classifier's per-class accuracy, printed last as JSON."""
  if not run.info.num_classes:
    raise UserError(f"--per_class needs labelled data; {run.info.name!r} has no classes.")
  k = run.info.num_classes
  rows = []

  def draw(rng_c, num, label):
    rows.append(np.asarray(call_sample(run, params, rng_c, num, **{**options, "label": label})))
    return rows[-1]

  if FLAGS.classify:
    from experiments.train_classifier import load_or_train
    from gen_jax.eval import conditional
    dataset = classifier_dataset(run)
    net = load_or_train(dataset)
    scores = conditional.conditional_accuracy(draw, net.predict, rng, k, FLAGS.num)
  else:
    for c in range(k):
      draw(jax.random.fold_in(rng, c), FLAGS.num, c)
  images.save_png(images.image_grid(np.concatenate(rows), ncols=FLAGS.num), out)
  print(f"wrote {out} ({k} classes x {FLAGS.num})")
  if FLAGS.classify:
    print(json.dumps({"paradigm": run.config.paradigm, "classifier": dataset,
                      "classifier_test_accuracy": net.meta["test_accuracy"],
                      "num_per_class": FLAGS.num, "accuracy": scores["accuracy"],
                      "per_class": [round(a, 4) for a in scores["per_class"]]}))


def ask(run, params, rng, out):
  """Asks FLAGS.question about test image FLAGS.image_index: prints the answer, writes the image."""
  from experiments import gallery
  from gen_jax import data as data_lib
  stage1 = getattr(run.info, "stage1", None)         # any2any reads its stage 1's images
  config = stage1.config if stage1 is not None else run.config
  split = data_lib.split_arrays(config.dataset, "test", data_dir=config.data_dir or None,
                                manual_dir=config.manual_dir or None)
  n, i = len(split["image"]), FLAGS.image_index
  if not 0 <= i < n:
    raise UserError(f"--image_index={i} is out of range: the {config.dataset} test split has "
                    f"{n} images; use 0..{n - 1}.")
  levels = np.asarray(split["image"][i:i + 1])
  said = call_sample(run, params, rng, 1, image=levels, question=FLAGS.question,
                     **sample_options())
  images.save_png(images.to_picture(levels / (run.info.num_levels - 1)), out)
  print(f"wrote {out} (test image {i}, label {int(split['label'][i])})")
  print(gallery.answer_strings(run, np.asarray(said))[0])


def main(argv):
  del argv
  run, state, step = workdir_lib.restore(FLAGS.workdir)
  params = run.sampling_params(state)
  rng = jax.random.key(FLAGS.seed)
  options = sample_options()
  out = FLAGS.out or os.path.join(FLAGS.workdir, "samples", "sample.png")
  if FLAGS.question is not None and FLAGS.image_index is None:
    raise UserError("--question asks about a test image: add --image_index=N.")
  if FLAGS.image_index is not None:
    ask(run, params, rng, FLAGS.out or os.path.join(
        FLAGS.workdir, "samples", f"test_image_{FLAGS.image_index}.png"))
    return
  if FLAGS.classify and not FLAGS.per_class:
    raise UserError("--classify scores the samples of each class: add --per_class.")
  if FLAGS.animate:
    samples, trajectory = call_sample(run, params, rng, FLAGS.num, return_trajectory=True,
                                      **options)
    images.save_gif(trajectory_frames(np.asarray(trajectory)), FLAGS.animate)
    print(f"wrote {FLAGS.animate} ({len(trajectory)} frames)")
  elif FLAGS.per_class:
    per_class(run, params, rng, options, out)
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
