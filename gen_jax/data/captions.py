r"""Captions and questions about digit labels, and their word- or character-level tokenizer.

The text-to-image model (gen_jax.paradigms.text2image) learns p(image | caption)
from labelled digits: each label c gets a caption drawn from TEMPLATES, e.g.

    "a handwritten seven", "the digit 7", "seven", "a picture of the number 7", ...

Image-text pairs for the multimodal models (gen_jax.paradigms.lmm, any2any): besides its
captions, each image gets QUESTIONS whose answers follow from its label alone, never
from a model:

    "what digit is this?" -> "seven"       "is it even?" -> "no"
    "is it bigger than five?" -> "yes"     "what is it plus two?" -> "nine"

(`answer(label, kind)`; "plus two" of 8 and 9 is "ten" and "eleven").

Pure Python and numpy (no TFDS, no grain), so paradigms may import it.

Tokenization. A prompt is normalised (lower case, runs of white space -> one
space, stripped) and split into words (level "word") or characters (level
"char"). The vocabulary is fixed by the templates: every word (or character) of
every caption of every digit, in sorted order after the padding token <pad>
(id 0). A caption is `max_len` ids, padded on the right with <pad>; `max_len`
defaults to the longest template caption. A prompt with words/characters
outside the vocabulary, or longer than max_len, raises a UserError naming them.
"""
from __future__ import annotations

import dataclasses
import re

import numpy as np

from gen_jax.errors import UserError

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
NUM_DIGITS = len(NUMBER_WORDS)

# {word}: the digit as a word ("seven"); {digit}: as a numeral ("7").
# Template 0 is the one used when sampling for a label without a prompt.
TEMPLATES = (
    "a handwritten {word}",
    "the digit {digit}",
    "{word}",
    "a picture of the number {digit}",
    "the digit {word}",
    "{digit}",
    "a handwritten {digit}",
    "the number {word}",
    "a picture of the number {word}",
    "an image of the digit {digit}",
    "a drawing of the number {word}",
    "handwritten digit {word}",
)
PAD = "<pad>"
LEVELS = ("word", "char")

# Questions about a digit c: kind -> the question; `answer(c, kind)` gives its answer.
QUESTIONS = {
    "digit": "what digit is this?",
    "even": "is it even?",
    "bigger_than_five": "is it bigger than five?",
    "plus_two": "what is it plus two?",
}
QA_KINDS = tuple(QUESTIONS)
ANSWER_WORDS = NUMBER_WORDS + ("ten", "eleven")


def answer(label: int, kind: str) -> str:
  """The answer to QUESTIONS[kind] about digit `label` (0..9), from the label alone."""
  label = int(label)
  if not 0 <= label < NUM_DIGITS:
    raise ValueError(f"label {label} is not a digit 0..9")
  if kind == "digit":
    return NUMBER_WORDS[label]
  if kind == "even":
    return "yes" if label % 2 == 0 else "no"
  if kind == "bigger_than_five":
    return "yes" if label > 5 else "no"
  if kind == "plus_two":
    return ANSWER_WORDS[label + 2]
  raise UserError(f"question kind {kind!r} is not one of {', '.join(QA_KINDS)}.")


def answers(kind: str) -> tuple:
  """The distinct answers of QUESTIONS[kind] over the ten digits, sorted."""
  return tuple(sorted({answer(c, kind) for c in range(NUM_DIGITS)}))


def chance_accuracy(kind: str, label_counts=None) -> float:
  """Accuracy of the best answer given without looking at the image: the most frequent
  answer's share of the digits, weighted by `label_counts` (uniform without)."""
  counts = np.ones(NUM_DIGITS) if label_counts is None else np.asarray(label_counts, float)
  share = {}
  for c in range(NUM_DIGITS):
    share[answer(c, kind)] = share.get(answer(c, kind), 0.0) + counts[c]
  return max(share.values()) / counts.sum()


def caption(label: int, template: int) -> str:
  """The caption of digit `label` (0..9) written with TEMPLATES[template]."""
  return TEMPLATES[template].format(word=NUMBER_WORDS[label], digit=str(label))


def normalize(text: str) -> str:
  """Lower case, "?" a word of its own, white space collapsed to single spaces, stripped."""
  return re.sub(r"\s+", " ", text.lower().replace("?", " ? ")).strip()


