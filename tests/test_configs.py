"""The config files and the paradigms' fields dataclasses: one source of each model default.

Every config file x config arg builds; its `config.model` parses into its paradigm's `Fields`
(no unknown name) and holds the values the config set; the configs are the ones measured
(a digest of every config's JSON: a refactor changes no value); `make` refuses an unknown
field and fills a missing one from the dataclass default.
"""
from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import pathlib
import types

import jax.numpy as jnp
import ml_collections
import pytest

from experiments.configs import common
from gen_jax import workdir as workdir_lib
from gen_jax.data.info import DatasetInfo
from gen_jax.errors import UserError
from gen_jax.paradigms import latent_diffusion
from gen_jax.paradigms.base import parse_model_config

CONFIGS = pathlib.Path(__file__).resolve().parent.parent / "experiments" / "configs"

_DIFFUSION = ("digits", "mnist_idx", "cifar10", "eight_gaussians", "checkerboard", "moons",
              "swiss_roll", "digits_cond", "mnist_idx_cond", "cifar10_cond")
# Every config file and the args its get_config takes ("<default>": get_config()).
ARGS = {
    "cgan": ("digits", "mnist_idx"), "ddpm": _DIFFUSION, "edm": _DIFFUSION,
    "score_sde": _DIFFUSION, "flow_matching": _DIFFUSION,
    "flow2d": ("eight_gaussians", "checkerboard", "moons", "swiss_roll"),
    "gan": ("digits", "mnist_idx", "eight_gaussians"),
    "glow": ("digits", "mnist_idx", "cifar10"), "realnvp": ("digits", "mnist_idx", "cifar10"),
    "gpt": ("shakespeare_small", "shakespeare", "text_file", "owt_124m"),
    "latent_diffusion": ("digits", "mnist_idx"), "maskgit": ("digits", "mnist_idx"),
    "vq_gpt": ("digits", "mnist_idx"), "text2image": ("digits", "mnist_idx"),
    "any2any": ("digits", "mnist_idx"),
    "lmm": ("digits", "mnist_idx", "digits_classifier", "mnist_idx_classifier"),
    "dit": ("digits", "mnist_idx", "digits_cond", "mnist_idx_cond"),
    "consistency": ("digits", "mnist_idx", "digits_ct", "mnist_idx_ct"),
    "mdlm": ("shakespeare_small", "text_file"),
    "pixel_ar": ("digits", "mnist_idx"), "vae": ("digits", "mnist_idx", "mnist", "cifar10"),
    "vqvae": ("digits", "mnist_idx", "mnist", "cifar10"),
    "msvq": ("digits", "mnist_idx"), "var": ("digits", "mnist_idx"),
}

# sha256 (first 16 hex digits) of "<file>:<arg>=<json.dumps(config.to_dict(), sort_keys=True)>"
# lines, sorted, for every arg of each file: the configs as they were when their defaults moved
# into the paradigms' Fields (commit "one source of defaults"). A config changed on purpose
# (a retuned value, a new field) changes its digest: put the new one here, as the failure says.
# A field added at the value that does what the code did before it (workdir.ADDED_FIELDS) may
# instead join ADDED_SINCE_DIGESTS: the experiment, and its digest, are as they were.
DIGESTS = {
    "cgan": "316171d70286c88a", "ddpm": "dfd364df3727252e", "edm": "e84142930406922f",
    "flow2d": "379b93f252088ea3", "flow_matching": "ac0591bd3d3ff517",
    "gan": "0b2633cd9f0188f4", "glow": "05cdd8021e81c30a", "gpt": "45f74d6858b85020",
    "latent_diffusion": "9377601a632ac6a3", "maskgit": "82700b081dec8e00",
    "pixel_ar": "4724308df8b80370", "realnvp": "73f3dee80ed76bfd",
    "score_sde": "819667cb4ae66fe9", "text2image": "6afd65ef4a058a4a",
    "any2any": "b09264523448912d", "dit": "dfe56f82d98900b5", "mdlm": "dfff61ab2465dde7",
    "lmm": "b3cb8c7142f1a503", "consistency": "a8643c86f51e8ecf",
    "vae": "ec96364e7c106fc2", "vq_gpt": "ed3e6c8f7d2d4691", "vqvae": "5331ad6d73e3a473",
    "msvq": "3f69bfb450e47446", "var": "567a0422e243580e",
}


