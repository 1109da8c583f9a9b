r"""lmm: LLaVA-style image -> text (Liu et al. 2023, arXiv:2304.08485) on digits or mnist_idx.

A vision encoder (a small ViT trained jointly, or the frozen digit classifier's trunk:
model.vision_encoder), a projector, and a GPT that reads [image tokens][question] and
writes the answer; trained on the questions of gen_jax/data/captions.py (what digit, even,
bigger than five, plus two) with answers from the true labels.

  python -m experiments.train --config=experiments/configs/lmm.py:digits --workdir=/tmp/lmm
  python -m experiments.sample --workdir=/tmp/lmm --image_index=3 --question="is it even?"
  python -m experiments.benchmark --suite=multimodal --parts=lmm     # accuracy per question
  # the frozen pretrained encoder (LLaVA's recipe): the project's digit classifier, trained once
  # (26 s on digits) where the benchmarks keep it (gen_jax.nets.classifier.default_classifier_dir)
  python -m experiments.train_classifier --dataset=digits --workdir=$HOME/.cache/gen_jax/classifiers/digits
  python -m experiments.train --config=experiments/configs/lmm.py:digits_classifier --workdir=/tmp/lmm_cls

No likelihood is reported and the loop writes no sample grids (num_samples = 0: the model
draws nothing without an image). Measured (digits test split, 2026-12-07, 2-core CPU): the
ViT default at 1,500 steps 94.7 / 96.1 / 95.6 / 91.7% (digit / even / bigger than five / plus
two); the frozen classifier encoder at 1,500 steps 98.6 / 99.7 / 98.9 / 99.2%. With
max_shift=1 at 2,500 steps the ViT fell to 89.7 / 94.2 / 91.9 / 90.3%. results/multimodal/README.md.
"""
from experiments.configs.common import base_config, field_names, model_fields
from gen_jax.paradigms import gpt, lmm

_ARGS = ("digits", "mnist_idx", "digits_classifier", "mnist_idx_classifier")


def get_config(arg: str = "digits"):
  """arg: <dataset> (the ViT trained jointly) or <dataset>_classifier (the frozen classifier)."""
  if arg not in _ARGS:
    raise ValueError(f"Unknown lmm config arg {arg!r}; use one of {_ARGS}.")
  dataset = arg.removesuffix("_classifier")
  config = base_config("lmm", dataset)
  # The decoder's fields (2 layers, 4 heads, 64 wide for digits) and the encoder's:
  # gen_jax.paradigms.lmm.Fields.
  config.model = model_fields(lmm.Fields, *field_names(gpt.TransformerFields), "vision_encoder",
                              "patch_size", "vit_width", "vit_depth", "vit_heads",
                              "classifier_dir", "max_shift", "caption_level", "temperature",
                              num_layers=2, embed_dim=64, dropout=0.1)
  config.batch_size = 64
  config.num_train_steps = 1_500
  config.log_every_steps = 50
  config.eval_every_steps = 500
  config.checkpoint_every_steps = 500
  config.sample_every_steps = 500
  config.num_samples = 0                  # no unprompted samples: see the docstring
  config.optimizer.name = "adamw"
  config.optimizer.learning_rate = 1e-3
  config.optimizer.weight_decay = 0.05
  config.optimizer.schedule = "cosine"
  config.optimizer.warmup_steps = 100
  if dataset == "mnist_idx":
    config.model.patch_size = 4          # 28x28 -> 49 patches
    config.model.vit_width = 96
    config.model.vit_depth = 3
    config.model.embed_dim = 96
    config.batch_size = 128
    config.num_train_steps = 3_000
  if arg.endswith("_classifier"):
    config.model.vision_encoder = "classifier"   # classifier_dir "": the dataset's default one
  return config
