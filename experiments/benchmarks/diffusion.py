r"""Diffusion suite: training, likelihoods and the NFE -> quality curve of the diffusion family.

  python -m experiments.benchmark --suite=diffusion                         # both parts, digits
  python -m experiments.benchmark --suite=diffusion --parts=nfe --workdir=/tmp/ddpm --seeds=1,2
  python -m experiments.benchmark --suite=diffusion --parts=paradigms --dataset=mnist_idx \
      --only=ddpm --steps=1500 --max_eval=256      # bits/dim on the first 256 test images
  python -m experiments.benchmark --suite=diffusion --parts=paradigms --only=edm --budget_minutes=3

* paradigms: `<p>.py:<dataset>` for each of PARADIGMS (or --only): test bits/dim from the
  loop's final evaluation on --max_eval images (DDPM: the full T-term variational bound; the
  others: the ODE likelihood of dequantised data, Hutchinson trace, diffrax Tsit5; all bounds
  on log P of the levels), FD of --num_samples samples, times, a grid `<p>_<dataset>.png`.
* nfe: ONE trained DDPM (--workdir, else the paradigms part's ddpm) sampled six ways:
  1000-step ancestral (the reference); DDIM, deterministic and stochastic; EDM's Heun sampler,
  deterministic and with churn, and DPM-Solver++(2M), on the same network through the VP -> EDM
  change of variables (`gen_jax.samplers.diffusion.edm_denoiser_from_discrete`); at the NFE of --nfes, each once a
  --seeds seed: FD of --num_samples samples, a grid each, the curve and each sampler's ratio to
  the 1000-step FD (`gen_jax.eval.nfe`: rows.jsonl, summary.json, table.md).
"""
from __future__ import annotations

import importlib
import json
import os

import jax
import jax.numpy as jnp

from experiments import benchmark
from gen_jax import workdir as workdir_lib
from gen_jax.eval import classifier, evaluators, nfe
from gen_jax.losses import score_matching as sm
from gen_jax.paradigms import ddpm, diffusion
from gen_jax.samplers import diffusion as samplers

DEFAULTS = {"parts": ["paradigms", "nfe"], "out": "/tmp/gen_jax_diffusion_benchmark"}
PARADIGMS = ('ddpm', 'score_sde', 'edm', 'flow_matching')
# The few-step samplers of the nfe part. DDIM: (eta, spacing); eta = 0 is the deterministic
# ODE-like sampler, eta = 0.5 with quadratic spacing a stochastic one (Song et al. 2021,
# Table 1 and App. D.2). EDM Heun: the deterministic Algorithm 1 and the stochastic
# Algorithm 2 with EDM's churn settings (Karras et al. 2022, Table 5: S_tmin 0.05,
# S_tmax 50, S_noise 1.003; S_churn = 40 caps gamma at sqrt(2) - 1 for N <= 97).
DDIM_VARIANTS = {'ddim': (0.0, 'uniform'), 'ddim_eta0.5_quad': (0.5, 'quadratic')}
EDM_VARIANTS = {'edm_heun': {}, 'edm_heun_churn': dict(s_churn=40.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003)}
SAMPLERS = (*DDIM_VARIANTS, *EDM_VARIANTS, 'dpm_solver_pp')


def _config(paradigm, dataset):
  config = importlib.import_module(f'experiments.configs.{paradigm}').get_config(dataset)
  if paradigm == 'ddpm':
    config.model.vlb_num_steps = 0     # the benchmark's bound: all T terms
  return config


def paradigms_part(args) -> list:
  reference, results = classifier.reference(args.dataset), []
  for name in args.only or PARADIGMS:
    scores = evaluators.Samples(args.num_samples, reference, batch=500,
                                grid=os.path.join(args.out, f'{name}_{args.dataset}.png'))
    row, _ = benchmark.train_and_evaluate(name, _config(name, args.dataset), args, [scores], log=args.log)
    per_1000 = round(row['sample_s'] * 1000 / args.num_samples, 1)
    results.append(benchmark.renamed({'part': 'paradigms', 'paradigm': name, 'dataset': args.dataset, **row,
                                      'sample_seconds_per_1000': per_1000}))
  return results


