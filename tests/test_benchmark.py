"""experiments/benchmark.py and its suites: discovery, the budget rule, the quality suite end
to end, and each family suite at a tiny budget.

The end-to-end test trains paradigms for 2 steps each: `vae` and `latent_diffusion`
(found in experiments/configs/) and two configs of a paradigm defined in this file
(added with --extra_configs, their config.paradigm the dotted name of this module).
On images that paradigm is an independent categorical per pixel with zero logits and
a vanishing learning rate, so its test bits/dim is log2(L) whatever the training:
the table's number is checked against that truth. On a VAE's latents (the config
`:latents`) it is a diagonal Gaussian prior decoded by the VAE: a second stage-2
config naming the same stage 1 as latent_diffusion, which the benchmark must train
once and share.
"""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from experiments import benchmark
from experiments.configs.common import base_config
from gen_jax.paradigms.base import Paradigm
from experiments.configs.common import stage1_config

# config.paradigm must be a dotted path to leave gen_jax.paradigms: pytest may import this file
# as the top-level `test_benchmark`, so it is also registered as `tests.test_benchmark`.
MODULE = __name__ if "." in __name__ else f"tests.{__name__}"
sys.modules.setdefault(MODULE, sys.modules[__name__])
NAME = MODULE.rsplit(".", 1)[-1]      # the row name the benchmark gives this module's config


# ------------------------------------------ a paradigm defined in this file ---

def make(model_config, info) -> Paradigm:
  """Independent categorical pixels: p(x) = prod_d softmax(logits_d)[x_d] (exact likelihood);
  on a stage-1 VAE's latents, a diagonal Gaussian over them."""
  if info.kind == "latents":
    return latent_gaussian(info)
  if info.kind != "image":
    raise ValueError(f"{NAME}: needs image data, got kind {info.kind!r}.")
  levels = info.num_levels

  def init(rng, batch):
    return {"logits": jnp.zeros((*info.shape, levels), jnp.float32)}

  def log_likelihood(params, batch, rng):
    logp = jax.nn.log_softmax(params["logits"])                     # [H, W, C, L]
    x = batch["image"].astype(jnp.int32)                           # [B, H, W, C]
    picked = jnp.take_along_axis(logp[None], x[..., None], axis=-1)[..., 0]
    return picked.reshape(x.shape[0], -1).sum(-1)

  def loss(params, batch, rng):
    ll = log_likelihood(params, batch, rng)
    bpd = -ll.mean() / (math.prod(info.shape) * math.log(2.0))
    return bpd, {"bits_per_dim": bpd}

  def sample(params, rng, num):
    x = jax.random.categorical(rng, params["logits"], shape=(num, *info.shape))
    return x.astype(jnp.float32) / (levels - 1)

  return Paradigm(init=init, loss=loss, sample=sample, log_likelihood=log_likelihood,
                  likelihood_is_exact=True)


def latent_gaussian(info) -> Paradigm:
  """z ~ N(m, diag(s^2)) over the latents of `info.stage1`, decoded by it (no likelihood)."""
  def init(rng, batch):
    return {"m": jnp.zeros(info.shape), "log_s": jnp.zeros(info.shape)}

  def loss(params, batch, rng):
    u = (batch["z"] - params["m"]) * jnp.exp(-params["log_s"])
    nll = jnp.sum(0.5 * u ** 2 + params["log_s"], axis=-1).mean()
    return nll, {}

  def sample(params, rng, num):
    z = params["m"] + jnp.exp(params["log_s"]) * jax.random.normal(rng, (num, *info.shape))
    return info.stage1.decode(z)

  return Paradigm(init=init, loss=loss, sample=sample)


def get_config(arg="digits"):
  if arg == "latents":           # stage 2 on the latents of the vae.py:digits run
    config = base_config(MODULE, "encoded")
    config.stage1 = stage1_config("", paradigm="vae", dataset="digits")
  elif arg == "digits":
    config = base_config(MODULE, arg)
  else:
    raise ValueError(f"{NAME} config: only 'digits' and 'latents'.")
  config.batch_size = 32
  config.optimizer.learning_rate = 1e-20   # logits stay 0 (to 1e-19): bits/dim = log2(L)
  return config


# ----------------------------------------------------------------- tests ---

def test_discovery_keeps_configs_that_accept_the_dataset():
  names = [n for n, _ in benchmark.discover_configs("digits", extra=(f"{MODULE}:digits",))]
  assert "vae" in names and "gan" in names and NAME in names
  assert "gpt" not in names and "flow2d" not in names        # text and toy-2D configs refuse digits
  assert "common" not in names
  toy = [n for n, _ in benchmark.discover_configs("eight_gaussians")]
  assert "flow2d" in toy and "cgan" not in toy


