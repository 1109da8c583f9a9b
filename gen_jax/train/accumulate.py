r"""Gradient accumulation whose micro-batches draw the whole batch's random numbers.

With `config.grad_accum_steps = k` the step splits its batch of B examples into k
micro-batches of m = B / k, example g going to micro-batch g mod k (so each device's shard
splits evenly), and averages their gradients in a `lax.scan` before the one optimizer update:

    grad = (1 / k) sum_j grad L(params, batch[j::k], key_j)

For a loss that is a mean over examples this is the whole batch's gradient only if each
example meets the same noise (the diffusion time and noise, the VAE's posterior sample, the
GAN's z, dropout masks) in both. JAX's partitionable Threefry (the default, jax_threefry_partitionable)
draws element c of a `[B, ...]` array as `threefry2x32(key, c)`, c its flat index. The key
each micro-batch gets, `micro_key(rng, j, k, m)`, is a Threefry key of its own PRNG
implementation that remembers (j, k, m): any draw of random bits whose leading axis has m
entries uses counters `(i k + j) R + r` for element (i, r) instead of `i R + r` (R the
size of one example's draw), which are exactly the counters of rows j, j + k, ... of the
whole batch's draw. Keys it derives (split, fold_in, flax's per-module keys) are the whole
batch's keys and keep the triple. So every per-example draw in micro-batch j equals the whole
batch's draw for those examples, and a draw of a shape without the batch axis equals the whole
batch's too: accumulation gives the whole batch's loss and gradient to float rounding for every
family (tests/train/test_accumulation.py). Not covered: per-example keys made by
`split(rng, batch_size)` (no loss in gen_jax makes them; a split is left unstrided so that
`k1, k2, k3, k4 = split(rng, 4)` stays the whole batch's with micro-batches of 4), and a draw
whose leading axis has m entries by coincidence, which gets a different but equally random draw.

Needs jax_threefry_partitionable=True (JAX's default since 0.5) and fewer than 2^32
elements in any one draw of the whole batch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend import random as jex_random


def micro_batches(batch, k: int):
  """[B, ...] leaves -> [k, B / k, ...]: micro-batch j holds examples j, j + k, j + 2k, ..."""
  return jax.tree.map(lambda x: x.reshape(x.shape[0] // k, k, *x.shape[1:]).swapaxes(0, 1),
                      batch)


def _counters(data, shape):
  """The uint32 Threefry counters of a draw of `shape` with key data (k1, k2, j, k, m)."""
  size = int(np.prod(shape)) if shape else 1
  lo = jax.lax.broadcasted_iota(jnp.uint32, (size,), 0).reshape(shape)
  if not shape:
    return lo
  j, k, m = data[2], data[3], data[4]
  if size >= 2 ** 32:
    raise ValueError(f"A random draw of shape {shape} is too large for micro-batch keys.")
  row_size = size // max(shape[0], 1)
  row = jax.lax.broadcasted_iota(jnp.uint32, shape, 0)
  strided = (row * k + j) * jnp.uint32(row_size) + (lo - row * jnp.uint32(row_size))
  return jnp.where(jnp.uint32(shape[0]) == m, strided, lo)


def _bits(data, counters):
  zeros = jnp.zeros_like(counters)
  return jex_random.threefry2x32_p.bind(data[0], data[1], zeros, counters)


def _with_triple(base, data):
  triple = jnp.broadcast_to(data[2:], (*base.shape[:-1], 3))
  return jnp.concatenate([base, triple], axis=-1)


def _seed(seed):
  base = jax.random.key_data(jax.random.key(seed))
  return jnp.concatenate([base, jnp.asarray([0, 1, 0], jnp.uint32)])


def _split(data, shape):
  counters = jax.lax.broadcasted_iota(jnp.uint32, (int(np.prod(shape)),), 0).reshape(shape)
  bits1, bits2 = _bits(data, counters)
  return _with_triple(jnp.stack([bits1, bits2], axis=-1), data)


def _fold_in(data, value):
  base = jax.random.key_data(jax.random.fold_in(
      jax.random.wrap_key_data(data[:2], impl="threefry2x32"), value))
  return _with_triple(base, data)


def _random_bits(data, bit_width, shape):
  bits1, bits2 = _bits(data, _counters(data, tuple(shape)))
  dtype = {8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32, 64: jnp.uint64}[bit_width]
  if bit_width == 64:
    return (bits1.astype(dtype) << jnp.asarray(32, dtype)) | bits2.astype(dtype)
  return (bits1 ^ bits2).astype(dtype)


MICRO_THREEFRY = jex_random.define_prng_impl(
    key_shape=(5,), seed=_seed, split=_split, random_bits=_random_bits, fold_in=_fold_in,
    name="gen_jax_micro_batch_threefry2x32", tag="gmb")


def micro_key(rng, j, k: int, m: int):
  """The key of micro-batch j of k (m examples each) whose draws are the whole batch's
  draws under `rng` for its examples (see the module docstring)."""
  triple = jnp.stack([jnp.asarray(j, jnp.uint32), jnp.uint32(k), jnp.uint32(m)])
  return jax.random.wrap_key_data(jnp.concatenate([jax.random.key_data(rng), triple]),
                                  impl=MICRO_THREEFRY)


def value_and_grad(loss_fn, params, batch, rng, k: int):
  """((loss, metrics), grads) of `loss_fn(params, batch, rng)`, averaged over k micro-batches
  (k = 1: the batch as it is, with `rng` itself)."""
  value_and_grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
  if k == 1:
    return value_and_grad_fn(params, batch, rng)
  m = jax.tree.leaves(batch)[0].shape[0] // k

  def accumulate(total, micro):
    j, micro_batch = micro
    out = value_and_grad_fn(params, micro_batch, micro_key(rng, j, k, m))
    return jax.tree.map(jnp.add, total, out), None

  micro = (jnp.arange(k), micro_batches(batch, k))
  shapes = jax.eval_shape(value_and_grad_fn, params, jax.tree.map(lambda x: x[0], micro[1]),
                          micro_key(rng, 0, k, m))
  zeros = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
  total, _ = jax.lax.scan(accumulate, zeros, micro)
  return jax.tree.map(lambda x: x / k, total)
