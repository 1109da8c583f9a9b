"""Every sampler, driven by the analytic score of Gaussian data N(mu, Sigma), must
return samples whose mean and covariance match mu and Sigma within Monte Carlo error
(plus a small allowance for the discretisation bias of each integrator)."""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.losses import score_matching as sm
from gen_jax.samplers import diffusion as ds

MU = jnp.array([1.0, -0.5])
SIGMA = jnp.array([[0.5, 0.25], [0.25, 0.4]])
N = 4000
EYE = jnp.eye(2)


def _precision_times(c, r):
  """Solve C r for batched C [B,2,2] or [2,2]."""
  return jnp.linalg.solve(c, r[..., None])[..., 0]


def _cov(a, sig):
  """Cov of x_t = a x0 + sig eps: a^2 Sigma + sig^2 I; a, sig [B]."""
  return a[:, None, None] ** 2 * SIGMA + sig[:, None, None] ** 2 * EYE


def score_at(a, sig, x):
  return -_precision_times(_cov(a, sig), x - a[:, None] * MU)


def ddpm_eps(schedule):
  def eps_fn(x, n):
    a, s = schedule.alpha_sigma(n)
    return -s[:, None] * score_at(a, s, x)
  return eps_fn


def sde_score(sde):
  def score_fn(x, t):
    a, s = sde.marginal(t)
    return score_at(a, s, x)
  return score_fn


def edm_denoise(x, sigma):
  c = SIGMA + sigma[:, None, None] ** 2 * EYE
  return MU + jnp.einsum('ij,bj->bi', SIGMA, _precision_times(c, x - MU))


def fm_velocity(x, t):
  c = _cov(t, 1.0 - t)
  r = _precision_times(c, x - t[:, None] * MU)
  return MU + t[:, None] * jnp.einsum('ij,bj->bi', SIGMA, r) - (1.0 - t[:, None]) * r


def assert_gaussian(x, bias=0.02, mu=MU, cov=SIGMA):
  x = np.asarray(x, np.float64)
  mu, cov = np.asarray(mu), np.asarray(cov)
  assert np.all(np.isfinite(x))
  se_mean = np.sqrt(np.diag(cov) / x.shape[0])
  np.testing.assert_array_less(np.abs(x.mean(0) - mu), 5 * se_mean + bias)
  emp = np.cov(x.T)
  se_cov = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov ** 2) / x.shape[0])
  np.testing.assert_array_less(np.abs(emp - cov), 5 * se_cov + bias)


def _noise(seed=0, scale=1.0):
  return scale * jax.random.normal(jax.random.key(seed), (N, 2))


SCHED = sm.linear_schedule(1000)


@pytest.mark.parametrize('variance', ['beta', 'beta_tilde'])
def test_ddpm_ancestral_recovers_gaussian(variance):
  x, info = jax.jit(lambda z, k: ds.ddpm_ancestral(ddpm_eps(SCHED), SCHED, z, k, variance))(
      _noise(), jax.random.key(1))
  assert info['nfe'] == 1000
  assert_gaussian(x)


@pytest.mark.parametrize('spacing', ['uniform', 'quadratic'])
def test_ddim_eta0_is_deterministic_and_recovers_gaussian(spacing):
  run = jax.jit(lambda z, k: ds.ddim(ddpm_eps(SCHED), SCHED, z, k, num_steps=50, eta=0.0,
                                     spacing=spacing))
  x, info = run(_noise(), jax.random.key(1))
  x2, _ = run(_noise(), jax.random.key(2))
  np.testing.assert_array_equal(np.asarray(x), np.asarray(x2))
  assert info['nfe'] == len(ds.ddim_timesteps(1000, 50, spacing)) == {'uniform': 50,
                                                                       'quadratic': 49}[spacing]
  assert_gaussian(x)


def test_ddim_timesteps_by_hand():
  """T = 1000, S = 4: u = 1, 2/3, 1/3, 0; uniform 999 u, quadratic 999 u^2 (rounded)."""
  np.testing.assert_array_equal(ds.ddim_timesteps(1000, 4), [999, 666, 333, 0])
  np.testing.assert_array_equal(ds.ddim_timesteps(1000, 4, 'quadratic'), [999, 444, 111, 0])
  assert len(ds.ddim_timesteps(1000, 1000, 'quadratic')) < 1000     # duplicates dropped
  with pytest.raises(ValueError, match='quadratic'):
    ds.ddim_timesteps(1000, 4, 'cubic')


def test_ddim_eta1_full_steps_is_ancestral_with_beta_tilde():
  """Same algebra (DDIM eq. 16), same per-step keys -> the same samples."""
  z, k = _noise(), jax.random.key(3)
  x_ddim, _ = jax.jit(lambda z, k: ds.ddim(ddpm_eps(SCHED), SCHED, z, k, 1000, eta=1.0))(z, k)
  x_anc, _ = jax.jit(lambda z, k: ds.ddpm_ancestral(ddpm_eps(SCHED), SCHED, z, k,
                                                    'beta_tilde'))(z, k)
  np.testing.assert_allclose(np.asarray(x_ddim), np.asarray(x_anc), atol=2e-3)
  x5, _ = jax.jit(lambda z, k: ds.ddim(ddpm_eps(SCHED), SCHED, z, k, 100, eta=1.0))(z, k)
  assert_gaussian(x5, bias=0.04)


