r"""The feature classifier behind the sample scores: train it, load it, score samples with it.

    ref = reference("digits")                 # the classifier (trained on first use) + test images
    ref.scores(samples)                       # {"FD (digits classifier)", "precision", "recall", ...}

`train` fits `gen_jax.nets.classifier.Classifier` with AdamW, cosine decay and random
±1-pixel shifts (±2 on 28x28) on a labelled image dataset's train split and saves it
(`features.save_classifier`: `params/` and `classifier.json` with the measured test
accuracy); `load_or_train(dataset)` loads the one in `features.default_classifier_dir`
($GEN_JAX_CLASSIFIER_DIR/<dataset> or ~/.cache/gen_jax/classifiers/<dataset>), training
it there first if absent. Measured with the defaults (seed 0, 2-core CPU, 2026-11-26):
digits 1,500 steps -> test accuracy 99.44% (358/360), 26 CPU-seconds; mnist_idx
(mnist10k) 3,000 steps -> 99.60% (1,992/2,000), 3.5 CPU-minutes.

A `Reference` is what generated images are scored against: the classifier and one split's
images in [0, 1]. Its `scores` are FD on the classifier's penultimate features (not an
FID), k-NN precision and recall (arXiv:1904.06991); `labels` and `confident_share` read
samples as classes (conditional accuracy, how many samples look like one clear digit).
"""
from __future__ import annotations

import functools
import os
import time
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from gen_jax import data as data_lib
from gen_jax.eval import features, frechet
from gen_jax.nets.classifier import Classifier
from gen_jax.utils import images as images_lib

DEFAULT_NUM_STEPS = {"digits": 1500}   # other datasets: 3000


def load_split(dataset, split, data_dir="", manual_dir=""):
  """(images uint8 levels [N, H, W, C], labels int32 [N], DatasetInfo): a whole split, in
  stored order, read once through `gen_jax.data.eval_batches` (the evaluator's split)."""
  kwargs = dict(data_dir=data_dir or None, manual_dir=manual_dir or None)
  info = data_lib.get_info(dataset, **kwargs)
  if info.kind != "image" or not info.num_classes:
    raise ValueError(f"The feature classifier needs a labelled image dataset; {dataset!r} is "
                     f"kind {info.kind!r} with num_classes={info.num_classes}.")
  images, labels = [], []
  for batch in data_lib.eval_batches(dataset, split=split, batch_size=1024, **kwargs):
    images.append(batch["image"][batch["mask"]])
    labels.append(batch["label"][batch["mask"]])
  return np.concatenate(images), np.concatenate(labels).astype(np.int32), info


_shift = images_lib.random_shift   # random translation by up to max_shift pixels


def accuracy(module, params, images01, labels, batch_size=500):
  """Top-1 accuracy of `module` on float images in [0, 1]."""
  logits_fn = jax.jit(lambda p, x: module.apply(p, x))
  correct = 0
  for start in range(0, len(labels), batch_size):
    logits = logits_fn(params, images01[start:start + batch_size])
    correct += int(np.sum(np.asarray(jnp.argmax(logits, -1)) == labels[start:start + batch_size]))
  return correct / len(labels)


