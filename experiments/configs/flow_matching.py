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


def get_config(arg: str = 'digits'):
  config = base_diffusion_config('flow_matching', arg)
  m = config.model
  m.sigma_min = 0.0             # 0 = rectified flow; Lipman et al. use a small sigma_min
  m.sampler = 'euler'           # euler | heun
  m.num_steps = 50
  m.trace = 'hutchinson'
  m.rtol, m.atol = 1e-5, 1e-5
  return config
