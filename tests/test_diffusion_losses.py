"""Schedules and score-matching losses against closed forms on Gaussian data.

Loss check chosen: the Bayes-optimal (analytic) predictor for x_0 ~ N(mu, s^2)
attains the loss's known minimum, the conditional variance of the target given
x_t (Monte Carlo within 4.5 standard errors), AND the gradient of the expected
loss with respect to an affine perturbation c0 + c1 x_t of that predictor is zero
(Monte Carlo within 4.5 standard errors) -- both, for every loss.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.losses import score_matching as sm

MU, S = 0.7, 0.6          # 1-D Gaussian data N(MU, S^2)
N = 20_000


def _data(key, n=N):
  return MU + S * jax.random.normal(key, (n, 1))


def _bayes(a, sig, p, q):
  """x_t = a x0 + sig eps; target p x0 + q eps. Returns (E[target | x_t] as a function,
  Var(target | x_t))."""
  var_x = a ** 2 * S ** 2 + sig ** 2
  cov = p * a * S ** 2 + q * sig
  var_target = p ** 2 * S ** 2 + q ** 2
  def mean_fn(x_t):
    return p * MU + cov / var_x * (x_t - a * MU)
  return mean_fn, var_target - cov ** 2 / var_x


def _check_mc(values, expected, name):
  values = np.asarray(values, np.float64)
  se = values.std() / math.sqrt(values.size)
  assert abs(values.mean() - expected) < 4.5 * se + 1e-6, (name, values.mean(), expected, se)


def _check_optimum(loss_of_fn, optimal_fn, expected_min, name):
  """loss_of_fn(fn) -> per-example losses. Checks the minimum and the zero gradient
  w.r.t. (c0, c1) of fn + c0 + c1 x at c = 0, per example (then MC-averaged)."""
  losses = jax.jit(lambda: loss_of_fn(optimal_fn))()
  _check_mc(losses, expected_min, name + ' minimum')

  def per_example(c):
    return loss_of_fn(lambda x, t: optimal_fn(x, t) + c[0] + c[1] * x)
  jac = jax.jit(jax.jacfwd(per_example))(jnp.zeros(2))          # [B, 2]
  for j in range(2):
    _check_mc(jac[:, j], 0.0, f'{name} gradient c{j}')


# ----------------------------------------------------------------- schedules

def test_linear_schedule_matches_ho_et_al():
  sch = sm.linear_schedule(1000)
  betas = np.linspace(1e-4, 0.02, 1000)
  np.testing.assert_allclose(sch.betas, betas, rtol=1e-6)
  ab = np.cumprod(1.0 - betas)                          # float64 reference
  for n in (0, 9, 99, 499, 999):
    np.testing.assert_allclose(float(sch.alpha_bars[n]), ab[n], rtol=2e-4)
  assert abs(float(sch.alpha_bars[-1]) - 4.036e-5) < 2e-7  # Ho et al.'s alpha_bar_T


def test_cosine_schedule_matches_nichol_dhariwal():
  sch = sm.cosine_schedule(1000)
  f = lambda t: math.cos((t + 0.008) / 1.008 * math.pi / 2) ** 2
  for n in (0, 100, 500, 900):
    np.testing.assert_allclose(float(sch.alpha_bars[n]), f((n + 1) / 1000) / f(0), rtol=1e-3)
  np.testing.assert_allclose(float(sch.betas.max()), 0.999, rtol=1e-6)   # clipped last beta


def test_vp_sde_is_the_continuous_limit_of_the_linear_schedule():
  sch = sm.linear_schedule(1000)
  vp = sm.vp_sde(0.1, 20.0)
  for n in (100, 300, 600):     # the sums differ from the integrals by O(1/n)
    alpha, sigma = vp.marginal(jnp.float32((n + 1) / 1000))
    # -log abar_n = sum -log(1 - beta_m) = sum beta_m + O(sum beta_m^2) -> int_0^t beta.
    np.testing.assert_allclose(-2 * math.log(float(alpha)), float(sch.betas[:n + 1].sum()),
                               rtol=1e-2)
    np.testing.assert_allclose(math.log(float(alpha) ** 2), math.log(float(sch.alpha_bars[n])),
                               atol=0.03)
    np.testing.assert_allclose(float(sigma) ** 2, 1 - float(alpha) ** 2, rtol=1e-5)
  alpha, _ = vp.marginal(jnp.float32(0.5))
  np.testing.assert_allclose(float(alpha), math.exp(-0.25 * 0.25 * 19.9 - 0.5 * 0.5 * 0.1), rtol=1e-6)


@pytest.mark.parametrize('name', ['vp', 'subvp', 've'])
def test_sde_marginals_solve_the_moment_odes(name):
  """For dx = f x dt + g dw: d alpha/dt = f alpha, d sigma^2/dt = 2 f sigma^2 + g^2."""
  sde = sm.get_sde(name)
  for t in (0.05, 0.3, 0.7, 0.95):
    (a, s), (da, ds) = jax.jvp(sde.marginal, (jnp.float32(t),), (jnp.float32(1.0),))
    f, g = sde.drift_coef(t), sde.diffusion(t)
    np.testing.assert_allclose(float(da), float(f * a), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(float(2 * s * ds), float(2 * f * s ** 2 + g ** 2), rtol=1e-3)
  if name == 've':
    np.testing.assert_allclose(float(sde.marginal(jnp.float32(1.0))[1]), 50.0, rtol=1e-5)
    np.testing.assert_allclose(float(sde.marginal(jnp.float32(0.0))[1]), 0.01, rtol=1e-5)


def test_ddpm_markov_chain_has_the_closed_form_marginal():
  """Simulate x_n = sqrt(1 - beta_n) x_{n-1} + sqrt(beta_n) z and compare moments."""
  for sch in (sm.linear_schedule(1000), sm.cosine_schedule(1000)):
    x0 = 1.5
    def step(x, inp):
      beta, key = inp
      x = jnp.sqrt(1 - beta) * x + jnp.sqrt(beta) * jax.random.normal(key, x.shape)
      return x, x
    keys = jax.random.split(jax.random.key(0), 1000)
    _, xs = jax.lax.scan(step, jnp.full((4000,), x0), (sch.betas, keys))
    for n in (49, 299, 999):
      alpha, sigma = sch.alpha_sigma(n)
      se_m = float(sigma) / math.sqrt(4000)
      assert abs(float(xs[n].mean()) - float(alpha) * x0) < 4.5 * se_m
      assert abs(float(xs[n].var()) / float(sigma) ** 2 - 1) < 4.5 * math.sqrt(2 / 4000)


@pytest.mark.parametrize('name', ['vp', 'subvp', 've'])
def test_sde_forward_simulation_has_the_kernel_moments(name):
  sde = sm.get_sde(name, sigma_max=5.0)
  x0, n_steps, t_end = 1.5, 500, 0.6
  a0, s0 = sde.marginal(jnp.float32(0.0))       # VE's kernel includes sigma_min at t=0
  x = x0 + float(s0) * jax.random.normal(jax.random.key(1), (4000,))
  dt = t_end / n_steps
  def step(x, i):
    t = i * dt
    z = jax.random.normal(jax.random.fold_in(jax.random.key(2), i), x.shape)
    return x + sde.drift_coef(t) * x * dt + sde.diffusion(t) * math.sqrt(dt) * z, None
  x, _ = jax.lax.scan(step, x, jnp.arange(n_steps))
  a, s = sde.marginal(jnp.float32(t_end))
  assert abs(float(x.mean()) - float(a) * x0) < 4.5 * float(s) / math.sqrt(4000) + 5e-3
  assert abs(float(x.var()) / float(s) ** 2 - 1) < 4.5 * math.sqrt(2 / 4000) + 1e-2


# ----------------------------------------------------------------- losses

@pytest.mark.parametrize('prediction', ['eps', 'x0', 'v'])
@pytest.mark.parametrize('schedule', ['linear', 'cosine'])
def test_ddpm_loss_attains_bayes_minimum(prediction, schedule):
  sch = sm.get_discrete_schedule(schedule, 1000)
  pq = {'eps': lambda a, s: (0.0, 1.0), 'x0': lambda a, s: (1.0, 0.0),
        'v': lambda a, s: (-s, a)}[prediction]
  k1, k2 = jax.random.split(jax.random.key(3))
  x0 = _data(k1)
  for n in (20, 400, 900):
    a, s = (float(v) for v in sch.alpha_sigma(n))
    opt, vmin = _bayes(a, s, *pq(a, s))
    nb = jnp.full((N,), n)
    eps = jax.random.normal(jax.random.fold_in(k2, n), x0.shape)
    _check_optimum(lambda fn: sm.ddpm_loss_at(fn, sch, x0, nb, eps, prediction),
                   lambda x, t: opt(x), vmin, f'ddpm {prediction} n={n}')
  # Random n: E[loss] = mean over n of the per-step minimum.
  def opt_fn(x, n):
    a, s = sch.alpha_sigma(n)
    p, q = pq(a[:, None], s[:, None])
    return _bayes(a[:, None], s[:, None], p, q)[0](x)
  a, s = (np.asarray(v, np.float64) for v in sch.alpha_sigma(np.arange(1000)))
  mins = _bayes(a, s, *pq(a, s))[1]
  _check_mc(sm.ddpm_loss(opt_fn, sch, x0, jax.random.key(4), prediction), np.mean(mins),
            'ddpm random n')


@pytest.mark.parametrize('name', ['vp', 'subvp', 've'])
@pytest.mark.parametrize('weighting', ['uniform', 'likelihood'])
def test_dsm_loss_attains_bayes_minimum(name, weighting):
  sde = sm.get_sde(name)
  k1, k2 = jax.random.split(jax.random.key(5))
  x0 = _data(k1)
  def score_of(x, t):
    a, s = sde.marginal(t)
    return -(x - a[:, None] * MU) / (a[:, None] ** 2 * S ** 2 + s[:, None] ** 2)
  for t in (0.01, 0.3, 0.8):
    a, s = (float(v) for v in sde.marginal(jnp.float32(t)))
    lam = s ** 2 if weighting == 'uniform' else float(sde.diffusion(t)) ** 2
    vmin = lam / s ** 2 * a ** 2 * S ** 2 / (a ** 2 * S ** 2 + s ** 2)
    tb = jnp.full((N,), t)
    z = jax.random.normal(jax.random.fold_in(k2, int(t * 100)), x0.shape)
    _check_optimum(lambda fn: sm.dsm_loss_at(fn, sde, x0, tb, z, weighting), score_of,
                   vmin, f'dsm {name} {weighting} t={t}')
  if weighting == 'uniform':   # random t: integrate the minimum over U(eps, 1)
    ts = np.linspace(sde.eps, 1.0, 20001)
    a, s = (np.asarray(v, np.float64) for v in sde.marginal(jnp.asarray(ts, jnp.float32)))
    expected = np.mean(a ** 2 * S ** 2 / (a ** 2 * S ** 2 + s ** 2))
    _check_mc(sm.dsm_loss(score_of, sde, x0, jax.random.key(6), weighting), expected,
              'dsm random t')


def test_edm_preconditioning_gives_unit_variances():
  sd = 0.5
  for sigma in (0.01, 0.5, 3.0, 80.0):
    c_skip, c_out, c_in, c_noise = sm.edm_preconditioning(jnp.float32(sigma), sd)
    np.testing.assert_allclose(float(c_in) ** 2 * (sd ** 2 + sigma ** 2), 1.0, rtol=1e-5)
    # effective target (x0 - c_skip (x0 + sigma n)) / c_out has unit variance
    var_target = ((1 - c_skip) ** 2 * sd ** 2 + c_skip ** 2 * sigma ** 2) / c_out ** 2
    np.testing.assert_allclose(float(var_target), 1.0, rtol=1e-4)
    np.testing.assert_allclose(float(c_noise), math.log(sigma) / 4, rtol=1e-5)


def test_edm_loss_attains_one_at_the_ideal_denoiser():
  """With sigma_data = S the weighted Bayes error lambda(sigma) Var(x0 | x) is exactly 1."""
  k1, k2 = jax.random.split(jax.random.key(7))
  x0 = _data(k1)
  def denoiser(x, sigma):
    sigma = sigma[:, None]
    return MU + S ** 2 / (S ** 2 + sigma ** 2) * (x - MU)
  for sigma in (0.02, 0.4, 5.0):
    sb = jnp.full((N,), sigma)
    n = jax.random.normal(jax.random.fold_in(k2, int(sigma * 100)), x0.shape)
    _check_optimum(lambda fn: sm.edm_loss_at(fn, x0, sb, n, sigma_data=S), denoiser, 1.0,
                   f'edm sigma={sigma}')
  _check_mc(sm.edm_loss(denoiser, x0, jax.random.key(8), sigma_data=S), 1.0, 'edm random')
  # Through the preconditioning: a raw network F that realises the ideal denoiser.
  def raw(x_in, c_noise):
    sigma = jnp.exp(4 * c_noise)
    c_skip, c_out, c_in, _ = sm.edm_preconditioning(sigma, S)
    x = x_in / c_in[:, None]
    return (denoiser(x, sigma) - c_skip[:, None] * x) / c_out[:, None]
  _check_mc(sm.edm_loss(sm.edm_denoiser(raw, S), x0, jax.random.key(8), sigma_data=S), 1.0,
            'edm preconditioned')


@pytest.mark.parametrize('sigma_min', [0.0, 0.01])
def test_flow_matching_loss_attains_bayes_minimum(sigma_min):
  k1, k2 = jax.random.split(jax.random.key(9))
  x1 = _data(k1)
  c = 1.0 - sigma_min
  def velocity(x, t):
    a, s = sm.flow_path(t[:, None], sigma_min)
    var_x = a ** 2 * S ** 2 + s ** 2
    return MU + (a * S ** 2 - c * s) / var_x * (x - a * MU)
  for t in (0.1, 0.5, 0.95):
    a, s = sm.flow_path(t, sigma_min)
    _, vmin = _bayes(a, s, 1.0, -c)
    tb = jnp.full((N,), t)
    z = jax.random.normal(jax.random.fold_in(k2, int(t * 100)), x1.shape)
    _check_optimum(lambda fn: sm.flow_matching_loss_at(fn, x1, tb, z, sigma_min), velocity,
                   vmin, f'fm t={t}')


# ----------------------------------------------------------------- VLB pieces

def test_q_posterior_is_bayes_rule():
  sch = sm.cosine_schedule(100)
  x0, xt = jnp.array([[0.3]]), jnp.array([[-0.8]])
  for n in (1, 10, 99):
    mean, var = sm.q_posterior(sch, x0, xt, jnp.array([n]))
    al, beta, ab_prev = (float(v) for v in (sch.alphas[n], sch.betas[n], sch.alpha_bars[n - 1]))
    prec = al / beta + 1 / (1 - ab_prev)
    ref_mean = (math.sqrt(al) * -0.8 / beta + math.sqrt(ab_prev) * 0.3 / (1 - ab_prev)) / prec
    np.testing.assert_allclose(float(mean[0, 0]), ref_mean, rtol=1e-4)
    np.testing.assert_allclose(float(var[0]), 1 / prec, rtol=1e-4)


def test_linear_schedule_refuses_betas_of_one_or_more():
  with pytest.raises(ValueError, match=r"T=10 steps reaches beta_T = 2 >= 1.*T > 20"):
    sm.linear_schedule(10)
  assert float(sm.linear_schedule(21).betas[-1]) < 1.0


def test_discretized_decoder_is_a_distribution_over_levels():
  levels = 17
  x = (2 * jnp.arange(levels) / (levels - 1) - 1)[:, None]
  for mean, std in ((0.1, 0.01), (-0.97, 0.2), (0.5, 3.0), (1.3, 0.05)):
    logp = sm.discretized_gaussian_log_likelihood(x, mean, std, levels)
    np.testing.assert_allclose(float(jnp.exp(logp).sum()), 1.0, rtol=1e-5)


def test_vlb_of_a_point_mass_with_the_perfect_denoiser():
  """Data all at one level and x0_hat = that level: the posterior means agree, so with
  sigma_n^2 = beta_tilde the bound is L_T + decoder ~ 0 nats; with sigma_n^2 = beta it is
  the closed-form variance mismatch sum_n D/2 (log(beta/beta_tilde) + beta_tilde/beta - 1);
  a wrong x0_hat costs more."""
  sch = sm.linear_schedule(1000)
  levels, d = 17, 3
  level = 2 * 5 / 16 - 1
  x0 = jnp.full((8, d), level)
  eps = jax.random.normal(jax.random.key(10), x0.shape)
  def total(x0_hat_fn, variance):
    term = lambda n: sm.ddpm_vlb_term(x0_hat_fn, sch, x0, jnp.full((8,), n), eps, levels,
                                      variance)
    return jax.jit(jax.vmap(term))(jnp.arange(1000)).sum(0) + sm.ddpm_prior_kl(sch, x0)
  perfect = lambda x, n: jnp.full_like(x, level)
  assert float(total(perfect, 'beta_tilde').max()) < 1e-3
  b = np.asarray(sch.betas, np.float64)
  ab = np.cumprod(1 - b)
  bt = (1 - ab[:-1]) / (1 - ab[1:]) * b[1:]
  expected = d * 0.5 * np.sum(np.log(b[1:] / bt) + bt / b[1:] - 1)
  np.testing.assert_allclose(np.asarray(total(perfect, 'beta')), expected, rtol=1e-3, atol=1e-3)
  bad = total(lambda x, n: jnp.full_like(x, 2 * 6 / 16 - 1), 'beta_tilde')
  assert float(bad.min()) > 1.0


def test_schedules_one_minus_alpha_bar_is_exact_to_float32_rounding():
  """1 - alpha_bar of the linear DDPM schedule (T = 1000, 1e-4..0.02) against exact rational
  arithmetic (fractions.Fraction of the float64 betas): relative error <= 1e-6, where the old
  float32 form 1 - exp(cumsum(log(1 - beta))) was 1.7e-4 off at n = 0."""
  from fractions import Fraction
  from gen_jax.losses import score_matching as sm
  schedule = sm.linear_schedule(1000)
  betas = np.linspace(1e-4, 0.02, 1000)
  for n in (0, 1, 9, 999):
    alpha_bar = Fraction(1)
    for beta in betas[:n + 1]:
      alpha_bar *= 1 - Fraction(float(beta))
    exact = float(1 - alpha_bar)
    got = float(schedule.one_minus_alpha_bars[n])
    assert abs(got - exact) <= 1e-6 * exact, (n, got, exact)
    np.testing.assert_allclose(float(schedule.alpha_bars[n]), float(alpha_bar), rtol=1e-6)
    np.testing.assert_allclose(float(schedule.alpha_sigma(n)[1]) ** 2, exact, rtol=2e-6)


def test_schedule_tables_are_float64_rounded_once():
  """sqrt(alpha_bar), sqrt(1 - alpha_bar), q_posterior's coefficients and variance of the
  linear schedule (T = 1000) against exact arithmetic (fractions.Fraction, square roots in
  50-digit decimal): each within half a float32 ulp (6e-8 relative), i.e. rounded once from
  float64; and DDIM's variance factor within 2e-5 relative on stride-1 and stride-10 pairs
  (its old float32 1 - abar / abar_prev was 4.6e-4 off at stride 1)."""
  from decimal import Decimal, localcontext
  from fractions import Fraction
  from gen_jax.losses import score_matching as sm
  from gen_jax.samplers import diffusion as samplers
  schedule = sm.linear_schedule(1000)
  betas = [Fraction(float(b)) for b in np.linspace(1e-4, 0.02, 1000)]
  alpha_bar = [Fraction(1)]                 # alpha_bar[n + 1] = prod_{m <= n} (1 - beta_m)
  for beta in betas:
    alpha_bar.append(alpha_bar[-1] * (1 - beta))
  with localcontext() as ctx:
    ctx.prec = 50
    dec = lambda f: Decimal(f.numerator) / Decimal(f.denominator)

    def check(table, n, exact, rtol):
      got = Decimal(float(table[n]) if not callable(table) else float(table(n)))
      assert abs(got - exact) <= Decimal(rtol) * abs(exact), (n, float(got), float(exact))

    for n in (0, 1, 2, 9, 100, 500, 999):
      ab, ab_prev, beta = alpha_bar[n + 1], alpha_bar[n], betas[n]
      check(schedule.sqrt_alpha_bars, n, dec(ab).sqrt(), 6e-8)
      check(schedule.sqrt_one_minus_alpha_bars, n, dec(1 - ab).sqrt(), 6e-8)
      check(schedule.posterior_x0_coefs, n, dec(ab_prev).sqrt() * dec(beta) / dec(1 - ab), 6e-8)
      if n:
        check(schedule.posterior_xt_coefs, n,
              dec(1 - beta).sqrt() * dec(1 - ab_prev) / dec(1 - ab), 6e-8)
        check(schedule.posterior_variances, n, dec((1 - ab_prev) / (1 - ab) * beta), 6e-8)
      for stride in (1, 10):
        if n >= stride:
          ab_p = alpha_bar[n - stride + 1]
          factor = lambda n, p=n - stride: samplers.ddim_variance_factor(
              schedule, jnp.int32(n), jnp.int32(p))
          check(factor, n, dec((1 - ab_p) / (1 - ab) * (1 - ab / ab_p)), 2e-5)
  assert float(schedule.posterior_variances[0]) == 0.0
  np.testing.assert_allclose(sm.reverse_variance(schedule, jnp.arange(3), 'beta_tilde'),
                             schedule.posterior_variances[jnp.array([1, 1, 2])])
