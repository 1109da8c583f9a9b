r"""Consistency models (Song, Dhariwal, Chen, Sutskever 2023, arXiv:2303.01469): one- and two-step
samplers, by distillation from an EDM teacher (CD) or trained from scratch (CT).

CD: train the teacher, then distil it (the teacher's workdir is config.stage1.workdir; these are
the defaults):

  python -m experiments.train --config=experiments/configs/edm.py:digits --workdir=/tmp/gen_jax/edm_digits
  python -m experiments.train --config=experiments/configs/consistency.py:digits --workdir=/tmp/cd
  python -m experiments.sample --workdir=/tmp/cd --out=/tmp/cd.png                # 1 step
  python -m experiments.sample --workdir=/tmp/cd --out=/tmp/cd2.png --num_steps=2
  python -m experiments.evaluate --workdir=/tmp/cd --num_samples=2000     # FD: no likelihood

  (another teacher: --config.stage1.workdir=DIR of an edm.py:digits run; its network fields must
  be the student's, which starts from its EMA weights.)

CT: python -m experiments.train --config=experiments/configs/consistency.py:digits_ct --workdir=/tmp/ct

The run trains on the images (dataset digits), the teacher loaded beside them. Distance:
pseudo-Huber (Song & Dhariwal 2023, arXiv:2310.14189; the paper's LPIPS is not available here;
--config.model.distance=l2 is the paper's L2). Measured (digits, CD of a 2,000-step edm.py:digits
teacher whose Heun FD at 35 NFE is 23.1 +- 1.4): one-step FD 33.0 +- 3.2 (1.43x the teacher's),
two-step 27.3 +- 3.2 (1.18x); 2,000 samples, seeds 0..3, FD on the digits classifier
(results/emerging/consistency.md).

Args: digits, mnist_idx (CD on the edm.py run of that dataset), digits_ct, mnist_idx_ct (CT).
"""
from experiments.configs._diffusion import base_diffusion_config
from experiments.configs.common import model_fields, stage1_config
from gen_jax.paradigms import consistency

# The teacher each dataset's CD config reads by default (an edm.py:<dataset> run).
TEACHERS = {'digits': '/tmp/gen_jax/edm_digits', 'mnist_idx': '/tmp/gen_jax/edm_mnist_idx'}


def get_config(arg: str = 'digits'):
  training = arg.endswith('_ct')
  dataset = arg[:-len('_ct')] if training else arg
  if dataset not in TEACHERS:
    raise ValueError(f"Unknown consistency config arg {arg!r}; use one of {tuple(TEACHERS)} "
                     "(distillation) or those with '_ct' (training from scratch).")
  config = base_diffusion_config('consistency', dataset)     # the edm.py:<dataset> U-Net
  m = config.model                  # the fields and their defaults: gen_jax.paradigms.consistency.Fields
  m.update(model_fields(consistency.Fields, 'sigma_data', 'sigma_min', 'sigma_max', 'rho',
                        'weighting', 'num_steps', 'sampling_sigmas',
                        training='training' if training else 'distillation',
                        distance='pseudo_huber'))      # digits CD: one-step FD 37.9 vs L2's 41.0
  config.optimizer.schedule = 'constant'     # the paper's (Adam, constant rate)
  config.optimizer.warmup_steps = 0
  if training:
    m.update(model_fields(consistency.Fields, 's0', 's1', 'mu0'))
    m.total_steps = config.get_ref('num_train_steps')       # K of N(k): the run's steps
    config.optimizer.learning_rate = 4e-4
    config.num_train_steps = 4_000 if dataset == 'digits' else 6_000
  else:
    config.stage1 = stage1_config(TEACHERS[dataset], paradigm='edm', dataset=dataset,
                                  model=dict(channels=m.channels))
    m.update(model_fields(consistency.Fields, 'num_scales', 'target_decay', 'teacher_solver'))
    # Two steps through sigma_7 = 0.585 of the N = 18 grid, picked on a held-out sampling seed
    # (results/emerging/consistency.md); the default grid level sigma_10 = 3.26 scored 44 vs 36.
    m.sampling_sigmas = (0.585,)             # (tuned on digits; mnist_idx takes the same, untuned)
    config.optimizer.learning_rate = 2e-4    # from the teacher's weights
    config.num_train_steps = 4_000           # edm.py:digits' count; 2,000 steps: 1.64x / 1.34x
  config.eval_every_steps = config.num_train_steps    # no likelihood: scored by its samples
  config.sample_every_steps = config.num_train_steps // 2
  config.checkpoint_every_steps = min(1_000, config.num_train_steps)
  return config
