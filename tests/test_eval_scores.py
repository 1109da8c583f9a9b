"""The smaller scores of gen_jax.eval against truth: paired likelihood gaps and unit
conversions, mode coverage, code usage and stage-1 reconstructions, class and caption
accuracy, and the Likelihood / Samples / ClassAccuracy evaluators."""
from __future__ import annotations

import math
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from gen_jax.data import captions
from gen_jax.eval import conditional, evaluators, likelihood, modes, reconstruction


def test_paired_gap_by_hand():
  out = likelihood.paired_gap([2.0, 3.0, 4.0], [1.0, 2.5, 3.0])
  assert out["nll"] == 3.0 and out["entropy"] == pytest.approx(6.5 / 3) and out["gap"] == pytest.approx(2.5 / 3)
  diff = np.array([1.0, 0.5, 1.0])
  assert out["gap_stderr"] == pytest.approx(diff.std() / math.sqrt(3))
  assert likelihood.paired_gap([1.0, 2.0], [1.0, 2.0])["gap_stderr"] == 0.0   # the same points: no noise


def test_nats_and_bits_per_dim():
  assert likelihood.nats_to_bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
  assert likelihood.bits_per_dim_to_nats(1.0, 784) == pytest.approx(543.4273, abs=1e-4)


def test_mode_coverage_by_hand():
  centres = np.array([[0.0, 0.0], [10.0, 0.0]])
  x = np.array([[0.1, 0.0], [9.9, 0.0], [10.0, 0.2], [5.0, 5.0]])
  near, per_mode = modes.mode_coverage(x, centres, radius=1.0)
  assert near == 0.75 and per_mode.tolist() == [0.25, 0.5]


def test_code_usage_and_reconstruction_of_an_identity_tokenizer():
  usage = reconstruction.code_usage(np.arange(8).repeat(3), 8)
  assert usage == {"num_codes": 8, "code_perplexity": pytest.approx(8.0), "dead_codes": 0}
  assert reconstruction.code_usage(np.zeros(5, int), 4)["code_perplexity"] == pytest.approx(1.0)

  class Reference:
    fd_name = "FD (x classifier)"
    def scores(self, fake):
      return {self.fd_name: float(np.abs(fake).sum())}
  levels = np.random.default_rng(0).integers(0, 17, (7, 2, 2, 1)).astype(np.uint8)
  stage1 = types.SimpleNamespace(
      encode=lambda x: x.astype(jnp.int32), decode=lambda c: c.astype(jnp.float32) / 16,
      decoder_log_likelihood=lambda c, x: -jnp.full(x.shape[:1], 4 * math.log(2.0)),
      info=types.SimpleNamespace(num_dims=4, num_levels=17), config=types.SimpleNamespace(
          paradigm="vqvae", model=types.SimpleNamespace(num_codes=17)), workdir="w", step=3)
  row, recon = reconstruction.stage1_scores(stage1, levels, levels, Reference())
  assert row["recon_bits_per_dim"] == pytest.approx(1.0) and row["recon_mse"] == pytest.approx(0.0)
  assert row["recon FD (x classifier)"] == pytest.approx(levels.sum() / 16) and recon.shape == (7, 2, 2, 1)
  assert row["num_codes"] == 17 and row["step"] == 3


def class_images(rng, n, label):
  """Images whose every pixel is label / 10: a classifier reading the pixel reads the class."""
  return jnp.full((n, 2, 2, 1), label / 10)


class ReadsThePixel:
  fd_name = "FD (x classifier)"
  def labels(self, images):
    return np.rint(np.asarray(images)[:, 0, 0, 0] * 10).astype(int)
  def scores(self, fake):
    return {self.fd_name: 0.0, "num_fake": len(fake)}


def test_caption_accuracy_reads_the_digit_of_each_caption(tmp_path):
  digit_of = {captions.caption(c, t): c for c in range(10) for t in range(len(captions.TEMPLATES))}
  sample = lambda rng, n, prompt: class_images(rng, n, digit_of[prompt] if digit_of[prompt] != 7 else 1)
  row, grid = conditional.caption_accuracy(sample, ReadsThePixel(), jax.random.key(0), 3)
  assert row["prompt_accuracy_per_digit"][7] == 0.0 and row["prompt_accuracy_per_digit"][3] == 1.0
  assert row["prompt_accuracy"] == pytest.approx(0.9)
  assert row["num_per_digit"] == 3 * len(captions.TEMPLATES) and grid.shape == (30, 2, 2, 1)
  assert row["num_fake"] == 30 * len(captions.TEMPLATES)


def test_evaluators_on_a_run_of_known_samples(tmp_path):
  def sample(params, rng, num, label=None):
    return class_images(rng, num, 3 if label is None else (label if label else 1))
  run = types.SimpleNamespace(paradigm=types.SimpleNamespace(sample=sample), with_gathered_params=lambda f: f,
                              sampling_params=lambda state: state, info=types.SimpleNamespace(num_classes=4),
                              replicated=jax.sharding.SingleDeviceSharding(jax.devices()[0]))
  grid = str(tmp_path / "g.png")
  row = evaluators.evaluate(run, None, [evaluators.Samples(5, ReadsThePixel(), keep=2, grid=grid, suffix="_x"),
                                        evaluators.ClassAccuracy(ReadsThePixel(), num_per_class=2,
                                                                 grid=str(tmp_path / "c.png"))])
  assert row["samples_x"].shape == (2, 2, 2, 1) and row["num_fake_x"] == 5 and row["grid_x"] == grid
  assert row["nfe_x"] is None and row["samples_per_s_x"] > 0
  assert row["class_accuracy"] == 0.75 and row["class_accuracy_per_class"] == [0.0, 1.0, 1.0, 1.0]
  assert (tmp_path / "g.png").exists() and (tmp_path / "c.png").exists()


def test_the_likelihood_evaluator_on_a_model_of_known_nll():
  """log p(x) = -k nats per image for k the IWAE num_samples: the evaluator's IWAE setting
  reaches the paradigm, and bits/dim = k / (64 log 2) on the 8x8 digits."""
  from experiments.configs.common import base_config
  from gen_jax.paradigms.base import Paradigm
  from gen_jax.train import build as build_lib
  ll = lambda params, batch, rng, num_samples=1: -num_samples * jnp.ones(batch["image"].shape[:1]) + 0 * params["w"]
  paradigm = Paradigm(init=lambda rng, batch: {"w": jnp.zeros(())}, loss=lambda p, b, r: (p["w"], {}),
                      sample=lambda p, r, n: jnp.zeros((n, 8, 8, 1)), log_likelihood=ll)
  run = build_lib.build(base_config("vae", "digits"), paradigm=paradigm)
  state = run.init_state(run.put_batch(build_lib.example_batch(run.info, 2)))
  elbo = evaluators.Likelihood()(run, state)
  iwae = evaluators.Likelihood(iwae_k=5, batch_size=7, suffix="_iwae")(run, state)
  assert elbo["nll_nats_per_example"] == pytest.approx(1.0) and elbo["num_examples"] == 360 and elbo["bound"]
  assert iwae["nll_nats_per_example_iwae"] == pytest.approx(5.0) and iwae["num_examples_iwae"] == 360
  assert elbo["bits_per_dim"] == pytest.approx(1 / (64 * math.log(2))) and elbo["eval_s"] > 0
  assert run.config.eval_batch_size != 7                   # the run itself is left as it was
  no_ll = evaluators.Likelihood()(type(run)(**{**vars(run), "paradigm": paradigm._replace(log_likelihood=None)}), state)
  assert no_ll == {"bits_per_dim": None, "bound": None}
