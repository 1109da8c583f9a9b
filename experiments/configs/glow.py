r"""Glow (Kingma & Dhariwal 2018, arXiv:1807.03039) on dequantized images.

  python -m experiments.train --config=experiments/configs/glow.py:digits --workdir=/tmp/glow
  python -m experiments.train --config=experiments/configs/glow.py:digits --workdir=/tmp/glow_vd \
      --config.model.dequantization=variational
  python -m experiments.train --config=experiments/configs/glow.py:mnist_idx --workdir=/tmp/glow_mnist
  python -m experiments.sample --workdir=/tmp/glow --out=/tmp/glow.png [--temperature=0.7]
  python -m experiments.evaluate --workdir=/tmp/glow

Args (the config arg):
  digits     scikit-learn's 8x8 digits (17 levels): 2 scales, 8x8x1 -> 4x4x4 (split) -> 2x2x8.
  mnist_idx  MNIST 28x28 (256 levels) from config.manual_dir: 2 scales, 28x28x1 -> 14x14x4 -> 7x7x8,
             K = 12 (realnvp: 3 scales, K = 4; see realnvp.py), RealNVP's logit transform
             (alpha = 0.05) and sample grids at temperature 0.7.
  cifar10    the paper's CIFAR-10 model (3 scales, K = 32 steps each, 512-wide conditioners,
             batch 512, Adam 1e-3; 63.1M parameters here) for 8 devices (data=8); plan it with
             --dry_run (the data must be prepared in the TFDS data dir to train it).

bits/dim are on the data's own levels (uniform model: log2 17 = 4.09 on digits, 8 on MNIST) and
are a bound: the exact density of uniformly dequantized data, or with
model.dequantization=variational Flow++'s E_q[log p(x + u) - log q(u | x)] (arXiv:1902.00275).
Measured here (2 shared CPU cores, load average 25-30; test split, one dequantization draw):
  glow.py:digits       3000 steps  2.35 bits/dim uniform, 2.29 variational  (12.5 min wall each)
  glow.py:mnist_idx    5000 steps  1.47 bits/dim (K = 12; 27 min wall, load ~4); samples are digits
                       (K = 6, the earlier default: 1.87 at 1000 steps, near-empty frames with fragments)
  realnvp.py:digits    3000 steps  2.21 bits/dim  (4.5 min wall)
  realnvp.py:mnist_idx 13000 steps 1.37 bits/dim (3 scales; 85 min wall, partly shared); digits
                       from 2000 steps (1.61). With 2 scales, the earlier default: 1.73 at 1000
                       steps, and strokes rather than digits even at 1.38 (17,800 H100 steps)
  Before the logit transform (K = 4, 1500 steps): glow.py:mnist_idx 3.49, realnvp.py:mnist_idx 2.51.
Reference scale: RealNVP 1.06 / Glow 1.05 bits/dim on full MNIST (60k images, long GPU runs).
Benchmark: python -m experiments.benchmark --suite=flows --parts=images --dataset=digits,mnist_idx
"""
from experiments.configs.common import base_config, field_names, model_fields
from gen_jax.paradigms import flow

_DATASETS = {"digits": "digits", "mnist_idx": "mnist_idx", "cifar10": "cifar10"}


def get_config(arg: str = "digits", paradigm: str = "glow"):
  if arg not in _DATASETS:
    raise ValueError(f"Unknown {paradigm} config arg {arg!r}; use one of {tuple(_DATASETS)}.")
  config = base_config(paradigm, _DATASETS[arg])
  # Every field at its default (2 scales, K = 4, 64-wide conditioners, uniform dequantization):
  # gen_jax.paradigms.flow.MultiScaleFields (glow.Fields = realnvp.Fields).
  config.model = m = model_fields(flow.MultiScaleFields, *field_names(flow.MultiScaleFields))
  config.batch_size = 64
  config.num_train_steps = 3_000
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 100
  config.optimizer.grad_clip_norm = 50.0   # the loss is in bits/dim: early gradients are large
  config.eval_every_steps = 1_000
  config.sample_every_steps = 1_000
  config.checkpoint_every_steps = 1_000
  if arg == "mnist_idx":
    # Glow: K = 12 (at K = 6 samples were near-empty fragments even at 1.47 bits/dim; at K = 12,
    # 1,500 steps gave 1.64 and digit-like samples). realnvp couples at 28x28: costlier, K = 4.
    m.steps_per_scale = 12 if paradigm == "glow" else 4
    if paradigm == "realnvp":
      # A third scale ends at 7x7 (28x28x1 -> 14x14x4 -> 7x7x8): its last couplings see the whole
      # digit. With 2 scales (the last at 14x14x2) samples stayed strokes even at 1.38 bits/dim.
      m.num_scales = 3
    m.logit_alpha = 0.05      # RealNVP §4.1: most MNIST sub-pixels are 0, a thin slab in w-space
    m.sample_temperature = 0.7  # Glow §5 samples at T = 0.7
    config.batch_size = 64
    config.num_train_steps = 3_000
    config.eval_batch_size = 200
  if arg == "cifar10":
    m.num_scales, m.steps_per_scale, m.hidden = 3, 32, 512
    config.batch_size = 512
    config.num_train_steps = 1_000_000
    config.mesh = "data=8,fsdp=1"
  return config
