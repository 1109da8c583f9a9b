r"""Mode coverage of samples from a mixture with known centres (e.g. toy2d's eight Gaussians).

A sample is "near" a mode when it lies within `radius` (3 sigma of the components) of its
centre. The share of near samples says how much mass falls on the modes at all (precision);
the share near each mode, and how many modes hold >= 5% of the samples, say whether the
generator covers them all (mode collapse leaves some at 0)."""
from __future__ import annotations

import numpy as np


def mode_coverage(x, centres, radius: float) -> tuple:
  """(share of samples within `radius` of some centre, [K] share within `radius` of each
  centre, counted at its nearest centre) of samples x [N, D] and centres [K, D]."""
  dist = np.linalg.norm(np.asarray(x)[:, None, :] - np.asarray(centres)[None], axis=-1)
  near = dist.min(axis=1) < radius
  per_mode = np.array([np.mean(near & (dist.argmin(axis=1) == c)) for c in range(len(centres))])
  return float(near.mean()), per_mode
