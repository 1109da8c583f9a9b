"""Kept for tests/test_latent_diffusion.py only: `with_steps` lives in gen_jax.eval.speed."""
from gen_jax.eval.speed import with_steps  # noqa: F401
