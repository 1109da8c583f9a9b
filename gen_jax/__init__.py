"""gen_jax: every family of generative model as pure JAX functions, one loop."""

__version__ = "0.1.0"
