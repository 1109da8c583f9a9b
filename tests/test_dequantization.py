"""Variational dequantization (Flow++, arXiv:1902.00275) against truth: log q(u | x) equals
minus the brute-force log-determinant of the map w -> u of uniform noise (jax.jacfwd +
slogdet), u stays in x's unit cell, the bound is below the exact log P(x) of a model that is
constant on each unit cell (tight for uniform q), and the identity-initialised dequantizer
reproduces uniform dequantization."""
from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.losses import nll as nll_lib
from gen_jax.nets import flows
from gen_jax.paradigms import glow, realnvp

DIGITS = DatasetInfo(name="digits", kind="image", shape=(8, 8, 1), num_levels=17, num_classes=10)


def perturb(params, seed, scale):
  """Adds N(0, scale^2) noise (numpy) to every parameter, so q is far from uniform."""
  rs = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda l: l + jnp.asarray(scale * rs.standard_normal(l.shape), l.dtype), params)


def dequantizer_and_inputs(shape=(4, 4, 1), batch=3, scale=0.3, seed=0):
  module = flows.VariationalDequantizer(num_steps=3, hidden=8)
  rs = np.random.default_rng(seed)
  w = jnp.asarray(rs.uniform(0.02, 0.98, (batch,) + shape), jnp.float32)
  context = jnp.asarray(rs.uniform(-0.5, 0.5, (batch,) + shape), jnp.float32)
  params = module.init(jax.random.key(1), w, context)["params"]
  return module, perturb(params, seed + 1, scale), w, context


def test_log_q_is_minus_the_brute_force_log_det_of_w_to_u():
  """w ~ U(0, 1)^D has density 1, so q(u | x) = 1 / |det du/dw|."""
  module, params, w, context = dequantizer_and_inputs(scale=0.1)
  u, log_q = module.apply({"params": params}, w, context)
  assert log_q.shape == (w.shape[0],)
  for i in range(w.shape[0]):
    f = lambda wi: module.apply({"params": params}, wi.reshape((1,) + w.shape[1:]),
                                context[i:i + 1])[0].reshape(-1)
    sign, log_abs_det = jnp.linalg.slogdet(jax.jacfwd(f)(w[i].reshape(-1)))
    assert float(sign) != 0.0
    np.testing.assert_allclose(float(log_q[i]), -float(log_abs_det), rtol=2e-6, atol=1e-4)
  assert float(jnp.abs(log_q).min()) > 1e-2  # the perturbed q really is not uniform
  # q depends on x: another context gives another u for the same noise.
  u2, _ = module.apply({"params": params}, w, -context)
  assert float(jnp.abs(u2 - u).max()) > 1e-3


def test_u_stays_in_the_unit_cell_even_for_extreme_noise_and_parameters():
  module, params, w, context = dequantizer_and_inputs(batch=2, scale=3.0)
  edges = jnp.asarray([0.0, 1e-9, 0.5, 1.0 - 1e-7, np.nextafter(np.float32(1), np.float32(0))],
                      jnp.float32)
  w = jnp.concatenate([w, jnp.broadcast_to(edges[:, None, None, None], (5,) + w.shape[1:])], 0)
  context = jnp.concatenate([context, jnp.zeros((5,) + context.shape[1:])], 0)
  u, log_q = module.apply({"params": params}, w, context)
  assert np.all(np.asarray(u) >= 0.0) and np.all(np.asarray(u) < 1.0)
  assert np.all(np.isfinite(np.asarray(log_q)))


