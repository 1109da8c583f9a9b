r"""MaskGIT (Chang et al. 2022, arXiv:2202.04200) over a VQ-VAE's codes (stage 2).

Stage 1, then stage 2 (the stage-1 workdir is config.stage1.workdir; these are the defaults,
shared with vq_gpt.py so both priors read the same tokenizer):

  python -m experiments.train --config=experiments/configs/vqvae.py:digits --workdir=/tmp/gen_jax/vqvae_digits
  python -m experiments.train --config=experiments/configs/maskgit.py:digits --workdir=/tmp/maskgit
  python -m experiments.sample --workdir=/tmp/maskgit --out=/tmp/maskgit.png [--num_steps=12]
  python -m experiments.sample --workdir=/tmp/maskgit --animate=/tmp/maskgit.gif   # one frame a step

  (mnist_idx: vqvae.py:mnist_idx into /tmp/gen_jax/vqvae_mnist, then maskgit.py:mnist_idx.)

No likelihood: experiments.evaluate prints bits_per_dim: null (the masked-token loss is not
a likelihood of the codes). Sampling costs T = model.num_steps network evaluations for the
whole code grid (16 codes on digits, 49 on mnist_idx), vq_gpt's one per code.
Measured figures are in README.md with the commands that gave them.
"""
from experiments.configs.common import model_fields
from experiments.configs.vq_gpt import code_prior_config
from gen_jax.paradigms import maskgit


def get_config(arg: str = "digits"):
  config = code_prior_config("maskgit", arg)  # the GPT's transformer, used with causal=False
  # Decoding steps T and temperatures, at their defaults: gen_jax.paradigms.maskgit.Fields.
  config.model.update(model_fields(maskgit.Fields, "num_steps", "temperature",
                                   "choice_temperature"))
  if arg == "mnist_idx":
    config.model.embed_dim = 192
    config.batch_size = 128
    config.num_train_steps = 3_000
  return config
