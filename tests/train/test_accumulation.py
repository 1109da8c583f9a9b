"""Gradient accumulation: k micro-batches give the whole batch's update (gen_jax.train.accumulate).

The truth is the one-batch step (grad_accum_steps=1) of the same config, seed and batch: its
loss and parameters after 3 steps, for a VAE, the GPT, a DDPM and a GAN (two players, one
update each per step) — all stochastic losses except the GPT's, so the micro-batches must draw
the whole batch's noise for the results to agree.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.configs import ddpm, gan, gpt, vae
from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.train import accumulate
from gen_jax.train import build as build_lib
from gen_jax.train import loop

DIGITS = DatasetInfo("digits", "image", (8, 8, 1), num_levels=17, num_classes=10)
TEXT = DatasetInfo("text_file", "text", (17,), vocab="abcdefghij\n")


def tiny(name):
  if name == "vae":
    config = vae.get_config("digits")
    config.model.channels, config.model.latent_dim = (8,), 2
  elif name == "ddpm":
    config = ddpm.get_config("digits")
    config.model.channels, config.model.channel_mult, config.model.groups = 8, (1, 2), 4
  elif name == "gan":
    config = gan.get_config("digits")
    config.model.update(g_channels=8, d_channels=8, d_feature_dim=8, latent_dim=4)
  else:
    config = gpt.get_config("shakespeare_small")
    config.seq_len = 16
    config.model.update(num_layers=1, num_heads=2, embed_dim=16, max_len=16, dropout=0.1)
  config.batch_size = 8
  config.ema_decay = 0.0
  return config


def batch_for(info, seed=0):
  rng = np.random.default_rng(seed)
  if info.kind == "text":
    return {"tokens": rng.integers(0, len(info.vocab), (8, *info.shape)).astype(np.int32)}
  return {"image": rng.integers(0, info.num_levels, (8, *info.shape)).astype(np.uint8),
          "label": rng.integers(0, 10, (8,)).astype(np.int32)}


def three_steps(config, info):
  run = build_lib.build(config, info=info)
  batch = run.put_batch(batch_for(info))
  state = run.init_state(batch)
  step = loop.jit_train_step(run)
  losses = []
  for _ in range(3):
    state, metrics = step(state, batch, run.keys["train"])
    losses.append(float(metrics["loss"]))
  return np.asarray(losses), state.params


@pytest.mark.parametrize("name", ["vae", "gpt", "ddpm", "gan"])
def test_micro_batches_give_the_whole_batch_update(name):
  info = TEXT if name == "gpt" else DIGITS
  config = tiny(name)
  losses, params = three_steps(config, info)
  for k in (4,):   # micro-batches of 2
    config.grad_accum_steps = k
    losses_k, params_k = three_steps(config, info)
    np.testing.assert_allclose(losses_k, losses, rtol=1e-6, err_msg=f"k={k}")
    # Relative to the parameters' scale (max |p| over the tree): a zero-initialised bias
    # moved by Adam's first steps is ~1e-5, far below float32 resolution of the update.
    a, b = (np.concatenate([np.ravel(x) for x in jax.tree.leaves(p)]) for p in (params_k, params))
    assert np.abs(a - b).max() <= 1e-6 * np.abs(b).max(), (k, np.abs(a - b).max())


def test_micro_batch_keys_draw_the_whole_batch_numbers():
  rng = jax.random.fold_in(jax.random.key(3), 7)
  b, k = 12, 3

  def draws(key, n):
    return (jax.random.normal(key, (n, 5, 2)),
            jax.random.randint(jax.random.split(key)[1], (n,), 0, 1000),
            jax.random.bernoulli(jax.random.fold_in(key, 9), 0.3, (n, 7)),
            jax.random.categorical(key, jnp.zeros((n, 4, 6))),
            jax.random.normal(key, (n,), dtype=jnp.bfloat16),
            jax.random.normal(key, ()))      # no batch axis: the same number
  whole = draws(rng, b)
  for j in range(k):
    micro = jax.jit(lambda j: draws(accumulate.micro_key(rng, j, k, b // k), b // k))(j)
    for x, y in zip(whole, micro):
      np.testing.assert_array_equal(np.asarray(x if x.ndim == 0 else x[j::k]), np.asarray(y))


def test_micro_batches_split_each_device_share_evenly():
  batch = {"x": np.arange(12)}
  np.testing.assert_array_equal(accumulate.micro_batches(batch, 3)["x"],
                                [[0, 3, 6, 9], [1, 4, 7, 10], [2, 5, 8, 11]])


@pytest.mark.parametrize("k", [3, 0, -2])
def test_a_grad_accum_steps_that_does_not_divide_the_batch_is_refused(k):
  config = tiny("vae")
  config.grad_accum_steps = k
  with pytest.raises(UserError, match="grad_accum_steps.*divides the batch each device holds"):
    build_lib.build(config, info=DIGITS)
