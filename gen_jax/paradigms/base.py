"""The one interface every paradigm implements (DESIGN.md, "The one interface").

A paradigm is an immutable NamedTuple of pure functions, built by the module
`gen_jax.paradigms.<name>` through `make(model_config, info) -> Paradigm`, where
`info` is the dataset's `gen_jax.data.DatasetInfo` (shape, levels, classes,
vocabulary). The training loop sees only this object.

Contracts
---------
* ``init(rng, example_batch) -> params``: a pytree. A multi-player paradigm
  (a GAN) returns ``{player: params_of_player, ...}``.
* ``loss(params, batch, rng) -> (scalar, metrics)``: pure and jittable.
  A multi-player paradigm gives ``loss`` as a mapping ``{player: loss_fn}``;
  each ``loss_fn`` takes the *whole* params dict and the loop differentiates it
  with respect to ``params[player]`` only.
* ``update_schedule``: for multi-player paradigms, the order in which the loop
  updates the players inside one training step, e.g.
  ``('discriminator',) * n_critic + ('generator',)``. Each update sees the same
  batch and the key ``fold_in(step_key, i)`` for its position ``i``.
  Empty for single-player paradigms.
* ``sample(params, rng, num, **options) -> samples``: images as float32 in
  [0, 1] (level k of L maps to k / (L - 1)), shape [num, H, W, C]; 2-D points as
  float32 [num, 2]; token sequences as int32 [num, T]. Options a paradigm may
  accept (each optional): ``temperature``, ``top_k``, ``top_p``, ``prompt``
  (a string), ``label`` (int class for conditional models), ``guidance``,
  ``num_steps``, ``return_trajectory`` (then returns ``(samples, trajectory)``
  with trajectory [steps, num, ...] in the same units as samples).
  A paradigm raises ``TypeError`` for options it does not take.
* ``log_likelihood(params, batch, rng) -> [B]`` log-likelihood in nats per
  example, *on the data's own discrete levels* (for images: integer levels
  0..L-1, so a uniform model gives -D log L; a continuous model of dequantized
  data reports its density on [0, L)^D, a lower bound on the discrete
  probability). ``None`` when the family has none (GANs).
  ``likelihood_is_exact`` says whether it is exact or a bound.

Optional fields of tokenizers (stage 1 of a two-stage model; see
`gen_jax.workdir` and the "encoded" dataset of `gen_jax.data`):

* ``encode(params, x_levels) -> code``: images as integer levels
  (``batch['image']``, [B, H, W, C]) to their code: int32 indices [B, h, w] of a
  codebook (VQ-VAE) or float32 latents [B, ...] (VAE: the posterior mean).
* ``decode(params, code) -> images`` float32 in [0, 1], [B, H, W, C]: the mean
  of the decoder's p(x | code) over the levels.
* ``decoder_log_likelihood(params, code, x_levels) -> [B]``: log p(x | code) in
  nats on the data's levels, the decoder's term of a two-stage bound
  -log p(x) <= -log p(x | code) - log p(code) (deterministic encoders).

Model fields
------------
A paradigm's `config.model` fields are a frozen dataclass in its module, `Fields`,
which holds each field's type and its one default (as vdm's `VDMConfig` and Flax
lm1b's `TransformerConfig` do); a family's shared fields are a base class there
(`gen_jax.paradigms.diffusion.DiffusionFields`, `.flow.ImageFlowFields`,
`.gpt.TransformerFields`). `make` reads `config.model` once,
``fields = parse_model_config(Fields, model_config)``: a field the config lacks (a saved
run older than the field, a hand-made config) takes its default, and a name that is no
field is refused with a `UserError` that lists the fields. The config files build
`config.model` from the same dataclass (`experiments/configs/common.py: model_fields`).

``source``: what built the paradigm when it is not plain ``make(config.model,
info)`` of ``config.paradigm``'s module, e.g. a GAN around a user's own
adversarial loss (``gen_jax.paradigms.gan.build`` fills it in). A run trained
with such a paradigm records it in ``config.json`` and ``eval.json``.

Optional fields for non-gradient state (e.g. a VQ-VAE codebook updated by
exponential moving averages):

* ``non_trainable``: names of parameter-tree keys; every leaf with one of them
  anywhere in its dict path is left alone by the optimizer (no gradient step,
  no optimizer moments, no weight decay, outside gradient clipping and the
  logged grad_norm).
* ``post_update(params, batch, rng) -> params``: called by the loop once per
  training step after the optimizer step(s), with the updated params and the
  key ``fold_in(step_key, 1 + len(update_schedule))``; it alone writes the
  non_trainable leaves. They live in params, so checkpoints, resume, EMA of
  parameters and mesh shardings treat them like any parameter.
"""
from __future__ import annotations

