"""The question/answer generator of gen_jax.data.captions against a table written by hand."""
from __future__ import annotations

import pytest

from gen_jax.data import captions
from gen_jax.errors import UserError

# digit: (what digit is this?, is it even?, is it bigger than five?, what is it plus two?)
TRUTH = {
    0: ("zero", "yes", "no", "two"),
    1: ("one", "no", "no", "three"),
    2: ("two", "yes", "no", "four"),
    3: ("three", "no", "no", "five"),
    4: ("four", "yes", "no", "six"),
    5: ("five", "no", "no", "seven"),
    6: ("six", "yes", "yes", "eight"),
    7: ("seven", "no", "yes", "nine"),
    8: ("eight", "yes", "yes", "ten"),
    9: ("nine", "no", "yes", "eleven"),
}


def test_every_answer_of_every_digit_is_the_hand_written_one():
  assert captions.QA_KINDS == ("digit", "even", "bigger_than_five", "plus_two")
  for digit, want in TRUTH.items():
    assert tuple(captions.answer(digit, kind) for kind in captions.QA_KINDS) == want


def test_questions_read_as_written_and_chance_is_the_most_frequent_answer():
  assert captions.QUESTIONS["even"] == "is it even?"
  assert captions.chance_accuracy("digit") == pytest.approx(0.1)
  assert captions.chance_accuracy("even") == pytest.approx(0.5)
  assert captions.chance_accuracy("bigger_than_five") == pytest.approx(0.6)    # "no": 0..5
  assert captions.chance_accuracy("bigger_than_five", [0] * 6 + [1] * 4) == pytest.approx(1.0)
  assert captions.answers("even") == ("no", "yes")


def test_a_vocabulary_with_questions_encodes_them_and_keeps_caption_ids_apart():
  plain = captions.make_vocab("word")
  assert "?" not in plain.tokens and "even" not in plain.tokens   # text2image's vocabulary as it was
  vocab = captions.make_vocab("word", questions=True)
  ids = vocab.encode("Is it  EVEN?")
  assert vocab.decode(ids) == "is it even ?"
  assert vocab.max_len == max(len(captions.split(t, "word")) for t in
                              [captions.caption(c, t) for c in range(10) for t in range(12)]
                              + captions.qa_texts())
  with pytest.raises(UserError, match="'odd'") as e:
    vocab.encode("is it odd?")
  assert "Allowed words" in str(e.value) and "'even'" in str(e.value)
  chars = captions.make_vocab("char", questions=True)
  assert "?" in chars.tokens and chars.decode(chars.encode("is it even?")) == "is it even ?"


def test_unknown_kind_and_label_are_refused():
  with pytest.raises(UserError, match="digit, even"):
    captions.answer(3, "odd")
  with pytest.raises(ValueError):
    captions.answer(10, "digit")
