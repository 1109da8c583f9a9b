r"""Improved precision and recall of generative models (k-NN manifolds).

Kynkäänniemi, Karras, Laine, Lehtinen, Aila 2019, "Improved Precision and
Recall Metric for Assessing Generative Models" (arXiv:1904.06991).

Each feature set Phi approximates its manifold by the union of balls centred at
its points, each with radius the distance to its k-th nearest neighbour in
the same set (NN_k, the point itself excluded):

  f(phi, Phi) = 1  if  ||phi - phi'||_2 <= ||phi' - NN_k(phi', Phi)||_2  for some phi' in Phi,
                0  otherwise.

  precision(Phi_r, Phi_g) = (1/|Phi_g|) sum_{phi_g in Phi_g} f(phi_g, Phi_r)
  recall(Phi_r, Phi_g)    = (1/|Phi_r|) sum_{phi_r in Phi_r} f(phi_r, Phi_g)

Precision: the share of generated samples that fall on the real manifold
(quality); recall: the share of real samples that fall on the generated
manifold (coverage). The paper uses k = 3. Distances are computed in float64
by numpy in row blocks, so memory stays at block x N.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np


class PrecisionRecall(NamedTuple):
  precision: float
  recall: float


def _pairwise_distances(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Euclidean distances [len(a), len(b)] via ||a||^2 + ||b||^2 - 2 a.b, clipped at 0."""
  sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
  return np.sqrt(np.clip(sq, 0.0, None))


def knn_radii(features, k: int = 3, block_size: int = 1024) -> np.ndarray:
  """[N] distance of each point to its k-th nearest neighbour in the set, itself excluded."""
  x = np.asarray(features, np.float64)
  if not 1 <= k < x.shape[0]:
    raise ValueError(f"k={k} needs at least k + 1 = {k + 1} points; the set has {x.shape[0]}.")
  radii = np.empty(x.shape[0])
  for start in range(0, x.shape[0], block_size):
    d = _pairwise_distances(x[start:start + block_size], x)
    # Column k of the sorted row: index 0 is the point itself (distance 0).
    radii[start:start + block_size] = np.partition(d, k, axis=1)[:, k]
  return radii


def manifold_membership(queries, support, support_radii, block_size: int = 1024) -> np.ndarray:
  """[M] bool: f(q, support) = whether q lies in some ball B(support_j, radius_j)."""
  q = np.asarray(queries, np.float64)
  s = np.asarray(support, np.float64)
  radii = np.asarray(support_radii, np.float64)
  inside = np.empty(q.shape[0], bool)
  for start in range(0, q.shape[0], block_size):
    d = _pairwise_distances(q[start:start + block_size], s)
    inside[start:start + block_size] = np.any(d <= radii[None, :], axis=1)
  return inside


def precision_recall(real_features, fake_features, k: int = 3, block_size: int = 1024) -> PrecisionRecall:
  """Improved precision and recall (arXiv:1904.06991) of fake vs real [N, D] features."""
  real = np.asarray(real_features, np.float64)
  fake = np.asarray(fake_features, np.float64)
  if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
    raise ValueError(f"Need two [N, D] feature sets of equal D, got {real.shape} and {fake.shape}.")
  precision = manifold_membership(fake, real, knn_radii(real, k, block_size), block_size).mean()
  recall = manifold_membership(real, fake, knn_radii(fake, k, block_size), block_size).mean()
  return PrecisionRecall(float(precision), float(recall))
