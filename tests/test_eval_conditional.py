"""Per-class accuracy of conditional samples, with a fake sampler and a fake classifier."""
from __future__ import annotations

import jax
import numpy as np
import pytest

from gen_jax.eval import conditional


def test_per_class_accuracy_on_constructed_labels():
  target = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 2])
  predicted = np.array([0, 0, 1, 0, 1, 0, 2, 2, 2, 2])
  got = conditional.per_class_accuracy(predicted, target, num_classes=4)
  assert got["accuracy"] == pytest.approx(0.8)
  np.testing.assert_allclose(got["per_class"][:3], [0.75, 0.5, 1.0])
  assert np.isnan(got["per_class"][3])          # class 3 has no examples
  assert got["counts"] == [4, 2, 4, 0]
  with pytest.raises(ValueError, match="differ in length"):
    conditional.per_class_accuracy(predicted[:3], target, 4)


def _predict_from_brightness(images):
  """A fake classifier: label = round(10 * mean pixel)."""
  return np.rint(np.asarray(images).mean(axis=(1, 2, 3)) * 10).astype(int)


@pytest.mark.parametrize("shift, expected", [(0, 1.0), (1, 0.0)])
def test_conditional_accuracy_with_a_sampler_of_known_classes(shift, expected):
  keys = []

  def sample_fn(rng, num, label):
    keys.append(jax.random.key_data(rng))
    value = ((label + shift) % 10) / 10.0
    return np.full((num, 8, 8, 1), value, np.float32)

  got = conditional.conditional_accuracy(sample_fn, _predict_from_brightness, jax.random.key(0), 10, 5)
  assert got["accuracy"] == expected
  assert got["per_class"] == [expected] * 10 and got["counts"] == [5] * 10
  assert len({tuple(np.asarray(k).tolist()) for k in keys}) == 10   # one key per class


def test_conditional_accuracy_counts_each_class_separately():
  # A sampler right for even classes, and right half the time for odd ones.
  def sample_fn(rng, num, label):
    del rng
    wrong = np.arange(num) % 2 == 0 if label % 2 else np.zeros(num, bool)
    values = np.where(wrong, ((label + 1) % 10) / 10.0, label / 10.0)
    return np.broadcast_to(values[:, None, None, None], (num, 8, 8, 1)).astype(np.float32)

  got = conditional.conditional_accuracy(sample_fn, _predict_from_brightness, jax.random.key(1), 10, 4)
  np.testing.assert_allclose(got["per_class"], [1.0, 0.5] * 5)
  assert got["accuracy"] == pytest.approx(0.75)