import dataclasses
import typing
from typing import Any, Callable, Collection, Mapping, NamedTuple, Optional, TypeVar, Union

from gen_jax.errors import UserError

LossFn = Callable[[Any, Mapping[str, Any], Any], tuple]


class Paradigm(NamedTuple):
  init: Callable
  loss: Union[LossFn, Mapping[str, LossFn]]
  sample: Callable
  log_likelihood: Optional[Callable] = None
  likelihood_is_exact: bool = False
  update_schedule: tuple[str, ...] = ()
  encode: Optional[Callable] = None
  decode: Optional[Callable] = None
  decoder_log_likelihood: Optional[Callable] = None
  non_trainable: tuple[str, ...] = ()
  post_update: Optional[Callable] = None
  source: str = ""

  @property
  def players(self) -> tuple[str, ...]:
    """Names of the parameter groups the loop optimises; () = the whole tree."""
    if callable(self.loss):
      return ()
    return tuple(self.loss)


F = TypeVar("F")


def parse_model_config(fields_class: type[F], model_config, *, strict: bool = True,
                       accept: Collection[str] = ()) -> F:
  """`config.model` (a ConfigDict, a dict, None or a fields dataclass) -> `fields_class(...)`.

  A field the config lacks takes the dataclass default; JSON's lists (a workdir's saved
  config.json) become the tuples the fields declare, and ints given for float fields become
  floats. An instance of `fields_class` (or of a subclass: a paradigm's fields given to its
  family's building blocks) is returned as it is.

  Args:
    fields_class: a frozen dataclass of model fields, e.g. `gen_jax.paradigms.ddpm.Fields`.
    model_config: the fields' values.
    strict: refuse a name that is no field (UserError naming it and listing the fields);
      False reads the class's fields and leaves the other names to the caller (a family's
      building blocks, which a paradigm's `make` calls after its own strict parse).
    accept: names that are no field of the class but are accepted (and left unread).
  """
  if isinstance(model_config, fields_class):
    return model_config
  if model_config is None:
    values = {}
  elif dataclasses.is_dataclass(model_config):
    values = {f.name: getattr(model_config, f.name) for f in dataclasses.fields(model_config)}
  else:
    values = dict(model_config.to_dict() if hasattr(model_config, "to_dict") else model_config)
  fields = {f.name: f for f in dataclasses.fields(fields_class)}
  unknown = sorted(set(values) - set(fields) - set(accept))
  if strict and unknown:
    raise UserError(
        f"config.model has no field {', '.join(map(repr, unknown))}: the fields of "
        f"{fields_class.__module__}.{fields_class.__qualname__} are {', '.join(sorted(fields))}. "
        "Correct or remove the name (e.g. a typo in --config.model.<field>).")
  missing = sorted(name for name, f in fields.items() if name not in values
                   and f.default is dataclasses.MISSING
                   and f.default_factory is dataclasses.MISSING)
  if missing:
    raise UserError(f"config.model lacks the field(s) {', '.join(missing)} of "
                    f"{fields_class.__qualname__}, which have no default; set them.")
  hints = typing.get_type_hints(fields_class)
  return fields_class(**{k: _as_declared(hints[k], v) for k, v in values.items() if k in fields})


def _as_declared(hint, value):
  """`value` as the field's type declares it, where that loses nothing: list -> tuple,
  int -> float; anything else is left for the paradigm to check."""
  if typing.get_origin(hint) is tuple and isinstance(value, list):
    return tuple(value)
  if hint is float and isinstance(value, int) and not isinstance(value, bool):
    return float(value)
  return value
