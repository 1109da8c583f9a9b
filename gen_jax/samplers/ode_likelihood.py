r"""Exact log-likelihood of an ODE flow (probability-flow ODE, flow matching, EDM's ODE).

For dx/dt = f(x, t) carrying the density p_t, the instantaneous change of variables
(Chen et al. 2018, arXiv:1806.07366, Theorem 1) gives
d log p_t(x(t)) / dt = -div f(x(t), t), hence, integrating from the data time t0 to
the prior time t1,

    log p_{t0}(x) = log p_{t1}(x(t1)) + \int_{t0}^{t1} div f(x(t), t) dt,

used for score SDEs by Song et al. 2021 (arXiv:2011.13456, Appendix D.2). The
divergence is either exact (D Jacobian-vector products, for small D) or Hutchinson's
estimate eps^T (df/dx) eps with a fixed Rademacher / Gaussian eps (Hutchinson 1989;
Grathwohl et al. 2019, arXiv:1810.01367), unbiased for log p. The ODE is solved with
diffrax's adaptive Tsit5 (Kidger 2021) under a PID step-size controller.
"""
from __future__ import annotations

import math
from typing import Callable

import diffrax
import jax
import jax.numpy as jnp


def divergence_fn(drift: Callable, trace: str = 'hutchinson') -> Callable:
  """Returns div(x, t, eps) -> (f(x, t), divergence [B]) for drift f(x [B, ...], t [B]).

  trace='hutchinson': eps^T J eps with the given eps (one VJP, eps^T J, dotted with eps);
  trace='exact': sum_i e_i^T J e_i over the D basis vectors (D VJPs; for small D).
  Reverse mode, so nets with custom_vjp pieces (the transformer's attention and MLP, in DiT)
  can be traced."""
  if trace not in ('hutchinson', 'exact'):
    raise ValueError(f"Unknown trace {trace!r}: use 'hutchinson' or 'exact'.")

  def div(x, t, eps):
    f = lambda y: drift(y, t)
    out, pullback = jax.vjp(f, x)
    if trace == 'hutchinson':
      (eps_j,) = pullback(eps)
      return out, jnp.sum((eps * eps_j).reshape(x.shape[0], -1), -1)
    d = math.prod(x.shape[1:])
    basis = jnp.eye(d, dtype=x.dtype).reshape(d, 1, *x.shape[1:])

    def one(e):
      e = jnp.broadcast_to(e, x.shape)
      (e_j,) = pullback(e)
      return jnp.sum((e * e_j).reshape(x.shape[0], -1), -1)
    return out, jnp.sum(jax.lax.map(one, basis), 0)
  return div


def ode_log_likelihood(drift: Callable, x, t0: float, t1: float, prior_logp: Callable, rng,
                       *, trace: str = 'hutchinson', noise: str = 'rademacher',
                       rtol: float = 1e-5, atol: float = 1e-5, max_steps: int = 4096):
  r"""log p_{t0}(x) [B] of the flow dx/dt = drift(x, t) whose time-t1 marginal is the prior.

  Args:
    drift: f(x [B, ...], t [B]) -> [B, ...].
    x: data points at time t0, [B, ...].
    t0, t1: data and prior times (t1 may be smaller than t0, e.g. flow matching).
    prior_logp: z [B, ...] -> log p_{t1}(z) [B].
    rng: key of the Hutchinson probe (unused when trace='exact').
    trace: 'hutchinson' or 'exact'. noise: 'rademacher' or 'gaussian' probes.
    rtol, atol: tolerances of the adaptive solver.
  Returns:
    (log_p [B], info) with info = {'nfe': drift evaluations (Tsit5: 6 per step + 1),
    'num_steps': accepted + rejected steps, 'z': x(t1), 'delta_logp': the integral}.
  """
  if noise == 'rademacher':
    eps = jax.random.rademacher(rng, x.shape, x.dtype)
  elif noise == 'gaussian':
    eps = jax.random.normal(rng, x.shape, x.dtype)
  else:
    raise ValueError(f"Unknown noise {noise!r}: use 'rademacher' or 'gaussian'.")
  div = divergence_fn(drift, trace)

  def vector_field(t, state, args):
    y, _ = state
    f, d = div(y, jnp.full(y.shape[:1], t, y.dtype), eps)
    return f, d

  state0 = (x, jnp.zeros(x.shape[:1], x.dtype))
  sol = diffrax.diffeqsolve(
      diffrax.ODETerm(vector_field), diffrax.Tsit5(), t0=t0, t1=t1, dt0=None, y0=state0,
      stepsize_controller=diffrax.PIDController(rtol=rtol, atol=atol),
      saveat=diffrax.SaveAt(t1=True), max_steps=max_steps)
  z, delta = sol.ys[0][-1], sol.ys[1][-1]
  steps = sol.stats['num_steps']
  info = {'nfe': 6 * steps + 1, 'num_steps': steps, 'z': z, 'delta_logp': delta}
  return prior_logp(z) + delta, info


def gaussian_logp(std: float = 1.0) -> Callable:
  """log N(z; 0, std^2 I) summed over all but the first axis."""
  def logp(z):
    d = math.prod(z.shape[1:])
    return (-0.5 * d * math.log(2 * math.pi * std ** 2)
            - 0.5 * jnp.sum(jnp.square(z).reshape(z.shape[0], -1), -1) / std ** 2)
  return logp
