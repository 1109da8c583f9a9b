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