def test_workdir_names_say_the_budget_or_the_steps():
  args = benchmark.arguments(workdir_root="/r")
  assert benchmark.workdir_of(args, "digits", "vae") == "/r/digits/vae"
  args.steps = 30
  assert benchmark.workdir_of(args, "digits", "vae") == "/r/digits/vae_30steps"
  args.budget_minutes, args.max_steps = 0.5, 7
  assert benchmark.workdir_of(args, "digits", "vae") == "/r/digits/vae_0.5min_max7"


def test_table_and_scatter_with_a_model_without_likelihood(tmp_path):
  fd = "FD (digits classifier)"
  rows = [{"paradigm": "a", "step": 3, "bits_per_dim": 2.5, "bound": True, fd: 10.0, "precision": 0.5,
           "recall": 0.25, "samples_per_s": 100.0, "nfe": 35, "train_examples_per_s": 1000.0},
          {"paradigm": "g", "step": 3, "bits_per_dim": None, "bound": None, fd: 20.0, "precision": 0.75,
           "recall": 0.125, "samples_per_s": 5000.0, "nfe": None, "train_examples_per_s": None}]
  meta = {"date": "d", "machine": "m", "command": "c", "budget_minutes": 1, "split": "test",
          "num_real": 360, "num_samples": 64}
  from experiments.benchmarks import quality
  from gen_jax.eval import tables
  md = quality.table_markdown(rows, meta).splitlines()
  table = [l for l in md if l.startswith("|")]
  assert len(table) == 4
  assert table[2].split("|")[1:5] == [" a ", " 3 ", " 2.500 ", " bound "]
  assert table[3].split("|")[3:5] == [" — ", " — "]
  assert table[2].split("|")[5:] == [" 10.0 ", " 0.500 ", " 0.250 ", " 100 ", " 35 ", " 1,000 ", ""]
  tables.likelihood_vs_fd_figure(rows, str(tmp_path / "s.png"))
  assert Image.open(tmp_path / "s.png").size[0] > 300


def test_find_stage1_matches_the_expected_fields():
  name, config = benchmark.find_stage1(get_config("latents"))
  assert name == "vae" and config.paradigm == "vae" and config.dataset == "digits"
  wrong = get_config("latents")
  wrong.stage1.model = {"latent_dim": 12345}
  with pytest.raises(SystemExit, match="latent_dim"):
    benchmark.find_stage1(wrong)


def test_quality_suite_end_to_end_with_a_paradigm_from_this_file(tmp_path, capsys):
  out, work = tmp_path / "out", tmp_path / "work" / "digits"
  latents = f"{NAME}_latents"
  argv = dict(dataset="digits", budget_minutes=0.01, max_steps=2,
              only=["vae", "latent_diffusion", NAME, latents],
              extra_configs=[f"{MODULE}:digits", f"{MODULE}:latents"], num_samples=64,
              workdir_root=str(tmp_path / "work"), out=str(out))
  benchmark.run("quality", **argv)
  with open(out / "table.json") as f:
    table = json.load(f)
  rows = {r["paradigm"]: r for r in table["rows"]}
  assert set(rows) == {"vae", "latent_diffusion", NAME, latents}
  mine, vae = rows[NAME], rows["vae"]
  assert mine["module"] == MODULE and mine["step"] == 2
  assert mine["bound"] is False and vae["bound"] is True
  np.testing.assert_allclose(mine["bits_per_dim"], math.log2(17), rtol=1e-5)   # uniform over 17 levels
  for r in rows.values():
    assert r["num_fake"] == 64 and r["num_real"] == 360
    assert 0.0 <= r["precision"] <= 1.0 and 0.0 <= r["recall"] <= 1.0
    assert r["FD (digits classifier)"] > 0 and r["samples_per_s"] > 0 and r["train_examples_per_s"] > 0
  assert table["meta"]["budget_minutes"] == 0.01 and table["meta"]["num_samples"] == 64
  md = (out / "table.md").read_text()
  assert "FD (digits classifier)" in md and f"| {NAME} | 2 | 4.087 | exact |" in md
  for png in ("samples.png", "bpd_vs_fd.png"):
    w, h = Image.open(out / png).size
    assert w > 200 and h > 100
  # The workdir records the budgeted step count (a rerun resumes with it).
  record = json.loads((work / f"{NAME}_0.01min_max2" / "benchmark_train.json").read_text())
  assert record["num_train_steps"] == 2
  # Two-stage configs: their stage 1 (the vae row's run) was trained once, before them,
  # and both stage-2 runs read it.
  vae_dir = str(work / "vae_0.01min_max2")
  assert capsys.readouterr().out.count("[vae] ") == 1
  for name in ("latent_diffusion", latents):
    assert rows[name]["stage1"] == "vae" and rows[name]["step"] == 2
    saved = json.loads((work / f"{name}_0.01min_max2" / "config.json").read_text())
    assert saved["stage1"]["workdir"] == vae_dir
    assert f"| {name} (on vae) | 2 |" in md
  assert rows["latent_diffusion"]["bits_per_dim"] is None and "stage1" not in vae
  # A rerun resumes the finished workdirs and reuses their cached scores: the same rows.
  again = {r["paradigm"]: r for r in benchmark.run("quality", **argv)}
  assert capsys.readouterr().out.count("[vae] resuming") == 1
  for name, r in rows.items():
    for k in ("step", "bits_per_dim", "FD (digits classifier)", "precision", "recall"):
      assert again[name][k] == r[k], (name, k)


