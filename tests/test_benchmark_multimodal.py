"""The multimodal suite end to end at a tiny budget: both lmm encoders, one table."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from experiments import benchmark
from gen_jax import data as data_lib
from gen_jax.data import captions
from gen_jax.eval import classifier, features


def test_lmm_part_scores_both_encoders_against_the_labels_the_classifier_and_chance(tmp_path):
  out = tmp_path / "out"
  rows = benchmark.run("multimodal", parts=["lmm"], dataset="digits", steps=3, out=str(out),
                       workdir_root=str(tmp_path / "work"))
  assert [(r["model"], r["vision_encoder"], r["steps"]) for r in rows] == [
      ("lmm", "vit", 3), ("lmm (classifier encoder)", "classifier", 3)]
  # the references, computed again here from the test split and the classifier's labels
  split = data_lib.split_arrays("digits", "test")
  levels, labels = np.asarray(split["image"]), np.asarray(split["label"])
  ref = classifier.reference("digits")
  predicted = ref.labels(features.levels_to_unit(levels, 17))
  counts = np.bincount(labels, minlength=10)
  for row in rows:
    assert row["num_test"] == len(labels) == 360
    for kind in captions.QA_KINDS:
      ceiling = np.mean([captions.answer(p, kind) == captions.answer(c, kind)
                         for p, c in zip(predicted, labels)])
      assert row[f"classifier_ceiling_{kind}"] == ceiling
      truth = np.array([captions.answer(c, kind) for c in labels])
      values, freq = np.unique(truth, return_counts=True)
      assert row[f"chance_{kind}"] == freq.max() / len(truth)       # the most frequent answer
      assert row[f"chance_{kind}"] == captions.chance_accuracy(kind, counts)
      for key in (f"accuracy_{kind}", f"accuracy_noise_{kind}"):
        assert 0.0 <= row[key] <= 1.0 and row[key] * 360 == round(row[key] * 360)
  assert rows[0]["classifier_ceiling_digit"] == np.mean(predicted == labels)
  saved = json.loads((out / "multimodal.json").read_text())["rows"]
  assert [r["model"] for r in saved] == [r["model"] for r in rows]
  md = (out / "multimodal.md").read_text()
  assert "| lmm | digits | image->text | 3 |" in md and "| lmm (classifier encoder) |" in md
  for name in ("lmm", "lmm_classifier"):
    assert Image.open(out / "digits" / f"{name}_questions.png").size[0] > 400
