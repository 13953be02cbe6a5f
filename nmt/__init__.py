"""nmt: train, run and evaluate Transformer translation models from a YAML config.

In Python, load a trained run once and translate in-process:

    import nmt
    translator = nmt.load("runs/multi30k_en_de")
    translator.translate(["A man is riding a bike."])
    translator.translate_n_best(["A man is riding a bike."], 4)   # [[Hypothesis(text, score), ...]]
    nmt.load("runs/multi30k_en_de", ctranslate2=True)   # its CTranslate2 export, without TensorFlow
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

# TensorFlow reads this once, when it loads, so nmt must be imported before it (the `nmt` command
# is). TensorFlow enables its oneDNN CPU kernels by itself only on CPUs with AVX-512 VNNI/BF16 or
# AMX; on a 2-core AVX2 CPU they trained configs/reference_base.yaml 1.11x as fast (its large
# matmuls ran ~1.7x as fast). TF_ENABLE_ONEDNN_OPTS=0 keeps TensorFlow's default.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

__version__ = "0.1.0"

if TYPE_CHECKING:
    from nmt.decoding.ctranslate2_translator import CTranslate2Translator
    from nmt.decoding.translator import Translator


def load(run_dir: str | Path | None = None, overrides: Sequence[str] = (),
         ctranslate2: bool = False) -> "Translator | CTranslate2Translator":
    """The trained model of a run directory (default: the latest training run, runs/latest), ready
    to translate: its tokenizer, its eval.checkpoint weights and its decode settings, with
    overrides ("decode.beam_size=1", ...) applied as `--set` does. With ctranslate2, the run's
    CTranslate2 export of those weights (`nmt export --format ctranslate2`), which translates,
    n-best lists and prefixes included, and scores, as `--ctranslate2` does, without importing
    TensorFlow.

    Raises:
        nmt.errors.NmtError: not a run directory, no checkpoint, or a bad override; with
            ctranslate2, no export of the checkpoint or no ctranslate2 package.
    """
    from nmt import run_dir as run_dir_lib

    run, config = run_dir_lib.load(None if run_dir is None else str(run_dir), list(overrides))
    if ctranslate2:
        from nmt.decoding.ctranslate2_translator import CTranslate2Translator

        return CTranslate2Translator.from_run_dir(run, config)
    from nmt.decoding.translator import Translator

    return Translator.from_run_dir(run, config)


def __getattr__(name: str):
    # `from nmt import Translator` without `import nmt` importing TensorFlow.
    if name == "Translator":
        from nmt.decoding.translator import Translator

        return Translator
    raise AttributeError(f"module 'nmt' has no attribute {name!r}")
