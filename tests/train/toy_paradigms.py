"""Paradigms defined outside the library, to test the loop's contract.

`config.paradigm = "tests.train.toy_paradigms"` loads `make` below; the model
field `kind` picks the toy.
"""
import jax.numpy as jnp

from gen_jax.paradigms.base import Paradigm


def make(model_config, info):
  kind = model_config.get("kind", "diverging")
  if kind == "diverging":
    # Gradient descent on w^2 with lr = 1.5 multiplies w by (1 - 2 * 1.5) = -2 per
    # step (w_s = (-2)^s); the gradient norm |2 w_s| is squared inside
    # optax.global_norm, which overflows float32 (max 3.4e38) first, at s = 63.
    def init(rng, batch):
      return {"w": jnp.ones(())}

    def loss(params, batch, rng):
      return params["w"] ** 2, {}

    def sample(params, rng, num):
      return jnp.zeros((num, *info.shape), jnp.float32)

    return Paradigm(init=init, loss=loss, sample=sample)
  if kind == "two_player":
    # Player "a" minimises (a - mean pixel)^2, player "b" minimises (b - a)^2.
    def init(rng, batch):
      return {"a": {"v": jnp.zeros(())}, "b": {"v": jnp.zeros(())}}

    def loss_a(params, batch, rng):
      target = jnp.mean(batch["image"].astype(jnp.float32))
      return (params["a"]["v"] - target) ** 2, {}

    def loss_b(params, batch, rng):
      return (params["b"]["v"] - params["a"]["v"]) ** 2, {}

    def sample(params, rng, num):
      return jnp.full((num, *info.shape), params["a"]["v"] / 16.0)

    schedule = tuple(model_config.get("schedule", ("a", "a", "b")))
    return Paradigm(init=init, loss={"a": loss_a, "b": loss_b}, sample=sample,
                    update_schedule=schedule)
  raise ValueError(f"unknown toy {kind!r}")