def train(dataset="digits", workdir=None, num_steps=None, batch_size=128, learning_rate=2e-3,
          seed=0, data_dir="", manual_dir="", module=None, log=print):
  """Trains the classifier, saves it to `workdir` (if given) and returns its metadata dict."""
  t0 = time.time()
  x_train, y_train, info = load_split(dataset, "train", data_dir, manual_dir)
  num_levels = info.num_levels
  x_test, y_test, _ = load_split(dataset, "test", data_dir, manual_dir)
  x_train = features.levels_to_unit(x_train, num_levels)
  x_test = features.levels_to_unit(x_test, num_levels)
  num_steps = num_steps or DEFAULT_NUM_STEPS.get(dataset, 3000)
  module = module or Classifier(num_classes=info.num_classes)
  max_shift = 1 if x_train.shape[1] <= 16 else 2

  key = jax.random.key(seed)
  params = module.init(jax.random.fold_in(key, num_steps), x_train[:1])
  schedule = optax.warmup_cosine_decay_schedule(0.0, learning_rate, min(100, num_steps // 10), num_steps)
  tx = optax.adamw(schedule, weight_decay=1e-4)
  opt_state = tx.init(params)

  @jax.jit
  def step(params, opt_state, x, y, rng):
    aug_rng, drop_rng = jax.random.split(rng)
    x = _shift(x, aug_rng, max_shift)

    def loss_fn(p):
      logits = module.apply(p, x, train=True, rngs={"dropout": drop_rng})
      return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    loss, grads = jax.value_and_grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  perm_rng = np.random.default_rng(seed)
  order, pos = perm_rng.permutation(len(y_train)), 0
  for i in range(num_steps):
    if pos + batch_size > len(order):
      order, pos = perm_rng.permutation(len(y_train)), 0
    idx = order[pos:pos + batch_size]
    pos += batch_size
    params, opt_state, loss = step(params, opt_state, x_train[idx], y_train[idx], jax.random.fold_in(key, i))
    if (i + 1) % max(1, num_steps // 5) == 0:
      log(f"step {i + 1}/{num_steps} loss {float(loss):.4f}")

  test_acc = accuracy(module, params, x_test, y_test)
  meta = dict(
      dataset=dataset, image_shape=list(x_train.shape[1:]), num_levels=num_levels, num_classes=module.num_classes,
      model=dict(channels=list(module.channels), feature_dim=module.feature_dim, dropout_rate=module.dropout_rate),
      test_accuracy=test_acc, num_test=int(len(y_test)), train_accuracy=accuracy(module, params, x_train, y_train),
      num_train=int(len(y_train)), num_steps=num_steps, batch_size=batch_size, learning_rate=learning_rate,
      seed=seed, train_seconds=round(time.time() - t0, 1))
  if workdir:
    features.save_classifier(workdir, params, meta)
  return meta


def load_or_train(dataset="digits", workdir=None, **train_kwargs) -> features.FeatureNet:
  """The classifier of `dataset` in `workdir` (default `features.default_classifier_dir(dataset)`),
  trained there first (with `train(**train_kwargs)`) when the folder holds none."""
  workdir = workdir or features.default_classifier_dir(dataset)
  if not os.path.exists(os.path.join(workdir, features.META_FILE)):
    train(dataset, workdir, **train_kwargs)
  net = features.load_classifier(workdir)
  if net.dataset != dataset:
    raise ValueError(f"{workdir} holds a classifier for {net.dataset!r}, not {dataset!r}; "
                     "use another workdir or delete that one.")
  return net


class Reference(NamedTuple):
  """What samples are scored against: a dataset's feature classifier and one split's
  images as float32 in [0, 1] ([N, H, W, C], in stored order)."""
  net: features.FeatureNet
  images: np.ndarray

  @property
  def fd_name(self) -> str:
    """The key of FD in `scores`: "FD (<dataset> classifier)"."""
    return frechet.fd_name(self.net.dataset)

  def scores(self, fake, k: int = 3) -> dict:
    """{"FD (<dataset> classifier)", "precision", "recall", "num_real", "num_fake",
    "confident_share"} of images `fake` in [0, 1] against the split
    (`features.sample_metrics`, `confident_share`)."""
    fake = np.asarray(fake, np.float32)
    return {**features.sample_metrics(self.net, self.images, fake, k),
            "confident_share": self.confident_share(fake)}

  def labels(self, images) -> np.ndarray:
    """The classes the classifier reads in `images`, int [N]."""
    return self.net.predict(np.asarray(images, np.float32))

  def confident_share(self, images, threshold: float = 0.9) -> float:
    """The share of `images` labelled with probability >= `threshold`
    (`features.confident_share`)."""
    return features.confident_share(self.net, np.asarray(images, np.float32), threshold)


@functools.lru_cache(maxsize=8)
def reference(dataset: str, split: str = "test", data_dir: str = "",
              manual_dir: str = "") -> Reference:
  """The `Reference` of a labelled image dataset's split, its classifier trained first where
  none is saved (`load_or_train`); cached per process."""
  net = load_or_train(dataset, data_dir=data_dir, manual_dir=manual_dir)
  levels, _, info = load_split(dataset, split, data_dir, manual_dir)
  return Reference(net, features.levels_to_unit(levels, info.num_levels))


def real_scores(dataset: str, num: int = 1000) -> dict:
  """The scores of real data, the floor of every sample's: the first `num` train images
  against the test split (`Reference.scores`)."""
  return reference(dataset).scores(reference(dataset, "train").images[:num])
