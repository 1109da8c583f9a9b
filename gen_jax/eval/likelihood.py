"""Test-split likelihood of a paradigm, in bits/dim on the data's levels (or nats/token)."""
from __future__ import annotations

import math

import jax
import numpy as np

from gen_jax.losses.nll import bits_per_dim


def evaluate_likelihood(log_likelihood_fn, params, batches, rng, info, put=None,
                        likelihood_is_exact=False, split="test") -> dict:
  """Averages `log_likelihood_fn(params, batch, rng_i)` [B] over masked eval batches.

  Batches carry `mask` [B] (False on padding) and, for text, `token_mask`
  [B, T] (the tokens each row predicts). The result is per dimension:
  bits/dim = -sum log p / (num examples * dims per example * log 2).
  """
  total_ll, total_dims, count = 0.0, 0.0, 0
  for i, batch in enumerate(batches):
    batch = dict(batch)
    mask = np.asarray(batch.pop("mask"), bool)
    dims = (np.asarray(batch["token_mask"]).sum(axis=1) if "token_mask" in batch
            else np.full(mask.shape, info.num_dims))
    if put is not None:
      batch = put(batch)
    ll = np.asarray(jax.device_get(log_likelihood_fn(params, batch, jax.random.fold_in(rng, i))),
                    np.float64)
    total_ll += float(ll[mask].sum())
    total_dims += float(dims[mask].sum())
    count += int(mask.sum())
  if count == 0:
    raise ValueError(f"The {split} split of {info.name!r} gave no examples to evaluate.")
  nats_per_dim = -total_ll / total_dims
  result = {"split": split, "bound": not likelihood_is_exact, "num_examples": count,
            "nll_nats_per_example": -total_ll / count}
  if info.kind == "text":
    result.update(nats_per_token=nats_per_dim, bits_per_token=nats_per_dim / math.log(2),
                  bits_per_dim=nats_per_dim / math.log(2))
  else:
    result["bits_per_dim"] = float(bits_per_dim(nats_per_dim * 1.0, 1))
  return result