def nfe_part(args, out) -> dict:
  """The NFE -> FD curve of one DDPM's samplers (see the module docstring)."""
  nfes, seeds = [int(n) for n in args.nfes], [int(s) for s in args.seeds]
  workdir = args.workdir or benchmark.workdir_of(args, args.dataset, 'ddpm')
  if not os.path.exists(os.path.join(workdir, 'config.json')):
    benchmark.train('ddpm', _config('ddpm', args.dataset), workdir, args, args.log)
  run, state, _ = workdir_lib.restore(workdir)
  params, info, model = run.sampling_params(state), run.info, run.config.model
  reference = classifier.reference(run.config.dataset)
  ancestral = ddpm.make(model, info)
  by_nfe = [('ancestral', model.num_diffusion_steps, lambda k, n: ancestral.sample(params, k, n))]
  for name, (eta, spacing) in DDIM_VARIANTS.items():
    ddim_model = model.copy_and_resolve_references()
    ddim_model.sampler, ddim_model.eta, ddim_model.ddim_spacing = 'ddim', eta, spacing
    p = ddpm.make(ddim_model, info)
    by_nfe += [(name, len(samplers.ddim_timesteps(model.num_diffusion_steps, steps, spacing)),
                lambda k, n, s=steps, p=p: p.sample(params, k, n, num_steps=s)) for steps in nfes]
  spec, net = ddpm.make_spec(model, info), diffusion.build_net(model, info, 'ddpm')
  x0_fn = lambda x, n, alpha, sigma: sm.to_eps_x0(
      model.prediction, net.apply({'params': params}, x, spec.time_input(n)), x, alpha, sigma)[1]
  denoise, sigma_min, _ = samplers.edm_denoiser_from_discrete(
      x0_fn, sm.get_discrete_schedule(model.schedule, model.num_diffusion_steps))
  for name, churn in EDM_VARIANTS.items():
    for budget in nfes:
      steps = max(2, (budget + 1) // 2)           # NFE = 2 N - 1
      heun = jax.jit(lambda k, n, s=steps, churn=churn: samplers.edm_sampler(
          denoise, (n, *info.shape), k, s, sigma_min=sigma_min, sigma_max=80.0, **churn)[0],
          static_argnums=1)
      by_nfe.append((name, 2 * steps - 1, lambda k, n, f=heun: jnp.clip((f(k, n) + 1) / 2, 0, 1)))
  dpm_model = model.copy_and_resolve_references()
  dpm_model.sampler = 'dpm_solver_pp'
  dpm = ddpm.make(dpm_model, info)
  by_nfe += [('dpm_solver_pp', steps, lambda k, n, s=steps: dpm.sample(params, k, n, num_steps=s))
             for steps in nfes]
  rows = nfe.compare(by_nfe, reference, args.num_samples, seeds, out, log=args.log)
  summary = nfe.summarize(rows, SAMPLERS)
  args.log(json.dumps(summary))
  nfe.write(out, rows, summary, SAMPLERS, f'nfe_curve_{run.config.dataset}')
  return {'rows': rows, 'summary': summary}


def run(args) -> dict:
  results, nfes = {}, tuple(int(n) for n in args.nfes)
  if 'nfe' in args.parts and min(nfes) > 35:
    raise ValueError(f"nfe part: the few-step budgets {nfes} hold none <= 35, the target's; "
                     "add one (e.g. --nfes=35).")
  os.makedirs(args.out, exist_ok=True)
  if 'paradigms' in args.parts:
    results['paradigms'] = paradigms_part(args)
  if 'nfe' in args.parts:
    results['nfe'] = nfe_part(args, args.out)
  return results
