"""Consistency models (arXiv:2303.01469): the boundary condition, the paper's schedules by hand,
the teacher's Heun step and the CD loss against the closed-form ODE of Gaussian data, distillation
from that exact teacher recovering the data in one step, the bad-teacher error, and a tiny CD run
through the real loop on a tiny edm teacher."""
from __future__ import annotations

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments.configs import consistency as consistency_config
from experiments.configs import edm as edm_config
from experiments.configs.common import stage1_config
from gen_jax import workdir as workdir_lib
from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.losses import consistency as cl
from gen_jax.paradigms import consistency
from gen_jax.paradigms import diffusion as common
from gen_jax.samplers import consistency as cs
from gen_jax.train import loop
from gen_jax.train.state import freeze, init_state, make_train_step

pytestmark = pytest.mark.xdist_group("test_consistency")

DIGITS = DatasetInfo("digits", "image", (8, 8, 1), num_levels=17, num_classes=10)
TINY_UNET = dict(channels=8, channel_mult=(1,), num_res_blocks=1, attn_resolutions=(), groups=4)
M, S = 1.0, 0.5                    # the 1-D data N(M, S^2)


def gaussian_denoiser(x, sigma):
  """The exact EDM denoiser of N(M, S^2) data: E[x_0 | x_0 + sigma n = x]."""
  sigma = sigma.reshape(-1, *[1] * (x.ndim - 1))
  return M + S ** 2 / (S ** 2 + sigma ** 2) * (x - M)


def exact_consistency_function(sigma_min):
  """f*(x, sigma) = x_{sigma_min} on the PF-ODE of N(M, S^2): x(sigma) - M scales with
  sqrt(S^2 + sigma^2), so f* = M + sqrt(S^2 + sigma_min^2) / sqrt(S^2 + sigma^2) (x - M)."""
  def f(x, sigma):
    sigma = sigma.reshape(-1, *[1] * (x.ndim - 1))
    return M + jnp.sqrt(S ** 2 + sigma_min ** 2) / jnp.sqrt(S ** 2 + sigma ** 2) * (x - M)
  return f


# ------------------------------------------------------------- parameterisation ---

def test_boundary_condition_holds_exactly_for_random_parameters():
  """f(x, sigma_min) = x bit for bit, whatever the network's weights (c_skip = 1, c_out = 0)."""
  fields = consistency.Fields(training="training", total_steps=10, **TINY_UNET)
  net = common.build_net(fields, DIGITS, "consistency")
  x = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
  shapes = jax.eval_shape(lambda: net.init(jax.random.key(1), x, jnp.zeros((4,)), None)["params"])
  leaves, tree = jax.tree.flatten(shapes)
  keys = jax.random.split(jax.random.key(2), len(leaves))
  params = jax.tree.unflatten(tree, [jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])

  @jax.jit
  def outputs(params, x, sigma_min):
    raw = lambda x_in, c_noise: net.apply({"params": params}, x_in, 250.0 * c_noise, None)
    f = cl.consistency_function(raw, 0.5, sigma_min)
    ones = jnp.ones((4,))
    return f(x, sigma_min * ones), f(x, ones), raw(x, 0.0 * ones)
  for sigma_min in (0.002, 0.01):
    at_min, at_one, raw_out = outputs(params, x, sigma_min)
    assert np.isfinite(np.asarray(raw_out)).all() and float(jnp.abs(raw_out).max()) > 1e-2
    np.testing.assert_array_equal(np.asarray(at_min), np.asarray(x))
    assert float(jnp.abs(at_one - x).max()) > 1e-2          # not the identity elsewhere
  c_skip, c_out, c_in, _ = cl.consistency_preconditioning(jnp.float32(80.0), 0.5, 0.002)
  np.testing.assert_allclose([c_skip, c_out, c_in],
                             [0.25 / (79.998 ** 2 + 0.25), 0.5 * 79.998 / math.sqrt(0.25 + 6400),
                              1 / math.sqrt(6400.25)], rtol=1e-5)


# ------------------------------------------------------------------ schedules ---

