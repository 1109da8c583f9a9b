"""Fields every gen_jax config has (DESIGN.md, "Entry points, config fields and outputs").

Each paradigm's config file calls `base_config(paradigm, dataset)`, builds `config.model`
from the paradigm's fields dataclass with `model_fields` (where each model field's default
lives: `gen_jax.paradigms.<paradigm>.Fields`), and sets what its datasets change.
"""
from __future__ import annotations

import dataclasses

import ml_collections

# Datasets whose raw files must be supplied by the user (TFDS manual dir), and
# where this repository's shared data folder keeps them when it exists.
SHARED_MANUAL_DIRS = {
    "mnist_idx": "../shared/data/mnist",
    "text_file": "../shared/data/tiny_shakespeare",
}


def base_config(paradigm: str, dataset: str) -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.paradigm = paradigm          # module name in gen_jax/paradigms/
  config.dataset = dataset            # TFDS name: digits, toy2d/eight_gaussians, mnist_idx, text_file, mnist, ...
  # dataset="synthetic" (throughput): random batches on device shaped like this dataset
  # (gen_jax.data.synthetic). Keep it equal to `dataset` when a config changes that.
  config.synthetic_like = dataset
  config.data_dir = ""                # TFDS data dir; "" = ~/.cache/gen_jax/tensorflow_datasets (or $GEN_JAX_DATA_DIR)
  config.manual_dir = SHARED_MANUAL_DIRS.get(dataset, "")  # raw files for mnist_idx / text_file
  config.preprocess = "none"          # per-example preprocessing in the input pipeline: none | binarize
  config.seq_len = 64                 # tokens per training window (text datasets only)
  config.seed = 0
  config.batch_size = 128             # global batch, split over the mesh's data axis
  config.eval_batch_size = 256
  config.num_train_steps = 2_000
  config.log_every_steps = 50
  config.eval_every_steps = 1_000
  config.eval_max_examples = 0        # test examples in the loop's periodic eval; 0 = whole split
  config.checkpoint_every_steps = 500
  config.sample_every_steps = 1_000
  config.num_samples = 64             # samples in each grid written to workdir/samples/
  config.keep_checkpoints = 3
  config.on_nonfinite = "halt"        # halt | skip: what a NaN/inf loss or gradient does
  config.mesh = "data=-1,fsdp=1"      # axis sizes; -1 takes all remaining devices
  # Accelerator fields (gen_jax.policy, gen_jax.train.state).
  config.compute_dtype = "float32"    # float32 | bfloat16: activations and matmuls of the step
  config.param_dtype = "float32"      # float32 | bfloat16: stored params, optimizer state, EMA
  config.remat = "none"               # none | blocks | full | a jax.checkpoint_policies name
  config.grad_accum_steps = 1         # micro-batches per update (divides each device's batch)
  config.profile_steps = ""           # "N,M": a jax.profiler trace of steps N..M into workdir/tensorboard

  config.optimizer = ml_collections.ConfigDict()
  config.optimizer.name = "adam"      # adam | adamw | sgd
  config.optimizer.learning_rate = 1e-3
  config.optimizer.schedule = "constant"  # constant | cosine (to learning_rate * final_lr_factor)
  config.optimizer.warmup_steps = 0
  config.optimizer.final_lr_factor = 0.1
  config.optimizer.b1 = 0.9
  config.optimizer.b2 = 0.999
  config.optimizer.weight_decay = 0.0     # adamw: applied to matrices (ndim >= 2) only
  config.optimizer.grad_clip_norm = 1.0   # global-norm clipping; 0 = off
  # Per-player overrides for multi-player paradigms, e.g. {"discriminator": {"learning_rate": 4e-4}}.
  config.optimizer.per_player = ml_collections.ConfigDict()

  config.ema_decay = 0.0              # 0 = no EMA; samples use EMA params when > 0
  # A parameter file (safetensors or npz, from `python -m experiments.export`) a new run's
  # params and EMA start from, optimizer fresh; "" = the paradigm's init. A resumed run
  # continues from its checkpoint (gen_jax.workdir.initial_state).
  config.init_from = ""
  config.model = ml_collections.ConfigDict()
  return config


def stage1_config(workdir: str, step: int = 0, **expect) -> ml_collections.ConfigDict:
  """`config.stage1` of a stage-2 config: where its stage-1 run is, and what that run's saved
  config must hold (`gen_jax.workdir.load_stage1` checks it).

  Args:
    workdir: the stage-1 run's workdir.
    step: its checkpoint to use; 0 = the run's final step (`num_train_steps`),
      which must exist (an unfinished stage 1 is refused).
    **expect: values the stage-1 saved config must have, nested as in it, e.g.
      `paradigm="vqvae", dataset="digits", model=dict(num_codes=64)`.
  """
  return ml_collections.ConfigDict(dict(workdir=workdir, step=step, **expect))


def field_names(fields_class) -> tuple[str, ...]:
  """The names of a fields dataclass's fields, in their order."""
  return tuple(f.name for f in dataclasses.fields(fields_class))


def model_fields(fields_class, *at_default: str, **values) -> ml_collections.ConfigDict:
  """`config.model` fields from a paradigm's fields dataclass (e.g. `ddpm.Fields`).

  Args:
    fields_class: the dataclass; its defaults are the one place the defaults live.
    *at_default: fields the config holds at the dataclass's default (so that they are in
      config.json and --config.model.<field> can set them).
    **values: fields the config sets to its own values (a name in both takes the value).
  Fields named in neither are left out of the config; the paradigm reads their defaults.
  A name that is no field of the class raises ValueError.
  """
  defaults = {f.name: f.default for f in dataclasses.fields(fields_class)}
  unknown = [name for name in (*at_default, *values) if name not in defaults]
  if unknown:
    raise ValueError(f"{fields_class.__qualname__} has no field {unknown}; its fields are "
                     f"{sorted(defaults)}.")
  if no_default := [name for name in at_default if defaults[name] is dataclasses.MISSING]:
    raise ValueError(f"{fields_class.__qualname__}.{no_default} have no default; set them.")
  return ml_collections.ConfigDict({**{name: defaults[name] for name in at_default}, **values})
