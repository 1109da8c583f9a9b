r"""Latent diffusion on a frozen VAE's latents (Rombach et al. 2022, arXiv:2112.10752).

Stage 1, the VAE (its posterior means are the latents):
  python -m experiments.train --config=experiments/configs/vae.py:digits --workdir=/tmp/gen_jax/vae_digits
Stage 2, diffusion on the standardised latents (its first run encodes the dataset once):
  python -m experiments.train --config=experiments/configs/latent_diffusion.py:digits --workdir=/tmp/ld
  python -m experiments.sample --workdir=/tmp/ld --out=/tmp/ld.png
A VAE trained elsewhere: add --config.stage1.workdir=DIR (its saved config must have the
paradigm, dataset and model.latent_dim that config.stage1 expects, or the run is refused).

Args: digits | mnist_idx (stage 1: vae.py:mnist_idx in /tmp/gen_jax/vae_mnist_idx).
The objective is `model.objective` (edm | ddpm | score_sde | flow_matching, each with its own
paradigm's model fields); EDM by default with sigma_data = 1, the std of the standardised
latents. No likelihood (gen_jax/paradigms/latent_diffusion.py says why): scored by FD.

Measured (2026-11-26, 2-core CPU at load ~27; both stages at these defaults, stage 1 =
vae.py:digits, test ELBO 2.043 bits/dim): `python -m experiments.evaluate --workdir=/tmp/ld`
gives FD (digits classifier) 48.6, precision 0.93, recall 0.19 (1,000 samples vs the 360 test
images); the VAE's own prior samples score FD 74.0 and its reconstructions of the test
images 37.6 (the floor a prior over these latents can reach). 4,000 steps took 70 s.
"""
from experiments.configs import vae
from experiments.configs.common import base_config, model_fields, stage1_config
from gen_jax.paradigms import diffusion, latent_diffusion

DATASETS = ('digits', 'mnist_idx')


def get_config(arg: str = 'digits'):
  if arg not in DATASETS:
    raise ValueError(f"Unknown latent_diffusion config arg {arg!r}; use one of {DATASETS}.")
  latent_dim = vae.get_config(arg).model.latent_dim
  config = base_config('latent_diffusion', 'encoded')
  # The stage-1 run and what its saved config must hold (checked when it is loaded).
  config.stage1 = stage1_config(f'/tmp/gen_jax/vae_{arg}', paradigm='vae', dataset=arg,
                                model=dict(latent_dim=latent_dim))
  # The fields and their defaults: gen_jax.paradigms.latent_diffusion.fields_class('edm'),
  # i.e. latent_diffusion.Fields and edm.Fields.
  config.model = model_fields(
      latent_diffusion.fields_class('edm'), 'objective', 'num_layers', *diffusion.GUIDANCE_FIELDS,
      hidden=256,               # ScoreMLP width on the latent vector
      sigma_data=1.0,           # EDM: std of the data = 1 for standardised latents
      num_steps=18)             # EDM Heun steps (NFE = 2 * 18 - 1 = 35)
  config.batch_size = 128
  config.num_train_steps = 4_000 if arg == 'digits' else 8_000
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 100
  config.ema_decay = 0.999
  config.eval_every_steps = config.num_train_steps
  config.sample_every_steps = config.num_train_steps // 2
  config.checkpoint_every_steps = 1_000
  return config
