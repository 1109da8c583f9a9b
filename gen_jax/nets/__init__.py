"""Flax linen modules only. Never import gen_jax.train, gen_jax.data or experiments."""