def test_speed_suite_quick(tmp_path):
  # A text of our own: tests never read ../shared (a user's clone has none).
  res = benchmark.run("speed", quick=True, out=str(tmp_path), text_dir=str(_text_dir(tmp_path)),
                      parts=["matmul", "gpt_train", "kv_cache", "train_steps"])
  saved = json.loads((tmp_path / "speed.json").read_text())
  assert saved["quick"] is True and set(saved) >= {"matmul", "gpt_train", "kv_cache"}
  train = res["gpt_train"]
  assert train["tokens_per_s"] > 0 and 0 < train["mfu"] and 0 <= train["input_pipeline_share"] < 1
  # tokens/s is batch 12 x 64 tokens over the median step time
  np.testing.assert_allclose(train["tokens_per_s"], 768 / (train["ms_per_iter"] / 1e3), rtol=1e-9)
  kv = res["kv_cache"]
  assert kv["identical_16"] and kv["identical_32"]           # cached decoding = naive decoding
  assert kv["speedup_32"] == kv["naive_s_32"] / kv["cached_s_32"]
  steps = {r["name"]: r for r in res["train_steps"]}
  assert set(steps) == {"vae", "gan"}
  for r in steps.values():   # MFU is XLA's flop count per second over the matmul rate
    assert r["flops_per_step"] > 0 and r["examples_per_s"] > 0
    np.testing.assert_allclose(r["mfu"], r["flops_per_step"] / r["seconds_per_step"]
                               / (saved["matmul"]["matmul_gflops"] * 1e9), rtol=1e-9)
  text = (tmp_path / "speed.txt").read_text()
  assert "GFLOP/s" in text and "tokens/s" in text and "KV-cache" in text and "MFU" in text


def _text_dir(tmp_path):
  text_dir = tmp_path / "text"
  text_dir.mkdir(exist_ok=True)
  (text_dir / "input.txt").write_text("".join(
      f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(400)))
  return text_dir


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.skipif(not os.path.exists(os.path.join(ROOT, ".git")), reason="needs a git checkout")
def test_speed_against_a_revision_alternates_fresh_processes_and_removes_its_worktree(tmp_path):
  logged = []
  res = benchmark.run("autoregressive", parts=["against"], against="HEAD", rounds=2, num_iters=12,
                      out=str(tmp_path), text_dir=str(_text_dir(tmp_path)), log=logged.append)["against"]
  order = [line.split(": ")[0] for line in logged if line.startswith("round")]
  assert order == ["round 1, this", "round 1, HEAD", "round 2, HEAD", "round 2, this"]
  assert all(len(res["runs"][k]) == 2 for k in ("this", "HEAD"))
  np.testing.assert_allclose(res["ratio_this_over_rev"], res["median_ms_this"] / res["median_ms_rev"])
  assert res["median_ms_this"] == np.median([r["ms_per_iter"] for r in res["runs"]["this"]])
  trees = subprocess.run(["git", "-C", ROOT, "worktree", "list"], capture_output=True, text=True).stdout
  assert "gen_jax_against_" not in trees
  assert "this checkout vs HEAD" in (tmp_path / "speed.txt").read_text()


def test_diffusion_nfe_part_needs_a_budget_at_the_target(tmp_path):
  with pytest.raises(ValueError, match="none <= 35"):
    benchmark.run("diffusion", out=str(tmp_path), nfes=["50", "100"], workdir_root=str(tmp_path))


