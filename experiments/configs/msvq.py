r"""Multi-scale residual VQ-VAE (VAR's tokenizer, Tian et al. 2024, arXiv:2404.02905): stage 1 of var.

  python -m experiments.train --config=experiments/configs/msvq.py:digits --workdir=/tmp/gen_jax/msvq_digits
  python -m experiments.train --config=experiments/configs/msvq.py:mnist_idx --workdir=/tmp/gen_jax/msvq_mnist

The workdirs above are the ones var.py reads by default. Datasets: digits (default, embedded;
the 8x8 image's own resolution quantised at scales 1, 2, 4, 8: 85 tokens of 64 codes), mnist_idx
(mnist10k from ../shared/data/mnist; 28x28 -> a 7x7 feature map at scales 1, 2, 3, 4, 5, 7:
104 tokens of 128 codes). `bits_per_dim` of the evaluation is the bound under a uniform code
prior; `recon_bits_per_dim` in metrics.jsonl is -log2 p(x | f_hat) per sub-pixel.

Measured (digits, defaults, this 2-core CPU under load ~9, 5 min): test recon 1.18 bits/dim
(vqvae.py:digits: 1.31), uniform-prior bound 9.15 bits/dim (85 tokens x log 64), code perplexity
12.8 of 64. With --config.model.channels='(64,)' --config.model.scales='(1,2,4)' (vqvae's 4x4
grid, 21 tokens): recon 1.60. More in results/emerging/var.md.
"""
from experiments.configs.common import base_config, field_names, model_fields
from gen_jax.paradigms import msvq

ARGS = ("digits", "mnist_idx")


def get_config(arg: str = "digits"):
  if arg not in ARGS:
    raise ValueError(f"Unknown msvq config arg {arg!r}; use one of {ARGS}.")
  config = base_config("msvq", arg)
  # The fields and their defaults (8x8 at scales 1, 2, 4, 8; K = 64 codes of 16 dimensions):
  # gen_jax.paradigms.msvq.Fields.
  config.model = model_fields(msvq.Fields, *field_names(msvq.Fields))
  config.batch_size = 64
  config.num_train_steps = 2_000
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 100
  config.eval_every_steps = 1_000
  config.sample_every_steps = 1_000
  if arg == "mnist_idx":
    config.model.channels = (32, 64)       # 28x28 -> 7x7
    config.model.scales = (1, 2, 3, 4, 5, 7)
    config.model.code_dim = 32
    config.model.num_codes = 128
    config.model.decoder = "logistic"
    config.batch_size = 128
    config.num_train_steps = 3_000
  return config
