r"""RealNVP (Dinh, Sohl-Dickstein & Bengio 2016, arXiv:1605.08803) on dequantized images.

  python -m experiments.train --config=experiments/configs/realnvp.py:digits --workdir=/tmp/realnvp
  python -m experiments.train --config=experiments/configs/realnvp.py:mnist_idx --workdir=/tmp/realnvp_mnist
  python -m experiments.sample --workdir=/tmp/realnvp --out=/tmp/realnvp.png
  python -m experiments.evaluate --workdir=/tmp/realnvp

Args (the config arg):
  digits     scikit-learn's 8x8 digits (17 levels): 2 scales (checkerboard couplings at 8x8x1,
             squeeze, channel couplings at 4x4x4, split, checkerboard couplings at 4x4x2).
  mnist_idx  MNIST 28x28 (256 levels) from config.manual_dir: 3 scales (checkerboard couplings at
             28x28x1, channel couplings at 14x14x4, split; 14x14x2, 7x7x8, split; checkerboard at
             7x7x4), the logit transform (alpha = 0.05) and sample grids at temperature 0.7.

Same fields and units as glow.py (bits/dim on the data's levels, a bound through dequantization;
model.dequantization = uniform | variational).
"""
from experiments.configs import glow


def get_config(arg: str = "digits"):
  return glow.get_config(arg, paradigm="realnvp")
