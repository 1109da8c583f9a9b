"""The peers suite's pure parts (experiments/benchmarks/peers.py), without torch or the peers
(they are benchmark-only: requirements-peers.txt, `make peers`): the timing rule, the ratio
arithmetic, the parameter match, the verdict, the table, and the layouts handed to diffusers
and normflows, checked against gen_jax's own U-Net and multi-scale flow.
"""
from __future__ import annotations

import ast
import pathlib

import numpy as np
import pytest

from experiments import benchmark
from experiments.benchmarks import peers
from experiments.configs import ddpm as ddpm_config
from experiments.configs import glow as glow_config
from gen_jax.nets import flows


def test_the_suite_is_registered_and_imports_no_peer_at_module_level():
  assert benchmark.SUITES["peers"][0] == "peers"
  tree = ast.parse(pathlib.Path(peers.__file__).read_text())
  top = {a.name.split(".")[0] for n in tree.body if isinstance(n, ast.Import) for a in n.names}
  top |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
  assert not top & {"torch", "diffusers", "normflows"}


def test_ms_per_step_is_the_median_after_the_warmup():
  seconds = [9.0, 8.0] + [0.010] * 100 + [0.020] * 101 + [0.030] * 100
  out = peers.ms_per_step(seconds, warmup=2)
  assert out == {"ms_per_step": pytest.approx(20.0), "timed_steps": 301}
  with pytest.raises(ValueError, match=">= 200"):
    peers.ms_per_step([0.01] * 205, warmup=10)          # 195 timed steps
  assert peers.ms_per_step([1.0, 0.004, 0.002, 0.003], 1, smoke=True)["ms_per_step"] == \
      pytest.approx(3.0)


def test_ratio_is_throughput_over_throughput():
  # gen_jax 20 ms/step, peer 50 ms/step at the same batch: gen_jax processes 2.5x as many
  # examples a second.
  assert peers.throughput_ratio(20.0, 50.0) == pytest.approx(2.5)
  batch = 64
  ours, theirs = batch / 0.020, batch / 0.050
  assert peers.throughput_ratio(20.0, 50.0) == pytest.approx(ours / theirs)


def test_parameter_match_and_verdict():
  assert peers.parameter_match(1000, 1040) == {"params_gen_jax": 1000, "params_peer": 1040,
                                               "params_peer_over_ours": pytest.approx(1.04),
                                               "params_matched": True}
  assert not peers.parameter_match(1000, 1100)["params_matched"]
  assert peers.verdict(1.6, 2.0, 2.1) == "goal met"
  assert peers.verdict(1.6, 2.0, 2.0) == "goal met"             # equal quality
  assert peers.verdict(1.4, 2.0, 2.1) == "speed 1.40x < 1.5x"
  assert peers.verdict(2.0, 2.2, 2.1) == "quality worse"
  assert peers.verdict(1.0, 2.2, 2.1) == "speed 1.00x < 1.5x; quality worse"
  assert peers.verdict(1.5) == "goal met"                       # no quality measured (vae)


def test_row_and_table():
  ours = {"name": "gen_jax glow", "ms_per_step": 10.0, "params": 1000, "bits_per_dim": 2.30,
          "steps": 2000, "batch_size": 64}
  peer = {"name": "normflows Glow", "ms_per_step": 18.0, "params": 990, "bits_per_dim": 2.40}
  r = peers.row("flows", ours, peer, "bits_per_dim")
  assert r["ratio"] == pytest.approx(1.8) and r["params_matched"]
  assert (r["quality_gen_jax"], r["quality_peer"], r["verdict"]) == (2.30, 2.40, "goal met")
  text = peers.table([r, peers.row("vae", {**ours, "name": "gen_jax vae"},
                                   {**peer, "name": "torch vae"})], ["caption"])
  lines = text.splitlines()
  assert lines[0] == "caption" and lines[2].startswith("| part | gen_jax | peer |")
  assert "| flows | gen_jax glow | normflows Glow | 1,000 / 990 | 10.00 | 18.00 | 1.80 | " \
         "bits_per_dim | 2.300 | 2.400 | goal met |" in lines
  assert lines[-1].endswith("| — | — | — | goal met |")


