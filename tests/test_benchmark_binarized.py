"""The binarized-MNIST suite: its unit conversions (gen_jax.eval.likelihood) and table, against
hand values.

No data and no training: the configs are built (nothing is read from ../shared) and the
table is formatted from rows written here.
"""
from __future__ import annotations

import json
import math

import pytest

from experiments.benchmarks import binarized_mnist as bm
from gen_jax.eval import likelihood

LOG2 = 0.6931471805599453


def test_uniform_binary_model_is_784_log2_nats_and_one_bit_per_dim():
  # p(x) = 2^-784 for every binarized image: 784 * log 2 = 543.4273 nats, 1 bit per pixel.
  assert likelihood.nats_to_bits_per_dim(784 * LOG2, bm.NUM_DIMS) == pytest.approx(1.0, abs=1e-6)
  assert likelihood.bits_per_dim_to_nats(1.0, bm.NUM_DIMS) == pytest.approx(543.4273, abs=1e-4)


@pytest.mark.parametrize("nats, bits_per_dim", [
    (88.86, 0.163517),     # NADE: 88.86 / 543.4273 by hand
    (81.30, 0.149605),     # PixelCNN: 81.30 / 543.4273
    (0.0, 0.0),
])
def test_nats_per_image_to_bits_per_dim_and_back(nats, bits_per_dim):
  assert likelihood.nats_to_bits_per_dim(nats, bm.NUM_DIMS) == pytest.approx(bits_per_dim, abs=2e-6)
  assert likelihood.bits_per_dim_to_nats(bits_per_dim, bm.NUM_DIMS) == pytest.approx(nats, abs=2e-3)
  # Other image sizes: 8x8 = 64 dims, 64 * log 2 nats is one bit per dim.
  assert likelihood.nats_to_bits_per_dim(64 * LOG2, 64) == pytest.approx(1.0, abs=1e-6)


def test_published_rows_keep_the_issue_figures_and_flags():
  rows = {r["model"]: r for r in bm.published_rows()}
  expected = {"NADE": (88.86, True), "MADE": (88.04, True), "VAE": (86.76, False),
              "IWAE": (84.78, False), "PixelCNN": (81.30, True), "Gated PixelCNN": (81.3, True),
              "PixelSNAIL": (78.6, True)}
  assert {m: (r["nats_per_image"], r["exact"]) for m, r in rows.items()} == expected
  assert all(r["trained_on"] == 60_000 for r in rows.values())


def test_table_puts_ours_beside_the_published_with_exact_or_bound():
  ours = [bm.our_row("vae", "-ELBO, Bernoulli decoder", False, 100.0, steps=50,
                     train_minutes=6.04, load_avg=[9.5, 8.25, 7.0]),
          bm.our_row("pixel_ar", "exact", True, 90.123, steps=20, train_minutes=6.0,
                     load_avg=[1.0, 1.0, 1.0])]
  meta = {"num_test": 2000, "budget_minutes": 6.0, "date": "2026-11-26", "machine": "a CPU",
          "command": "python -m experiments.benchmarks.binarized_mnist"}
  md = bm.table_markdown(ours, meta)
  lines = md.splitlines()
  table = [l for l in lines if l.startswith("| ")]
  assert len(table) == 1 + 2 + 7                 # header, ours, the published
  cells = [c.strip() for c in table[1].strip("|").split("|")]
  # 100 nats / 543.4273 = 0.18402 bits/dim; 8,000 training images.
  assert cells[:9] == ["vae", "-ELBO, Bernoulli decoder", "bound", "100.00", "0.1840", "8,000",
                       "50", "6.0", "9.5/8.2/7.0"]
  cells = [c.strip() for c in table[2].strip("|").split("|")]
  assert cells[2:5] == ["exact", "90.12", "0.1658"]   # 90.123 / 543.4273 = 0.16584
  nade = [c.strip() for c in table[3].strip("|").split("|")]
  assert nade[:6] == ["NADE", "published, full MNIST", "exact", "88.86", "0.1635", "60,000"]
  assert "8,000 images" in md and "bound" in md
  json.dumps(ours)                                # the rows are what table.json holds


def test_configs_are_the_mnist_idx_ones_on_the_binarized_dataset():
  for name in bm.MODELS:
    config = bm.binarized_config(name, vlb_steps=7)
    assert config.dataset == "mnist_idx/binarized"
    assert config.paradigm == name
    assert config.manual_dir            # the mnist_idx IDX files
  assert bm.binarized_config("vae").model.decoder == "bernoulli"
  assert bm.binarized_config("ddpm", vlb_steps=7).model.vlb_num_steps == 7
  assert math.isclose(bm.NUM_DIMS * LOG2, 543.4273, abs_tol=1e-4)
