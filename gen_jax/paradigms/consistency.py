r"""Consistency models (Song, Dhariwal, Chen, Sutskever 2023, arXiv:2303.01469): one- and few-step
generation by a network f_theta(x, sigma) that maps every point of a probability-flow ODE
trajectory to its origin, with f_theta(x, sigma_min) = x built in (`gen_jax.losses.consistency`).

Two ways to train it (`model.training`):

* 'distillation' (CD, Algorithm 2): from a trained `edm` teacher, the run named in
  `config.stage1` (its workdir; see experiments/configs/consistency.py). The run trains on the
  images themselves (dataset 'digits', not 'encoded'); the teacher's sampling (EMA) params are
  loaded with it (`gen_jax.workdir.stage1_of`) and reach this module as `info.stage1`. The
  student is the teacher's network, initialised from those weights as the paper does, so its
  network fields must equal the teacher's (a UserError names any that differ). Each step: one
  Heun (or Euler) step of the teacher's ODE from sigma_{n+1} to sigma_n on the fixed
  rho = 7 discretisation of N = `num_scales` levels, and a fixed target decay mu =
  `target_decay`.
* 'training' (CT, Algorithm 3): from scratch, no teacher; N(k) and mu(k) follow the paper's
  schedules (`ct_num_scales`, `ct_target_decay`) over K = `total_steps` steps (the configs tie it
  to `config.num_train_steps`).

Parameters: {'online': theta, 'target': theta^- [, 'schedule': {'k', 'num_scales'}]}. The target
network theta^- (an EMA of theta under stop-gradient) and CT's step counter are `non_trainable`:
`post_update` alone writes them, once per step after the optimizer step,
theta^- <- mu theta^- + (1 - mu) theta, and k <- k + 1 with N(k + 1) stored for the next loss
(a float leaf: gradients of integer leaves are undefined; N is a small integer, exact in
bfloat16 too). The loop's own EMA of params (`config.ema_decay`) is what `sample` sees, as the
paper samples with an EMA of theta.

Sampling: Algorithm 1 (`gen_jax.samplers.consistency`), `sample(..., num_steps=1 | 2 | ...)`,
NFE = num_steps; default 1 (`model.num_steps = 0`), at levels of the training grid (N levels;
CT: N(K)) unless `model.sampling_sigmas` gives them. log_likelihood: None. A consistency model
gives no exact likelihood (its map from noise is not invertible with a tractable Jacobian, and
it defines no ODE of its own), so it is scored by its samples (FD), as a GAN is.

config.model fields: `Fields` below (DiffusionFields for the network, then the consistency
model's own).
"""
from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp

from gen_jax.errors import UserError
from gen_jax.losses import consistency as cl
from gen_jax.losses import score_matching as sm
from gen_jax.paradigms import diffusion as common
from gen_jax.paradigms import edm
from gen_jax.paradigms.base import Paradigm, parse_model_config
from gen_jax.samplers import consistency as samplers

TRAINING = ('distillation', 'training')


@dataclasses.dataclass(frozen=True, kw_only=True)
class Fields(common.DiffusionFields):
  """consistency's config.model fields, with their defaults (arXiv:2303.01469, Table 3 and App. C)."""
  training: str = 'distillation'     # distillation (CD: config.stage1 = an edm run) | training (CT)
  sigma_data: float = 0.5            # c_skip / c_out / c_in (images in [-1, 1]: 0.5)
  sigma_min: float = 0.002           # epsilon: f(x, sigma_min) = x
  sigma_max: float = 80.0            # T
  rho: float = 7.0                   # the discretisation's exponent
  distance: str = 'l2'               # l2 | pseudo_huber (arXiv:2310.14189); the paper's LPIPS is absent
  weighting: str = 'uniform'         # uniform (lambda = 1) | inverse_gap (1 / (sigma_{n+1} - sigma_n))
  num_scales: int = 18               # CD: N
  target_decay: float = 0.95         # CD: mu
  teacher_solver: str = 'heun'       # CD: heun | euler
  s0: int = 2                        # CT: N(0)
  s1: int = 150                      # CT: N(K) = s1 + 1
  mu0: float = 0.9                   # CT: mu at N = s0
  total_steps: int = 0               # CT: K, the steps N(k) grows over (the configs: num_train_steps)
  sampling_sigmas: tuple[float, ...] = ()   # levels after sigma_max for num_steps = len + 1; () = the training grid's


# The teacher's fields a distilled student must share: its network is the teacher's, initialised
# from the teacher's weights, and sigma_data sets both networks' c_in.
_UNET_MATCH = tuple(n for n in common.UNET_FIELDS if n != 'dropout')
_DIT_MATCH = tuple(n for n in common.DIT_FIELDS if n != 'dropout')


