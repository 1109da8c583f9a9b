r"""Class-conditional sample quality: does a sample drawn for class c look like a c?

For a conditional model p(x | y) (conditional GAN, classifier-free guided
diffusion, ...), draw n samples per class c with `sample(rng, n, label=c)`,
label them with the project's classifier (gen_jax/eval/features.py), and report

  acc_c = (1/n) sum_i 1[classifier(x_i^{(c)}) = c],   acc = mean_c acc_c

(the check of AC-GAN, Odena et al. 2017, arXiv:1610.09585, which scored the
share of samples an Inception network assigns to the intended class; not
Ravuri & Vinyals' "classification accuracy score", which trains a classifier on
samples). It is bounded by the classifier's own test accuracy: report both.
"""
from __future__ import annotations

from typing import Callable

import jax
import numpy as np


def per_class_accuracy(predicted, target, num_classes: int) -> dict:
  """Accuracy overall and per class (NaN for a class with no examples).

  Returns {"accuracy": float, "per_class": [num_classes] list, "counts": [num_classes] list}.
  """
  predicted = np.asarray(predicted).reshape(-1)
  target = np.asarray(target).reshape(-1)
  if predicted.shape != target.shape:
    raise ValueError(f"predicted {predicted.shape} and target {target.shape} differ in length.")
  counts = np.bincount(target, minlength=num_classes)[:num_classes]
  correct = np.bincount(target, weights=(predicted == target).astype(np.float64), minlength=num_classes)
  with np.errstate(invalid="ignore", divide="ignore"):
    per_class = correct[:num_classes] / counts
  return {"accuracy": float(np.mean(predicted == target)),
          "per_class": [float(a) for a in per_class], "counts": [int(c) for c in counts]}


def conditional_accuracy(sample_fn: Callable, predict_fn: Callable, rng, num_classes: int,
                         num_per_class: int) -> dict:
  """Samples `num_per_class` images for each class and scores them with `predict_fn`.

  Args:
    sample_fn: (rng, num, label=int) -> images float32 [num, H, W, C] in [0, 1],
      e.g. `functools.partial(paradigm.sample, params)`.
    predict_fn: images -> predicted labels [num], e.g. `FeatureNet.predict`.
    rng: a PRNG key; class c uses `fold_in(rng, c)`.
    num_classes, num_per_class: how many classes and samples per class.
  Returns:
    `per_class_accuracy` of the generated samples (the mean over classes equals
    "accuracy" since every class has num_per_class samples).
  """
  predicted, target = [], []
  for c in range(num_classes):
    images = sample_fn(jax.random.fold_in(rng, c), num_per_class, label=c)
    predicted.append(np.asarray(predict_fn(images)).reshape(-1))
    target.append(np.full(num_per_class, c))
  return per_class_accuracy(np.concatenate(predicted), np.concatenate(target), num_classes)


def caption_accuracy(sample_fn: Callable, reference, rng, num_per_prompt: int) -> tuple:
  """Text-to-image sample quality on digits: for each digit c and each caption template t of
  `gen_jax.data.captions`, `num_per_prompt` images drawn from caption(c, t) (key
  `fold_in(rng, 100 c + t)`), and the share the `reference`'s classifier labels c.

  Args:
    sample_fn: (rng, num, prompt=str) -> images float32 [num, H, W, C] in [0, 1].
    reference: a `gen_jax.eval.classifier.Reference` (labels, scores).
  Returns:
    ({"prompt_accuracy_per_digit": {c: share}, "prompt_accuracy": their mean, "num_per_digit",
      "templates", and the reference's scores of all the images}, the first 8 images of
     template 0 of each digit, [10 * 8, H, W, C]).
  """
  from gen_jax.data import captions
  per_digit, images = {}, {}
  for c in range(captions.NUM_DIGITS):
    images[c] = [np.asarray(sample_fn(jax.random.fold_in(rng, 100 * c + t), num_per_prompt,
                                      prompt=captions.caption(c, t))) for t in range(len(captions.TEMPLATES))]
    per_digit[c] = float(np.mean([reference.labels(x) == c for x in images[c]]))
  row = {"prompt_accuracy_per_digit": per_digit, "prompt_accuracy": float(np.mean(list(per_digit.values()))),
         "num_per_digit": num_per_prompt * len(captions.TEMPLATES), "templates": list(captions.TEMPLATES),
         **reference.scores(np.concatenate([x for xs in images.values() for x in xs]))}
  return row, np.concatenate([xs[0][:8] for xs in images.values()])
