"""A small conv classifier whose penultimate layer is the feature space of the
sample metrics (FD, precision/recall, conditional accuracy; see gen_jax/eval).

Input: images float32 in [0, 1], [B, H, W, C] (the `sample()` convention of
gen_jax/paradigms/base.py), any H, W (8x8 digits, 28x28 MNIST): stride-2
'SAME' convolutions take ceil(H / 2) each stage and the result is flattened.

  x in [0,1] -> 2x - 1 -> conv3x3(c0) -> [conv3x3 stride 2 (c) -> conv3x3 (c)] for c in channels
    -> flatten -> dense(feature_dim) -> relu  = features (penultimate, returned by `embed`)
    -> dropout -> dense(num_classes)          = logits (`__call__`)

Mixed precision: none. The classifier is trained by its own loop (gen_jax/eval/classifier.py)
and scores samples outside any training step, so no `gen_jax.policy` is active around it and
it runs wholly in float32 (`embed` casts its input to float32), whatever the run's
compute_dtype: the sample metrics do not depend on it.
"""
from __future__ import annotations

import os
from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp


def default_classifier_dir(dataset: str) -> str:
  """Where the project keeps the classifier of `dataset` (the benchmarks' FD / label classifier,
  and lmm's frozen encoder): $GEN_JAX_CLASSIFIER_DIR/<dataset>, else
  ~/.cache/gen_jax/classifiers/<dataset>."""
  root = os.environ.get("GEN_JAX_CLASSIFIER_DIR") or os.path.expanduser("~/.cache/gen_jax/classifiers")
  return os.path.join(root, dataset.replace("/", "_"))


class Classifier(nn.Module):
  """Conv classifier; `embed` gives the penultimate features, `__call__` the logits."""
  num_classes: int = 10
  channels: Sequence[int] = (32, 64)
  feature_dim: int = 128
  dropout_rate: float = 0.3

  def setup(self):
    self.stem = nn.Conv(self.channels[0], (3, 3), name="stem")
    self.down = [nn.Conv(c, (3, 3), strides=(2, 2), name=f"down_{i}") for i, c in enumerate(self.channels)]
    self.mix = [nn.Conv(c, (3, 3), name=f"mix_{i}") for i, c in enumerate(self.channels)]
    self.to_features = nn.Dense(self.feature_dim, name="features")
    self.dropout = nn.Dropout(self.dropout_rate)
    self.head = nn.Dense(self.num_classes, name="head")

  def embed(self, images):
    """[B, H, W, C] floats in [0, 1] -> [B, feature_dim] penultimate features (>= 0)."""
    x = 2.0 * jnp.asarray(images, jnp.float32) - 1.0
    x = nn.relu(self.stem(x))
    for down, mix in zip(self.down, self.mix):
      x = nn.relu(down(x))
      x = nn.relu(mix(x))
    x = x.reshape(x.shape[0], -1)
    return nn.relu(self.to_features(x))

  def __call__(self, images, *, train: bool = False):
    """[B, H, W, C] floats in [0, 1] -> [B, num_classes] logits (dropout when train)."""
    h = self.embed(images)
    return self.head(self.dropout(h, deterministic=not train))
