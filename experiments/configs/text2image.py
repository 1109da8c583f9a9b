r"""text2image: a small DALL-E-style model (Ramesh et al. 2021, arXiv:2102.12092) on digits or mnist_idx.

A GPT over [BOS, caption tokens, VQ codes]: captions are drawn from the labels with varied
wording ("a handwritten seven", "the digit 7", "seven", ...; gen_jax/data/captions.py), the
codes are those of a stage-1 VQ-VAE (config.stage1, shared with vq_gpt.py / maskgit.py).

  python -m experiments.train --config=experiments/configs/vqvae.py:digits --workdir=/tmp/gen_jax/vqvae_digits
  python -m experiments.train --config=experiments/configs/text2image.py:digits --workdir=/tmp/t2i
  python -m experiments.sample --workdir=/tmp/t2i --prompt="a handwritten three" --out=/tmp/three.png
  python -m experiments.sample --workdir=/tmp/t2i --per_class --classify --num=50   # digit accuracy

A prompt may use only the vocabulary's words (caption_level "word") or characters ("char");
others are refused with a message that lists the allowed ones. No likelihood is reported.
Measured figures are in README.md with the commands that gave them.
"""
from experiments.configs.common import model_fields
from experiments.configs.vq_gpt import code_prior_config
from gen_jax.paradigms import text2image

_ARGS = ("digits", "mnist_idx")


def get_config(arg: str = "digits"):
  if arg not in _ARGS:
    raise ValueError(f"Unknown text2image config arg {arg!r}; use one of {_ARGS}.")
  config = code_prior_config("text2image", arg)
  # Caption vocabulary, text loss weight and sampling temperature, at their defaults:
  # gen_jax.paradigms.text2image.Fields.
  config.model.update(model_fields(text2image.Fields, "caption_level", "caption_len",
                                   "text_loss_weight", "temperature"))
  config.num_samples = 100                 # the loop's 10x10 grids: column j = digit j
  return config
