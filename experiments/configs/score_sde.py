r"""Score SDEs (Song et al. 2021, arXiv:2011.13456): VP / sub-VP / VE, PC sampling and the
probability-flow ODE likelihood.

  python -m experiments.train --config=experiments/configs/score_sde.py:digits --workdir=/tmp/sde
  python -m experiments.train --config=experiments/configs/score_sde.py:digits --workdir=/tmp/ve --config.model.sde=ve
  python -m experiments.sample --workdir=/tmp/sde --out=/tmp/sde.png --num_steps=200
  python -m experiments.evaluate --workdir=/tmp/sde      # PF-ODE bits/dim (dequantised: a bound)

Args: digits | mnist_idx | eight_gaussians | checkerboard | moons | swiss_roll,
digits_cond | mnist_idx_cond.
"""
from experiments.configs._diffusion import base_diffusion_config


def get_config(arg: str = 'digits'):
  config = base_diffusion_config('score_sde', arg)
  m = config.model
  m.sde = 'vp'                  # vp | subvp | ve
  m.beta_min, m.beta_max = 0.1, 20.0      # vp, subvp
  m.sigma_min, m.sigma_max = 0.01, 50.0   # ve (sigma_max ~ the largest data distance)
  m.weighting = 'uniform'       # uniform (sigma^2) | likelihood (g^2)
  m.sampler = 'pc'              # pc | euler_maruyama | ode_heun | ode_euler
  m.num_steps = 0               # 0 = 500 (pc, euler_maruyama) or 100 (ode_*)
  m.snr = 0.16                  # Langevin corrector signal-to-noise ratio
  m.corrector_steps = 1
  m.sample_t_min = 1e-3         # sampling stops here, then one Tweedie denoising step
  m.trace = 'hutchinson'        # hutchinson | exact (divergence in the ODE likelihood)
  m.rtol, m.atol = 1e-5, 1e-5
  if arg.startswith('mnist_idx'):
    m.sigma_max = 80.0
    m.sampler, m.num_steps = 'ode_heun', 50    # 99 NFE instead of PC's 1000 on a CPU
  return config
