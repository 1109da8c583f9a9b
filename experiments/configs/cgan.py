r"""Conditional GAN: class-conditional G, projection D (arXiv:1411.1784, arXiv:1802.05637).

  python -m experiments.train --config=experiments/configs/cgan.py:digits --workdir=/tmp/cgan
  python -m experiments.sample --workdir=/tmp/cgan --per_class --num=10 --out=/tmp/cgan.png

Args: digits | mnist_idx (labelled images only; toy2d data carries no labels).
Every field is the GAN's (experiments/configs/gan.py), the loss included
(`config.model.loss`); the paradigm is `gen_jax.paradigms.cgan`.
"""
from experiments.configs import gan

_ARGS = ("digits", "mnist_idx")


def get_config(arg: str = "digits"):
  if arg not in _ARGS:
    raise ValueError(f"Unknown cgan config arg {arg!r}; use one of {_ARGS} "
                     "(the conditional GAN needs labelled images).")
  return gan.get_config(arg, paradigm="cgan")
