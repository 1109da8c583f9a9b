"""gen_jax.eval.nfe (few-step samplers against a reference sampler) and the VP -> EDM change of
variables that lets EDM's sampler drive a DDPM (gen_jax.samplers.diffusion), against truth."""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np

from gen_jax.eval import nfe
from gen_jax.losses import score_matching as sm
from gen_jax.samplers import diffusion as samplers

FD = "FD (digits classifier)"
SAMPLERS = ("a", "b", "c", "d")


def by_hand_rows():
  rows = []
  for seed, anc in ((0, 20.0), (1, 10.0)):
    rows.append({"seed": seed, "sampler": "ancestral", "nfe": 1000, FD: anc})
    for sampler in SAMPLERS:
      for steps, value in ((10, 3 * anc), (20, 1.5 * anc), (35, 1.1 * anc), (50, 0.5 * anc)):
        rows.append({"seed": seed, "sampler": sampler, "nfe": steps, FD: value})
  rows[1][FD] = 0.9 * 20.0                       # seed 0, first sampler, NFE 10: the best
  return rows


def test_summary_by_hand():
  """Per seed: the best FD at NFE <= 35 over the same seed's ancestral FD; then mean, sd."""
  rows = by_hand_rows()
  summary = nfe.summarize(rows, SAMPLERS)
  np.testing.assert_allclose(summary["ratio_a_nfe<=35"], [0.9, 1.1])
  np.testing.assert_allclose(summary["ratio_a_nfe<=35_mean"], 1.0)
  np.testing.assert_allclose(summary["ratio_a_nfe<=35_std"], math.sqrt(0.02))
  for sampler in SAMPLERS[1:]:     # NFE 50 (0.5) is not <= 35
    np.testing.assert_allclose(summary[f"ratio_{sampler}_nfe<=35"], [1.1, 1.1])
  assert summary["fd_ancestral_1000"] == [20.0, 10.0] and summary["seeds"] == [0, 1]
  # At NFE 35: FDs (22, 11) over ancestral (20, 10): ratio of means 16.5 / 15 = 1.1; each
  # mean's relative standard error is (sd / sqrt 2) / mean = 1/3, so se = 1.1 sqrt(2) / 3.
  for sampler in SAMPLERS:
    np.testing.assert_allclose(summary[f"ratio_of_means_{sampler}_nfe35"], 1.1)
    np.testing.assert_allclose(summary[f"ratio_of_means_{sampler}_nfe35_se"], 1.1 * math.sqrt(2) / 3)
  table = nfe.table(rows, summary, SAMPLERS)
  assert "| ancestral | 1000 | 20.0 | 10.0 | 1.000 |" in table
  assert "| a | 10 | 18.0 | 30.0 | 1.600 |" in table     # (18 + 30) / 2 / 15
  assert "- a_nfe35: 1.100 +- 0.519" in table


def test_compare_draws_each_sampler_once_a_seed_and_writes_its_files(tmp_path):
  class Reference:
    def scores(self, fake):
      return {FD: float(np.mean(fake))}
  constant = lambda value: (lambda rng, n: jnp.full((n, 4, 4, 1), value))
  samplers_ = [("ancestral", 1000, constant(0.5)), ("a", 10, constant(0.25)), ("a", 35, constant(0.75))]
  rows = nfe.compare(samplers_, Reference(), 6, seeds=(3, 4), out=str(tmp_path), log=lambda s: None)
  assert [(r["seed"], r["sampler"], r["nfe"]) for r in rows] == [
      (3, "ancestral", 1000), (3, "a", 10), (3, "a", 35), (4, "ancestral", 1000), (4, "a", 10), (4, "a", 35)]
  assert [r[FD] for r in rows[:3]] == [0.5, 0.25, 0.75]
  summary = nfe.summarize(rows, ("a",))
  assert summary["ratio_a_nfe<=35"] == [0.5, 0.5] and summary["ratio_of_means_a_nfe35"] == 1.5
  nfe.write(str(tmp_path), rows, summary, ("a",), "curve")
  assert {"nfe_ancestral_1000.png", "nfe_a_10.png", "nfe_a_35.png", "rows.jsonl", "summary.json", "table.md",
          "curve.png"} <= set(os.listdir(tmp_path))


def test_the_edm_denoiser_of_an_exact_vp_model_is_the_exact_edm_denoiser():
  """x0 ~ N(mu, s^2): the exact VP posterior mean E[x0 | x_vp] = mu + alpha s^2 (x_vp - alpha mu) /
  (alpha^2 s^2 + sigma_vp^2), driven through the change of variables, is EDM's exact
  D(x; sigma) = mu + s^2 (x - mu) / (s^2 + sigma^2) at every sigma; and at the schedule's own
  sigma_n the continuous step index is n."""
  mu, s = 0.3, 0.5
  schedule = sm.get_discrete_schedule("linear", 1000)
  seen = []

  def x0_fn(x_vp, n, alpha, sigma_vp):
    seen.append(n)
    a, sv = alpha[:, None], sigma_vp[:, None]
    return mu + a * s ** 2 * (x_vp - a * mu) / (a ** 2 * s ** 2 + sv ** 2)
  denoise, sigma_min, sigma_max = samplers.edm_denoiser_from_discrete(x0_fn, schedule, clip=False)
  ab = np.asarray(schedule.alpha_bars, np.float64)
  np.testing.assert_allclose([sigma_min, sigma_max], np.sqrt((1 - ab[[0, -1]]) / ab[[0, -1]]), rtol=1e-4)
  sigma = jnp.array([0.05, 0.5, 2.0, 20.0])
  x = jax.random.normal(jax.random.key(0), (4, 3)) * 3.0
  np.testing.assert_allclose(denoise(x, sigma), mu + s ** 2 * (x - mu) / (s ** 2 + sigma[:, None] ** 2),
                             rtol=1e-4, atol=1e-5)
  grid = jnp.sqrt((1 - schedule.alpha_bars[jnp.array([10, 500])]) / schedule.alpha_bars[jnp.array([10, 500])])
  denoise(jnp.zeros((2, 3)), grid)
  np.testing.assert_allclose(seen[-1], [10.0, 500.0], atol=1e-2)
  assert float(jnp.max(samplers.edm_denoiser_from_discrete(lambda *a: 5.0 + 0 * a[0], schedule)[0](x, sigma))) == 1.0