def test_bound_is_below_the_exact_log_likelihood_of_a_cellwise_constant_model():
  """p_V(v) = prod_d pi[floor(v_d)] is constant on each unit cell, so P(x) = prod_d pi[x_d]
  exactly, and E_q[log p_V(x + u) - log q(u | x)] = log P(x) - KL(q || U): at most log P(x),
  with equality for uniform q."""
  levels, shape, draws = 17, (4, 4, 1), 512
  rs = np.random.default_rng(3)
  log_pi = np.log(rs.dirichlet(np.ones(levels)))
  x = rs.integers(0, levels, (2,) + shape)
  log_p_exact = log_pi[x].reshape(2, -1).sum(1)

  module, params, _, _ = dequantizer_and_inputs(shape=shape, scale=0.5)
  identity = module.init(jax.random.key(1), jnp.full((1,) + shape, 0.5), jnp.zeros((1,) + shape))
  xs = np.repeat(x, draws, axis=0)                           # [2 * draws, ...]
  w = jax.random.uniform(jax.random.key(4), xs.shape)
  context = jnp.asarray(xs / (levels - 1) - 0.5, jnp.float32)
  for p, tight in ((params, False), (identity["params"], True)):
    u, log_q = module.apply({"params": p}, w, context)
    v = xs + np.asarray(u, np.float64)
    log_p_v = log_pi[np.floor(v).astype(int)].reshape(len(xs), -1).sum(1)
    bound = np.asarray(nll_lib.variational_dequantization_bound(log_p_v, np.asarray(log_q)))
    bound = bound.reshape(2, draws)
    se = bound.std(1) / np.sqrt(draws)
    if tight:
      np.testing.assert_allclose(bound, log_p_exact[:, None] * np.ones((1, draws)), rtol=1e-6)
    else:
      assert np.all(bound.mean(1) < log_p_exact), (bound.mean(1), log_p_exact)
      assert np.all(bound.max(1) <= log_p_exact + 5 * np.maximum(bound.std(1), 1e-3)), se
      assert np.all(log_p_exact - bound.mean(1) > 3 * se)  # KL(q || U) > 0, measurably


def variational_config(**fields):
  return ml_collections.ConfigDict(dict(num_scales=2, steps_per_scale=1, hidden=8,
                                        dequantization="variational", dequantizer_steps=2,
                                        dequantizer_hidden=8, **fields))


@pytest.mark.parametrize("make", [glow.make, realnvp.make])
def test_identity_dequantizer_reproduces_uniform_dequantization(make):
  """With the dequantizer at its init (u = w, log q = 0), the variational paradigm gives the
  uniform paradigm's log-likelihood and bits/dim for the same flow and the same key."""
  rs = np.random.default_rng(0)
  batch = {"image": rs.integers(0, 17, (6, 8, 8, 1)).astype(np.uint8),
           "label": np.zeros((6,), np.int32)}
  uniform = make(ml_collections.ConfigDict(dict(num_scales=2, steps_per_scale=1, hidden=8)), DIGITS)
  variational = make(variational_config(), DIGITS)
  flow_params = perturb(uniform.init(jax.random.key(0), batch), 1, 0.1)  # "a trained flow"
  params = variational.init(jax.random.key(0), batch)
  assert set(params) == {"flow", "dequantizer"}
  params = {"flow": flow_params, "dequantizer": params["dequantizer"]}
  rng = jax.random.key(2)
  np.testing.assert_allclose(variational.log_likelihood(params, batch, rng),
                             uniform.log_likelihood(flow_params, batch, rng), rtol=1e-5, atol=1e-3)
  loss_v, metrics_v = variational.loss(params, batch, rng)
  loss_u, _ = uniform.loss(flow_params, batch, rng)
  np.testing.assert_allclose(loss_v, loss_u, rtol=1e-5)
  np.testing.assert_array_equal(metrics_v["log_q_u_per_dim"], 0.0)
  # The dequantizer is trained by the same loss: its gradients are finite and not all zero.
  grads = jax.grad(lambda p: variational.loss(p, batch, rng)[0])(params)["dequantizer"]
  leaves = jax.tree_util.tree_leaves(grads)
  assert all(np.all(np.isfinite(g)) for g in leaves)
  assert max(float(jnp.abs(g).max()) for g in leaves) > 0
  # Sampling ignores the dequantizer: the same images as the uniform paradigm's.
  np.testing.assert_array_equal(variational.sample(params, jax.random.key(3), 4),
                                uniform.sample(flow_params, jax.random.key(3), 4))


def test_bad_dequantization_fields_raise_user_errors():
  with pytest.raises(UserError, match="dequantization"):
    glow.make(ml_collections.ConfigDict(dict(num_scales=2, steps_per_scale=1, hidden=8,
                                             dequantization="learned")), DIGITS)
  with pytest.raises(UserError, match="logit_alpha"):
    realnvp.make(variational_config(logit_alpha=0.5), DIGITS)
