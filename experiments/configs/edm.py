r"""EDM (Karras et al. 2022, arXiv:2206.00364): preconditioned denoiser, log-normal sigma,
Heun sampler with the rho = 7 schedule (35 NFE at 18 steps) and optional churn.

  python -m experiments.train --config=experiments/configs/edm.py:digits --workdir=/tmp/edm
  python -m experiments.sample --workdir=/tmp/edm --out=/tmp/edm.png --num_steps=18
  python -m experiments.evaluate --workdir=/tmp/edm      # ODE bits/dim (dequantised: a bound)

Args: digits | mnist_idx | eight_gaussians | checkerboard | moons | swiss_roll,
digits_cond | mnist_idx_cond.
"""
from experiments.configs._diffusion import TOY2D, base_diffusion_config


def get_config(arg: str = 'digits'):
  config = base_diffusion_config('edm', arg)
  m = config.model
  m.sigma_data = 1.4 if arg in TOY2D else 0.5     # data std (images in [-1, 1]: 0.5)
  m.p_mean, m.p_std = -1.2, 1.2                   # ln sigma ~ N(p_mean, p_std^2)
  m.sigma_min, m.sigma_max, m.rho = 0.002, 80.0, 7.0
  m.num_steps = 18                                # Heun: NFE = 2 * 18 - 1 = 35
  m.heun = True
  m.s_churn, m.s_tmin, m.s_tmax, m.s_noise = 0.0, 0.0, 1e9, 1.0   # churn off
  m.trace = 'hutchinson'
  m.rtol, m.atol = 1e-5, 1e-5
  return config