def _check_fields(f: Fields, info) -> None:
  if f.training not in TRAINING:
    raise UserError(f"consistency: model.training={f.training!r}; use 'distillation' (from an edm "
                    "teacher in config.stage1) or 'training' (from scratch).")
  if f.conditional:
    raise UserError("consistency: model.conditional=True is not supported (the consistency "
                    "models here are unconditional); set --config.model.conditional=False.")
  for name, allowed in (('distance', cl.DISTANCES), ('weighting', cl.WEIGHTINGS),
                        ('teacher_solver', cl.SOLVERS)):
    if getattr(f, name) not in allowed:
      raise UserError(f"consistency: model.{name}={getattr(f, name)!r}; use one of {allowed}.")
  if not 0.0 < f.sigma_min < f.sigma_max:
    raise UserError(f"consistency: need 0 < sigma_min < sigma_max, got {f.sigma_min}, {f.sigma_max}.")
  if f.training == 'distillation' and int(f.num_scales) < 2:
    raise UserError(f"consistency: model.num_scales={f.num_scales}; N must be >= 2.")
  if f.training == 'training' and (int(f.total_steps) < 1 or not 2 <= int(f.s0) <= int(f.s1)):
    raise UserError(
        f"consistency training needs model.total_steps >= 1 (K of N(k); set it to "
        f"config.num_train_steps) and 2 <= s0 <= s1; got total_steps={f.total_steps}, "
        f"s0={f.s0}, s1={f.s1}.")


def teacher_of(f: Fields, info):
  """(denoise(x, sigma[B]), params) of the edm teacher that `info.stage1` carries: EDM's
  preconditioned denoiser D(x; sigma) of the teacher's sampling params, and those params
  (host arrays). A UserError of one line names the fix when there is no teacher, it is not an
  edm run, or its network is not the student's."""
  stage1 = getattr(info, 'stage1', None)
  if stage1 is None:
    raise UserError(
        "consistency distillation (model.training='distillation') needs an edm teacher: set "
        f"--config.stage1.workdir to a trained edm.py:{info.name} run, or use "
        "--config.model.training=training (consistency training from scratch).")
  saved = stage1.config
  if saved.paradigm != 'edm':
    raise UserError(
        f"consistency distillation distils an edm run, but the teacher {stage1.workdir} is a "
        f"{saved.paradigm!r} run: point --config.stage1.workdir at a run of "
        f"experiments/configs/edm.py:{info.name}.")
  if saved.dataset != info.name:
    raise UserError(
        f"The teacher {stage1.workdir} was trained on {saved.dataset!r}, this run on "
        f"{info.name!r}: point --config.stage1.workdir at an edm run on {info.name!r}.")
  t = parse_model_config(edm.Fields, saved.model, strict=False)
  if t.conditional:
    raise UserError(f"The teacher {stage1.workdir} is class-conditional; distil an unconditional "
                    "edm run (model.conditional=False).")
  for name in ('net', *(_DIT_MATCH if t.net == 'dit' else _UNET_MATCH), 'sigma_data'):
    mine, theirs = getattr(f, name), getattr(t, name)
    if mine != theirs:
      raise UserError(
          f"consistency distillation starts the student from the teacher's weights, so its "
          f"network must be the teacher's: model.{name}={mine!r}, but the teacher "
          f"{stage1.workdir} has {theirs!r}; set --config.model.{name}={theirs!r}.")
  net = common.build_net(t, stage1.info, 'consistency (teacher)')
  time_input = edm.make_spec(t, stage1.info).time_input
  params = stage1.params

  def raw(x_in, c_noise):
    return net.apply({'params': params}, x_in, time_input(c_noise), None, train=False)
  return sm.edm_denoiser(raw, float(t.sigma_data)), params


