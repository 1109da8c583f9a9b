r"""Peers suite: each family's gen_jax model against a PyTorch peer of the same size, on this
CPU, the same data, the same batch and the same optimizer, in one run.

  make peers                                                  # installs requirements-peers.txt, runs this
  python -m experiments.benchmark --suite=peers               # all parts (~30-40 min on 2 idle cores)
  python -m experiments.benchmark --suite=peers --parts=vae --steps=400
  python -m experiments.benchmark --suite=peers --smoke       # 6 steps, T = 50, 16 samples: checks it runs

The peers (PyTorch CPU, diffusers, normflows) are benchmark-only dependencies pinned in
requirements-peers.txt; nothing in gen_jax imports them, and `make test` never installs them.
torch runs on as many threads as this process has cores (`torch.set_num_threads`), as XLA does.

Parts (--parts; default all), each on the embedded 8x8 digits (17 levels), both sides reading
the same batches (gen_jax's input pipeline, the config's seed) for the same number of steps
(--steps, default STEPS), with the config's optimizer (Adam, its warmup + cosine schedule and
clipping; the peer's learning rates are gen_jax's schedule evaluated at each step) and EMA:
* ddpm: ddpm.py:digits (U-Net 32/64 channels, one residual block a level, attention at 4x4 and
  in the middle, T = 1000, eps prediction) vs diffusers' `UNet2DModel` with the same blocks
  (`diffusers_unet_kwargs`) trained with `DDPMScheduler.add_noise` and sampled by
  `DDPMScheduler.step` (1000 ancestral steps, variance beta as gen_jax's); FD of --num_samples
  EMA samples on the project's digits classifier (`gen_jax.eval.classifier.reference`).
* flows: glow.py:digits (and realnvp.py:digits) vs normflows' Glow (`GlowBlock`s in a
  `MultiscaleFlow`, 2 scales x K = 4 steps, 64-wide conditioners, a standard normal prior as
  gen_jax's split_prior='standard'; `normflows_glow_plan`) on the same dequantised input
  y = (x + u) / 17 - 1/2, loss in bits/dim; test bits/dim (one dequantisation draw, the whole
  test split) after the same steps. Depth and width match, parameters do not: gen_jax's
  coupling is masked (its conditioner takes all C channels and a mask channel and outputs s, t
  for all C), normflows' splits the channels (C/2 in, C out): 122,272 vs 76,096 on digits.
* vae: vae.py:digits with model.encoder=mlp (64 -> 256 -> 256 -> 2 x 16, decoder back to 17
  logits a pixel, tanh GELU) vs the same MLP VAE written in plain PyTorch here (`TorchMLPVAE`).

Train ms/step is the median over the steps after --warmup_steps (>= 200 timed steps unless
--smoke), each side's step alone (the batch is fetched outside the timed region, EMA update
included). Each row reports both parameter counts; ratio = gen_jax throughput / peer
throughput = peer ms / gen_jax ms; the goal is ratio >= 1.5 at equal or better quality.
Writes <out>/rows.jsonl, summary.json and table.md (default out: results/peers; a --smoke run,
which is no measurement, writes under <out>/smoke).
"""
from __future__ import annotations

import json
import math
import os
import time

import numpy as np

from gen_jax.eval import tables

DEFAULTS = {"parts": ["ddpm", "flows", "vae"], "out": "results/peers", "num_samples": 1000,
            "only": []}
PARTS = ("ddpm", "flows", "vae", "profile")      # profile: not in the default parts
STEPS = {"ddpm": 2000, "flows": 2000, "vae": 1000}      # training steps of both sides
WARMUP = 10                     # steps left out of the median (compilation, caches, ActNorm init)
MIN_TIMED = 200                 # timed steps a full run needs
GOAL = 1.5                      # gen_jax throughput / peer throughput
PARAM_TOLERANCE = 0.05          # parameter counts within 5% count as the same model size
SMOKE = {"steps": 6, "warmup": 2, "num_samples": 16, "diffusion_steps": 50}  # --smoke: T = 50 too


# ------------------------------------------------------------ pure parts ---

def ms_per_step(step_seconds, warmup: int, smoke: bool = False) -> dict:
  """{"ms_per_step": median of the steps after `warmup`, "timed_steps"}; a full run with fewer
  than MIN_TIMED timed steps is refused (ValueError)."""
  timed = list(step_seconds)[warmup:]
  if not timed or (not smoke and len(timed) < MIN_TIMED):
    raise ValueError(f"{len(timed)} timed steps after {warmup} warm-up steps; a peers run needs "
                     f">= {MIN_TIMED}: raise --steps.")
  return {"ms_per_step": 1e3 * float(np.median(timed)), "timed_steps": len(timed)}


