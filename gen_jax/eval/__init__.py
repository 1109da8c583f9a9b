"""Evaluation metrics: Fréchet distance and precision/recall on a classifier's
features, conditional accuracy. Import the submodules (`gen_jax.eval.frechet`, ...)."""