@pytest.mark.parametrize('name', ['vp', 'subvp', 've'])
def test_euler_maruyama_recovers_gaussian(name):
  sde = sm.get_sde(name)
  x, info = jax.jit(lambda z, k: ds.euler_maruyama(sde_score(sde), sde, z, k, 500))(
      _noise(scale=sde.prior_std), jax.random.key(4))
  assert info['nfe'] == 501
  assert_gaussian(x, bias=0.03)


@pytest.mark.parametrize('name', ['vp', 've'])
def test_predictor_corrector_recovers_gaussian(name):
  sde = sm.get_sde(name)
  x, info = jax.jit(lambda z, k: ds.predictor_corrector(sde_score(sde), sde, z, k, 500))(
      _noise(scale=sde.prior_std), jax.random.key(5))
  assert info['nfe'] == 1001
  assert_gaussian(x, bias=0.03)


@pytest.mark.parametrize('name,method,steps', [('vp', 'heun', 100), ('subvp', 'heun', 100),
                                               ('ve', 'heun', 200), ('vp', 'euler', 500)])
def test_probability_flow_ode_recovers_gaussian(name, method, steps):
  sde = sm.get_sde(name)
  x, info = jax.jit(lambda z: ds.probability_flow_sampler(sde_score(sde), sde, z, steps,
                                                          method))(_noise(scale=sde.prior_std))
  assert info['nfe'] == steps * (2 if method == 'heun' else 1) + 1
  assert_gaussian(x, bias=0.03)


@pytest.mark.parametrize('churn,steps', [(0.0, 18), (5.0, 40)])
def test_edm_heun_recovers_gaussian(churn, steps):
  """Deterministic at 18 steps (35 NFE), and with churn (gamma = 1/8) at 40 steps."""
  x, info = jax.jit(lambda k: ds.edm_sampler(edm_denoise, (N, 2), k, num_steps=steps,
                                             s_churn=churn, s_tmin=0.05, s_tmax=50.0))(
      jax.random.key(6))
  assert info['nfe'] == 2 * steps - 1
  assert_gaussian(x, bias=0.03)


