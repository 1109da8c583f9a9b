"""The realnvp / glow / flow2d paradigms against truth: hand-computed likelihoods of an
identity flow, temperature-0 samples, init from data, data checks, and an eight-Gaussians
flow whose test NLL approaches the true entropy."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from gen_jax.data import toy2d
from gen_jax.data.info import DatasetInfo
from gen_jax.paradigms import flow2d, glow, realnvp

DIGITS = DatasetInfo(name="digits", kind="image", shape=(8, 8, 1), num_levels=17, num_classes=10)
POINTS = DatasetInfo(name="toy2d/eight_gaussians", kind="points", shape=(2,))


def image_config(num_scales=2, steps=1, hidden=8, **fields):
  return ml_collections.ConfigDict(dict(num_scales=num_scales, steps_per_scale=steps, hidden=hidden,
                                        **fields))


def random_images(n, info=DIGITS, seed=0):
  rs = np.random.default_rng(seed)
  return {"image": rs.integers(0, info.num_levels, (n,) + info.shape).astype(np.uint8),
          "label": np.zeros((n,), np.int32)}


def perturb(params, seed, scale=0.1):
  rs = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda l: l + jnp.asarray(scale * rs.standard_normal(l.shape), l.dtype), params)


def test_realnvp_at_init_is_a_standard_normal_on_the_rescaled_data():
  """Zero-initialised couplings make RealNVP a permutation of y = (x + u) / L - 1/2, so
  log p(v) = sum log N(y; 0, 1) - D log L, with the u the loss draws from the same key."""
  paradigm = realnvp.make(image_config(), DIGITS)
  batch = random_images(3)
  params = paradigm.init(jax.random.key(0), batch)
  rng = jax.random.key(5)
  u = np.asarray(jax.random.uniform(rng, batch["image"].shape), np.float64)
  y = (batch["image"].astype(np.float64) + u) / 17 - 0.5
  d = 64
  by_hand = (-0.5 * y**2 - 0.5 * np.log(2 * np.pi)).reshape(3, -1).sum(1) - d * np.log(17)
  ll = paradigm.log_likelihood(params, batch, rng)
  np.testing.assert_allclose(ll, by_hand, rtol=1e-5)
  loss, metrics = paradigm.loss(params, batch, rng)
  np.testing.assert_allclose(loss, -by_hand.mean() / d / np.log(2), rtol=1e-5)
  np.testing.assert_allclose(metrics["bits_per_dim"], loss)
  assert not paradigm.likelihood_is_exact


def test_realnvp_with_logit_transform_at_init_by_hand():
  """Identity flow after RealNVP's logit transform: log p(v) = sum log N(y; 0, 1)
  + sum log|dy/dw| - D log L with y = logit(a + (1 - 2a) w), w = (x + u) / L."""
  a = 0.05
  paradigm = realnvp.make(image_config(logit_alpha=a), DIGITS)
  batch = random_images(3)
  params = paradigm.init(jax.random.key(0), batch)
  rng = jax.random.key(5)
  u = np.asarray(jax.random.uniform(rng, batch["image"].shape), np.float64)
  s = a + (1 - 2 * a) * (batch["image"].astype(np.float64) + u) / 17
  y = np.log(s) - np.log(1 - s)
  log_dy_dw = np.log(1 - 2 * a) - np.log(s) - np.log(1 - s)
  by_hand = (-0.5 * y**2 - 0.5 * np.log(2 * np.pi) + log_dy_dw).reshape(3, -1).sum(1) - 64 * np.log(17)
  np.testing.assert_allclose(paradigm.log_likelihood(params, batch, rng), by_hand, rtol=1e-5)
  # Samples invert the transform: at temperature 0, z = 0 -> y = 0 -> w = 1/2 -> level floor(17 / 2).
  np.testing.assert_allclose(paradigm.sample(params, rng, 1, temperature=0.0), 8 / 16)


def test_sample_temperature_config_sets_the_default_temperature():
  paradigm = glow.make(image_config(sample_temperature=0.0), DIGITS)
  params = perturb(paradigm.init(jax.random.key(0), random_images(16)), 1)
  np.testing.assert_array_equal(paradigm.sample(params, jax.random.key(3), 2),
                                paradigm.sample(params, jax.random.key(4), 2, temperature=0.0))


@pytest.mark.parametrize("make", [glow.make, realnvp.make])
def test_temperature_zero_sample_is_the_image_of_z_zero(make):
  paradigm = make(image_config(), DIGITS)
  params = perturb(paradigm.init(jax.random.key(0), random_images(16)), 1)
  samples = paradigm.sample(params, jax.random.key(3), 2, temperature=0.0)
  # The image of z = 0, computed from the flow's inverse and checked by going forward again.
  from gen_jax.nets.flows import MultiScaleFlow
  arch = "glow" if make is glow.make else "realnvp"
  flow = MultiScaleFlow((8, 8, 1), 2, 1, 8, arch)
  y0, _ = flow.apply({"params": params}, jnp.zeros((1, 64)), reverse=True)
  z_back, _ = flow.apply({"params": params}, y0)
  np.testing.assert_allclose(z_back, 0.0, atol=1e-5)
  expected = np.clip(np.floor((np.asarray(y0) + 0.5) * 17), 0, 16) / 16
  np.testing.assert_array_equal(samples, np.repeat(expected, 2, axis=0))
  # At temperature 1 the samples differ and lie on the level grid k / (L - 1).
  samples = np.asarray(paradigm.sample(params, jax.random.key(3), 4))
  assert samples.shape == (4, 8, 8, 1) and samples.dtype == np.float32
  np.testing.assert_allclose(samples * 16, np.round(samples * 16), atol=1e-5)
  assert samples.min() >= 0 and samples.max() <= 1
  assert not np.array_equal(samples[0], samples[1])


def test_glow_init_normalises_with_data_and_is_identity_on_a_constant_batch():
  paradigm = glow.make(image_config(), DIGITS)
  batch = random_images(32)
  params = paradigm.init(jax.random.key(0), batch)
  assert float(jnp.abs(params["s0_k0_actnorm"]["log_scale"]).max()) > 0.5  # data std ~ 0.3
  zeros = {"image": np.zeros((4, 8, 8, 1), np.uint8), "label": np.zeros((4,), np.int32)}
  params0 = jax.jit(paradigm.init)(jax.random.key(0), zeros)
  for name in ("s0_k0_actnorm", "s1_k0_actnorm"):
    np.testing.assert_array_equal(params0[name]["bias"], 0.0)
    np.testing.assert_array_equal(params0[name]["log_scale"], 0.0)
  loss, metrics = jax.jit(paradigm.loss)(params0, batch, jax.random.key(1))
  assert np.isfinite(loss) and np.isfinite(metrics["bits_per_dim"])


def test_loss_is_the_same_with_and_without_jit():
  paradigm = glow.make(image_config(), DIGITS)
  batch = random_images(8)
  params = perturb(paradigm.init(jax.random.key(0), batch), 4)
  loss, metrics = paradigm.loss(params, batch, jax.random.key(2))
  loss_jit, metrics_jit = jax.jit(paradigm.loss)(params, batch, jax.random.key(2))
  np.testing.assert_allclose(loss, loss_jit, rtol=1e-5)
  assert set(metrics) >= {"bits_per_dim", "nll_nats"}
  grads = jax.grad(lambda p: paradigm.loss(p, batch, jax.random.key(2))[0])(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize("make,fields", [(glow.make, {}), (realnvp.make, {"logit_alpha": 0.05}),
                                         (glow.make, {"dequantization": "variational"})])
def test_bfloat16_loss_is_float32_and_close_to_float32(make, fields):
  """The loss as the training step traces it under a bfloat16 policy (params cast, the
  conditioners in bfloat16): float32 bits/dim within 2e-3 relative of the float32 loss."""
  from gen_jax import policy as policy_lib
  paradigm = make(image_config(**fields), DIGITS)
  batch = random_images(8)
  params = perturb(paradigm.init(jax.random.key(0), batch), 4)
  loss32, _ = paradigm.loss(params, batch, jax.random.key(2))
  policy = policy_lib.Policy(compute_dtype=jnp.bfloat16)
  with policy.active():
    loss, metrics = paradigm.loss(policy.cast_to_compute(params), batch, jax.random.key(2))
  assert loss.dtype == metrics["nll_nats"].dtype == jnp.float32
  np.testing.assert_allclose(loss, loss32, rtol=2e-3)


def test_make_rejects_data_the_model_cannot_handle():
  with pytest.raises(ValueError, match="flow2d"):
    realnvp.make(image_config(), POINTS)
  with pytest.raises(ValueError, match="num_scales"):
    glow.make(image_config(num_scales=3),
              DatasetInfo(name="mnist_idx", kind="image", shape=(28, 28, 1), num_levels=256))
  with pytest.raises(ValueError, match="realnvp"):
    flow2d.make(ml_collections.ConfigDict(dict(num_steps=2, hidden=8, num_layers=1)), DIGITS)
  with pytest.raises(ValueError, match="model.split_prior 'glow'"):
    glow.make(image_config(split_prior="glow"), DIGITS)
  with pytest.raises(ValueError, match="model.res_blocks must be an integer >= 0"):
    realnvp.make(image_config(res_blocks=-1), DIGITS)


def test_res_blocks_field_gives_every_coupling_residual_conditioners():
  batch = random_images(4)
  plain = realnvp.make(image_config(), DIGITS).init(jax.random.key(0), batch)
  deep = realnvp.make(image_config(res_blocks=2), DIGITS).init(jax.random.key(0), batch)
  convs = lambda p: {k: len(v["conditioner"]) for k, v in p.items() if "conditioner" in v}
  assert convs(plain) and set(convs(plain)) == set(convs(deep))
  assert all(convs(deep)[k] == convs(plain)[k] + 4 for k in convs(plain))   # 2 blocks x 2 convs


def test_flow2d_on_eight_gaussians_approaches_the_true_entropy():
  """A small flow trained for ~3000 steps: its test NLL is above the true entropy (minus a
  standard error) and within 0.25 nats of it."""
  paradigm = flow2d.make(ml_collections.ConfigDict(dict(num_steps=12, hidden=64, num_layers=2)),
                         POINTS)
  rs = np.random.default_rng(0)
  train = toy2d.sample_eight_gaussians(rs, 50_000)
  test = toy2d.sample_eight_gaussians(np.random.default_rng(1), 20_000)
  params = paradigm.init(jax.random.key(0), {"x": train[:512]})
  num_steps = 3000
  opt = optax.chain(optax.clip_by_global_norm(1.0),
                    optax.adam(optax.cosine_decay_schedule(3e-3, num_steps, 0.01)))
  opt_state = opt.init(params)

  @jax.jit
  def step(params, opt_state, x, key):
    (loss, _), grads = jax.value_and_grad(paradigm.loss, has_aux=True)(params, {"x": x}, key)
    updates, opt_state = opt.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss

  for i in range(num_steps):
    x = train[rs.integers(0, len(train), 256)]
    params, opt_state, loss = step(params, opt_state, x, jax.random.key(i))
  true_nll = -np.asarray(toy2d.eight_gaussians_log_prob(test), np.float64)
  entropy, stderr = true_nll.mean(), true_nll.std() / math.sqrt(len(true_nll))
  model_nll = -np.asarray(jax.jit(paradigm.log_likelihood)(params, {"x": test}, None), np.float64)
  assert model_nll.mean() >= entropy - stderr
  assert model_nll.mean() - entropy < 0.25, (model_nll.mean(), entropy)
  # Samples land on the eight modes: most are within 3 sigma of a centre.
  samples = np.asarray(paradigm.sample(params, jax.random.key(9), 2000))
  dist = np.linalg.norm(samples[:, None] - toy2d.EIGHT_GAUSSIANS_CENTRES[None], axis=-1).min(1)
  assert np.mean(dist < 3 * toy2d.EIGHT_GAUSSIANS_SIGMA) > 0.8
