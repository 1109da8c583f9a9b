"""The four diffusion paradigms through the Paradigm interface (tiny nets).

Truth used: a freshly initialised network outputs exactly 0 (zero-initialised last
layer), which turns each likelihood ODE into a linear one with a closed form:
flow matching v = 0 is the identity (log p = log N(x; 0, I)); VP with eps_hat = 0 has
drift -beta/2 x (x(1) = x alpha_1 / alpha_eps, div = -D beta / 2); EDM with F = 0 has
D = c_skip x and x(sigma) = x sqrt((sigma^2 + sd^2) / (sigma_min^2 + sd^2)).
"""
from __future__ import annotations

import importlib
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from jax.scipy.stats import norm

from gen_jax.data.info import DatasetInfo
from gen_jax.losses import score_matching as sm
from gen_jax.paradigms import diffusion as common
from gen_jax.paradigms import ddpm, edm, flow_matching, score_sde

POINTS = DatasetInfo(name='toy2d/eight_gaussians', kind='points', shape=(2,))
POINTS_LABELLED = DatasetInfo(name='toy2d/labelled', kind='points', shape=(2,), num_classes=3)
DIGITS = DatasetInfo(name='digits', kind='image', shape=(8, 8, 1), num_levels=17,
                     num_classes=10)
MODULES = {'ddpm': ddpm, 'score_sde': score_sde, 'edm': edm, 'flow_matching': flow_matching}


def _model_config(**kw):
  m = ml_collections.ConfigDict(dict(hidden=16, num_layers=1, channels=8, channel_mult=(1,),
                                     num_res_blocks=1, attn_resolutions=(), groups=4))
  m.update(kw)
  return m


def _points_batch(n=16):
  return {'x': jax.random.normal(jax.random.key(0), (n, 2)) * 1.5,
          'label': jnp.arange(n) % 3}


def _perturb(params, key, scale=0.1):
  leaves, tree = jax.tree.flatten(params)
  keys = jax.random.split(key, len(leaves))
  return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape)
                                   for p, k in zip(leaves, keys)])


@pytest.mark.parametrize('name', list(MODULES))
def test_points_loss_sample_and_likelihood_run(name):
  kw = (dict(num_diffusion_steps=50, vlb_num_steps=0, sampler='ddim') if name == 'ddpm'
        else dict(trace='exact'))      # ddpm has no ODE likelihood, so no trace field
  p = MODULES[name].make(_model_config(num_steps=4, **kw), POINTS)
  batch = _points_batch()
  params = p.init(jax.random.key(1), batch)
  loss, metrics = jax.jit(p.loss)(params, batch, jax.random.key(2))
  assert loss.shape == () and np.isfinite(float(loss))
  assert all(np.isfinite(float(v)) for v in metrics.values())
  grads = jax.grad(lambda q: p.loss(q, batch, jax.random.key(2))[0])(params)
  assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
  x, traj, info = p.sample(params, jax.random.key(3), 8, return_trajectory=True,
                           return_info=True)
  assert x.shape == (8, 2) and traj.shape[1:] == (8, 2)
  np.testing.assert_array_equal(traj[-1], x)
  assert info['nfe'] >= 4
  ll = jax.jit(p.log_likelihood)(params, batch, jax.random.key(4))
  assert ll.shape == (16,) and np.all(np.isfinite(ll))
  with pytest.raises(TypeError):
    p.sample(params, jax.random.key(3), 8, temperature=0.5)
  with pytest.raises(ValueError, match='unconditional'):
    p.sample(params, jax.random.key(3), 8, label=1)


def test_zero_network_likelihoods_have_closed_forms():
  batch = _points_batch()
  x = batch['x']
  gauss = lambda z, s: jnp.sum(norm.logpdf(z, scale=s), -1)

  fm = flow_matching.make(_model_config(trace='exact'), POINTS)
  ll = fm.log_likelihood(fm.init(jax.random.key(0), batch), batch, jax.random.key(1))
  np.testing.assert_allclose(ll, gauss(x, 1.0), rtol=1e-4)

  vp = score_sde.make(_model_config(sde='vp', trace='exact'), POINTS)
  ll = vp.log_likelihood(vp.init(jax.random.key(0), batch), batch, jax.random.key(1))
  sde = sm.vp_sde()
  ratio = float(sde.marginal(jnp.float32(1.0))[0] / sde.marginal(jnp.float32(sde.eps))[0])
  np.testing.assert_allclose(ll, gauss(ratio * x, 1.0) + 2 * math.log(ratio), rtol=1e-4)

  e = edm.make(_model_config(trace='exact', sigma_data=1.4), POINTS)
  ll = e.log_likelihood(e.init(jax.random.key(0), batch), batch, jax.random.key(1))
  r = math.sqrt((80.0 ** 2 + 1.4 ** 2) / (0.002 ** 2 + 1.4 ** 2))
  np.testing.assert_allclose(ll, gauss(r * x, 80.0) + 2 * math.log(r), rtol=1e-4)