def test_ct_schedules_are_the_papers_formulas_by_hand():
  """N(k) = ceil(sqrt(k/K ((s1+1)^2 - s0^2) + s0^2) - 1) + 1, mu = exp(s0 log mu0 / N), K = 100."""
  n = lambda k: float(cl.ct_num_scales(k, 100, 2, 150))
  assert n(0) == 2.0                                   # ceil(sqrt(4) - 1) + 1
  assert n(100) == 151.0                               # ceil(151 - 1) + 1
  assert n(50) == 107.0                                # sqrt(0.5 * 22797 + 4) = 106.78 -> 106 + 1
  assert n(1) == 16.0                                  # sqrt(227.97 + 4) = 15.23 -> 15 + 1
  np.testing.assert_allclose(float(cl.ct_target_decay(2.0, 2, 0.9)), 0.9, rtol=1e-6)
  np.testing.assert_allclose(float(cl.ct_target_decay(107.0, 2, 0.9)), 0.9 ** (2 / 107), rtol=1e-6)
  # Karras levels: sigma_1 = sigma_min, sigma_N = sigma_max, the middle of N = 3 by hand.
  np.testing.assert_allclose([float(cl.karras_sigma(i, 3, 0.002, 80.0, 7.0)) for i in (1, 2, 3)],
                             [0.002, ((0.002 ** (1 / 7) + 80 ** (1 / 7)) / 2) ** 7, 80.0], rtol=1e-5)
  # The sampler's levels on the training grid (N = 18): sigma_18 = 80, then sigma_10 (2 steps:
  # round(18 - 17 / 2) = 10), or sigma_12, sigma_7 (3 steps: 18 - 17/3 = 12.33, 18 - 34/3 = 6.67 -> 7).
  grid = lambda i: (0.002 ** (1 / 7) + (i - 1) / 17 * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7
  np.testing.assert_allclose(cs.multistep_sigmas(2, 18), [80.0, grid(10)], rtol=1e-5)
  np.testing.assert_allclose(cs.multistep_sigmas(3, 18), [80.0, grid(12), grid(7)], rtol=1e-5)
  assert cs.multistep_sigmas(2, 18, sigmas=(0.8,)) == (80.0, 0.8)
  with pytest.raises(UserError, match="exceeds the 17 levels"):
    cs.multistep_sigmas(18, 18)


def test_ct_post_update_moves_the_target_by_mu_and_counts_steps():
  """After CT's step k = 0 (N = 2, mu = mu0 = 0.9): theta^- = 0.9 theta^- + 0.1 theta, k = 1,
  N(1) = 16 (K = 100, by hand above)."""
  fields = consistency.Fields(training="training", total_steps=100, **TINY_UNET)
  paradigm = consistency.make(fields, DIGITS)
  batch = {"image": np.zeros((2, 8, 8, 1), np.uint8)}
  params = jax.jit(paradigm.init)(jax.random.key(0), batch)
  assert float(params["schedule"]["num_scales"]) == 2.0
  moved = {**params, "online": jax.tree.map(lambda p: p + 1.0, params["online"])}
  new = jax.jit(paradigm.post_update)(moved, batch, jax.random.key(1))
  for t, o, t_new in zip(*(jax.tree.leaves(p) for p in (params["target"], moved["online"], new["target"]))):
    np.testing.assert_allclose(t_new, 0.9 * t + 0.1 * o, rtol=1e-6, atol=1e-6)
  assert float(new["schedule"]["k"]) == 1.0 and float(new["schedule"]["num_scales"]) == 16.0


# --------------------------------------------------- the teacher step and the loss ---

def test_heun_step_and_cd_loss_match_the_closed_form_on_gaussian_data():
  """On N(M, S^2) the ODE is dx/dsigma = a(sigma) (x - M), a = sigma / (S^2 + sigma^2), so Heun's
  step is x - M -> (1 + h/2 (a1 + a0 (1 + h a1))) (x - M), and with the exact f* as online and
  target network the CD loss is r_n^2 (g_heun - g_exact)^2 (x - M)^2, r_n = f*'s slope at sigma_n."""
  sigma_next, sigma_n = jnp.full((3,), 2.0), jnp.full((3,), 1.2)
  x = jnp.array([[-3.0], [0.5], [4.0]])
  a = lambda s: s / (S ** 2 + s ** 2)
  h = -0.8
  g_heun = 1 + h / 2 * (a(2.0) + a(1.2) * (1 + h * a(2.0)))
  g_euler = 1 + h * a(2.0)
  g_exact = math.sqrt((S ** 2 + 1.2 ** 2) / (S ** 2 + 2.0 ** 2))
  heun = cl.teacher_ode_step(gaussian_denoiser, x, sigma_next, sigma_n, "heun")
  euler = cl.teacher_ode_step(gaussian_denoiser, x, sigma_next, sigma_n, "euler")
  np.testing.assert_allclose(heun, M + g_heun * (x - M), rtol=1e-5)
  np.testing.assert_allclose(euler, M + g_euler * (x - M), rtol=1e-5)
  f_star = exact_consistency_function(0.002)
  r_n = math.sqrt(S ** 2 + 0.002 ** 2) / math.sqrt(S ** 2 + 1.2 ** 2)
  loss = cl.consistency_loss_at(f_star, f_star, x, sigma_next, heun, sigma_n)
  np.testing.assert_allclose(loss, (r_n * (g_heun - g_exact) * (x[:, 0] - M)) ** 2, rtol=1e-3)
  # Pseudo-Huber: sqrt(||d||^2 + c^2) - c with c = 0.00054 sqrt(1).
  d = cl.consistency_distance(jnp.array([[3.0]]), jnp.array([[1.0]]), "pseudo_huber")
  np.testing.assert_allclose(d, math.sqrt(4 + 0.00054 ** 2) - 0.00054, rtol=1e-6)


def test_distillation_from_the_exact_teacher_samples_the_data_in_one_step():
  """CD of a tiny MLP from the exact PF-ODE of N(1, 0.5^2), 400 Adam steps of the loop's own
  train step (post_update included): one- and two-step samples have the data's mean and std.

  Tolerance: 4096 samples give standard errors 0.5 / 64 = 0.008 (mean) and 0.5 / sqrt(2 * 4096)
  = 0.006 (std); the ideal one-step map f*(80 z, 80) itself has mean 1 - 0.00625 and std 0.49998
  (the prior N(0, 80^2) for the marginal N(1, 0.5^2 + 80^2)). The rest is the student's own
  error: between steps 200 and 400 (seeds as here) its means stay within 0.03 of 1 and its stds
  within 7% of 0.5. So |mean - 1| < 0.05 and |std / 0.5 - 1| < 0.1; an untrained student
  (f = c_skip x) gives mean 0 and std 0.003, a two-step sampler off the training grid mean 0.89
  (`gen_jax.samplers.consistency`)."""
  info = DatasetInfo("gaussian_1d", "points", (1,))
  fields = consistency.Fields(training="distillation", hidden=64, num_layers=2, num_scales=18,
                              target_decay=0.9)
  paradigm = consistency.make_paradigm(fields, info, teacher_denoise=gaussian_denoiser)
  tx = freeze(optax.adam(2e-3), paradigm.non_trainable)
  step = jax.jit(make_train_step(paradigm, {None: tx}, {None: optax.constant_schedule(2e-3)}, 0.0,
                                 skip_nonfinite=False))
  rng = np.random.default_rng(0)
  batch = lambda: {"x": (M + S * rng.standard_normal((256, 1))).astype(np.float32)}
  state = init_state(paradigm, {None: tx}, paradigm.init(jax.random.key(0), batch()), 0.0)
  for _ in range(400):
    state, metrics = step(state, batch(), jax.random.key(1))
  assert np.isfinite(float(metrics["loss"]))
  x = np.asarray(paradigm.sample(state.params, jax.random.key(2), 4096))[:, 0]
  assert abs(x.mean() - M) < 0.05, x.mean()
  assert abs(x.std() / S - 1) < 0.1, x.std()
  x2, info2 = paradigm.sample(state.params, jax.random.key(3), 4096, num_steps=2, return_info=True)
  assert info2["nfe"] == 2
  assert abs(float(np.mean(x2)) - M) < 0.05 and abs(float(np.std(x2)) / S - 1) < 0.1


# ------------------------------------------------------------- runs and teachers ---

def tiny_edm_config(data_dir):
  config = edm_config.get_config("digits")
  config.model.update(TINY_UNET, num_steps=2, rtol=1e-2, atol=1e-2)
  config.data_dir = data_dir
  config.batch_size, config.eval_batch_size, config.eval_max_examples = 8, 8, 8
  config.num_train_steps = 2
  config.log_every_steps = 1
  config.checkpoint_every_steps = config.sample_every_steps = 2
  config.eval_every_steps = 1000      # no ODE likelihood: the teacher's params are what is used
  config.num_samples = 4
  config.optimizer.warmup_steps = 1
  return config


def tiny_cd_config(teacher_workdir, data_dir, **stage1):
  config = consistency_config.get_config("digits")
  config.stage1 = stage1_config(teacher_workdir, **({"paradigm": "edm", "dataset": "digits"} | stage1))
  config.model.update(TINY_UNET)
  config.data_dir = data_dir
  config.batch_size = 8
  config.num_train_steps = 2
  config.log_every_steps = 1
  config.checkpoint_every_steps = config.eval_every_steps = config.sample_every_steps = 2
  config.num_samples = 4
  return config


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """(teacher workdir, student workdir, data_dir): a 2-step tiny edm run and a 2-step CD run on it."""
  root = tmp_path_factory.mktemp("consistency")
  data_dir = str(tmp_path_factory.getbasetemp() / "tiny_stage1" / "data")
  teacher_dir, student_dir = str(root / "edm"), str(root / "cd")
  workdir_lib.train(tiny_edm_config(data_dir), teacher_dir, progress=False)
  workdir_lib.train(tiny_cd_config(teacher_dir, data_dir), student_dir, progress=False)
  return teacher_dir, student_dir, data_dir


def test_a_tiny_distillation_run_starts_from_the_teacher_and_samples_in_one_or_two_steps(runs):
  teacher_dir, workdir, data_dir = runs
  config = tiny_cd_config(teacher_dir, data_dir)
  run = workdir_lib.build(config)
  _, teacher_state, _ = workdir_lib.restore(teacher_dir)
  batch = run.put_batch({"image": np.zeros((8, 8, 8, 1), np.uint8),
                         "label": np.zeros((8,), np.int32)})
  state0 = run.init_state(batch)
  # The student and its target start from the teacher's EMA weights.
  for a, b, c in zip(*(jax.tree.leaves(t) for t in (state0.params["online"], state0.params["target"],
                                                   teacher_state.ema_params))):
    np.testing.assert_array_equal(a, c)
    np.testing.assert_array_equal(b, c)
  online0 = jax.tree.map(np.asarray, state0.params["online"])
  state1, metrics = loop.jit_train_step(run)(state0, batch, run.keys["train"])
  assert float(metrics["num_scales"]) == 18.0 and np.isfinite(float(metrics["loss"]))
  # One step of CD: theta^- = 0.95 theta^-_0 + 0.05 theta_1, with theta^-_0 = the teacher.
  for t0, o1, t1 in zip(*(jax.tree.leaves(t) for t in (online0, state1.params["online"],
                                                       state1.params["target"]))):
    np.testing.assert_allclose(t1, 0.95 * t0 + 0.05 * np.asarray(o1), rtol=1e-5, atol=1e-7)
  # Through the real loop: trained, recorded its teacher, drew a sample grid; no likelihood.
  run, state, _ = workdir_lib.restore(workdir)
  assert int(state.step) == 2 and os.path.exists(f"{workdir}/stage1.json")
  assert os.path.exists(f"{workdir}/samples/step_2.png")
  assert run.paradigm.log_likelihood is None
  assert workdir_lib.evaluate(workdir, write=False)["bits_per_dim"] is None
  params = run.sampling_params(state)
  for steps in (1, 2):
    x, out = run.paradigm.sample(params, jax.random.key(0), 5, num_steps=steps, return_info=True)
    assert x.shape == (5, 8, 8, 1) and 0 <= float(x.min()) and float(x.max()) <= 1
    assert out["nfe"] == steps
  x, traj = run.paradigm.sample(params, jax.random.key(0), 3, num_steps=2, return_trajectory=True)
  assert traj.shape == (3, 3, 8, 8, 1)
  np.testing.assert_array_equal(traj[-1], x)
  with pytest.raises(TypeError):
    run.paradigm.sample(params, jax.random.key(0), 2, temperature=0.5)


def test_a_teacher_that_is_not_an_edm_run_is_one_line_naming_the_fix(runs):
  _, not_edm, data_dir = runs                   # the CD run: a 'consistency' run, no edm one
  with pytest.raises(UserError) as error:
    workdir_lib.build(tiny_cd_config(not_edm, data_dir))
  message = str(error.value)
  assert "\n" not in message and "paradigm='consistency'" in message and "experiments/configs/edm.py" in message
  # Without the config's expectation, the paradigm itself refuses the teacher.
  config = tiny_cd_config(not_edm, data_dir)
  del config.stage1["paradigm"]
  with pytest.raises(UserError, match=r"distils an edm run.*'consistency' run.*edm\.py:digits") as error:
    workdir_lib.build(config)
  assert "\n" not in str(error.value)
  # No teacher at all: CD says how to name one (or to train from scratch).
  with pytest.raises(UserError, match="config.stage1.workdir.*model.training=training"):
    consistency.make(consistency.Fields(**TINY_UNET), DIGITS)


def test_a_student_network_unlike_the_teachers_is_refused_naming_the_field(runs):
  teacher_dir, _, data_dir = runs
  config = tiny_cd_config(teacher_dir, data_dir)
  config.model.channels = 16
  with pytest.raises(UserError, match=r"model.channels=16.*set --config.model.channels=8"):
    workdir_lib.build(config)
