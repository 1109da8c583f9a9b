r"""DiT (Peebles & Xie 2023, arXiv:2212.09748) as the network of EDM: a transformer over
image patches with adaLN-Zero conditioning on the noise level (and the class, for
classifier-free guidance), in place of the U-Net. Any diffusion objective takes it with
--config.model.net=dit (ddpm.py, score_sde.py, flow_matching.py, edm.py).

  python -m experiments.train --config=experiments/configs/dit.py:digits --workdir=/tmp/dit
  python -m experiments.sample --workdir=/tmp/dit --out=/tmp/dit.png
  python -m experiments.evaluate --workdir=/tmp/dit      # ODE bits/dim (dequantised: a bound)

Args: digits (patch 2: 16 tokens; width 96, 4 blocks, 4 heads: 0.72M parameters, the
digits U-Net's 0.70M), mnist_idx (patch 2: 196 tokens; width 128, 6 blocks), and
digits_cond / mnist_idx_cond (class-conditional, guided).
"""
from experiments.configs import edm as edm_config
from experiments.configs.common import model_fields
from gen_jax.paradigms import diffusion

SIZES = {'digits': dict(patch_size=2, dit_width=96, dit_depth=4, dit_heads=4),
         'mnist_idx': dict(patch_size=2, dit_width=128, dit_depth=6, dit_heads=4)}


def get_config(arg: str = 'digits'):
  name = arg[:-len('_cond')] if arg.endswith('_cond') else arg
  if name not in SIZES:
    raise ValueError(f"Unknown dit config arg {arg!r}; use one of {tuple(SIZES)} (or _cond).")
  config = edm_config.get_config(arg)
  for unet_field in diffusion.UNET_FIELDS:
    del config.model[unet_field]
  config.model.update(model_fields(diffusion.DiffusionFields, *diffusion.DIT_FIELDS,
                                   net='dit', **SIZES[name]))
  return config