def test_flows_benchmark_budget_and_model_fields(tmp_path):
  """--budget_minutes turns the probed seconds per step into the steps trained (and reports
  both); --model overrides config.model fields; the record names the device."""
  from gen_jax.eval import speed
  [r] = benchmark.run("flows", parts=["images"], only=["realnvp"], budget_minutes=0.005,
                      model="hidden=8,steps_per_scale=2", out=str(tmp_path),
                      workdir_root=str(tmp_path / "work"))["results"]
  assert r["model"]["hidden"] == 8 and r["model"]["steps_per_scale"] == 2
  assert r["steps"] == r["planned_steps"] == speed.budget_steps(r["probe_seconds_per_step"], 0.005)
  assert r["budget_minutes"] == 0.005 and r["device"] == jax.devices()[0].device_kind
  assert np.isfinite(r["test_bits_per_dim"]) and os.path.exists(r["grid_t0.7"])


def test_diffusion_benchmark_scores_the_full_ddpm_bound_once(tmp_path, monkeypatch):
  """The paradigms part takes the loop's final eval (the full T-term VLB for ddpm, on
  --max_eval images) instead of evaluating again; an independent evaluation of the saved
  model with all T terms gives the same bits/dim. (A small U-Net and T = 50 keep it quick:
  the claim holds at any size.)"""
  from experiments.benchmarks import diffusion
  from gen_jax.paradigms import ddpm
  from gen_jax import workdir as workdir_lib
  from gen_jax.eval import likelihood as likelihood_lib
  full_size = diffusion._config

  def small(paradigm, dataset):
    config = full_size(paradigm, dataset)
    config.model.update(channels=8, groups=4, num_diffusion_steps=50)
    return config
  monkeypatch.setattr(diffusion, "_config", small)
  [r] = benchmark.run('diffusion', parts=['paradigms'], only=['ddpm'], steps=3, out=str(tmp_path),
                      num_samples=8, max_eval=4, workdir_root=str(tmp_path / 'work'))['paradigms']
  run, state, step = workdir_lib.restore(str(tmp_path / 'work' / 'digits' / 'ddpm_3steps'))
  assert step == r['steps'] == 3 and run.config.model.vlb_num_steps == 0
  model = run.config.model.copy_and_resolve_references()
  run.paradigm = ddpm.make(model, run.info)
  ev = likelihood_lib.evaluate(run, state, 'test', max_examples=4)
  assert r['test_examples'] == ev['num_examples'] == 4 and r['bound']
  np.testing.assert_allclose(r['test_bits_per_dim'], ev['bits_per_dim'], rtol=1e-5)
  assert r['eval_seconds'] > 0


def test_flows_temperature_part_by_hand(tmp_path):
  """The temperature part on a briefly trained realnvp: at T = 0 every sample is the image of
  z = 0, so its FD is |mu_real - f(x_0)|^2 + tr(Sigma_real) (a zero covariance), computed here
  from the classifier's features; the confident share of the real-image row matches a softmax
  by hand; the sweep PNG has one row per temperature, the T = 0 row one repeated image."""
  from experiments.benchmarks import flows
  from experiments.configs import realnvp
  from gen_jax.errors import UserError
  from gen_jax.eval import classifier, features
  from gen_jax import workdir as workdir_lib
  config = realnvp.get_config("digits")
  config.model.update(hidden=8, steps_per_scale=2)
  config.num_train_steps = config.eval_every_steps = config.sample_every_steps = 3
  config.checkpoint_every_steps = 3
  workdir = str(tmp_path / "flow")
  workdir_lib.train(config, workdir, progress=False)
  out = tmp_path / "sweep"
  rows = flows.temperature_part(workdir, temperatures=(0.0, 1.0), num=40, out=str(out), columns=5)
  assert [r["temperature"] for r in rows] == [None, 0.0, 1.0] and rows[0]["source"] == "real train images"
  reference = classifier.reference("digits")
  net, real = reference.net, reference.images
  fd = next(k for k in rows[1] if k.startswith("FD"))
  run, state, _ = workdir_lib.restore(workdir)
  x0 = np.asarray(run.paradigm.sample(run.sampling_params(state), jax.random.key(7), 1, temperature=0.0))
  f_real, f0 = net.features(real).astype(np.float64), net.features(x0)[0].astype(np.float64)
  by_hand = np.sum((f_real.mean(0) - f0) ** 2) + np.trace(np.cov(f_real, rowvar=False))
  np.testing.assert_allclose(rows[1][fd], by_hand, rtol=1e-4)
  assert rows[2][fd] != rows[1][fd] and rows[1]["num_fake"] == 40
  train_images, _, info = classifier.load_split("digits", "train")
  p = np.asarray(jax.nn.softmax(net.logits(features.levels_to_unit(train_images[:40], info.num_levels))))
  assert rows[0]["confident_share"] == pytest.approx(np.mean(p.max(-1) >= 0.9))
  assert rows[1]["confident_share"] in (0.0, 1.0)          # one image, labelled 40 times
  png = np.asarray(Image.open(out / "temperature_sweep.png").convert("L"), np.float64)
  u = png.shape[1] // (5 * (8 + 1) + 1)         # 5 columns of 8x8 digits, 1-pixel borders, upscaled
  assert png.shape == ((2 * 9 + 1) * u, (5 * 9 + 1) * u)
  cell = lambda r, c: png[(1 + 9 * r) * u:(9 + 9 * r) * u, (1 + 9 * c) * u:(9 + 9 * c) * u]
  assert all(np.array_equal(cell(0, 0), cell(0, c)) for c in range(1, 5))
  assert not all(np.array_equal(cell(1, 0), cell(1, c)) for c in range(1, 5))
  assert (out / "temperature.md").read_text().count("\n") == 5
  assert len((out / "temperature.jsonl").read_text().splitlines()) == 3
  with pytest.raises(UserError, match="pass its --workdir"):
    benchmark.run("flows", parts=["temperature"])


