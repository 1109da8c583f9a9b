"""gen_jax.eval.tables: cells, markdown tables, result files and figures."""
from __future__ import annotations

import json

import numpy as np
from PIL import Image

from gen_jax.eval import tables


def test_cells_and_rates():
  assert tables.cell(None) == "—" and tables.cell(float("nan"), ".3f") == "nan"
  assert tables.cell(2.5, ".3f") == "2.500" and tables.cell(35) == "35" and tables.cell(8000, ",") == "8,000"
  assert tables.cell(3, lambda v: f"<{v}>") == "<3>"
  assert [tables.rate(v) for v in (None, float("nan"), 1234.5, 12.345, 0.01234)] == ["—", "—", "1,234", "12.3", "0.0123"]
  assert [tables.exact_or_bound({"bound": b}) for b in (True, False, None)] == ["bound", "exact", None]


def test_markdown_has_caption_header_and_a_line_a_row():
  rows = [{"name": "a", "x": 1.0}, {"name": "b"}]
  md = tables.markdown([("model", "name", ""), ("x", "x", ".2f"), ("x + 1", lambda r: r.get("x", 0) + 1, ".1f")],
                       rows, caption=["Caption."])
  assert md.splitlines() == ["Caption.", "", "| model | x | x + 1 |", "|---|---|---|",
                             "| a | 1.00 | 2.0 |", "| b | — | 1.0 |"]
  assert tables.markdown([("a", "a", "")], []).startswith("| a |")     # no caption: the table alone


def test_write_text_json_lines_and_json(tmp_path):
  rows = [{"a": 1}, {"a": 2}]
  tables.write(str(tmp_path / "out"), {"t.md": "hi\n", "rows.jsonl": rows, "t.json": {"rows": rows}})
  assert (tmp_path / "out" / "t.md").read_text() == "hi\n"
  assert [json.loads(l) for l in (tmp_path / "out" / "rows.jsonl").read_text().splitlines()] == rows
  assert json.loads((tmp_path / "out" / "t.json").read_text()) == {"rows": rows}


def test_fd_key_finds_the_classifier_named_column():
  assert tables.fd_key([{"a": 1}, {"FD (digits classifier)": 3.0}]) == "FD (digits classifier)"
  assert tables.fd_key([{"a": 1}]) == "FD"
  assert tables.score_columns("FD (x classifier)")[2] == ("FD (x classifier)", "FD (x classifier)", ".1f")


def test_panels_figure_takes_pictures_and_image_batches(tmp_path):
  picture = np.zeros((20, 30, 3), np.uint8)
  images = np.random.default_rng(0).uniform(size=(16, 8, 8, 1)).astype(np.float32)
  tables.panels_figure({"a": picture, "b": images}, str(tmp_path / "p.png"), "title", size=(2.0, 3.0), dpi=50)
  assert Image.open(tmp_path / "p.png").size == (2 * 2 * 50, 3 * 50)


def test_likelihood_vs_fd_figure_with_a_model_without_likelihood(tmp_path):
  fd = "FD (digits classifier)"
  rows = [{"paradigm": "a", "bits_per_dim": 2.5, "bound": True, fd: 10.0, "samples_per_s": 100.0},
          {"paradigm": "g", "bits_per_dim": None, "bound": None, fd: 20.0, "samples_per_s": 5000.0}]
  tables.likelihood_vs_fd_figure(rows, str(tmp_path / "s.png"))
  assert Image.open(tmp_path / "s.png").size[0] > 300
