r"""VQ-GPT: a GPT prior over a VQ-VAE's codes (stage 2; van den Oord et al. 2017, Esser et al. 2021).

Stage 1, then stage 2 (the stage-1 workdir is config.stage1.workdir; these are the defaults):

  python -m experiments.train --config=experiments/configs/vqvae.py:digits --workdir=/tmp/gen_jax/vqvae_digits
  python -m experiments.train --config=experiments/configs/vq_gpt.py:digits --workdir=/tmp/vq_gpt
  python -m experiments.evaluate --workdir=/tmp/vq_gpt      # bits/dim: a bound (two stages)
  python -m experiments.sample --workdir=/tmp/vq_gpt --out=/tmp/vq_gpt.png

  (mnist_idx: vqvae.py:mnist_idx into /tmp/gen_jax/vqvae_mnist, then vq_gpt.py:mnist_idx.)

The first stage-2 run encodes the stage-1 dataset once into the cached dataset "encoded"
(gen_jax.data.encoded). A stage-1 run whose saved config differs from config.stage1 (paradigm,
dataset, model.num_codes), or that is unfinished, is refused with a message. Another stage-1
run: --config.stage1.workdir=DIR (and its fields).

Measured (digits, defaults, on the vqvae.py:digits run above; 2.5 min under load ~28): test bound
2.52 bits/dim (recon 1.37 + prior 1.15; the uniform code prior gives 2.87).
"""
from experiments.configs.common import base_config, field_names, model_fields, stage1_config
from gen_jax.paradigms import gpt, vq_gpt

# The stage-1 run each dataset arg reads, and the stage-1 fields it must have.
STAGE1 = {"digits": ("/tmp/gen_jax/vqvae_digits", 64), "mnist_idx": ("/tmp/gen_jax/vqvae_mnist", 128)}


def code_prior_config(paradigm: str, arg: str):
  """The fields every transformer prior over stage-1 VQ codes shares (vq_gpt, maskgit, text2image):
  its stage 1, the GPT's transformer sizes and nanoGPT-style AdamW with a cosine schedule."""
  if arg not in STAGE1:
    raise ValueError(f"Unknown {paradigm} config arg {arg!r}; use one of {tuple(STAGE1)}.")
  config = base_config(paradigm, "encoded")
  workdir, num_codes = STAGE1[arg]
  config.stage1 = stage1_config(workdir, paradigm="vqvae", dataset=arg, model=dict(num_codes=num_codes))
  # The transformer's fields and their defaults (4 layers, 4 heads, 128 wide):
  # gen_jax.paradigms.gpt.TransformerFields.
  config.model = model_fields(gpt.TransformerFields, *field_names(gpt.TransformerFields),
                              dropout=0.1)
  config.batch_size = 64
  config.num_train_steps = 2_000
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.1
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 100
  config.eval_every_steps = 1_000
  config.sample_every_steps = 1_000
  return config


def get_config(arg: str = "digits"):
  config = code_prior_config("vq_gpt", arg)
  config.model.update(model_fields(vq_gpt.Fields, "class_conditional"))   # gen_jax.paradigms.vq_gpt
  config.num_train_steps = 1_000
  config.eval_every_steps = 500
  if arg == "digits":
    config.model.num_layers = 2           # 16 codes a digit, 1,437 training digits: a small prior
    config.model.embed_dim = 64
    config.model.dropout = 0.2             # 4 layers x 128 wide overfit (test bound 2.53 -> 2.86 over 2,000 steps)
  if arg == "mnist_idx":
    config.batch_size = 128
    config.num_train_steps = 3_000
  return config