def throughput_ratio(ours_ms: float, peer_ms: float) -> float:
  """gen_jax's throughput over the peer's at the same batch: peer ms/step / gen_jax ms/step."""
  return peer_ms / ours_ms


def parameter_match(ours: int, peer: int, tolerance: float = PARAM_TOLERANCE) -> dict:
  """Both parameter counts, the peer's over ours, and whether they are within `tolerance`."""
  rel = peer / ours
  return {"params_gen_jax": int(ours), "params_peer": int(peer), "params_peer_over_ours": rel,
          "params_matched": bool(abs(rel - 1.0) <= tolerance)}


def verdict(ratio: float, ours_quality=None, peer_quality=None) -> str:
  """"goal met" when ratio >= GOAL and gen_jax's quality (lower is better: FD, bits/dim) is
  equal or better; otherwise what falls short."""
  short = []
  if ratio < GOAL:
    short.append(f"speed {ratio:.2f}x < {GOAL}x")
  if ours_quality is not None and peer_quality is not None and ours_quality > peer_quality:
    short.append("quality worse")
  return "goal met" if not short else "; ".join(short)


def row(part: str, ours: dict, peer: dict, quality: str = "") -> dict:
  """One comparison row from gen_jax's and the peer's measurements ({"name", "ms_per_step",
  "params", quality...}): ratio, parameter match and verdict."""
  ratio = throughput_ratio(ours["ms_per_step"], peer["ms_per_step"])
  q_ours, q_peer = (ours.get(quality), peer.get(quality)) if quality else (None, None)
  return {"part": part, "gen_jax": ours["name"], "peer": peer["name"],
          "ms_gen_jax": ours["ms_per_step"], "ms_peer": peer["ms_per_step"], "ratio": ratio,
          **parameter_match(ours["params"], peer["params"]), "quality": quality or None,
          "quality_gen_jax": q_ours, "quality_peer": q_peer,
          "steps": ours.get("steps"), "batch_size": ours.get("batch_size"),
          "verdict": verdict(ratio, q_ours, q_peer)}


COLUMNS = [("part", "part", ""), ("gen_jax", "gen_jax", ""), ("peer", "peer", ""),
           ("params (gen_jax / peer)", lambda r: f"{r['params_gen_jax']:,} / {r['params_peer']:,}", ""),
           ("ms/step gen_jax", "ms_gen_jax", ".2f"), ("ms/step peer", "ms_peer", ".2f"),
           ("ratio (throughput)", "ratio", ".2f"),
           ("quality", lambda r: r["quality"], ""),
           ("gen_jax", "quality_gen_jax", ".3f"), ("peer", "quality_peer", ".3f"),
           ("verdict", "verdict", "")]


def table(rows, caption=()) -> str:
  """The markdown table of the rows (`row`)."""
  return tables.markdown(COLUMNS, rows, caption)


def profile_table(rows, caption=()) -> str:
  """The profile part's rows as one markdown table: config, op kind, share, ops a step."""
  flat = [{"config": r["gen_jax"], "kind": kind, **v} for r in rows for kind, v in r["kinds"].items()]
  return tables.markdown([("config", "config", ""), ("op kind", "kind", ""),
                          ("share of the step", "share", ".1%"), ("ops a step", "ops_per_step", ".0f")],
                         flat, list(caption) + ["Device time of each XLA op of the compiled train "
                                                "step (jax.profiler), grouped by what it computes."])


def diffusers_unet_kwargs(fields, image_shape) -> dict:
  """`diffusers.UNet2DModel` arguments for the gen_jax U-Net of `fields` (channels,
  channel_mult, num_res_blocks, attn_resolutions, groups) on images [H, W, C]: the same
  widths, blocks a level, attention where gen_jax has it (and in the middle block), one head,
  GroupNorm groups, sinusoidal time embedding of `channels` dims -> 4 x channels."""
  h, _, c = image_shape
  widths = tuple(fields["channels"] * m for m in fields["channel_mult"])
  sizes = [h // 2 ** i for i in range(len(widths))]
  attn = [s in tuple(fields["attn_resolutions"]) for s in sizes]
  if any(fields["channels"] * m % fields["groups"] for m in fields["channel_mult"]):
    raise ValueError("diffusers' GroupNorm needs widths divisible by groups.")
  return dict(sample_size=h, in_channels=c, out_channels=c,
              layers_per_block=int(fields["num_res_blocks"]), block_out_channels=widths,
              down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attn),
              up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attn)),
              norm_num_groups=int(fields["groups"]), attention_head_dim=None, add_attention=True,
              time_embedding_type="positional", flip_sin_to_cos=True, freq_shift=0,
              act_fn="silu", dropout=0.0)


