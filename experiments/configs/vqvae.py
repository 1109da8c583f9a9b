r"""VQ-VAE (van den Oord et al. 2017, arXiv:1711.00937): stage 1 of vq_gpt / maskgit / text2image.

  python -m experiments.train --config=experiments/configs/vqvae.py:digits --workdir=/tmp/gen_jax/vqvae_digits
  python -m experiments.train --config=experiments/configs/vqvae.py:mnist_idx --workdir=/tmp/gen_jax/vqvae_mnist

The workdirs above are the ones the stage-2 configs (vq_gpt.py, ...) read by default.
Datasets: digits (default, embedded; 8x8 -> a 4x4 grid of 64 codes), mnist_idx (mnist10k from
../shared/data/mnist; 28x28 -> 7x7 of 128 codes). `bits_per_dim` of the evaluation is the bound
under a uniform code prior; `recon_bits_per_dim` in metrics.jsonl is -log2 p(x | z_q) per
sub-pixel.

Measured (digits, defaults, this 2-core CPU under load 17-30, 5.5 min): test recon 1.37 bits/dim
(train 0.83), uniform-prior bound 2.87 bits/dim, code perplexity 45.5 of 64, no unused codes.
"""
from experiments.configs.common import base_config, model_fields
from gen_jax.paradigms import vqvae


def get_config(arg: str = "digits"):
  config = base_config("vqvae", arg)
  # The fields and their defaults (8x8 -> a 4x4 grid of K = 64 codes of 16 dimensions):
  # gen_jax.paradigms.vqvae.Fields.
  config.model = model_fields(vqvae.Fields, "channels", "code_dim", "num_codes", "decoder",
                              "beta", "codebook_update", "codebook_decay", "dead_code_threshold")
  config.batch_size = 64
  config.num_train_steps = 2_000
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 100
  config.eval_every_steps = 1_000
  config.sample_every_steps = 1_000
  if arg == "mnist_idx":
    config.model.channels = (32, 64)       # 28x28 -> 7x7
    config.model.code_dim = 32
    config.model.num_codes = 128
    config.model.decoder = "logistic"
    config.batch_size = 128
    config.num_train_steps = 3_000
  return config