def _unet_param_count(kwargs):
  """diffusers' UNet2DModel parameter count for the kwargs `diffusers_unet_kwargs` gives,
  counted by hand from its blocks (ResnetBlock2D, Attention with biases, Downsample2D /
  Upsample2D convs, TimestepEmbedding, GroupNorm affine), for the layouts used here."""
  conv = lambda i, o, k=3: i * o * k * k + o
  lin = lambda i, o: i * o + o
  norm = lambda c: 2 * c
  temb = 4 * kwargs["block_out_channels"][0]

  def res(i, o):
    return norm(i) + conv(i, o) + lin(temb, o) + norm(o) + conv(o, o) + (conv(i, o, 1) if i != o else 0)

  def attn(c):
    return norm(c) + 4 * lin(c, c)

  widths, n = kwargs["block_out_channels"], kwargs["layers_per_block"]
  c_in = kwargs["in_channels"]
  total = conv(c_in, widths[0]) + lin(widths[0], temb) + lin(temb, temb)
  ch, skips = widths[0], [widths[0]]
  for i, (w, kind) in enumerate(zip(widths, kwargs["down_block_types"])):
    for _ in range(n):
      total += res(ch, w) + (attn(w) if kind.startswith("Attn") else 0)
      ch = w
      skips.append(ch)
    if i != len(widths) - 1:
      total += conv(ch, ch)
      skips.append(ch)
  total += 2 * res(ch, ch) + attn(ch)
  for i, (w, kind) in enumerate(zip(reversed(widths), kwargs["up_block_types"])):
    for _ in range(n + 1):
      total += res(ch + skips.pop(), w) + (attn(w) if kind.startswith("Attn") else 0)
      ch = w
    if i != len(widths) - 1:
      total += conv(ch, ch)
  return total + norm(ch) + conv(ch, kwargs["out_channels"])


def test_the_diffusers_unet_has_gen_jaxs_blocks_and_parameter_count():
  import jax
  from gen_jax.nets.unet import UNet
  config = ddpm_config.get_config("digits")
  m = config.model
  kwargs = peers.diffusers_unet_kwargs(m, (8, 8, 1))
  assert kwargs["block_out_channels"] == (32, 64) and kwargs["layers_per_block"] == 1
  assert kwargs["down_block_types"] == ("DownBlock2D", "AttnDownBlock2D")   # attention at 4x4
  assert kwargs["up_block_types"] == ("AttnUpBlock2D", "UpBlock2D")
  assert kwargs["norm_num_groups"] == 8 and kwargs["attention_head_dim"] is None   # one head
  net = UNet(channels=m.channels, channel_mult=tuple(m.channel_mult),
             num_res_blocks=m.num_res_blocks, attn_resolutions=tuple(m.attn_resolutions),
             groups=m.groups)
  params = jax.eval_shape(net.init, jax.random.key(0), np.zeros((1, 8, 8, 1), np.float32),
                          np.zeros((1,), np.float32))
  ours = sum(int(np.prod(a.shape)) for a in jax.tree.leaves(params))
  assert peers.parameter_match(ours, _unet_param_count(kwargs))["params_peer_over_ours"] == 1.0


def test_the_normflows_glow_has_gen_jaxs_multiscale_layout():
  """normflows' levels (coarsest first) hold the shapes gen_jax's MultiScaleFlow passes
  through: 8x8x1 -> squeeze 4x4x4 (K steps, split 2 channels off) -> squeeze 2x2x8 (K steps)."""
  m = glow_config.get_config("digits").model
  plan = peers.normflows_glow_plan((8, 8, 1), m.num_scales)
  assert plan == [(8, (8, 2, 2)), (4, (2, 4, 4))]
  stages, latents = flows.multiscale_plan((8, 8, 1), m.num_scales, "glow")
  chw = lambda s: (s[2], s[0], s[1])
  assert [chw(s) for s in reversed(latents)] == [latent for _, latent in plan]
  step_channels = []                         # the channels of each scale's steps, finest first
  for stage in stages:
    if stage[0] != "squeeze" and stage[0] != "split" and stage[-1][-1] not in step_channels:
      step_channels.append(stage[-1][-1])
  assert step_channels == [channels for channels, _ in reversed(plan)] == [4, 8]
