"""experiments/gallery.py: families, grouping, text decoding and the family picture."""
from __future__ import annotations

import numpy as np
from PIL import Image

from experiments import gallery


def test_paradigms_map_to_their_families_and_unknown_ones_stand_alone():
  assert gallery.family_of("vae") == "latent_variable"
  assert gallery.family_of("edm") == "diffusion"
  assert gallery.family_of("cgan") == "adversarial"
  assert gallery.family_of("maskgit") == "hybrid"
  assert gallery.family_of("my_new_model") == "my_new_model"
  # No paradigm is listed under two families.
  listed = [n for names in gallery.FAMILIES.values() for n in names]
  assert len(listed) == len(set(listed))


def test_grouping_keeps_every_name_once_in_family_order():
  names = ["gan", "zeta_model", "vae", "edm", "cgan", "ddpm", "alpha_model"]
  groups = gallery.group_by_family(names)
  assert groups == {"latent_variable": ["vae"], "diffusion": ["edm", "ddpm"],
                    "adversarial": ["gan", "cgan"], "alpha_model": ["alpha_model"],
                    "zeta_model": ["zeta_model"]}
  assert list(groups) == ["latent_variable", "diffusion", "adversarial", "alpha_model",
                          "zeta_model"]


def test_text_tokens_decode_to_their_characters():
  assert gallery.decode_text(np.array([2, 0, 1, 3]), "ab c") == " abc"


def test_a_family_figure_has_one_titled_panel_per_paradigm(tmp_path):
  rng = np.random.default_rng(0)
  samples = rng.uniform(size=(gallery.NUM_SAMPLES, 8, 8, 1)).astype(np.float32)
  grid = gallery.picture(samples)
  # 100 images, 10 per row: as many rows as columns, so the grid is square.
  assert grid.dtype == np.uint8 and grid.shape[0] == grid.shape[1] and grid.shape[2] == 3
  points = gallery.picture(rng.normal(size=(50, 2)))
  assert points.dtype == np.uint8 and points.ndim == 3
  path = tmp_path / "family.png"
  gallery.family_figure({"a (1 steps)": grid, "b (2 steps)": grid, "c": points}, str(path), "t")
  width, height = Image.open(path).size
  assert (width, height) == (int(3 * 3.2 * 110), int(3.6 * 110))


def test_the_questions_figure_has_a_panel_per_image_and_answers_decode_to_strings(tmp_path):
  import types
  from gen_jax.paradigms import any2any
  images = np.random.default_rng(0).uniform(size=(3, 8, 8, 1))
  answers = {"is it even?": ["yes", "no", "yes"], "what digit is this?": ["zero", "one", "two"]}
  path = tmp_path / "qa.png"
  gallery.questions_figure(images, [0, 1, 1], {q: a[:2] + a[1:2] for q, a in answers.items()},
                           str(path), "t")            # images 1 and 2 alike: still 3 panels
  assert Image.open(path).size == (round(3 * 1.9 * 110), round(2.9 * 110))   # 3 panels
  run = types.SimpleNamespace(config=types.SimpleNamespace(paradigm="any2any", model={}))
  assert gallery.answer_strings(run, ["yes", "no"]) == ["yes", "no"]
  vocab = any2any.text_vocab({})
  ids = np.stack([vocab.encode("seven")[:1], vocab.encode("no")[:1]])
  assert gallery.answer_strings(run, ids) == ["seven", "no"]
