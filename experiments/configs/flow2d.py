r"""A normalizing flow on the 2-D toy sets: Glow-style steps with MLP affine couplings
(arXiv:1807.03039, arXiv:1605.08803); exact log-likelihood of the continuous points.

  python -m experiments.train --config=experiments/configs/flow2d.py:eight_gaussians --workdir=/tmp/flow2d
  python -m experiments.train --config=experiments/configs/flow2d.py:checkerboard --workdir=/tmp/flow2d_cb
  python -m experiments.sample --workdir=/tmp/flow2d --out=/tmp/flow2d.png

Args: eight_gaussians | checkerboard | moons | swiss_roll (the toy2d/<arg> dataset).
The loop's eval reports nats per point divided by 2 ln 2 as bits_per_dim (exact);
the true entropies (eight_gaussians ~1.69 nats, checkerboard log 8 = 2.08 nats) are the floor.
Measured (defaults, eight_gaussians, 3000 steps, 38 s wall): test NLL 1.91 nats = 1.375 bits/dim
(0.22 nats above the entropy). Longer runs (16 steps x 128 units, 20,000 steps at batch 512 on
fresh samples; 100,000 test points; 45 min wall each at load average ~29 on 2 cores):
  eight_gaussians  gap 0.0456 +- 0.0013 nats (NLL 1.7428, entropy 1.6973 +- 0.0032)
  checkerboard     gap 0.178  +- 0.002  nats (NLL 2.2573, entropy log 8 = 2.0794)
  python -m experiments.benchmark --suite=flows --parts=toy --toy_names=eight_gaussians,checkerboard
"""
from experiments.configs.common import base_config, field_names, model_fields
from gen_jax.paradigms import flow2d

_TOY = ("eight_gaussians", "checkerboard", "moons", "swiss_roll")


def get_config(arg: str = "eight_gaussians"):
  if arg not in _TOY:
    raise ValueError(f"Unknown flow2d config arg {arg!r}; use one of {_TOY}.")
  config = base_config("flow2d", f"toy2d/{arg}")
  # 12 steps, 64-wide conditioners of 2 hidden layers: gen_jax.paradigms.flow2d.Fields.
  config.model = model_fields(flow2d.Fields, *field_names(flow2d.Fields))
  config.batch_size = 256
  config.num_train_steps = 3_000
  config.optimizer.learning_rate = 3e-3
  config.optimizer.schedule = "cosine"
  config.optimizer.final_lr_factor = 0.01
  config.eval_batch_size = 1000
  config.eval_every_steps = 1_000
  config.sample_every_steps = 1_000
  config.checkpoint_every_steps = 1_000
  config.num_samples = 2000
  return config