def get_config(name, arg):
  module = importlib.import_module(f"experiments.configs.{name}")
  return module.get_config() if arg == "<default>" else module.get_config(arg)


def cases():
  return [(name, arg) for name, args in ARGS.items() for arg in ("<default>", *args)]


def fields_class(config):
  """The fields dataclass of the paradigm `config` names."""
  if config.paradigm == "latent_diffusion":
    return latent_diffusion.fields_class(config.model.objective)
  return importlib.import_module(f"gen_jax.paradigms.{config.paradigm}").Fields


# Fields of workdir.ADDED_FIELDS added after the digests were taken.
ADDED_SINCE_DIGESTS = ("compute_dtype", "param_dtype", "remat", "grad_accum_steps",
                       "profile_steps", "model.attention_impl", "init_from")


def measured(config) -> dict:
  """config.to_dict() without the fields added since the digests that hold their
  before-the-field value (workdir.ADDED_FIELDS)."""
  tree = config.to_dict()
  for key in ADDED_SINCE_DIGESTS:
    value = workdir_lib.ADDED_FIELDS[key]
    *parents, leaf = key.split(".")
    node = tree
    for parent in parents:
      node = node.get(parent, {})
    if leaf in node and node[leaf] == value:
      del node[leaf]
  if tree.get("synthetic_like") == tree.get("dataset"):   # added since, as every config sets it
    del tree["synthetic_like"]
  return tree


def normalized(value):
  return json.loads(json.dumps(value, default=str))


@pytest.mark.parametrize("name,arg", cases())
def test_synthetic_data_copies_the_configs_own_dataset(name, arg):
  """--config.dataset=synthetic makes batches shaped like config.synthetic_like: every config
  keeps it equal to its dataset (a config that changes config.dataset changes both)."""
  config = get_config(name, arg)
  assert config.synthetic_like == config.dataset


def test_every_config_file_is_listed():
  files = {p.stem for p in CONFIGS.glob("*.py") if p.stem not in ("__init__", "common")
           and not p.stem.startswith("_")}
  assert files == set(ARGS) == set(DIGESTS)


@pytest.mark.parametrize("name", sorted(ARGS))
def test_configs_are_the_measured_ones(name):
  dumps = {f"{name}:{arg}": json.dumps(measured(get_config(name, arg)), sort_keys=True,
                                       default=str) for arg in ("<default>", *ARGS[name])}
  lines = [f"{key}={dumps[key]}" for key in sorted(dumps)]
  digest = hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]
  assert digest == DIGESTS[name], (
      f"experiments/configs/{name}.py gives other configs than the measured ones (digest "
      f"{digest}). If that is deliberate, set DIGESTS[{name!r}] = {digest!r} here.")


@pytest.mark.parametrize("name,arg", cases())
def test_config_model_fields_are_its_paradigms(name, arg):
  """No unknown name, and the parsed fields hold the config's values."""
  config = get_config(name, arg)
  fields = parse_model_config(fields_class(config), config.model)
  for key, value in config.model.items():
    assert normalized(getattr(fields, key)) == normalized(value), key
  # config.json gives back lists for tuples: the same fields.
  assert parse_model_config(fields_class(config), normalized(config.model.to_dict())) == fields


def test_fields_of_saved_runs_older_than_a_field_take_its_default():
  """workdir.ADDED_FIELDS (fields a saved config.json may lack, and the value the run had) are
  the defaults of the paradigms that have them, so such a run builds as it trained."""
  classes = [fields_class(get_config(name, "<default>")) for name in ARGS]
  base = common.base_config("vae", "digits")
  for key, value in workdir_lib.ADDED_FIELDS.items():
    if not key.startswith("model."):   # a field every config has: base_config's value
      assert base[key] == value, key
      continue
    field = key.split(".", 1)[1]
    defaults = [getattr(parse_model_config(cls, {}), field) for cls in classes
                if field in {f.name for f in dataclasses.fields(cls)}]
    assert defaults and value in defaults, key


