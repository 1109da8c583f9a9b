"""Optax optimizers from the config's `optimizer` sub-config."""
from __future__ import annotations

import jax
import optax

from gen_jax.errors import UserError

_FIELDS = ("name", "learning_rate", "schedule", "warmup_steps", "final_lr_factor",
           "b1", "b2", "weight_decay", "grad_clip_norm")
_OPTIONAL_FIELDS = {"warmup_offset": 0}   # fields a config may leave out, with their defaults


def player_config(opt_config, player: str | None) -> dict:
  """The optimizer fields for one player: the defaults updated by per_player[player]."""
  fields = {k: opt_config[k] for k in _FIELDS}
  fields.update({k: opt_config.get(k, v) for k, v in _OPTIONAL_FIELDS.items()})
  overrides = dict(opt_config.get("per_player", {}) or {})
  if player is not None and player in overrides:
    extra = dict(overrides[player])
    unknown = set(extra) - set(_FIELDS) - set(_OPTIONAL_FIELDS)
    if unknown:
      raise UserError(f"Unknown optimizer field(s) {sorted(unknown)} in "
                      f"optimizer.per_player.{player}; known: {list(_FIELDS) + list(_OPTIONAL_FIELDS)}.")
    fields.update(extra)
  return fields


def learning_rate_schedule(fields: dict, num_train_steps: int) -> optax.Schedule:
  """lr_s for update s = 0, 1, ...: a linear warmup lr (s + k) / (W + k) for s < W
  (W = warmup_steps, k = warmup_offset: 0 starts from zero; nanoGPT's get_lr uses k = 1),
  then constant, or cosine from lr to lr * final_lr_factor at s = num_train_steps."""
  lr, warmup = fields["learning_rate"], int(fields["warmup_steps"])
  offset = float(fields.get("warmup_offset", 0))
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
      [optax.linear_schedule(lr * offset / (warmup + offset), lr, warmup), decay], [warmup])


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
