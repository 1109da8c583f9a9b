"""k-NN precision/recall (arXiv:1904.06991) on constructed cases and against brute force."""
from __future__ import annotations

import numpy as np
import pytest

from gen_jax.eval import precision_recall as pr


def _brute_force(real, fake, k):
  """The paper's definition, written with explicit loops over sorted distances."""
  def radii(x):
    return np.array([np.sort(np.linalg.norm(x - p, axis=1))[k] for p in x])

  def f(q, support, r):
    return float(any(np.linalg.norm(q - s) <= rj for s, rj in zip(support, r)))

  rr, rf = radii(real), radii(fake)
  return (np.mean([f(q, real, rr) for q in fake]), np.mean([f(q, fake, rf) for q in real]))


def test_identical_sets_give_one_one():
  x = np.random.default_rng(0).normal(size=(300, 5))
  assert pr.precision_recall(x, x) == (1.0, 1.0)


def test_disjoint_far_apart_sets_give_zero_zero():
  rng = np.random.default_rng(1)
  real, fake = rng.normal(size=(200, 4)), rng.normal(size=(150, 4)) + 100.0
  assert pr.precision_recall(real, fake) == (0.0, 0.0)


def test_a_subset_has_precision_one_and_recall_below_one():
  # Real data: two far-apart clusters; the generator covers only the first one.
  rng = np.random.default_rng(2)
  real = np.concatenate([rng.normal(size=(200, 3)), rng.normal(size=(200, 3)) + 50.0])
  fake = real[:200:2]
  precision, recall = pr.precision_recall(real, fake)
  assert precision == 1.0
  assert recall < 1.0
  assert recall == pytest.approx(0.5, abs=0.05)  # the second cluster is missed entirely
  # Swapping the roles swaps the numbers' meaning: a subset of the real data as "real".
  assert pr.precision_recall(fake, real).recall == 1.0


@pytest.mark.parametrize("k", [1, 3, 5])
def test_matches_brute_force_definition(k):
  rng = np.random.default_rng(k)
  real, fake = rng.normal(size=(60, 3)), 0.6 * rng.normal(size=(45, 3)) + 1.5
  got = pr.precision_recall(real, fake, k=k, block_size=16)  # several blocks
  np.testing.assert_allclose(got, _brute_force(real, fake, k))
  assert 0.0 < got.precision < 1.0 and 0.0 < got.recall < 1.0


def test_knn_radii_and_errors():
  x = np.array([[0.0], [1.0], [3.0], [7.0]])
  np.testing.assert_allclose(pr.knn_radii(x, k=1), [1.0, 1.0, 2.0, 4.0])
  np.testing.assert_allclose(pr.knn_radii(x, k=2), [3.0, 2.0, 3.0, 6.0])
  with pytest.raises(ValueError, match="at least"):
    pr.knn_radii(x, k=4)
  with pytest.raises(ValueError, match="equal D"):
    pr.precision_recall(np.zeros((5, 2)), np.zeros((5, 3)))
