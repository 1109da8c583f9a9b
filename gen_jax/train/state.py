"""The train state and the one jitted training step, for any paradigm.

The step knows nothing of families: it differentiates `paradigm.loss` (or, for
a multi-player paradigm, each player's loss with respect to that player's
parameters, in the order of `paradigm.update_schedule`), applies the player's
optax optimizer, then the paradigm's `post_update` (non-gradient state such as
an EMA codebook), updates the EMA and records the first non-finite step.
Leaves named by `paradigm.non_trainable` are frozen for the optimizer (`freeze`).

The loss is traced under the run's `gen_jax.policy.Policy` (compute dtype,
rematerialisation). With `grad_accum_steps = k > 1` each update's gradient is averaged over
k micro-batches that draw the whole batch's random numbers (`gen_jax.train.accumulate`):
the whole batch's update, to float rounding, with the activation memory of one micro-batch.
"""
from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from gen_jax.policy import Policy
from gen_jax.train import accumulate
from gen_jax.paradigms.base import Paradigm

# Codes for TrainState.nonfinite_what.
NONFINITE_NONE, NONFINITE_LOSS, NONFINITE_GRADS = 0, 1, 2
NONFINITE_NAMES = {NONFINITE_LOSS: "loss", NONFINITE_GRADS: "gradient norm"}


@flax.struct.dataclass
class TrainState:
  step: jax.Array            # int32 scalar: number of updates applied
  params: Any
  opt_state: Any             # one optax state, or {player: state}
  ema_params: Any            # None when config.ema_decay == 0
  nonfinite_step: jax.Array  # int32: first step whose loss/grads were NaN/inf, -1 if none
  nonfinite_what: jax.Array  # int32: NONFINITE_* code of that step


def trainable_mask(tree, names):
  """bool pytree like `tree`: False where a dict key on the leaf's path is in `names`."""
  names = frozenset(names)
  return jax.tree_util.tree_map_with_path(
      lambda path, _: not any(getattr(k, "key", None) in names for k in path), tree)


def freeze(optimizer, names):
  """`optimizer` on the trainable leaves; the leaves under `names` get zero updates.

  Frozen leaves carry no optimizer state (no moments), see no weight decay and
  stay out of the optimizer's gradient clipping (optax.multi_transform).
  """
  if not names:
    return optimizer
  def labels(tree):
    return jax.tree.map(lambda t: "train" if t else "frozen", trainable_mask(tree, names))
  return optax.multi_transform({"train": optimizer, "frozen": optax.set_to_zero()}, labels)


def init_state(paradigm: Paradigm, optimizers, params, ema_decay: float,
               policy: Policy = Policy()) -> TrainState:
  params = policy.cast_to_param(params)
  if paradigm.players:
    opt_state = {p: optimizers[p].init(params[p]) for p in paradigm.players}
  else:
    opt_state = optimizers[None].init(params)
  return TrainState(
      step=jnp.zeros((), jnp.int32), params=params, opt_state=opt_state,
      ema_params=params if ema_decay > 0 else None,
      nonfinite_step=-jnp.ones((), jnp.int32),
      nonfinite_what=jnp.zeros((), jnp.int32))


def _update(loss_fn, optimizer, params, opt_state, batch, rng, gather, non_trainable=(),
            policy: Policy = Policy(), grad_accum_steps: int = 1):
  """One gradient step of `loss_fn(params, batch, rng)` -> (params, opt_state, loss, metrics, grad_norm).

  `gather` maps stored parameters to the ones compute uses (FSDP's all-gather); the loss is
  traced under `policy` on the parameters cast to its compute dtype (their gradients come
  back in the stored dtype); grad_norm leaves out the `non_trainable` leaves (the optimizer
  does too).
  """
  def policy_loss(p, batch, rng):
    with policy.active():
      return loss_fn(policy.cast_to_compute(gather(p)), batch, rng)
  if policy.remat == "full":
    policy_loss = jax.checkpoint(policy_loss)
  (loss, metrics), grads = accumulate.value_and_grad(policy_loss, params, batch, rng,
                                                           grad_accum_steps)
  if non_trainable:
    grads = jax.tree.map(lambda g, t: g if t else jnp.zeros_like(g), grads,
                         trainable_mask(grads, non_trainable))
  grad_norm = optax.global_norm(grads)
  updates, opt_state = optimizer.update(grads, opt_state, params)
  return optax.apply_updates(params, updates), opt_state, loss, metrics, grad_norm


