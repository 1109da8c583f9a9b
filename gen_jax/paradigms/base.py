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

from typing import Any, Callable, Mapping, NamedTuple, Optional, Union

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
