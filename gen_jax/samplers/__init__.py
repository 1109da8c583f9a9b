"""Pure sampling functions. Never import gen_jax.train, gen_jax.data or experiments."""