def test_image_likelihood_is_on_the_data_levels():
  """Flow matching with v = 0 on digits: log P = log N(z; 0, I) + D log(2 / (L - 1)) at the
  bin centres z (dequantisation off)."""
  p = flow_matching.make(_model_config(dequantize_eval=False, trace='hutchinson'), DIGITS)
  levels = jax.random.randint(jax.random.key(0), (4, 8, 8, 1), 0, 17).astype(jnp.uint8)
  batch = {'image': levels, 'label': jnp.zeros(4, jnp.int32)}
  params = p.init(jax.random.key(1), batch)
  ll = jax.jit(p.log_likelihood)(params, batch, jax.random.key(2))
  z = 2.0 * levels.astype(jnp.float32) / 16 - 1
  expected = jnp.sum(norm.logpdf(z).reshape(4, -1), -1) + 64 * math.log(2 / 16)
  np.testing.assert_allclose(ll, expected, rtol=1e-4)
  assert not p.likelihood_is_exact


def test_ddpm_images_loss_vlb_and_samples_in_unit_range():
  cfg = _model_config(num_diffusion_steps=25, sampler="ancestral", conditional=True,
                      vlb_num_steps=5)     # stratified estimate of the 25-term bound
  p = ddpm.make(cfg, DIGITS)
  levels = jax.random.randint(jax.random.key(0), (4, 8, 8, 1), 0, 17).astype(jnp.uint8)
  batch = {'image': levels, 'label': jnp.arange(4, dtype=jnp.int32)}
  params = _perturb(p.init(jax.random.key(1), batch), jax.random.key(5), 0.02)
  loss, metrics = jax.jit(p.loss)(params, batch, jax.random.key(2))
  assert np.isfinite(float(loss)) and float(metrics['bits_per_dim']) > 0
  ll = jax.jit(p.log_likelihood)(params, batch, jax.random.key(3))
  bpd = -float(ll.mean()) / (64 * math.log(2))
  assert ll.shape == (4,) and 0 < bpd < 40      # a bound in nats on the 17 levels
  x = p.sample(params, jax.random.key(4), 3, label=2, guidance=2.0)
  assert x.shape == (3, 8, 8, 1) and float(x.min()) >= 0 and float(x.max()) <= 1
  with pytest.raises(ValueError, match='ddim'):
    p.sample(params, jax.random.key(4), 3, num_steps=5)


def test_ddpm_stratified_vlb_is_the_full_bound_in_expectation():
  """K = T - 1 strata of width 1 visit every KL term once: the full bound, same keys.
  K = 3 (T = 25): unbiased, so its mean over many keys matches the full bound's mean (the full
  bound is itself random through each term's eps, so both are averaged)."""
  levels = jax.random.randint(jax.random.key(0), (4, 8, 8, 1), 0, 17).astype(jnp.uint8)
  batch = {'image': levels}
  def bound(k):
    p = ddpm.make(_model_config(num_diffusion_steps=25, vlb_num_steps=k), DIGITS)
    return p, jax.jit(jax.vmap(p.log_likelihood, in_axes=(None, None, 0)))
  full, full_ll = bound(0)
  params = _perturb(full.init(jax.random.key(1), batch), jax.random.key(5), 0.02)
  keys = jax.random.split(jax.random.key(7), 400)
  assert np.isfinite(np.asarray(full_ll(params, batch, keys[:2]))).all()
  reference = full_ll(params, batch, keys)
  np.testing.assert_allclose(bound(24)[1](params, batch, keys), reference, rtol=1e-5)
  estimate = bound(3)[1](params, batch, keys)
  assert float(jnp.std(estimate - reference)) > 1e-3      # it does sample the terms
  se = float(jnp.std(estimate.mean(1))) / math.sqrt(len(keys))
  gap = abs(float(estimate.mean() - reference.mean()))
  assert gap < 4 * se + 1e-3 * abs(float(reference.mean()))