_STAGE1 = types.SimpleNamespace(decode=lambda z: jnp.zeros((z.shape[0], 8, 8, 1)),
                                decoder_log_likelihood=lambda c, x: jnp.zeros(c.shape[0]))
_DIGITS = DatasetInfo("digits", "image", (8, 8, 1), num_levels=17, num_classes=10)
INFOS = {   # one config arg of each file and a dataset description it builds on
    "ddpm": _DIGITS, "edm": _DIGITS, "score_sde": _DIGITS, "flow_matching": _DIGITS,
    "gan": _DIGITS, "cgan": _DIGITS, "glow": _DIGITS, "realnvp": _DIGITS, "vae": _DIGITS,
    "vqvae": _DIGITS, "pixel_ar": _DIGITS, "lmm": _DIGITS,
    "flow2d": DatasetInfo("toy2d/eight_gaussians", "points", (2,)),
    "gpt": DatasetInfo("text_file", "text", (65,), vocab="abcd\n"),
    **{name: DatasetInfo("encoded", "codes", (4, 4), num_levels=17, num_classes=10,
                         num_codes=64, image_shape=(8, 8, 1), stage1=_STAGE1)
       for name in ("vq_gpt", "maskgit", "text2image", "any2any")},
    "msvq": _DIGITS,
    "var": DatasetInfo("encoded", "codes", (85,), num_levels=17, num_classes=10, num_codes=64,
                       image_shape=(8, 8, 1), stage1=types.SimpleNamespace(
                           config=ml_collections.ConfigDict(dict(paradigm="msvq", model={})),
                           info=_DIGITS, params=None, **vars(_STAGE1))),
    "latent_diffusion": DatasetInfo("encoded", "latents", (16,), num_levels=17, num_classes=10,
                                    image_shape=(8, 8, 1), stage1=_STAGE1,
                                    latent_mean=(0.0,) * 16, latent_std=(1.0,) * 16),
}


@pytest.mark.parametrize("name", sorted(INFOS))
def test_make_refuses_an_unknown_field_and_lists_the_known_ones(name):
  config = get_config(name, "<default>")
  paradigm = importlib.import_module(f"gen_jax.paradigms.{config.paradigm}")
  paradigm.make(config.model, INFOS[name])                     # the config itself builds
  typo = ml_collections.ConfigDict({**config.model.to_dict(), "num_layer": 3})
  with pytest.raises(UserError, match="no field 'num_layer'") as error:
    paradigm.make(typo, INFOS[name])
  for field in dataclasses.fields(fields_class(config)):
    assert field.name in str(error.value)


@pytest.mark.parametrize("name", sorted(INFOS))
def test_make_fills_missing_fields_with_the_dataclass_defaults(name):
  config = get_config(name, "<default>")
  paradigm = importlib.import_module(f"gen_jax.paradigms.{config.paradigm}")
  paradigm.make(ml_collections.ConfigDict(), INFOS[name])      # every field has a default
  cls = fields_class(config)
  assert parse_model_config(cls, ml_collections.ConfigDict()) == cls()
  partial = {k: v for i, (k, v) in enumerate(config.model.items()) if i % 2}
  fields = parse_model_config(cls, partial)
  for field in dataclasses.fields(cls):
    expected = partial.get(field.name, field.default)
    assert normalized(getattr(fields, field.name)) == normalized(expected), field.name


def test_latent_diffusion_accepts_the_fields_of_its_other_objectives():
  """--config.model.objective=ddpm on the edm-based config: edm's fields stay, unused."""
  config = get_config("latent_diffusion", "digits")
  config.model.objective = "ddpm"
  latent_diffusion.make(config.model, INFOS["latent_diffusion"])
  config.model.not_a_field = 1
  with pytest.raises(UserError, match="no field 'not_a_field'"):
    latent_diffusion.make(config.model, INFOS["latent_diffusion"])


def test_model_fields_refuses_a_name_the_dataclass_lacks():
  from experiments.configs.common import model_fields
  from gen_jax.paradigms import ddpm
  assert model_fields(ddpm.Fields, "schedule", eta=0.5).to_dict() == dict(schedule="linear",
                                                                          eta=0.5)
  with pytest.raises(ValueError, match="no field"):
    model_fields(ddpm.Fields, "schedul")
