r"""MDLM (Sahoo et al. 2024) / MD4 (Shi et al. 2024): masked diffusion over characters, the
nanoGPT CPU recipe's data, model size and optimisation (gpt.py:shakespeare_small) with the
transformer made bidirectional.

  python -m experiments.train --config=experiments/configs/mdlm.py:shakespeare_small --workdir=/tmp/mdlm
  python -m experiments.sample --workdir=/tmp/mdlm --num_steps=256 --prompt="ROMEO:"
  python -m experiments.evaluate --workdir=/tmp/mdlm   # ELBO nats/char on the validation split

Args: shakespeare_small (the recipe: 4 layers, 4 heads, 128 wide, block 64, batch 12,
2,000 steps), text_file (the same on --config.manual_dir=DIR holding input.txt).
"""
from experiments.configs import gpt as gpt_config
from experiments.configs.common import field_names, model_fields
from gen_jax.paradigms import gpt, mdlm

_ARGS = ("shakespeare_small", "text_file")


def get_config(arg: str = "shakespeare_small"):
  if arg not in _ARGS:
    raise ValueError(f"Unknown mdlm config arg {arg!r}; use one of {_ARGS}.")
  config = gpt_config.get_config(arg)
  config.paradigm = "mdlm"
  # The transformer's fields as gpt's; the ELBO's draws and the sampler's steps:
  # gen_jax.paradigms.mdlm.Fields.
  config.model = model_fields(mdlm.Fields, *field_names(gpt.TransformerFields), "rope",
                              "estimator", "elbo_samples", "num_steps")
  return config
