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
Figures measured here are in README.md / experiments/benchmarks/gan.py.
"""
from experiments.configs.common import base_config

_DATASETS = {"digits": "digits", "mnist_idx": "mnist_idx", "eight_gaussians": "toy2d/eight_gaussians"}


def get_config(arg: str = "digits", paradigm: str = "gan"):
  if arg not in _DATASETS:
    raise ValueError(f"Unknown {paradigm} config arg {arg!r}; use one of {tuple(_DATASETS)}.")
  config = base_config(paradigm, _DATASETS[arg])
  m = config.model
  m.loss = "non_saturating"     # non_saturating | hinge | wasserstein | wgan_gp | least_squares
  m.gp_weight = 10.0            # λ of the gradient penalty (loss=wgan_gp only; paper: 10)
  m.r1_gamma = 1.0              # γ of the R1 penalty (γ/2) E||∇_x D(x)||² on reals; 0 = off
  m.n_critic = 1                # discriminator updates per generator update
  m.latent_dim = 64             # z ~ N(0, I_latent_dim)
  m.net = "conv"                # conv (DCGAN) | mlp
  m.g_channels = 32             # conv G: channels of the last upsampling stage (x2 before it)
  m.d_channels = 16             # conv D: channels of the first conv (x2 at each downsampling)
  m.num_upsamples = 2           # stride-2 stages: 2x2 -> 8x8 (digits), 7x7 -> 28x28 (MNIST)
  m.d_feature_dim = 64          # conv D: width of the feature layer φ(x) (projection space)
  m.g_hidden = (128, 128)       # mlp G hidden widths
  m.d_hidden = (128, 128)       # mlp D hidden widths
  m.spectral_norm = False       # spectral normalisation of every D layer (arXiv:1802.05957)
  m.num_power_iters = 5         # power-iteration steps of the spectral norm
  m.label_features = 16         # conditional G: class embedding size (cgan only)

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
