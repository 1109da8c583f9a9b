r"""DDPM (Ho et al. 2020, arXiv:2006.11239): eps / x0 / v prediction, linear or cosine betas.

  python -m experiments.train --config=experiments/configs/ddpm.py:digits --workdir=/tmp/ddpm
  python -m experiments.train --config=experiments/configs/ddpm.py:digits_cond --workdir=/tmp/ddpm_c
  python -m experiments.sample --workdir=/tmp/ddpm --out=/tmp/ddpm.png
  python -m experiments.sample --workdir=/tmp/ddpm_c --label=3 --guidance=2 --out=/tmp/three.png
  python -m experiments.sample --workdir=/tmp/ddpm --animate=/tmp/ddpm.gif
  python -m experiments.evaluate --workdir=/tmp/ddpm     # VLB bits/dim (a bound): model.vlb_num_steps
                                                         # terms (100: an unbiased estimate)
  python -m experiments.evaluate --workdir=/tmp/ddpm --vlb_num_steps=0   # all T terms

Args: digits | mnist_idx | eight_gaussians | checkerboard | moons | swiss_roll, and the
class-conditional digits_cond | mnist_idx_cond (label dropout, classifier-free guidance),
and cifar10: Ho et al.'s 35.7M-parameter U-Net and schedule for 8 devices, to plan with
`python -m experiments.train --config=experiments/configs/ddpm.py:cifar10 --workdir=X --dry_run`.
Measured figures: README.md and experiments/benchmarks/diffusion.py.
"""
from experiments.configs._diffusion import base_diffusion_config


def get_config(arg: str = 'digits'):
  config = base_diffusion_config('ddpm', arg)
  m = config.model
  m.num_diffusion_steps = 1000   # T
  m.schedule = 'linear'          # linear | cosine
  m.prediction = 'eps'           # eps | x0 | v
  m.sampler = 'ancestral'        # ancestral (T steps) | ddim (num_steps, eta)
  m.num_steps = 0                # 0 = T for ancestral, 50 for ddim
  m.eta = 0.0                    # DDIM: 0 deterministic, 1 = ancestral with beta_tilde
  m.ddim_spacing = 'uniform'     # DDIM steps: uniform | quadratic (more at low noise)
  m.variance = 'beta'            # reverse-process variance: beta | beta_tilde
  m.vlb_num_steps = 100          # VLB terms in log_likelihood: 0 = all T; K = L_0 and L_T
                                 # exactly + an unbiased estimate of the T-1 KL terms from K
                                 # stratified steps (CPU-fast eval)
  if arg.startswith('mnist_idx'):   # 1000 28x28 U-Net passes per sample are slow on a CPU:
    m.sampler, m.num_steps = 'ddim', 100       # stochastic DDIM (98 NFE), near ancestral
    m.eta, m.ddim_spacing = 0.5, 'quadratic'   # quality on digits (benchmark nfe part)
  return config
