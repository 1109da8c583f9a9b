"""The config every diffusion paradigm (ddpm, score_sde, edm, flow_matching) starts from."""
from __future__ import annotations

import ml_collections

from experiments.configs.common import base_config, model_fields
from gen_jax.paradigms import diffusion

TOY2D = ('eight_gaussians', 'checkerboard', 'moons', 'swiss_roll')


def net_config(dataset: str, conditional: bool = False) -> ml_collections.ConfigDict:
  """Network and guidance fields of config.model (`diffusion.DiffusionFields`), sized to
  train on a CPU in minutes: the ScoreMLP's for points, the U-Net's for images."""
  fields = diffusion.DiffusionFields
  if dataset.startswith('toy2d') or dataset in TOY2D:
    m = model_fields(fields, *diffusion.MLP_FIELDS)
  elif dataset == 'cifar10':   # Ho et al. 2020's CIFAR-10 U-Net (35.7M parameters)
    m = model_fields(fields, channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2,
                     attn_resolutions=(16,), dropout=0.1, groups=32)
  elif dataset == 'digits':
    m = model_fields(fields, *diffusion.UNET_FIELDS, attn_resolutions=(4,))
  else:   # 28x28 (mnist_idx, mnist, fashion_mnist)
    m = model_fields(fields, *diffusion.UNET_FIELDS, channel_mult=(1, 2, 2),
                     attn_resolutions=(7,))
  m.update(model_fields(fields, *diffusion.GUIDANCE_FIELDS, conditional=conditional))
  return m


IMAGE_DATASETS = ('digits', 'mnist_idx', 'cifar10')


def base_diffusion_config(paradigm: str, arg: str):
  """The config every diffusion paradigm starts from, for `<paradigm>.py:<arg>`.

  arg: a dataset (digits | mnist_idx | eight_gaussians | checkerboard | moons | swiss_roll),
  optionally with '_cond' for the class-conditional model trained with label dropout
  (digits_cond, mnist_idx_cond), which samples with classifier-free guidance.
  """
  conditional = arg.endswith('_cond')
  name = arg[:-len('_cond')] if conditional else arg
  if name not in IMAGE_DATASETS + TOY2D:
    raise ValueError(f"Unknown {paradigm} config arg {arg!r}; use one of "
                     f"{IMAGE_DATASETS + TOY2D}, or digits_cond / mnist_idx_cond.")
  if conditional and name in TOY2D:
    raise ValueError(f"{arg!r}: toy2d data has no labels; drop the '_cond' suffix.")
  dataset = f'toy2d/{name}' if name in TOY2D else name
  config = base_config(paradigm, dataset)
  config.model = net_config(dataset, conditional)
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 100
  config.ema_decay = 0.999
  if name in TOY2D:
    config.batch_size = 256
    config.num_train_steps = 4_000
    config.eval_batch_size = 1000
    config.num_samples = 2000
  elif name == 'digits':
    config.batch_size = 64
    config.num_train_steps = 4_000
  elif name == 'cifar10':       # the paper's run: for 8 accelerators; plan it with --dry_run
    config.batch_size = 128
    config.num_train_steps = 800_000
    config.optimizer.learning_rate = 2e-4
    config.optimizer.schedule = 'constant'
    config.optimizer.warmup_steps = 5_000
    config.ema_decay = 0.9999
    config.mesh = 'data=8,fsdp=1'
  else:
    config.batch_size = 64
    config.num_train_steps = 6_000
    config.optimizer.learning_rate = 5e-4
    config.eval_max_examples = 64      # the loop's periodic eval (ODE likelihoods are slow on
                                       # a CPU); experiments.evaluate scores the whole split
  config.eval_every_steps = config.num_train_steps
  config.sample_every_steps = config.num_train_steps // 2
  config.checkpoint_every_steps = 1_000
  return config
