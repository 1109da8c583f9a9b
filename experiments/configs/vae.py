r"""VAE / beta-VAE (Kingma & Welling 2014, arXiv:1312.6114).

  python -m experiments.train --config=experiments/configs/vae.py:digits --workdir=/tmp/vae
  python -m experiments.train --config=experiments/configs/vae.py:mnist_idx --workdir=/tmp/vae_mnist

Datasets: digits (default, embedded), mnist_idx (mnist10k from ../shared/data/mnist).
Measured figures are in README.md with the commands that gave them.
"""
from experiments.configs.common import base_config


def get_config(arg: str = "digits"):
  config = base_config("vae", arg)
  config.model.encoder = "conv"          # conv | mlp
  config.model.channels = (32, 64)       # stride-2 conv stages (8x8 -> 4x4 -> 2x2)
  config.model.hidden = (256, 256)       # MLP widths when encoder == "mlp"
  config.model.latent_dim = 16
  config.model.decoder = "categorical"   # categorical | logistic | bernoulli (binarized data)
  config.model.beta = 1.0                # beta-VAE weight on the KL
  config.model.eval_num_samples = 1      # k of the IWAE bound log_likelihood reports (1 = ELBO)
  config.batch_size = 64
  config.num_train_steps = 1_000         # digits has 1,437 training images: longer overfits
  config.optimizer.learning_rate = 2e-3
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 100
  config.eval_every_steps = 500
  config.sample_every_steps = 500
  if arg == "mnist_idx":
    config.model.latent_dim = 32
    config.model.decoder = "logistic"
    config.batch_size = 128
    config.num_train_steps = 4_000
  return config