def test_edm_sigmas_follow_eq5():
  s = np.asarray(ds.edm_sigmas(18))
  assert s.shape == (19,) and s[-1] == 0
  np.testing.assert_allclose([s[0], s[17]], [80.0, 0.002], rtol=1e-5)
  i = 9
  ref = (80 ** (1 / 7) + i / 17 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7
  np.testing.assert_allclose(s[i], ref, rtol=1e-5)


@pytest.mark.parametrize('method,steps', [('euler', 100), ('heun', 20)])
def test_flow_matching_sampler_recovers_gaussian(method, steps):
  x, info = jax.jit(lambda z: ds.flow_sampler(fm_velocity, z, steps, method))(_noise())
  assert info['nfe'] == steps * (1 if method == 'euler' else 2)
  assert_gaussian(x, bias=0.03)


# ------------------------------------------------------------ DPM-Solver++ (2M)

def _pf_ode_exact(x_T, sigma_min, sigma_max):
  """The exact probability-flow ODE map of N(MU, SIGMA) data from sigma_max to sigma_min:
  x(sigma) = MU + (SIGMA + sigma^2 I)^{1/2} (SIGMA + sigma_max^2 I)^{-1/2} (x_T - MU)
  (the ODE dx/dsigma = (x - D(x; sigma)) / sigma = sigma (SIGMA + sigma^2 I)^{-1} (x - MU))."""
  w, v = np.linalg.eigh(np.asarray(SIGMA, np.float64))
  scale = v @ np.diag(np.sqrt((w + sigma_min ** 2) / (w + sigma_max ** 2))) @ v.T
  return np.asarray(MU) + (np.asarray(x_T, np.float64) - np.asarray(MU)) @ scale.T


def test_dpm_solver_pp_sigmas_are_logsnr_uniform():
  s = np.asarray(ds.dpm_solver_pp_sigmas(4, 0.002, 80.0), np.float64)
  np.testing.assert_allclose(s[[0, -1]], [80.0, 0.002], rtol=1e-6)
  np.testing.assert_allclose(np.diff(-np.log(s)), np.log(80 / 0.002) / 4, rtol=1e-5)


def test_dpm_solver_pp_one_step_is_ddim():
  """M = 1 is one first-order step: DDIM's x' = D + sigma' (x - D) / sigma (eq. 12, eta 0)."""
  x_T = 3.0 * jax.random.normal(jax.random.key(2), (8, 2))
  x, info = ds.dpm_solver_pp_2m(edm_denoise, x_T, 1, sigma_min=0.5, sigma_max=3.0)
  d = edm_denoise(x_T, jnp.full((8,), 3.0))
  np.testing.assert_allclose(x, d + 0.5 * (x_T - d) / 3.0, rtol=1e-5, atol=1e-6)
  assert info['nfe'] == 1


def _dpm_errors(steps, **kw):
  """Max |x - exact| of dpm_solver_pp_2m on Gaussian data, for each M in `steps`."""
  smin, smax = 0.002, 80.0
  x_T = smax * jax.random.normal(jax.random.key(3), (256, 2))
  exact = _pf_ode_exact(x_T, smin, smax)
  errors = []
  for m in steps:
    x, info = ds.dpm_solver_pp_2m(edm_denoise, x_T, m, smin, smax, return_trajectory=True, **kw)
    assert info['nfe'] == m and info['trajectory'].shape == (m + 1, 256, 2)
    errors.append(np.abs(np.asarray(x, np.float64) - exact).max())
  return errors


def test_dpm_solver_pp_2m_converges_at_second_order_to_the_exact_ode_map():
  """Against the exact PF-ODE map of Gaussian data: doubling the steps cuts the error ~4x
  (second order; from M = 20 on: 3.7x, 3.9x, 4.0x in float64)."""
  errors = _dpm_errors((20, 40, 80), lower_order_final=False)
  assert errors[0] / errors[1] > 3.5 and errors[1] / errors[2] > 3.5, errors
  assert errors[2] < 5e-3, errors


def test_dpm_solver_pp_2m_recovers_gaussian_in_ten_steps():
  x, info = jax.jit(lambda z: ds.dpm_solver_pp_2m(edm_denoise, z, 10))(_noise(7, scale=80.0))
  assert info['nfe'] == 10
  assert_gaussian(x, bias=0.03)


def test_trajectory_shapes_and_endpoints():
  z = _noise()[:16]
  x, info = ds.flow_sampler(fm_velocity, z, 5, 'heun', return_trajectory=True)
  assert info['trajectory'].shape == (6, 16, 2)
  np.testing.assert_array_equal(info['trajectory'][0], z)
  np.testing.assert_array_equal(info['trajectory'][-1], x)
  x, info = ds.ddim(ddpm_eps(SCHED), SCHED, z, jax.random.key(0), 7, return_trajectory=True)
  assert info['trajectory'].shape == (8, 16, 2)
  np.testing.assert_array_equal(info['trajectory'][-1], x)


# ------------------------------------------------------------ guidance

def _two_class_eps(schedule):
  """1-D data: class 0 ~ N(-2, 0.5^2), class 1 ~ N(2, 0.5^2), equal weights; label 2 = null.
  Exact eps of each class and of the mixture (the unconditional model)."""
  means, s2 = jnp.array([-2.0, 2.0]), 0.25

  def eps_fn(x, n, label):
    a, s = schedule.alpha_sigma(n)
    a, s = a[:, None], s[:, None]
    var = a ** 2 * s2 + s ** 2
    logp = -0.5 * (x - a * means) ** 2 / var                  # [B, 2] per component
    scores = -(x - a * means) / var
    w = jax.nn.softmax(logp, axis=-1)
    mix = jnp.sum(w * scores, -1, keepdims=True)
    cond = jnp.take_along_axis(scores, jnp.minimum(label, 1)[:, None], axis=-1)
    return -s * jnp.where(label[:, None] == 2, mix, cond)
  return eps_fn


def test_cfg_w0_is_unconditional_w1_conditional():
  eps_fn = _two_class_eps(SCHED)
  x = jax.random.normal(jax.random.key(7), (64, 1))
  n = jnp.full((64,), 300)
  uncond = eps_fn(x, n, jnp.full((64,), 2))
  cond = eps_fn(x, n, jnp.full((64,), 1))
  g0 = ds.classifier_free_guidance(eps_fn, 1, 2, jnp.float32(0.0))(x, n)
  g1 = ds.classifier_free_guidance(eps_fn, 1, 2, jnp.float32(1.0))(x, n)
  np.testing.assert_allclose(g0, uncond, atol=1e-6)
  np.testing.assert_allclose(g1, cond, atol=1e-6)
  assert not np.allclose(uncond, cond)


def test_cfg_larger_guidance_moves_samples_toward_the_class():
  eps_fn = _two_class_eps(SCHED)
  z = jax.random.normal(jax.random.key(8), (2000, 1))

  def run(w):
    g = ds.classifier_free_guidance(eps_fn, 1, 2, w)
    return ds.ddim(g, SCHED, z, jax.random.key(0), 50)[0]
  run = jax.jit(run)
  frac = [float(jnp.mean(run(jnp.float32(w)) > 0)) for w in (0.0, 1.0, 3.0)]
  assert abs(frac[0] - 0.5) < 0.05            # unconditional: both modes
  assert frac[1] > 0.97                        # conditional on class 1
  means = [float(run(jnp.float32(w)).mean()) for w in (1.0, 3.0)]
  assert means[1] > means[0] + 0.1             # guidance pushes beyond the class mean