def make_paradigm(f: Fields, info, teacher_denoise=None, teacher_params=None) -> Paradigm:
  """The consistency Paradigm of fields `f` on `info`; for distillation, the teacher's
  denoiser D(x, sigma[B]) (model space) and optionally its params (the student's init; without
  them the student starts from the network's own init)."""
  _check_fields(f, info)
  distill = f.training == 'distillation'
  if distill and teacher_denoise is None:
    raise UserError("consistency distillation needs a teacher denoiser (make() reads it from "
                    "config.stage1).")
  net = common.build_net(f, info, 'consistency')
  time_input = edm.make_spec(f, info).time_input        # the network sees 250 c_noise, as EDM's
  sigma_data, sigma_min, sigma_max, rho = (float(f.sigma_data), float(f.sigma_min),
                                           float(f.sigma_max), float(f.rho))
  distance, weighting = f.distance, f.weighting
  num_scales, mu_cd, solver = int(f.num_scales), float(f.target_decay), f.teacher_solver
  s0, s1, mu0, total = int(f.s0), int(f.s1), float(f.mu0), int(f.total_steps)
  default_steps = int(f.num_steps or 1)
  sampling_sigmas = tuple(float(s) for s in f.sampling_sigmas)

  def consistency_fn(params, train=False, dropout_rng=None):
    def raw(x_in, c_noise):
      rngs = {'dropout': dropout_rng} if (train and dropout_rng is not None) else None
      return net.apply({'params': params}, x_in, time_input(c_noise), None, train=train,
                       rngs=rngs)
    return cl.consistency_function(raw, sigma_data, sigma_min)

  def init(rng, batch):
    if teacher_params is not None:
      online = jax.tree.map(jnp.asarray, teacher_params)
    else:
      x = common.to_model_space(batch, info)[:1]
      online = net.init(rng, x, jnp.zeros((1,), jnp.float32), None)['params']
    params = {'online': online, 'target': online}
    if not distill:
      k = jnp.zeros((), jnp.float32)
      params['schedule'] = {'k': k, 'num_scales': cl.ct_num_scales(k, total, s0, s1)}
    return params

  def loss(params, batch, rng):
    x0 = common.to_model_space(batch, info)
    loss_key, dropout_key = jax.random.split(rng)
    # One dropout mask for both networks (the same function of theta and theta^-).
    f_online = consistency_fn(params['online'], True, dropout_key)
    f_target = consistency_fn(jax.lax.stop_gradient(params['target']), True, dropout_key)
    if distill:
      n_scales = num_scales
      per_example = cl.consistency_distillation_loss(
          f_online, f_target, teacher_denoise, x0, loss_key, num_scales, sigma_min, sigma_max,
          rho, solver, distance, weighting)
    else:
      n_scales = jax.lax.stop_gradient(params['schedule']['num_scales']).astype(jnp.float32)
      per_example = cl.consistency_training_loss(
          f_online, f_target, x0, loss_key, n_scales, sigma_min, sigma_max, rho, distance,
          weighting)
    return jnp.mean(per_example), {'num_scales': jnp.asarray(n_scales, jnp.float32)}

  def post_update(params, batch, rng):
    """theta^- <- stopgrad(mu theta^- + (1 - mu) theta); CT: k <- k + 1 and N(k + 1)."""
    del batch, rng
    new = dict(params)
    if distill:
      mu = jnp.float32(mu_cd)
    else:
      k = params['schedule']['k'].astype(jnp.float32)
      mu = cl.ct_target_decay(cl.ct_num_scales(k, total, s0, s1), s0, mu0)
      new['schedule'] = {'k': (k + 1.0).astype(params['schedule']['k'].dtype),
                         'num_scales': cl.ct_num_scales(k + 1.0, total, s0, s1).astype(
                             params['schedule']['num_scales'].dtype)}
    new['target'] = jax.tree.map(
        lambda t, o: (mu * t + (1.0 - mu) * o).astype(t.dtype),
        params['target'], jax.lax.stop_gradient(params['online']))
    return new

  grid = num_scales if distill else s1 + 1        # the training grid (CT: N(K), the last)

  def levels(num_steps):
    given = sampling_sigmas if len(sampling_sigmas) == num_steps - 1 else ()
    return samplers.multistep_sigmas(num_steps, grid, sigma_min, sigma_max, rho, given)

  @functools.partial(jax.jit, static_argnames=('num', 'num_steps', 'return_trajectory'))
  def _sample(params, rng, *, num, num_steps, return_trajectory):
    x, out = samplers.multistep_consistency_sampler(
        consistency_fn(params['online']), (num, *info.shape), rng, levels(num_steps), sigma_min,
        return_trajectory)
    if return_trajectory:
      out['trajectory'] = common.from_model_space(out['trajectory'], info)
    return common.from_model_space(x, info), out

  def sample(params, rng, num, num_steps=None, return_trajectory=False, return_info=False):
    """Samples [num, *shape] (images in [0, 1]) by Algorithm 1 in num_steps network evaluations
    (default config.model.num_steps, else 1); return_trajectory -> (samples, [steps + 1, num,
    ...]); return_info -> also {'nfe', 'network_evals'}."""
    steps = int(num_steps or default_steps)
    x, out = _sample(params, rng, num=int(num), num_steps=steps,
                     return_trajectory=bool(return_trajectory))
    result = (x, out['trajectory']) if return_trajectory else x
    if return_info:
      info_ = {'nfe': out['nfe'], 'network_evals': out['nfe']}
      return (*result, info_) if return_trajectory else (result, info_)
    return result

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=None,
                  non_trainable=('target', 'schedule'), post_update=post_update)


def make(model_config, info) -> Paradigm:
  f = parse_model_config(Fields, model_config)
  _check_fields(f, info)
  if f.training == 'distillation':
    denoise, params = teacher_of(f, info)
    return make_paradigm(f, info, denoise, params)
  return make_paradigm(f, info)