def split(text: str, level: str) -> list[str]:
  """Normalised text -> words ("word") or characters ("char")."""
  text = normalize(text)
  if level == "word":
    return text.split(" ") if text else []
  if level == "char":
    return list(text)
  raise UserError(f"caption level {level!r} is not one of {LEVELS}; set model.caption_level.")


@dataclasses.dataclass(frozen=True)
class CaptionVocab:
  """A fixed caption vocabulary: `tokens[i]` is token i (tokens[0] = <pad>), `max_len` ids a caption."""
  level: str
  tokens: tuple
  max_len: int

  @property
  def size(self) -> int:
    return len(self.tokens)

  def encode(self, text: str) -> np.ndarray:
    """Text -> int32 [max_len] token ids, right-padded with <pad> (0).

    Raises UserError naming the words/characters outside the vocabulary (and listing
    the allowed ones), or saying the prompt is longer than max_len tokens.
    """
    pieces = split(text, self.level)
    index = {t: i for i, t in enumerate(self.tokens)}
    unknown = sorted({p for p in pieces if p not in index or p == PAD})
    what = "words" if self.level == "word" else "characters"
    if unknown:
      raise UserError(
          f"Prompt {text!r} has {what} outside the model's vocabulary: "
          f"{', '.join(repr(u) for u in unknown)}. Allowed {what}: "
          f"{', '.join(repr(t) for t in self.tokens[1:])} (e.g. {caption(3, 0)!r}).")
    if len(pieces) > self.max_len:
      raise UserError(
          f"Prompt {text!r} has {len(pieces)} {what}; the model reads at most {self.max_len}. "
          f"Shorten it (e.g. {caption(3, 0)!r}).")
    ids = np.zeros(self.max_len, np.int32)
    ids[:len(pieces)] = [index[p] for p in pieces]
    return ids

  def decode(self, ids) -> str:
    """Token ids -> text (padding dropped; words joined by spaces)."""
    pieces = [self.tokens[int(i)] for i in np.asarray(ids).reshape(-1) if int(i) != 0]
    return (" " if self.level == "word" else "").join(pieces)


def qa_texts() -> list:
  """Every question and every answer (the texts beside the captions in image-text pairs)."""
  return [*QUESTIONS.values(), *(answer(c, k) for k in QA_KINDS for c in range(NUM_DIGITS))]


def make_vocab(level: str = "word", max_len: int = 0, questions: bool = False) -> CaptionVocab:
  """The vocabulary of all template captions of all digits (and with `questions`, of every
  question and answer too); max_len 0 = the longest caption or question."""
  captions = [caption(c, t) for c in range(NUM_DIGITS) for t in range(len(TEMPLATES))]
  pieces = [split(text, level) for text in captions + (qa_texts() if questions else [])]
  longest = max(len(p) for p in pieces)
  if max_len and max_len < longest:
    raise UserError(f"model.caption_len={max_len} is shorter than the longest template text "
                    f"({longest} {level}s); raise it or set 0 (= {longest}).")
  tokens = (PAD, *sorted({t for p in pieces for t in p}))
  return CaptionVocab(level=level, tokens=tokens, max_len=max_len or longest)


def caption_table(vocab: CaptionVocab) -> np.ndarray:
  """int32 [10, len(TEMPLATES), max_len]: the token ids of every template caption of every digit."""
  return np.stack([np.stack([vocab.encode(caption(c, t)) for t in range(len(TEMPLATES))])
                   for c in range(NUM_DIGITS)])


def answer_len(vocab: CaptionVocab) -> int:
  """L_a: tokens of the longest answer at the vocabulary's level (1 word; "eleven": 6 characters)."""
  return max(len(split(a, vocab.level)) for a in ANSWER_WORDS + ("yes", "no"))


def qa_tables(vocab: CaptionVocab, num_answer_tokens: int):
  """(questions int32 [len(QA_KINDS), max_len], answers int32 [10, len(QA_KINDS), L_a]): the
  token ids of every question, and of the answer to it for every digit (right-padded with <pad>)."""
  questions = np.stack([vocab.encode(QUESTIONS[k]) for k in QA_KINDS])
  answer_ids = np.stack([np.stack([vocab.encode(answer(c, k))[:num_answer_tokens] for k in QA_KINDS])
                         for c in range(NUM_DIGITS)])
  return questions, answer_ids
