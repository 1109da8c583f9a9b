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
from experiments.configs.common import model_fields
from gen_jax.paradigms import score_sde


def get_config(arg: str = 'digits'):
  config = base_diffusion_config('score_sde', arg)
  m = config.model                 # the fields and their defaults: gen_jax.paradigms.score_sde.Fields
  m.update(model_fields(score_sde.Fields, 'sde', 'beta_min', 'beta_max', 'sigma_min',
                        'sigma_max', 'weighting', 'sampler', 'num_steps', 'snr',
                        'corrector_steps', 'sample_t_min', 'trace', 'rtol', 'atol'))
  if arg.startswith('mnist_idx'):
    m.sigma_max = 80.0
    m.sampler, m.num_steps = 'ode_heun', 50    # 99 NFE instead of PC's 1000 on a CPU
  return config
