r"""VAR: next-scale prediction over an msvq tokenizer's token maps (stage 2; Tian et al. 2024,
arXiv:2404.02905).

Stage 1, then stage 2 (the stage-1 workdir is config.stage1.workdir; these are the defaults):

  python -m experiments.train --config=experiments/configs/msvq.py:digits --workdir=/tmp/gen_jax/msvq_digits
  python -m experiments.train --config=experiments/configs/var.py:digits --workdir=/tmp/var
  python -m experiments.evaluate --workdir=/tmp/var      # bits/dim: a bound (two stages)
  python -m experiments.sample --workdir=/tmp/var --out=/tmp/var.png

  (mnist_idx: msvq.py:mnist_idx into /tmp/gen_jax/msvq_mnist, then var.py:mnist_idx.)

The first stage-2 run encodes the stage-1 dataset once into the cached dataset "encoded"
(gen_jax.data.encoded). A stage-1 run whose saved config differs from config.stage1 (paradigm,
dataset, model.num_codes, model.scales), or that is unfinished, is refused with a message.
Another stage-1 run: --config.stage1.workdir=DIR (and its fields). The transformer is vq_gpt's
(same sizes on each dataset), so the two compare at about equal parameters.

Measured (digits, defaults, on the msvq.py:digits run above; 10.7 min under load ~9): test bound
4.85 bits/dim, FD 156.5 +- 8.8 (1,000 samples, 3 seeds), NFE 4; vq_gpt.py:digits on the same
CPU: 2.54 bits/dim, FD 56.4 +- 4.5, NFE 16. On msvq's 4x4 ladder (1, 2, 4): 2.73 bits/dim,
FD 144.9. Tables, samples and the speed command: results/emerging/var.md.
"""
from experiments.configs.common import base_config, field_names, model_fields, stage1_config
from gen_jax.paradigms import gpt, var

# The stage-1 run each dataset arg reads, and the stage-1 fields it must have.
STAGE1 = {"digits": ("/tmp/gen_jax/msvq_digits", 64, (1, 2, 4, 8)),
          "mnist_idx": ("/tmp/gen_jax/msvq_mnist", 128, (1, 2, 3, 4, 5, 7))}


def get_config(arg: str = "digits"):
  if arg not in STAGE1:
    raise ValueError(f"Unknown var config arg {arg!r}; use one of {tuple(STAGE1)}.")
  config = base_config("var", "encoded")
  workdir, num_codes, scales = STAGE1[arg]
  config.stage1 = stage1_config(workdir, paradigm="msvq", dataset=arg,
                                model=dict(num_codes=num_codes, scales=scales))
  # The transformer's fields and their defaults: gen_jax.paradigms.gpt.TransformerFields.
  config.model = model_fields(var.Fields, *field_names(gpt.TransformerFields), "class_conditional",
                              dropout=0.1)
  config.batch_size = 64
  config.num_train_steps = 1_000
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.1
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 100
  config.eval_every_steps = 500
  config.sample_every_steps = 1_000
  if arg == "digits":
    config.model.num_layers = 2           # vq_gpt.py:digits' prior
    config.model.embed_dim = 64
    config.model.dropout = 0.2
  if arg == "mnist_idx":
    config.batch_size = 128
    config.num_train_steps = 3_000
  return config
