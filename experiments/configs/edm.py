r"""EDM (Karras et al. 2022, arXiv:2206.00364): preconditioned denoiser, log-normal sigma,
Heun sampler with the rho = 7 schedule (35 NFE at 18 steps) and optional churn.

  python -m experiments.train --config=experiments/configs/edm.py:digits --workdir=/tmp/edm
  python -m experiments.sample --workdir=/tmp/edm --out=/tmp/edm.png --num_steps=18
  python -m experiments.evaluate --workdir=/tmp/edm      # ODE bits/dim (dequantised: a bound)

Args: digits | mnist_idx | eight_gaussians | checkerboard | moons | swiss_roll,
digits_cond | mnist_idx_cond.
"""
from experiments.configs._diffusion import TOY2D, base_diffusion_config
from experiments.configs.common import model_fields
from gen_jax.paradigms import edm


def get_config(arg: str = 'digits'):
  config = base_diffusion_config('edm', arg)
  m = config.model                 # the fields and their defaults: gen_jax.paradigms.edm.Fields
  m.update(model_fields(edm.Fields, 'sigma_data', 'p_mean', 'p_std', 'sigma_min', 'sigma_max',
                        'rho', 'heun', 's_churn', 's_tmin', 's_noise', 'trace', 'rtol', 'atol',
                        num_steps=18,      # Heun: NFE = 2 * 18 - 1 = 35
                        s_tmax=1e9))       # churn is off (s_churn = 0) either way
  if arg in TOY2D:
    m.sigma_data = 1.4             # the toy sets' std
  return config