def make_train_step(paradigm: Paradigm, optimizers, schedules, ema_decay: float,
                    skip_nonfinite: bool, gather=lambda tree: tree, policy: Policy = Policy(),
                    grad_accum_steps: int = 1):
  """Returns train_step(state, batch, base_key) -> (state, metrics)."""
  tracing = dict(policy=policy, grad_accum_steps=grad_accum_steps)

  def train_step(state: TrainState, batch, base_key):
    rng = jax.random.fold_in(base_key, state.step)
    if not paradigm.players:
      params, opt_state, loss, metrics, grad_norm = _update(
          paradigm.loss, optimizers[None], state.params, state.opt_state, batch, rng, gather,
          paradigm.non_trainable, **tracing)
      metrics = {**metrics, "grad_norm": grad_norm,
                 "learning_rate": schedules[None](state.step)}
    else:
      params, opt_state, metrics = dict(state.params), dict(state.opt_state), {}
      grad_norm = jnp.zeros(())
      for i, player in enumerate(paradigm.update_schedule):
        def player_loss(p, batch, rng, player=player, others=gather(dict(params))):
          return paradigm.loss[player]({**others, player: p}, batch, rng)
        params[player], opt_state[player], loss, m, g = _update(
            player_loss, optimizers[player], params[player], opt_state[player],
            batch, jax.random.fold_in(rng, i), gather, paradigm.non_trainable, **tracing)
        grad_norm = jnp.maximum(grad_norm, g)
        metrics.update({f"{player}/{k}": v for k, v in m.items()})
        metrics.update({f"{player}/loss": loss, f"{player}/grad_norm": g})
      # The scalar the loop logs and checks: the sum of the players' last losses.
      loss = sum(metrics[f"{p}/loss"] for p in dict.fromkeys(paradigm.update_schedule))
    if paradigm.post_update is not None:
      params = paradigm.post_update(
          gather(params), batch, jax.random.fold_in(rng, 1 + len(paradigm.update_schedule)))
    loss_ok, grads_ok = jnp.isfinite(loss), jnp.isfinite(grad_norm)
    ok = loss_ok & grads_ok
    if skip_nonfinite:
      params, opt_state = jax.tree.map(
          lambda new, old: jnp.where(ok, new, old),
          (params, opt_state), (state.params, state.opt_state))
    ema = state.ema_params
    if ema is not None:
      # Warm-up of the decay, min(decay, (1 + t) / (10 + t)), as TensorFlow's
      # ExponentialMovingAverage with num_updates: early averages forget the init.
      step_f = state.step.astype(jnp.float32)
      decay = jnp.minimum(ema_decay, (1.0 + step_f) / (10.0 + step_f))
      ema = jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema, params)
    first = (state.nonfinite_step < 0) & ~ok
    state = state.replace(
        step=state.step + 1, params=params, opt_state=opt_state, ema_params=ema,
        nonfinite_step=jnp.where(first, state.step, state.nonfinite_step),
        nonfinite_what=jnp.where(
            first, jnp.where(loss_ok, NONFINITE_GRADS, NONFINITE_LOSS), state.nonfinite_what))
    metrics["nonfinite"] = (~ok).astype(jnp.float32)   # 1 on a NaN/inf step (skipped or halting)
    return state, {"loss": loss, **metrics}

  return train_step
