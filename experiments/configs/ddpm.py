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
Measured figures: results/diffusion/README.md (python -m experiments.benchmark --suite=diffusion).
"""
from experiments.configs._diffusion import base_diffusion_config
from experiments.configs.common import model_fields
from gen_jax.paradigms import ddpm


def get_config(arg: str = 'digits'):
  config = base_diffusion_config('ddpm', arg)
  m = config.model                 # the fields and their defaults: gen_jax.paradigms.ddpm.Fields
  m.update(model_fields(ddpm.Fields, 'num_diffusion_steps', 'schedule', 'prediction',
                        'sampler', 'num_steps', 'eta', 'ddim_spacing', 'variance',
                        vlb_num_steps=100))   # L_0, L_T and 100 stratified KL terms: CPU-fast eval
  if arg.startswith('mnist_idx'):   # 1000 28x28 U-Net passes per sample are slow on a CPU:
    m.sampler, m.num_steps = 'ddim', 100       # stochastic DDIM (98 NFE), near ancestral
    m.eta, m.ddim_spacing = 0.5, 'quadratic'   # quality on digits (benchmark nfe part)
  return config
