"""Optax optimizers from the config's `optimizer` sub-config."""
from __future__ import annotations

import jax
import optax

from gen_jax.errors import UserError

_FIELDS = ("name", "learning_rate", "schedule", "warmup_steps", "final_lr_factor",
           "b1", "b2", "weight_decay", "grad_clip_norm")


def player_config(opt_config, player: str | None) -> dict:
  """The optimizer fields for one player: the defaults updated by per_player[player]."""
  fields = {k: opt_config[k] for k in _FIELDS}
  overrides = dict(opt_config.get("per_player", {}) or {})
  if player is not None and player in overrides:
    extra = dict(overrides[player])
    unknown = set(extra) - set(_FIELDS)
    if unknown:
      raise UserError(f"Unknown optimizer field(s) {sorted(unknown)} in "
                      f"optimizer.per_player.{player}; known: {list(_FIELDS)}.")
    fields.update(extra)
  return fields


def learning_rate_schedule(fields: dict, num_train_steps: int) -> optax.Schedule:
  lr, warmup = fields["learning_rate"], int(fields["warmup_steps"])
  if fields["schedule"] == "constant":
    decay = optax.constant_schedule(lr)
  elif fields["schedule"] == "cosine":
    decay = optax.cosine_decay_schedule(
        lr, max(1, num_train_steps - warmup), alpha=fields["final_lr_factor"])
  else:
    raise UserError(f"Unknown optimizer.schedule {fields['schedule']!r}; use 'constant' or 'cosine'.")
  if warmup <= 0:
    return decay
  return optax.join_schedules(
      [optax.linear_schedule(0.0, lr, warmup), decay], [warmup])


def make_optimizer(opt_config, num_train_steps: int, player: str | None = None):
  """Returns (optax transformation, learning-rate schedule)."""
  fields = player_config(opt_config, player)
  schedule = learning_rate_schedule(fields, num_train_steps)
  name = fields["name"]
  if name == "adam":
    opt = optax.adam(schedule, b1=fields["b1"], b2=fields["b2"])
  elif name == "adamw":
    # Decay matrices only (nanoGPT, GPT-2): biases, norms and gains are not decayed.
    opt = optax.adamw(schedule, b1=fields["b1"], b2=fields["b2"],
                      weight_decay=fields["weight_decay"],
                      mask=lambda params: jax.tree.map(lambda p: p.ndim >= 2, params))
  elif name == "sgd":
    opt = optax.sgd(schedule, momentum=fields["b1"] or None)
  else:
    raise UserError(f"Unknown optimizer.name {name!r}; use 'adam', 'adamw' or 'sgd'.")
  if fields["grad_clip_norm"]:
    opt = optax.chain(optax.clip_by_global_norm(fields["grad_clip_norm"]), opt)
  return opt, schedule
