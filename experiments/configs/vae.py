r"""VAE / beta-VAE (Kingma & Welling 2014, arXiv:1312.6114).

  python -m experiments.train --config=experiments/configs/vae.py:digits --workdir=/tmp/vae
  python -m experiments.train --config=experiments/configs/vae.py:mnist_idx --workdir=/tmp/vae_mnist

Datasets: digits (default, embedded), mnist_idx (mnist10k from ../shared/data/mnist).
Measured figures are in README.md with the commands that gave them.
"""
from experiments.configs.common import base_config, model_fields
from gen_jax.paradigms import vae


def get_config(arg: str = "digits"):
  config = base_config("vae", arg)
  # The fields and their defaults: gen_jax.paradigms.vae.Fields.
  config.model = model_fields(vae.Fields, "encoder", "channels", "hidden", "latent_dim",
                              "decoder", "beta", "eval_num_samples")
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
