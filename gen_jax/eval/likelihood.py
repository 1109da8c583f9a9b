"""Test-split likelihood of a paradigm, in bits/dim on the data's levels (or nats/token)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax import data as data_lib
from gen_jax.losses.nll import bits_per_dim


def masked_sums(log_likelihood_fn):
  """(params, batch, rng) -> (sum of log p, sum of dims, number of examples) over unmasked rows.

  Batches carry `mask` [B] (False on padding) and `dims` [B] (dimensions each
  row's log-likelihood covers). Jit it with replicated outputs: on several
  hosts each process holds only its rows of the batch.
  """
  def sums(params, batch, rng):
    batch = dict(batch)
    mask = batch.pop("mask").astype(jnp.float32)
    dims = batch.pop("dims").astype(jnp.float32)
    ll = log_likelihood_fn(params, batch, rng)
    return jnp.sum(ll * mask), jnp.sum(dims * mask), jnp.sum(mask)
  return sums


def with_dims(batch: dict, num_dims: int) -> dict:
  """Adds `dims` [B]: the tokens each row predicts (text) or the image's sub-pixels."""
  mask = np.asarray(batch["mask"])
  if "token_mask" in batch:
    dims = np.asarray(batch["token_mask"]).sum(axis=1)
  else:
    dims = np.full(mask.shape, num_dims)
  return {**batch, "dims": dims.astype(np.float32)}


def summarize(total_ll: float, total_dims: float, count: float, info, likelihood_is_exact: bool,
              split: str) -> dict:
  """Totals -> the evaluation record: bits/dim = -sum log p / (sum dims * log 2)."""
  if count == 0:
    raise ValueError(f"The {split} split of {info.name!r} gave no examples to evaluate.")
  nats_per_dim = -total_ll / total_dims
  result = {"split": split, "bound": not likelihood_is_exact, "num_examples": int(count),
            "nll_nats_per_example": -total_ll / count,
            "bits_per_dim": float(bits_per_dim(nats_per_dim, 1))}
  if info.kind == "text":
    result.update(nats_per_token=nats_per_dim, bits_per_token=nats_per_dim / math.log(2))
  return result


def evaluate_likelihood(sums_fn, params, batches, rng, info, put=lambda b: b,
                        likelihood_is_exact=False, split="test") -> dict:
  """Sums `sums_fn` (see `masked_sums`) over eval batches and summarizes in bits/dim."""
  totals = np.zeros(3, np.float64)
  for i, batch in enumerate(batches):
    out = sums_fn(params, put(with_dims(batch, info.num_dims)), jax.random.fold_in(rng, i))
    totals += np.asarray(jax.device_get(out), np.float64)
  return summarize(*totals, info, likelihood_is_exact, split)


def evaluate(run, state, split: str = "test", max_examples=None) -> dict | None:
  """bits/dim (or nats/token) of a run's sampling params on a split; None without a likelihood.

  `run` is a `gen_jax.train.build.Run` (its paradigm, config, mesh and keys), `state`
  its `TrainState`. On several hosts each process reads its rows of every batch.
  """
  if run.paradigm.log_likelihood is None:
    return None
  cfg = run.config
  batches = data_lib.eval_batches(
      cfg.dataset, split=split, batch_size=cfg.eval_batch_size, max_examples=max_examples,
      process_index=jax.process_index(), process_count=jax.process_count(), **run.data_kwargs)
  sums = jax.jit(masked_sums(run.with_gathered_params(run.paradigm.log_likelihood)),
                 out_shardings=run.replicated)
  return evaluate_likelihood(sums, run.sampling_params(state), batches, run.keys["eval"],
                             run.info, put=run.put_batch,
                             likelihood_is_exact=run.paradigm.likelihood_is_exact, split=split)


def paired_gap(model_nll, true_nll) -> dict:
  """A model's NLL against the true density's on the same points x_i (nats), with standard
  errors: {'nll', 'entropy' (the true NLL's mean, an estimate of H(p)), 'entropy_stderr',
  'gap', 'gap_stderr'}. The gap is the mean of the per-point differences -log q(x_i) +
  log p(x_i), an estimate of KL(p || q) >= 0 for x_i ~ p; its standard error is that of the
  paired differences, far smaller than the entropy's own (both terms see the same x)."""
  model_nll, true_nll = np.asarray(model_nll, np.float64), np.asarray(true_nll, np.float64)
  diff = model_nll - true_nll
  se = lambda a: float(a.std() / math.sqrt(len(a)))
  return {"nll": float(model_nll.mean()), "entropy": float(true_nll.mean()),
          "entropy_stderr": se(true_nll), "gap": float(diff.mean()), "gap_stderr": se(diff)}


def nats_to_bits_per_dim(nats, num_dims: int) -> float:
  """nats per example -> bits per dimension: nats / (D log 2) (a uniform model over 2 levels
  scores D log 2 nats = 1 bit/dim)."""
  return float(bits_per_dim(nats, num_dims))


def bits_per_dim_to_nats(bpd, num_dims: int) -> float:
  """bits per dimension -> nats per example: bpd D log 2 (the inverse of nats_to_bits_per_dim)."""
  return float(bpd) * num_dims * math.log(2.0)
