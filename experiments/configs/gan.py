r"""GAN (Goodfellow et al. 2014, arXiv:1406.2661) with DCGAN nets (arXiv:1511.06434).

  python -m experiments.train --config=experiments/configs/gan.py:digits --workdir=/tmp/gan
  python -m experiments.train --config=experiments/configs/gan.py:digits --workdir=/tmp/gan_hinge \
      --config.model.loss=hinge
  python -m experiments.sample --workdir=/tmp/gan --out=/tmp/gan.png
  python -m experiments.evaluate --workdir=/tmp/gan     # no likelihood: sample metrics only

Args (the config arg):
  digits           scikit-learn's 8x8 digits (17 levels): conv G/D, 2x2 -> 8x8.
  mnist_idx        MNIST 28x28 from the IDX files in config.manual_dir: MLP G (256-512) and D
                   (512-256), as in Goodfellow et al.'s MNIST GAN; --config.model.net=conv gives
                   the DCGAN nets (7x7 -> 28x28), ~6x slower per step on a 2-core CPU.
  eight_gaussians  toy2d/eight_gaussians: MLP G/D (128-128), z of dimension 8.

The loss is the field `config.model.loss`: non_saturating | hinge | wasserstein |
wgan_gp | least_squares; `model.gp_weight` is WGAN-GP's λ, `model.r1_gamma` adds
the R1 penalty (γ/2) E||∇D(x)||² to any loss (on by default: γ = 1 for images, 0.1
on the toy data; --config.model.r1_gamma=0 gives the plain loss), `model.n_critic`
is the number of discriminator updates per generator update (e.g.
--config.model.loss=wgan_gp --config.model.r1_gamma=0 --config.model.n_critic=3). Both players use Adam with b1 = 0.5 (DCGAN) through
`optimizer.per_player`; samples come from the EMA of the parameters.
Figures measured here: results/gan_mnist10k/README.md (python -m experiments.benchmark --suite=gan).
"""
from experiments.configs.common import base_config, model_fields
from gen_jax.paradigms import gan

_DATASETS = {"digits": "digits", "mnist_idx": "mnist_idx", "eight_gaussians": "toy2d/eight_gaussians"}


def get_config(arg: str = "digits", paradigm: str = "gan"):
  if arg not in _DATASETS:
    raise ValueError(f"Unknown {paradigm} config arg {arg!r}; use one of {tuple(_DATASETS)}.")
  config = base_config(paradigm, _DATASETS[arg])
  # The fields and their defaults: gen_jax.paradigms.gan.Fields (cgan's too).
  config.model = m = model_fields(
      gan.Fields, "loss", "gp_weight", "n_critic", "latent_dim", "num_upsamples", "g_hidden",
      "d_hidden", "spectral_norm", "num_power_iters", "label_features",
      r1_gamma=1.0,             # R1 on by default: (γ/2) E||∇_x D(x)||² on reals
      net="conv",               # DCGAN
      g_channels=32,            # conv G, D and D's feature layer at half the paradigm's
      d_channels=16,            # defaults: minutes on a CPU
      d_feature_dim=64)

  config.batch_size = 64
  config.num_train_steps = 3_000
  config.log_every_steps = 100
  config.eval_every_steps = 1_000
  config.checkpoint_every_steps = 1_000
  config.sample_every_steps = 500
  config.ema_decay = 0.995          # samples from the EMA (half-life ~140 steps)
  config.optimizer.name = "adam"
  config.optimizer.learning_rate = 2e-4   # DCGAN: 2e-4, b1 = 0.5
  config.optimizer.b1 = 0.5
  config.optimizer.b2 = 0.999
  config.optimizer.grad_clip_norm = 0.0   # no clipping: it changes the game's dynamics
  # The same Adam for both players, stated per player so a run can change one side:
  # --config.optimizer.per_player.discriminator.learning_rate=4e-4 (TTUR, arXiv:1706.08500).
  config.optimizer.per_player.generator = dict(learning_rate=2e-4, b1=0.5, b2=0.999)
  config.optimizer.per_player.discriminator = dict(learning_rate=2e-4, b1=0.5, b2=0.999)

  if arg == "mnist_idx":
    # 28x28 convolutions are a 2-core CPU's bottleneck: the 16-channel DCGAN ran ~12 steps/s
    # and drew strokes after 3,000 steps; these MLPs run ~80 steps/s and draw digits by ~10k.
    m.net = "mlp"
    m.g_hidden = (256, 512)
    m.d_hidden = (512, 256)
    m.g_channels = 16           # for --config.model.net=conv
    config.batch_size = 64
    config.num_train_steps = 15_000
    config.eval_every_steps = 5_000
    config.checkpoint_every_steps = 5_000
    config.sample_every_steps = 5_000
  if arg == "eight_gaussians":
    m.net = "mlp"
    m.latent_dim = 8
    m.r1_gamma = 0.1            # keeps the non-saturating game from dropping modes here
    config.batch_size = 256
    config.num_train_steps = 2_000
    config.ema_decay = 0.0
    config.optimizer.learning_rate = 1e-3
    config.optimizer.b2 = 0.9
    config.optimizer.per_player.generator = dict(learning_rate=1e-3, b1=0.5, b2=0.9)
    config.optimizer.per_player.discriminator = dict(learning_rate=1e-3, b1=0.5, b2=0.9)
  return config