def normflows_glow_plan(image_shape, num_scales: int) -> list:
  """[(channels of the GlowBlocks, latent shape (C, H, W))] of normflows' multi-scale Glow,
  level 0 the coarsest (its README's Glow example, normflows' level order): the layout of
  gen_jax's MultiScaleFlow (squeeze, K steps, split half; the last scale keeps all)."""
  h, w, c = image_shape
  plan = []
  for i in range(num_scales):
    if i == 0:
      latent = (c * 2 ** (num_scales + 1), h // 2 ** num_scales, w // 2 ** num_scales)
    else:
      latent = (c * 2 ** (num_scales - i), h // 2 ** (num_scales - i), w // 2 ** (num_scales - i))
    plan.append((c * 2 ** (num_scales + 1 - i), latent))
  return plan


# ------------------------------------------------------------ gen_jax side ---

def _config(name: str, steps: int):
  import importlib
  config = importlib.import_module(f"experiments.configs.{name}").get_config("digits")
  if name == "vae":
    config.model.encoder = "mlp"
  config.num_train_steps = steps
  return config


def host_batches(config):
  """gen_jax's training batches of `config` (host numpy dicts), from batch 0: both sides read
  these."""
  from gen_jax import data as data_lib, workdir as workdir_lib
  return data_lib.train_iterator(config.dataset, batch_size=config.batch_size, seed=config.seed,
                                 **workdir_lib.data_kwargs(config))


def gen_jax_side(name, config, warmup, smoke):
  """gen_jax's measurement of one config: name, ms_per_step, params, steps, batch_size, and
  the run and state (for its quality)."""
  import jax
  from gen_jax.train import loop
  from gen_jax import workdir as workdir_lib
  run = workdir_lib.build(config)
  batches = host_batches(config)
  state = run.init_state(run.put_batch(next(host_batches(config))))
  step = loop.jit_train_step(run)
  seconds = []
  batch = run.put_batch(next(batches))
  compiled = step.lower(state, batch, run.keys["train"]).compile()
  for _ in range(config.num_train_steps):
    t0 = time.perf_counter()
    state, metrics = compiled(state, batch, run.keys["train"])
    jax.block_until_ready(metrics["loss"])
    seconds.append(time.perf_counter() - t0)
    batch = run.put_batch(next(batches))
  loss = float(metrics["loss"])
  params = sum(int(np.size(a)) for a in jax.tree.leaves(state.params))
  return {"name": f"gen_jax {name}", "params": params, "steps": config.num_train_steps,
          "batch_size": config.batch_size, "final_loss": loss,
          **ms_per_step(seconds, warmup, smoke)}, run, state


# ------------------------------------------------------------ PyTorch side ---

def _torch(threads=None):
  import torch
  torch.set_num_threads(threads or len(os.sched_getaffinity(0)))
  return torch


def learning_rates(config) -> np.ndarray:
  """gen_jax's learning rate at each update s = 0..num_train_steps-1 (the peers set it)."""
  import jax.numpy as jnp
  from gen_jax.train import optim
  schedule = optim.learning_rate_schedule(optim.player_config(config.optimizer, None),
                                          config.num_train_steps)
  return np.asarray([float(schedule(jnp.asarray(s))) for s in range(config.num_train_steps)])


def torch_train(config, module, loss_fn, warmup, smoke, ema=None, log=print):
  """Trains a torch `module` on gen_jax's batches of `config` with loss_fn(module, batch) ->
  scalar: Adam(b1, b2) at gen_jax's learning rates, global-norm clipping, the EMA of the
  loop (decay min(ema_decay, (1 + t)/(10 + t))) into `ema` when given; returns the
  measurement (ms_per_step after `warmup`, final_loss)."""
  torch = _torch()
  opt = config.optimizer
  adam = torch.optim.Adam(module.parameters(), lr=float(opt.learning_rate), betas=(opt.b1, opt.b2))
  lrs, clip = learning_rates(config), float(opt.grad_clip_norm)
  params = [p for p in module.parameters()]
  ema_params = None if ema is None else [p for p in ema.parameters()]
  batches, seconds, loss = host_batches(config), [], None
  for s in range(config.num_train_steps):
    batch = next(batches)
    t0 = time.perf_counter()
    for g in adam.param_groups:
      g["lr"] = float(lrs[s])
    loss = loss_fn(module, batch, s)
    adam.zero_grad(set_to_none=True)
    loss.backward()
    if clip:
      torch.nn.utils.clip_grad_norm_(params, clip)
    adam.step()
    if ema_params is not None:
      decay = min(config.ema_decay, (1.0 + s) / (10.0 + s))
      with torch.no_grad():
        torch._foreach_mul_(ema_params, decay)
        torch._foreach_add_(ema_params, params, alpha=1.0 - decay)
    seconds.append(time.perf_counter() - t0)
  return {"final_loss": float(loss.detach()), "steps": config.num_train_steps,
          "batch_size": config.batch_size, **ms_per_step(seconds, warmup, smoke)}


def num_params(module) -> int:
  return int(sum(p.numel() for p in module.parameters()))


# ------------------------------------------------------------ parts ---

def ddpm_part(args, warmup, smoke) -> list:
  """gen_jax's DDPM vs diffusers' UNet2DModel + DDPMScheduler: ms/step and FD."""
  import copy
  from diffusers import DDPMScheduler, UNet2DModel
  from gen_jax.eval import classifier, evaluators
  torch = _torch()
  config = _config("ddpm", args.steps or STEPS["ddpm"])
  if smoke:                      # 1000 sampling steps of each side cost minutes: T = 50
    config.model.update(num_diffusion_steps=SMOKE["diffusion_steps"], vlb_num_steps=0)
  ours, run, state = gen_jax_side("ddpm", config, warmup, smoke)
  reference = classifier.reference("digits")
  fd_key = reference.fd_name
  scores = evaluators.Samples(args.num_samples, reference, batch=500)(run, state)
  ours["fd"] = scores[fd_key]
  levels, shape, num_T = run.info.num_levels, run.info.shape, config.model.num_diffusion_steps
  torch.manual_seed(config.seed)
  unet = UNet2DModel(**diffusers_unet_kwargs(config.model, shape))
  ema = copy.deepcopy(unet).requires_grad_(False)
  scheduler = DDPMScheduler(num_train_timesteps=num_T, beta_schedule="linear", beta_start=1e-4,
                            beta_end=0.02, variance_type="fixed_large", clip_sample=True,
                            prediction_type="epsilon")
  generator = torch.Generator().manual_seed(config.seed)

  def loss_fn(model, batch, s):
    x0 = torch.from_numpy(np.asarray(batch["image"], np.float32)).permute(0, 3, 1, 2)
    x0 = 2.0 * x0 / (levels - 1) - 1.0
    noise = torch.randn(x0.shape, generator=generator)
    t = torch.randint(0, num_T, (x0.shape[0],), generator=generator)
    return torch.nn.functional.mse_loss(model(scheduler.add_noise(x0, noise, t), t).sample, noise)

  peer = {"name": "diffusers UNet2DModel + DDPMScheduler", "params": num_params(unet),
          **torch_train(config, unet, loss_fn, warmup, smoke, ema=ema)}
  samples = diffusers_samples(ema, scheduler, args.num_samples, shape, generator, torch)
  peer["fd"] = reference.scores(samples)[fd_key]
  return [row("ddpm", ours, peer, "fd")]


def diffusers_samples(unet, scheduler, num, shape, generator, torch, batch=500):
  """`num` ancestral samples (all T steps of DDPMScheduler.step) as images [N, H, W, C] in
  [0, 1] ((x + 1) / 2 clipped, as gen_jax's)."""
  h, w, c = shape
  scheduler.set_timesteps(scheduler.config.num_train_timesteps)
  out = []
  with torch.no_grad():
    for start in range(0, num, batch):
      x = torch.randn((min(batch, num - start), c, h, w), generator=generator)
      for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x, generator=generator).prev_sample
      out.append(x.permute(0, 2, 3, 1).numpy())
  return np.clip((np.concatenate(out) + 1.0) / 2.0, 0.0, 1.0)


def normflows_glow(image_shape, num_scales: int, steps_per_scale: int, hidden: int):
  """normflows' multi-scale Glow (README example layout) with a standard normal prior."""
  import normflows as nf
  flows, merges, q0 = [], [], []
  for i, (channels, latent) in enumerate(normflows_glow_plan(image_shape, num_scales)):
    level = [nf.flows.GlowBlock(channels, hidden, split_mode="channel", scale=True)
             for _ in range(steps_per_scale)]
    flows.append(level + [nf.flows.Squeeze()])
    if i > 0:
      merges.append(nf.flows.Merge())
    q0.append(nf.distributions.DiagGaussian(latent, trainable=False))
  return nf.MultiscaleFlow(q0, flows, merges, class_cond=False)


def flows_part(args, warmup, smoke) -> list:
  """gen_jax's Glow (and RealNVP) vs normflows' Glow: ms/step and test bits/dim."""
  from gen_jax.eval import classifier, evaluators
  torch = _torch()
  names = [n for n in ("glow", "realnvp") if not args.only or n in args.only] or ["glow"]
  steps = args.steps or STEPS["flows"]
  measured = {}
  for name in names:
    config = _config(name, steps)
    ours, run, state = gen_jax_side(name, config, warmup, smoke)
    ours["bits_per_dim"] = evaluators.Likelihood()(run, state)["bits_per_dim"]
    measured[name] = ours
  config = _config("glow", steps)
  m = config.model
  torch.manual_seed(config.seed)
  x_test, _, info = classifier.load_split("digits", "test")
  shape, levels = info.shape, info.num_levels
  model = normflows_glow(shape, m.num_scales, m.steps_per_scale, m.hidden)
  generator = torch.Generator().manual_seed(config.seed)
  dims = int(np.prod(shape))

  def bits(model, x_levels):
    """-log2 p(x + u) per dim on the levels: y = (x + u) / L - 1/2, minus D log L."""
    x = torch.from_numpy(np.asarray(x_levels, np.float32)).permute(0, 3, 1, 2)
    y = (x + torch.rand(x.shape, generator=generator)) / levels - 0.5
    log_p = model.log_prob(y, None) - dims * math.log(levels)
    return -log_p / (dims * math.log(2.0))

  peer = {"name": "normflows Glow (MultiscaleFlow)", "params": None,
          **torch_train(config, model, lambda mdl, b, s: bits(mdl, b["image"]).mean(), warmup,
                        smoke)}
  peer["params"] = num_params(model)
  with torch.no_grad():
    peer["bits_per_dim"] = float(torch.cat([bits(model, x_test[i:i + 360])
                                            for i in range(0, len(x_test), 360)]).mean())
  return [row("flows", measured[n], peer, "bits_per_dim") for n in names]


def torch_mlp_vae(image_shape, hidden, latent_dim: int, levels: int):
  """The MLP VAE of gen_jax's vae paradigm (encoder='mlp', categorical decoder) in PyTorch:
  x/(L-1)*2-1 flattened -> hidden -> 2 x latent (mean, log-variance); z -> reversed hidden ->
  H*W*C*L logits; tanh GELU between the layers, as flax's nn.gelu."""
  torch = _torch()
  nn = torch.nn

  def mlp(sizes):
    layers = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
      layers.append(nn.Linear(a, b))
      if i < len(sizes) - 2:
        layers.append(nn.GELU(approximate="tanh"))
    return nn.Sequential(*layers)

  d = int(np.prod(image_shape))

  class TorchMLPVAE(nn.Module):
    def __init__(self):
      super().__init__()
      self.encoder = mlp((d, *hidden, 2 * latent_dim))
      self.decoder = mlp((latent_dim, *reversed(hidden), d * levels))

    def forward(self, x_levels, noise):
      """Negative ELBO per example (nats), x_levels int64 [B, D]."""
      x = x_levels.float() / (levels - 1) * 2.0 - 1.0
      mean, logvar = self.encoder(x).chunk(2, dim=-1)
      z = mean + torch.exp(0.5 * logvar) * noise
      logits = self.decoder(z).view(-1, d, levels)
      recon = torch.log_softmax(logits, -1).gather(-1, x_levels[..., None])[..., 0].sum(-1)
      kl = 0.5 * (mean ** 2 + logvar.exp() - 1.0 - logvar).sum(-1)
      return kl - recon

  return TorchMLPVAE()


def vae_part(args, warmup, smoke) -> list:
  """gen_jax's MLP VAE vs the same MLP VAE in plain PyTorch: ms/step."""
  torch = _torch()
  config = _config("vae", args.steps or STEPS["vae"])
  ours, run, _ = gen_jax_side("vae", config, warmup, smoke)
  m, shape, levels = config.model, run.info.shape, run.info.num_levels
  torch.manual_seed(config.seed)
  model = torch_mlp_vae(shape, tuple(m.hidden), m.latent_dim, levels)
  generator = torch.Generator().manual_seed(config.seed)
  dims = int(np.prod(shape))

  def loss_fn(model, batch, s):
    x = torch.from_numpy(np.asarray(batch["image"], np.int64).reshape(-1, dims))
    return model(x, torch.randn((x.shape[0], m.latent_dim), generator=generator)).mean()

  peer = {"name": "PyTorch MLP VAE", "params": num_params(model),
          **torch_train(config, model, loss_fn, warmup, smoke)}
  return [row("vae", ours, peer)]


def profile_part(args, warmup, smoke) -> list:
  """Where gen_jax's step spends its time: for each config of --only (default ddpm; any of
  ddpm, glow, realnvp, vae), `speed.op_profile` of its compiled train step over 10 steps
  (smoke: 2) after `warmup`: the share of each op kind (convolution, dot, reduce,
  transpose/copy, elementwise fusions) and the ops of each a step. One row a config."""
  import jax
  from gen_jax import workdir as workdir_lib
  from gen_jax.eval import speed
  from gen_jax.train import loop
  rows = []
  for name in args.only or ["ddpm"]:
    config = _config(name, 1)
    run = workdir_lib.build(config)
    batch = run.put_batch(next(host_batches(config)))
    state = run.init_state(batch)
    compiled = loop.jit_train_step(run).lower(state, batch, run.keys["train"]).compile()
    for _ in range(warmup):
      state, metrics = compiled(state, batch, run.keys["train"])
    jax.block_until_ready(state)
    kinds = speed.op_profile(compiled, (state, batch, run.keys["train"]), 2 if smoke else 10)["kinds"]
    rows.append({"part": "profile", "gen_jax": f"gen_jax {name}", "kinds": kinds})
  return rows


PART_FNS = {"ddpm": ddpm_part, "flows": flows_part, "vae": vae_part, "profile": profile_part}


def _version(package: str):
  """The installed version of `package` (None when it is not installed)."""
  from importlib import metadata
  try:
    return metadata.version(package)
  except metadata.PackageNotFoundError:
    return None


def run(args) -> dict:
  """Runs the parts of --parts; writes rows.jsonl, summary.json and table.md under --out
  (a --smoke run writes under <out>/smoke)."""
  from gen_jax.eval import speed
  import torch
  smoke = bool(args.smoke)
  if smoke:
    args.steps, args.num_samples = SMOKE["steps"], SMOKE["num_samples"]
  warmup = SMOKE["warmup"] if smoke else WARMUP
  _torch()
  unknown = set(args.parts) - set(PARTS)
  if unknown:
    raise SystemExit(f"--parts: unknown {sorted(unknown)}; use some of {', '.join(PARTS)}.")
  rows = []
  for part in args.parts:
    start = time.perf_counter()
    new = PART_FNS[part](args, warmup, smoke)
    for r in new:
      r["wall_s"] = time.perf_counter() - start
      args.log(json.dumps(r, default=str))
    rows += new
  out = os.path.join(args.out, "smoke") if smoke else args.out
  versions = {"torch_threads": torch.get_num_threads(),
              **{name: _version(name) for name in ("torch", "diffusers", "normflows", "jax")}}
  caption = [f"`{args.command}`{' (smoke: not a measurement)' if smoke else ''}; "
             f"{speed.machine()}; {json.dumps(versions)}",
             f"ratio = gen_jax throughput / peer throughput (goal >= {GOAL}x at equal or "
             "better quality; quality: lower is better)."]
  compared = [r for r in rows if r["part"] != "profile"]
  profiled = [r for r in rows if r["part"] == "profile"]
  summary = {"command": args.command, "smoke": smoke, "versions": versions,
             "load_avg": speed.loadavg(), "rows": compared}
  files = {}
  if compared:
    files.update({"rows.jsonl": compared, "summary.json": summary,
                  "table.md": table(compared, caption)})
    args.log(table(compared, caption))
  if profiled:
    files.update({"profile.json": {**summary, "rows": profiled},
                  "profile.md": profile_table(profiled, caption[:1])})
    args.log(profile_table(profiled))
  tables.write(out, files)
  return summary