def test_guidance_zero_equals_the_unconditional_sampler():
  p = flow_matching.make(_model_config(conditional=True, num_steps=5), POINTS_LABELLED)
  batch = _points_batch()
  params = _perturb(p.init(jax.random.key(1), batch), jax.random.key(2))
  uncond = p.sample(params, jax.random.key(3), 32)
  w0 = p.sample(params, jax.random.key(3), 32, label=1, guidance=0.0)
  w1 = p.sample(params, jax.random.key(3), 32, label=1, guidance=1.0)
  np.testing.assert_allclose(w0, uncond, atol=1e-5)
  assert not np.allclose(w1, uncond, atol=1e-3)
  with pytest.raises(ValueError, match='needs a label'):
    p.sample(params, jax.random.key(3), 8, guidance=2.0)


def test_user_errors_name_the_fix():
  with pytest.raises(ValueError, match='channel_mult'):
    ddpm.make(_model_config(channel_mult=(1, 2, 2, 2, 2)), DIGITS)
  with pytest.raises(ValueError, match='conditional=False'):
    edm.make(_model_config(conditional=True), POINTS)
  text = DatasetInfo(name='text_file', kind='text', shape=(65,), vocab='ab')
  with pytest.raises(ValueError, match='images or points'):
    score_sde.make(_model_config(), text)
  with pytest.raises(ValueError, match="'vp', 'subvp' or 've'"):
    score_sde.make(_model_config(sde='vpp'), POINTS)
  with pytest.raises(ValueError, match="model.ddim_spacing 'quad'"):
    ddpm.make(_model_config(ddim_spacing='quad'), DIGITS)
  with pytest.raises(ValueError, match="model.prediction 'score'"):
    ddpm.make(_model_config(prediction='score'), DIGITS)


def test_configs_build():
  from experiments.configs import ddpm as c_ddpm, edm as c_edm
  from experiments.configs import flow_matching as c_fm, score_sde as c_sde
  for mod in (c_ddpm, c_sde, c_edm, c_fm):
    for arg in ('digits', 'mnist_idx', 'eight_gaussians', 'digits_cond'):
      cfg = mod.get_config(arg)
      assert cfg.paradigm == mod.__name__.rsplit('.', 1)[1]
    assert mod.get_config('eight_gaussians').dataset == 'toy2d/eight_gaussians'
    assert mod.get_config('digits_cond').model.conditional
    with pytest.raises(ValueError, match='toy2d data has no labels'):
      mod.get_config('moons_cond')
  mnist = DatasetInfo(name='mnist_idx', kind='image', shape=(28, 28, 1), num_levels=256,
                      num_classes=10)
  common.build_net(c_ddpm.get_config('mnist_idx').model, mnist, 'ddpm')
  for name, mod in (('ddpm', c_ddpm), ('score_sde', c_sde), ('edm', c_edm),
                    ('flow_matching', c_fm)):   # the 28x28 samplers and fields are valid
    importlib.import_module(f'gen_jax.paradigms.{name}').make(mod.get_config('mnist_idx').model,
                                                              mnist)


def test_ddpm_dpm_solver_pp_sampler_recovers_gaussian_data_from_the_exact_model():
  """ddpm's sampler='dpm_solver_pp' driven by the exact eps of N(mu, s^2 I) data (the network
  swapped for it, at the fractional step n the VP -> EDM bridge asks for): 10 NFE give the
  data's mean and standard deviation."""
  mu, s = jnp.array([0.3, -0.2]), 0.4
  spec = ddpm.make_spec(_model_config(sampler='dpm_solver_pp', clip_denoised=False), POINTS)
  schedule = sm.get_discrete_schedule('linear', 1000)
  log_sigmas = 0.5 * jnp.log(schedule.one_minus_alpha_bars / schedule.alpha_bars)

  def exact_eps(x, n):                  # x_n = alpha x_0 + sigma eps, x_0 ~ N(mu, s^2)
    sigma_ve = jnp.exp(jnp.interp(n, jnp.arange(1000.0), log_sigmas))[:, None]
    alpha = jax.lax.rsqrt(1.0 + sigma_ve ** 2)
    sigma = alpha * sigma_ve
    return sigma * (x - alpha * mu) / (alpha ** 2 * s ** 2 + sigma ** 2)

  x, info = spec.sample(exact_eps, jax.random.key(0), (4000, 2), 10, False)
  assert info['nfe'] == 10 and spec.default_num_steps == 10
  np.testing.assert_allclose(x.mean(0), mu, atol=0.03)
  np.testing.assert_allclose(x.std(0), s, rtol=0.05)
  with pytest.raises(Exception, match="dpm_solver_pp"):
    ddpm.make_spec(_model_config(sampler='dpm'), POINTS)
