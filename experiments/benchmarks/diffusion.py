r"""Diffusion family benchmark: training, likelihoods and the NFE -> quality curve.

  python -m experiments.benchmarks.diffusion                       # all parts on digits
  python -m experiments.benchmarks.diffusion --parts=nfe --workdir=/tmp/ddpm   # reuse a model
  python -m experiments.benchmarks.diffusion --parts=paradigms --paradigms=edm,flow_matching
  python -m experiments.benchmarks.diffusion --parts=paradigms --dataset=mnist_idx \
      --steps=1500 --max_eval=256                  # bits/dim on the first 256 test images
  python -m experiments.benchmarks.diffusion --parts=nfe --workdir=/tmp/ddpm --seeds=1,2 --num=2000
  python -m experiments.benchmarks.diffusion --parts=nfe --workdir=/tmp/ddpm --seeds=5,6 --nfes=35
  python -m experiments.benchmarks.diffusion --parts=paradigms --dataset=mnist_idx \
      --paradigms=edm --budget_minutes=3     # the steps that fit 3 minutes of training here

Parts (`run()` returns a dict of their results):
* paradigms: `experiments/configs/<p>.py:<dataset>` trained by the loop for each paradigm,
  then test bits/dim (DDPM: the full T-term variational bound; score_sde / edm /
  flow_matching: the ODE likelihood of dequantised data, Hutchinson trace, diffrax Tsit5;
  all bounds on log P of the levels), FD (digits classifier) of 1,000 samples from the
  config's sampler against the test split, training time, and a PNG grid.
* nfe: ONE trained DDPM (eps-prediction) model sampled five ways: 1000-step ancestral
  (the reference); DDIM, deterministic (eta = 0) and stochastic (eta = 0.5, quadratic
  steps); and EDM's Heun sampler (rho = 7), deterministic and with churn, driven by the
  same eps-network through the VP -> EDM change of variables (Karras et al. 2022, Sec. 3:
  sigma = sqrt(1 - abar) / sqrt(abar), x_edm = x / sqrt(abar), D = x_edm - sigma eps),
  at NFE ~ 10, 20, 35, 50, 100 (see SAMPLERS); FD of --num samples each, a PNG of the
  curve and each sampler's ratio FD(best at NFE <= 35) / FD(ancestral 1000). With
  --seeds=0,1,2 every sampler is run once per sampling seed (same model, independent
  noise) and the summary gives each ratio's mean and standard deviation over the seeds;
  the curve shows the mean FD and its range.
Times are wall-clock on whatever machine runs it (state it with the numbers).
"""
from __future__ import annotations

import argparse
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
from experiments.benchmarks.common import (budget_config, device_kind, sample_batched, sample_scorer,
                                           timed_train as train_or_restore)

PARADIGMS = ('ddpm', 'score_sde', 'edm', 'flow_matching')
NFES = (10, 20, 35, 50, 100)
# The few-step samplers of the nfe part. DDIM: (eta, spacing); eta = 0 is the deterministic
# ODE-like sampler, eta = 0.5 with quadratic spacing a stochastic one (Song et al. 2021,
# Table 1 and App. D.2). EDM Heun: the deterministic Algorithm 1 and the stochastic
# Algorithm 2 with EDM's churn settings (Karras et al. 2022, Table 5: S_tmin 0.05,
# S_tmax 50, S_noise 1.003; S_churn = 40 caps gamma at sqrt(2) - 1 for N <= 97).
DDIM_VARIANTS = {'ddim': (0.0, 'uniform'), 'ddim_eta0.5_quad': (0.5, 'quadratic')}
EDM_VARIANTS = {'edm_heun': {},
                'edm_heun_churn': dict(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003)}
SAMPLERS = (*DDIM_VARIANTS, *EDM_VARIANTS)


def _config(paradigm, dataset, steps=None):
  import importlib
  config = importlib.import_module(f'experiments.configs.{paradigm}').get_config(dataset)
  if steps:
    config.num_train_steps = steps
    config.eval_every_steps = steps
    config.sample_every_steps = steps
  return config


def _fd(scores):
  return next(v for k, v in scores.items() if k.startswith('FD'))


