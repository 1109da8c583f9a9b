r"""Conditional flow matching / rectified flow (Lipman et al. arXiv:2210.02747; Liu et al.
arXiv:2209.03003): straight noise-to-data paths, Euler / Heun sampling, ODE likelihood.

  python -m experiments.train --config=experiments/configs/flow_matching.py:digits --workdir=/tmp/fm
  python -m experiments.sample --workdir=/tmp/fm --out=/tmp/fm.png --num_steps=20
  python -m experiments.sample --workdir=/tmp/fm --animate=/tmp/fm.gif
  python -m experiments.evaluate --workdir=/tmp/fm       # ODE bits/dim (dequantised: a bound)

Args: digits | mnist_idx | eight_gaussians | checkerboard | moons | swiss_roll,
digits_cond | mnist_idx_cond.
"""
from experiments.configs._diffusion import base_diffusion_config
from experiments.configs.common import model_fields
from gen_jax.paradigms import flow_matching


def get_config(arg: str = 'digits'):
  config = base_diffusion_config('flow_matching', arg)
  # The fields and their defaults: gen_jax.paradigms.flow_matching.Fields.
  config.model.update(model_fields(flow_matching.Fields, 'sigma_min', 'sampler', 'trace', 'rtol',
                                   'atol', num_steps=50))
  return config