def test_gan_suite_at_a_tiny_budget(tmp_path):
  """reference, images and cgan parts at 3 steps: every row scored, the reference the floor of
  FD, cgan's class accuracy a share, and the grids written."""
  out = tmp_path / "out"
  res = benchmark.run("gan", parts=["reference", "images", "cgan"], only=["hinge+r1"], steps=3, num_samples=50,
                      out=str(out), workdir_root=str(tmp_path / "work"))
  fd = "FD (digits classifier)"
  [ref], [image], [cgan] = res["reference"], res["images"], res["cgan"]
  assert ref["num_fake"] == 1000 and 0 < ref[fd] < image[fd]
  assert image["variant"] == "hinge+r1" and image["steps"] == 3 and image["num_fake"] == 50
  assert image["fields"] == {"r1_gamma": 1.0} and image["train_seconds"] > 0
  assert 0 <= cgan["class_accuracy"] <= 1 and len(cgan["class_accuracy_per_class"]) == 10
  assert (out / "gan_digits_hinge+r1.png").exists() and (out / "cgan_digits_non_saturating+r1.png").exists()


def test_hybrids_suite_at_a_tiny_budget(tmp_path):
  """vq_gpt and text2image share one stage 1 (vqvae, trained once): one tokenizer row with its
  code usage, a prior row with bits/dim (a bound) and NFE, and text2image's accuracy per digit."""
  out = tmp_path / "out"
  res = benchmark.run("hybrids", only=["vq_gpt", "text2image"], steps=2, num_samples=20, per_prompt=1,
                      out=str(out), workdir_root=str(tmp_path / "work"))
  [(label, tok)] = res["tokenizers"].items()
  assert label == "vqvae" and tok["step"] == 2 and tok["dead_codes"] <= tok["num_codes"]
  assert 1 <= tok["code_perplexity"] <= tok["num_codes"] and tok["recon_mse"] >= 0
  prior = res["priors"]["vq_gpt"]
  assert prior["stage1"] == "vqvae" and prior["bound"] is True and prior["bits_per_dim"] > 0
  assert prior["nfe"] > 0 and prior["num_fake"] == 20 and prior["parameters"] > 0
  t2i = res["text2image"]
  assert len(t2i["prompt_accuracy_per_digit"]) == 10 and 0 <= t2i["prompt_accuracy"] <= 1
  md = (out / "table.md").read_text()
  assert "| vqvae | 2 |" in md and "| vq_gpt | vqvae |" in md and "| accuracy |" in md
  assert Image.open(out / "samples.png").size[0] > 200


def test_flows_toy_part_on_fresh_samples(tmp_path):
  """The toy part's fresh-sample training (the loop's step on new batches of the true density):
  the gap's standard error is the paired one, below the entropy's."""
  [r] = benchmark.run("flows", parts=["toy"], toy_names=["eight_gaussians"], toy_steps=20,
                      out=str(tmp_path))["results"]
  assert r["steps"] == 20 and r["train_data"] == "fresh" and r["num_test_points"] == 100_000
  assert np.isfinite(r["gap_nats"]) and r["gap_stderr"] < r["entropy_stderr"]
  assert os.path.exists(r["scatter"])