def _final_eval(workdir, step):
  """The loop's test eval at `step` from the workdir's metrics ({'bits_per_dim', 'bound',
  'num_examples', 'seconds'}), or None if the loop did not evaluate at that step."""
  from gen_jax.train.metrics import read_metrics
  rows = [r for r in read_metrics(workdir) if r['step'] == step and 'eval/bits_per_dim' in r]
  if not rows:
    return None
  ev = {k.removeprefix('eval/'): v for k, v in rows[-1].items() if k.startswith('eval/')}
  ev['bound'] = bool(ev['bound'])
  ev['num_examples'] = int(ev['num_examples'])
  return ev


def paradigms_part(dataset='digits', paradigms=PARADIGMS, steps=None,
                   out='/tmp/gen_jax_diffusion_benchmark', num=1000, max_eval=None,
                   budget_minutes=None):
  from gen_jax.eval import likelihood as likelihood_lib
  from gen_jax.utils import images
  score = sample_scorer(dataset)
  results = []
  for name in paradigms:
    config = _config(name, dataset, steps)
    extra = {}
    if budget_minutes:
      config, seconds_per_step = budget_config(config, budget_minutes)
      extra = {'budget_minutes': budget_minutes, 'probe_seconds_per_step': seconds_per_step}
    # The loop's own final eval is the benchmark's: on max_eval test images and, for ddpm,
    # with the full bound (all T terms) rather than the config's stratified estimate.
    config.eval_max_examples = max_eval or 0
    if name == 'ddpm':
      config.model.vlb_num_steps = 0
    workdir = os.path.join(out, f'{name}_{dataset}')
    run, state, seconds = train_or_restore(config, workdir)
    ev = _final_eval(workdir, int(state.step))
    if ev is None:       # training was cut short (SIGTERM) before the loop's final eval
      t0 = time.time()
      ev = likelihood_lib.evaluate(run, state, 'test', max_examples=max_eval)
      ev['seconds'] = time.time() - t0
    else:
      seconds -= ev['seconds']
    params = run.sampling_params(state)
    t0 = time.time()
    fake = sample_batched(lambda k, n: run.paradigm.sample(params, k, n), num)
    sample_seconds = time.time() - t0
    grid = os.path.join(out, f'{name}_{dataset}.png')
    images.save_png(images.image_grid(fake[:64]), grid)
    results.append({'part': 'paradigms', 'paradigm': name, 'dataset': dataset,
                    'steps': int(state.step), 'planned_steps': config.num_train_steps,
                    'train_seconds': round(seconds, 1), 'device': device_kind(), **extra,
                    'test_bits_per_dim': ev['bits_per_dim'], 'bound': ev['bound'],
                    'test_examples': ev.get('num_examples'),
                    'eval_seconds': round(ev['seconds'], 1),
                    'sample_seconds_per_1000': round(sample_seconds * 1000 / num, 1),
                    'grid': grid, **score(fake)})
    print(json.dumps(results[-1]), flush=True)
  return results


def edm_denoiser_from_ddpm(model_config, info, params):
  """EDM's D(x; sigma) from a discrete-time eps-network (Karras et al. 2022, Sec. 3 and
  App. C.1): sigma_n = sqrt((1 - abar_n) / abar_n); a continuous step index n(sigma) is
  interpolated in log sigma; x_vp = x / sqrt(1 + sigma^2); D = x - sigma eps(x_vp, n)."""
  from gen_jax.losses import score_matching as sm
  from gen_jax.paradigms import diffusion as common, ddpm
  spec = ddpm.make_spec(model_config, info)
  net = common.build_net(model_config, info, 'ddpm')
  schedule = sm.get_discrete_schedule(model_config.schedule, model_config.num_diffusion_steps)
  log_sigmas = 0.5 * jnp.log((1.0 - schedule.alpha_bars) / schedule.alpha_bars)
  steps = jnp.arange(schedule.num_steps, dtype=jnp.float32)

  def denoise(x, sigma):
    n = jnp.interp(jnp.log(sigma), log_sigmas, steps)
    alpha = jax.lax.rsqrt(1.0 + sigma ** 2)              # sqrt(abar) of this sigma, [B]
    x_vp = x * alpha.reshape(-1, *[1] * (x.ndim - 1))
    out = net.apply({'params': params}, x_vp, spec.time_input(n))
    _, x0 = sm.to_eps_x0(model_config.prediction, out, x_vp, alpha, sigma * alpha)
    return jnp.clip(x0, -1.0, 1.0)
  return denoise, float(jnp.exp(log_sigmas[0])), float(jnp.exp(log_sigmas[-1]))


