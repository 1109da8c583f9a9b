r"""The feature network of the sample metrics: load a trained classifier, embed images.

A classifier trained by `experiments/train_classifier.py` lives in a folder with
`params/` (Orbax StandardCheckpointer) and `classifier.json` (dataset, image
shape, levels, net fields, measured test accuracy). `load_classifier(dir)`
returns a `FeatureNet` whose `features(images)` are the penultimate
activations (the space of FD and precision/recall) and whose
`predict(images)` are predicted labels (conditional accuracy).

Images are float32 in [0, 1], [N, H, W, C]: what `Paradigm.sample` returns.
Real data arrive as uint8 levels 0..L-1: convert with `levels_to_unit`
(k -> k / (L - 1)), the same map the samplers use, so real and generated
images meet the classifier on one scale.

`sample_metrics(net, real, fake)` gives the numbers a table reports:
"FD (<dataset> classifier)" (gen_jax.eval.frechet; not an FID: our own
features, not Inception's), and k-NN precision / recall (arXiv:1904.06991).
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.eval import frechet
from gen_jax.eval import precision_recall as pr_lib
from gen_jax.nets.classifier import Classifier, default_classifier_dir  # noqa: F401 (re-exported)

META_FILE = "classifier.json"
PARAMS_DIR = "params"


def levels_to_unit(levels, num_levels: int) -> np.ndarray:
  """uint8/int levels 0..L-1 -> float32 in [0, 1] (level k -> k / (L - 1))."""
  return np.asarray(levels, np.float32) / np.float32(num_levels - 1)


def _module_from_meta(meta) -> Classifier:
  m = meta["model"]
  return Classifier(num_classes=meta["num_classes"], channels=tuple(m["channels"]),
                    feature_dim=m["feature_dim"], dropout_rate=m["dropout_rate"])


def save_classifier(workdir: str, params, meta: dict) -> None:
  """Writes params with Orbax and then `classifier.json` (written last, atomically: its
  presence marks a complete checkpoint). Overwrites an earlier classifier in `workdir`."""
  import orbax.checkpoint as ocp
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  meta_path = os.path.join(workdir, META_FILE)
  if os.path.exists(meta_path):
    os.remove(meta_path)
  checkpointer = ocp.StandardCheckpointer()
  checkpointer.save(os.path.join(workdir, PARAMS_DIR), params, force=True)
  checkpointer.wait_until_finished()
  checkpointer.close()
  with open(meta_path + ".tmp", "w") as f:
    json.dump(meta, f, indent=1)
  os.replace(meta_path + ".tmp", meta_path)


class FeatureNet(NamedTuple):
  """A loaded classifier: `features(images)` [N, feature_dim], `predict(images)` [N] labels."""
  module: Classifier
  params: Any
  meta: dict
  embed_fn: Callable     # jitted (params, images) -> features
  logits_fn: Callable    # jitted (params, images) -> logits

  @property
  def dataset(self) -> str:
    return self.meta["dataset"]

  def _batched(self, fn, images, batch_size):
    images = _check_images(images, tuple(self.meta["image_shape"]), self.dataset)
    n = images.shape[0]
    outs = []
    for start in range(0, n, batch_size):
      chunk = images[start:start + batch_size]
      pad = batch_size - chunk.shape[0] if n > batch_size else 0   # one compiled shape
      if pad:
        chunk = np.concatenate([chunk, np.zeros((pad,) + chunk.shape[1:], chunk.dtype)])
      out = np.asarray(fn(self.params, chunk))
      outs.append(out[:out.shape[0] - pad])
    return np.concatenate(outs)

  def features(self, images, batch_size: int = 500) -> np.ndarray:
    """Penultimate features, float32 [N, feature_dim], of float images in [0, 1]."""
    return self._batched(self.embed_fn, images, batch_size)

  def logits(self, images, batch_size: int = 500) -> np.ndarray:
    return self._batched(self.logits_fn, images, batch_size)

  def predict(self, images, batch_size: int = 500) -> np.ndarray:
    """Predicted labels, int [N]."""
    return self.logits(images, batch_size).argmax(-1)


def _check_images(images, image_shape, dataset) -> np.ndarray:
  images = np.asarray(images)
  if images.dtype == np.uint8 or np.issubdtype(images.dtype, np.integer):
    raise ValueError("The feature net takes float images in [0, 1]; convert data levels with "
                     "gen_jax.eval.features.levels_to_unit(levels, num_levels).")
  if images.ndim != 4 or tuple(images.shape[1:]) != image_shape:
    raise ValueError(f"The {dataset} classifier takes images of shape [N, {', '.join(map(str, image_shape))}], "
                     f"got {images.shape}; train one for this data with "
                     f"`python -m experiments.train_classifier --dataset=<name> --workdir=DIR`.")
  return images.astype(np.float32)


def from_params(module: Classifier, params, meta: dict) -> FeatureNet:
  """A FeatureNet from in-memory params (as `load_classifier` builds it)."""
  embed_fn = jax.jit(lambda p, x: module.apply(p, x, method=Classifier.embed))
  logits_fn = jax.jit(lambda p, x: module.apply(p, x))
  return FeatureNet(module, params, meta, embed_fn, logits_fn)


def load_classifier(workdir: str) -> FeatureNet:
  """Loads a classifier written by `experiments/train_classifier.py` (or `save_classifier`)."""
  import orbax.checkpoint as ocp
  workdir = os.path.abspath(workdir)
  meta_path = os.path.join(workdir, META_FILE)
  if not os.path.exists(meta_path):
    raise FileNotFoundError(
        f"No classifier in {workdir} ({META_FILE} missing); train one with "
        f"`python -m experiments.train_classifier --dataset=digits --workdir={workdir}`.")
  with open(meta_path) as f:
    meta = json.load(f)
  module = _module_from_meta(meta)
  abstract = jax.eval_shape(module.init, jax.random.key(0), jnp.zeros((1, *meta["image_shape"]), jnp.float32))
  # Restore onto this machine's first device: without a target sharding Orbax would use the
  # saving machine's, and refuse a classifier trained on a CPU when loaded on a GPU.
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  abstract = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=device), abstract)
  checkpointer = ocp.StandardCheckpointer()
  params = checkpointer.restore(os.path.join(workdir, PARAMS_DIR), abstract)
  checkpointer.close()
  return from_params(module, params, meta)


def confident_share(net: FeatureNet, images, threshold: float = 0.9) -> float:
  """The share of `images` that the classifier labels with probability >= `threshold`
  (max softmax): how many samples it reads as one clear class. Compare with the same
  share on real images, since the classifier is not sure of every real image either."""
  logits = net.logits(images).astype(np.float64)
  log_p = logits - logits.max(-1, keepdims=True)
  log_p = log_p - np.log(np.exp(log_p).sum(-1, keepdims=True))
  return float(np.mean(log_p.max(-1) >= np.log(threshold)))


def sample_metrics(net: FeatureNet, real_images, fake_images, k: int = 3) -> dict:
  """{"FD (<dataset> classifier)", "precision", "recall"} of fake vs real images in [0, 1].

  Use the same number of real and generated images across models: FD is biased
  upwards for small N, so values are only comparable at equal N; k-NN balls of
  a few hundred points are wide (with the default digits classifier, uniform
  noise scored precision 0.70 against the 360 test digits but 0.16 against the
  1,437 train digits), so use >= 1,000 of each where the data allow.
  Non-finite samples give NaN scores instead of an error.
  """
  real, fake = net.features(real_images), net.features(fake_images)
  counts = {"num_real": int(real.shape[0]), "num_fake": int(fake.shape[0])}
  if not (np.all(np.isfinite(real)) and np.all(np.isfinite(fake))):
    # A diverged model (NaN samples) gets NaN scores, so a table still has its row.
    return {frechet.fd_name(net.dataset): float("nan"), "precision": float("nan"),
            "recall": float("nan"), **counts}
  pr = pr_lib.precision_recall(real, fake, k=k)
  return {frechet.fd_name(net.dataset): frechet.frechet_distance(real, fake),
          "precision": pr.precision, "recall": pr.recall, **counts}
