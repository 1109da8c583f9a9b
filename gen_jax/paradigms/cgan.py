r"""Conditional GAN: class-conditional generator and projection discriminator.

Mirza & Osindero 2014 (arXiv:1411.1784) for the conditional generator
G(z, y), which here concatenates a learnt embedding of the class y to z, and
Miyato & Koyama 2018 (arXiv:1802.05637, Eq. 3) for the discriminator

  D(x, y) = ψ(φ(x)) + embed(y)ᵀ φ(x),

the logit of log p_data(y|x)/p_G(y|x) + log p_data(x)/p_G(x) under a
log-linear model of the class. The players, losses (``config.model.loss``),
penalties and update schedule are those of `gen_jax.paradigms.gan`, which
builds both models (`gan.build(..., conditional=True)`); both players see the
batch's labels (``batch['label']``), and G is trained to produce class y for
the labels of the real batch, so it meets the classes at the data's rates.

``sample(params, rng, num, label=None)`` takes ``label`` as an int class, an
int array [num], or None for classes 0, 1, ..., K-1, 0, 1, ... (one class per
column of a K-column grid). ``log_likelihood`` is None: the family has no
likelihood (quality is measured from samples).
"""
from __future__ import annotations

from gen_jax.paradigms import gan
from gen_jax.paradigms.base import Paradigm

Fields = gan.Fields       # the GAN's config.model fields


def make(model_config, info) -> Paradigm:
  """The class-conditional GAN for `info`'s data (needs info.num_classes)."""
  return gan.build(model_config, info, conditional=True)