def nfe_part(dataset='digits', workdir=None, steps=None, out='/tmp/gen_jax_diffusion_benchmark',
             num=1000, nfes=NFES, seeds=(0,)):
  if min(nfes) > 35:
    raise ValueError(f"nfe part: the few-step budgets {tuple(nfes)} hold none <= 35, the "
                     "target's; add one (e.g. --nfes=35).")
  from gen_jax.paradigms import ddpm
  from gen_jax.samplers import diffusion as samplers
  from gen_jax import workdir as workdir_lib
  from gen_jax.utils import images
  score = sample_scorer(dataset)
  workdir = workdir or os.path.join(out, f'ddpm_{dataset}')
  if os.path.exists(os.path.join(workdir, 'config.json')):   # a trained model (e.g. the
    run, state, _ = workdir_lib.restore(workdir)                      # paradigms part's): sample it
  else:
    run, state, _ = train_or_restore(_config('ddpm', dataset, steps), workdir)
  params = run.sampling_params(state)
  info = run.info
  model_config = run.config.model

  ancestral = ddpm.make(model_config, info)
  samplers_by_nfe = [('ancestral', model_config.num_diffusion_steps,
                      lambda k, n: ancestral.sample(params, k, n))]
  for name, (eta, spacing) in DDIM_VARIANTS.items():
    ddim_cfg = model_config.copy_and_resolve_references()
    ddim_cfg.sampler, ddim_cfg.eta, ddim_cfg.ddim_spacing = 'ddim', eta, spacing
    ddim_p = ddpm.make(ddim_cfg, info)
    samplers_by_nfe += [
        (name, len(samplers.ddim_timesteps(model_config.num_diffusion_steps, nfe, spacing)),
         lambda k, n, s=nfe, p=ddim_p: p.sample(params, k, n, num_steps=s)) for nfe in nfes]
  denoise, sigma_min, _ = edm_denoiser_from_ddpm(model_config, info, params)
  for name, churn in EDM_VARIANTS.items():
    for nfe in nfes:
      heun_steps = max(2, (nfe + 1) // 2)           # NFE = 2 N - 1

      @jax.jit
      def heun(k, s=heun_steps, churn=churn):
        return samplers.edm_sampler(denoise, (500, *info.shape), k, s, sigma_min=sigma_min,
                                    sigma_max=80.0, **churn)[0]
      samplers_by_nfe.append((name, 2 * heun_steps - 1,
                              lambda k, n, f=heun: jnp.clip((f(k)[:n] + 1) / 2, 0, 1)))

  rows = []
  for seed in seeds:
    for sampler, nfe, fn in samplers_by_nfe:
      t0 = time.time()
      fake = sample_batched(fn, num, seed=seed)
      seconds = time.time() - t0
      if seed == seeds[0]:
        images.save_png(images.image_grid(fake[:64]),
                        os.path.join(out, f'nfe_{sampler}_{nfe}.png'))
      rows.append({'seed': seed, 'sampler': sampler, 'nfe': nfe,
                   'seconds_per_1000': round(seconds * 1000 / num, 1), **score(fake)})
      print(json.dumps(rows[-1]), flush=True)
  summary = _nfe_summary(rows, seeds)
  print(json.dumps(summary), flush=True)
  _write_nfe_results(rows, summary, out)
  _plot(rows, os.path.join(out, f'nfe_curve_{dataset}.png'))
  return {'rows': rows, 'summary': summary}


def _nfe_summary(rows, seeds):
  """Per seed: FD(best sampler at NFE <= 35) / FD(ancestral 1000); then mean and std.

  Also, at each sampler's largest NFE <= 35 (a fixed point: no choice of the best NFE per
  seed), the ratio of FDs averaged over the seeds, R = mean FD_sampler / mean FD_ancestral,
  with its delta-method standard error R sqrt(se_s^2 / m_s^2 + se_a^2 / m_a^2), se = sd /
  sqrt(#seeds). The samplers' sample sets are independent draws, so per-seed ratios pair
  nothing; the ratio of means is the less noisy estimate of the same quantity."""
  ratios = {s: [] for s in SAMPLERS}
  for seed in seeds:
    mine = [r for r in rows if r['seed'] == seed]
    ref = _fd(next(r for r in mine if r['sampler'] == 'ancestral'))
    for s in ratios:
      ratios[s].append(min(_fd(r) for r in mine if r['sampler'] == s and r['nfe'] <= 35) / ref)
  refs = [_fd(r) for r in rows if r['sampler'] == 'ancestral']
  summary = {'seeds': list(seeds), 'fd_ancestral_1000': refs,
             'fd_ancestral_1000_mean': float(np.mean(refs)),
             'fd_ancestral_1000_std': float(np.std(refs, ddof=1)) if len(refs) > 1 else None}
  for s, v in ratios.items():
    summary[f'ratio_{s}_nfe<=35'] = v
    summary[f'ratio_{s}_nfe<=35_mean'] = float(np.mean(v))
    summary[f'ratio_{s}_nfe<=35_std'] = float(np.std(v, ddof=1)) if len(v) > 1 else None
    nfe = max(r['nfe'] for r in rows if r['sampler'] == s and r['nfe'] <= 35)
    fds = [_fd(r) for r in rows if r['sampler'] == s and r['nfe'] == nfe]
    ratio = np.mean(fds) / np.mean(refs)
    summary[f'ratio_of_means_{s}_nfe{nfe}'] = float(ratio)
    if len(seeds) > 1:
      rel_se = lambda x: np.std(x, ddof=1) / np.sqrt(len(x)) / np.mean(x)
      summary[f'ratio_of_means_{s}_nfe{nfe}_se'] = float(ratio * np.hypot(rel_se(fds), rel_se(refs)))
  return summary


def _write_nfe_results(rows, summary, out):
  """rows.jsonl, summary.json and table.md (FD per seed, mean over ancestral mean) in out."""
  with open(os.path.join(out, 'rows.jsonl'), 'w') as f:
    f.writelines(json.dumps(r) + '\n' for r in rows)
  with open(os.path.join(out, 'summary.json'), 'w') as f:
    json.dump(summary, f, indent=1)
  seeds = summary['seeds']
  points = sorted({(r['sampler'], r['nfe']) for r in rows},
                  key=lambda p: (p[0] != 'ancestral', p[0], p[1]))
  lines = ['| sampler | NFE | ' + ' | '.join(f'FD seed {s}' for s in seeds)
           + ' | mean / ancestral mean |', '|---' * (len(seeds) + 3) + '|']
  for sampler, nfe in points:
    fds = [_fd(r) for s in seeds for r in rows
           if r['seed'] == s and r['sampler'] == sampler and r['nfe'] == nfe]
    lines.append(f'| {sampler} | {nfe} | ' + ' | '.join(f'{v:.1f}' for v in fds)
                 + f" | {np.mean(fds) / summary['fd_ancestral_1000_mean']:.3f} |")
  lines += ['', 'Per-seed ratio FD(best at NFE <= 35) / FD(ancestral, same seed), mean +- sd:', '']
  for s in SAMPLERS:
    v = summary[f'ratio_{s}_nfe<=35']
    sd = summary[f'ratio_{s}_nfe<=35_std']
    lines.append(f"- {s}: {', '.join(f'{x:.3f}' for x in v)} -> "
                 f"{summary[f'ratio_{s}_nfe<=35_mean']:.3f}" + (f' +- {sd:.3f}' if sd else ''))
  lines += ['', 'Ratio of mean FDs over the seeds at the largest NFE <= 35 (+- standard error):', '']
  for key, value in summary.items():
    if key.startswith('ratio_of_means_') and not key.endswith('_se'):
      se = summary.get(key + '_se')
      lines.append(f"- {key[len('ratio_of_means_'):]}: {value:.3f}" + (f' +- {se:.3f}' if se else ''))
  with open(os.path.join(out, 'table.md'), 'w') as f:
    f.write('\n'.join(lines) + '\n')


def _plot(rows, path):
  import matplotlib
  matplotlib.use('Agg')
  import matplotlib.pyplot as plt
  fig, ax = plt.subplots(figsize=(5, 3.5))
  def by_nfe(sampler):
    fds = {}
    for r in rows:
      if r['sampler'] == sampler:
        fds.setdefault(r['nfe'], []).append(_fd(r))
    nfe = sorted(fds)
    return nfe, [np.mean(fds[n]) for n in nfe], [min(fds[n]) for n in nfe], [max(fds[n]) for n in nfe]
  for sampler, marker in zip(SAMPLERS, ('o--', 'o-', 's--', 's-')):
    nfe, mean, lo, hi = by_nfe(sampler)
    line, = ax.plot(nfe, mean, marker, label=sampler)
    ax.fill_between(nfe, lo, hi, color=line.get_color(), alpha=0.2)
  nfe, mean, lo, hi = by_nfe('ancestral')
  ax.axhline(mean[0], color='k', ls='--', label=f"ancestral ({nfe[0]} NFE)")
  ax.axhspan(lo[0], hi[0], color='k', alpha=0.1)
  ax.set_xscale('log')
  ax.set_xlabel('NFE')
  ax.set_ylabel('FD (digits classifier)')
  ax.set_title(f"{len({r['seed'] for r in rows})} sampling seed(s): mean, band = range", fontsize=9)
  ax.legend()
  fig.tight_layout()
  fig.savefig(path, dpi=120)
  plt.close(fig)


def run(parts=('paradigms', 'nfe'), dataset='digits', paradigms=PARADIGMS, steps=None,
        workdir=None, out='/tmp/gen_jax_diffusion_benchmark', seeds=(0,), max_eval=None,
        num=1000, budget_minutes=None, nfes=NFES) -> dict:
  os.makedirs(out, exist_ok=True)
  results = {}
  if 'paradigms' in parts:
    results['paradigms'] = paradigms_part(dataset, paradigms, steps, out, num, max_eval,
                                          budget_minutes)
  if 'nfe' in parts:
    results['nfe'] = nfe_part(dataset, workdir, steps, out, num, nfes, seeds)
  return results


if __name__ == '__main__':
  parser = argparse.ArgumentParser()
  parser.add_argument('--parts', default='paradigms,nfe')
  parser.add_argument('--dataset', default='digits')
  parser.add_argument('--paradigms', default=','.join(PARADIGMS))
  parser.add_argument('--steps', type=int, default=None)
  parser.add_argument('--workdir', default=None,
                      help='--parts=nfe: a ddpm workdir, sampled as saved if it holds a run, else trained there')
  parser.add_argument('--out', default='/tmp/gen_jax_diffusion_benchmark')
  parser.add_argument('--seeds', default='0', help='sampling seeds of the nfe part, e.g. 0,1,2')
  parser.add_argument('--max_eval', type=int, default=0,
                      help='test images for the bits/dim of the paradigms part; 0 = all')
  parser.add_argument('--nfes', default=','.join(map(str, NFES)),
                      help='nfe part: the few-step budgets, e.g. 35 for more seeds at the target')
  parser.add_argument('--num', type=int, default=1000, help='samples behind each FD')
  parser.add_argument('--budget_minutes', type=float, default=None,
                      help='paradigms part: train each model for the steps that fit this many '
                           'minutes here (a probe times the train step); overrides --steps')
  args = parser.parse_args()
  res = run(tuple(args.parts.split(',')), args.dataset, tuple(args.paradigms.split(',')),
            args.steps, args.workdir, args.out, tuple(int(s) for s in args.seeds.split(',')),
            args.max_eval or None, args.num, args.budget_minutes,
            tuple(int(n) for n in args.nfes.split(',')))
  print(json.dumps(res, default=str))
