"""Typed configuration: YAML and `--set key.path=value` overrides, validated once at load time.

Every default lives in the dataclasses below; the YAML file only states what differs.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml

from nmt.errors import ConfigError

SplitName = Literal["train", "validation", "test"]
# SentencePiece's own pieces (nmt.data.tokenizer's PAD, UNK, BOS, EOS), which a tag cannot be.
RESERVED_PIECES = ("<pad>", "<unk>", "<s>", "</s>")


@dataclass(frozen=True)
class CorpusConfig:
    """A further training corpus (data.extra_train), read through TFDS as data.dataset is, in the
    same languages: back-translations, another domain."""

    dataset: str
    manual_dir: Optional[str] = None
    split: str = "train"
    # Passes over this corpus per epoch, against one over data.train_split: 2 reads each of its
    # pairs twice, 0.25 about a quarter of them, drawn anew each epoch.
    weight: float = 1.0
    # A token put before each of its sources (tagged back-translation, Caswell et al., 2019), so
    # that the model tells these pairs from the others; translations are never tagged. The
    # tokenizer reserves it as a control symbol, which no text encodes to. null: untagged.
    tag: Optional[str] = None


@dataclass(frozen=True)
class DataConfig:
    """Where the parallel text comes from (always through TensorFlow Datasets)."""

    # 'synthetic' (generated offline), 'multi30k' (our builder), 'local' (text files, prepared by
    # our builder nmt.data.local_text) or any TFDS catalog name, e.g. 'ted_hrlr_translate/pt_to_en'.
    dataset: str = "synthetic"
    source_lang: str = "en"
    target_lang: str = "sy"
    # TFDS data directory for prepared datasets; None means TFDS's default (~/tensorflow_datasets).
    data_dir: Optional[str] = None
    # Local files: for 'local', files named <lang>.<split>.txt; for 'multi30k', the upstream
    # <split>.<lang>.gz files (then nothing is downloaded). Relative paths are relative to the
    # directory the command runs in.
    manual_dir: Optional[str] = None
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    # Training pairs with more subword tokens than this on either side are left out.
    max_length: int = 100
    # More training corpora, mixed with train_split into every epoch by their weights.
    extra_train: tuple[CorpusConfig, ...] = ()


@dataclass(frozen=True)
class TokenizerConfig:
    """SentencePiece model(s), trained once on the training split."""

    model_type: Literal["unigram", "bpe"] = "unigram"
    vocab_size: int = 8000
    # One model and vocabulary for both languages (needed by model.share_embeddings).
    joint: bool = True
    character_coverage: float = 1.0
    # Sentences sampled per language to train SentencePiece.
    max_sentences: int = 1_000_000
    # With train.init_from: add to the base run's vocabulary the pieces the new data needs (its
    # characters the base cannot encode, and frequent words made of them); the model's embedding
    # rows grow to match. Otherwise the base's vocabulary is used as it is.
    update_vocab: bool = False
    # Subword regularization (Kudo, 2018): each epoch, every training sentence is segmented anew,
    # drawn from its sample_nbest best segmentations with probability proportional to
    # P(segmentation)^sample_alpha (smaller: flatter). Validation, evaluation and translation take
    # the best segmentation. null: off. Unigram models only.
    sample_alpha: Optional[float] = None
    sample_nbest: int = 64


@dataclass(frozen=True)
class ModelConfig:
    """Encoder-decoder Transformer."""

    num_encoder_layers: int = 3
    num_decoder_layers: int = 3
    hidden_dim: int = 256
    num_heads: int = 4
    intermediate_dim: int = 1024
    dropout: float = 0.1
    attention_dropout: float = 0.1
    # 'pre': layer norm before each sublayer (stable without tuning); 'post': the original paper's.
    norm: Literal["pre", "post"] = "pre"
    # One embedding matrix for source and target (needs tokenizer.joint).
    share_embeddings: bool = True
    # Output projection = target embedding matrix transposed.
    tie_output: bool = True
    # Longest sequence the model accepts, in tokens; longer input is truncated with a warning.
    max_length: int = 256
    # Attention (nmt/model/attention.py), one step of its history each: 'additive' (Bahdanau),
    # 'dot' (q.k) and 'scaled_dot' (q.k/sqrt(d)) attend with one head; 'multi_head' (Vaswani et
    # al.) splits queries, keys and values into num_heads heads; 'multi_query' (Shazeer, 2019)
    # shares one key/value head between them and 'grouped_query' (Ainslie et al., 2023) one per
    # group of heads: a decoding cache num_heads / num_kv_heads times smaller.
    attention: Literal["additive", "dot", "scaled_dot", "multi_head", "multi_query", "grouped_query"] = "multi_head"
    # Key/value heads of 'grouped_query' (divides num_heads); only for that variant.
    num_kv_heads: Optional[int] = None
    # Learned query, key, value and output projections; false attends over the inputs themselves
    # (single-head variants only; 'additive' keeps the query and key layers of its scoring net).
    attention_projections: bool = True


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation, stopping and checkpointing."""

    # Where the run lives; None means runs/<config file name>.
    run_dir: Optional[str] = None
    # Start from another run's weights and tokenizer (fine-tuning, domain adaptation): its directory,
    # or one of its checkpoints (e.g. runs/base/checkpoints/averaged/ckpt-3000). A run directory
    # gives its best checkpoint, or its last with resume_optimizer. Read at the run's first start only.
    init_from: Optional[str] = None
    # With init_from: continue the base run's optimizer state and step count (and so its
    # learning-rate schedule; max_steps counts from the base's step) instead of starting afresh.
    resume_optimizer: bool = False
    # Token budget per batch (source or target side, padding included), or 'auto': decided at the
    # run's first start (nmt/training/autotune.py), on a GPU the largest that fits in its memory,
    # on a CPU the one of best measured throughput; config.yaml records the number.
    batch_tokens: Union[int, Literal["auto"]] = 4096
    epochs: int = 20
    max_steps: Optional[int] = None
    # Wall-clock budget over all (resumed) invocations, in minutes.
    max_minutes: Optional[float] = None
    # Peak learning rate, reached after warmup_steps and then decayed as 1/sqrt(step).
    learning_rate: float = 1e-3
    warmup_steps: int = 4000
    adam_beta1: float = 0.9
    adam_beta2: float = 0.98
    adam_epsilon: float = 1e-9
    label_smoothing: float = 0.1
    clip_norm: Optional[float] = None
    # Compute precision of training: 'float32', 'mixed_bfloat16' (CPUs with bf16 units, recent GPUs),
    # 'mixed_float16' (GPUs, with loss scaling) or 'auto': bfloat16 where the CPU or GPU has bfloat16
    # units, float16 on GPUs with float16 units only, float32 elsewhere (config.yaml records the
    # choice). Weights stay float32; a precision the device cannot run fast falls back to float32
    # with a warning.
    precision: Literal["float32", "mixed_bfloat16", "mixed_float16", "auto"] = "auto"
    # Compile the training step with XLA. Batches then come in a dozen fixed shapes (lengths padded
    # to multiples of 8, a fixed batch size per length), each compiled once. On CPUs it trains
    # slower than without (see README).
    jit_compile: bool = False
    # tf.distribute strategy: 'none' (one device), 'mirrored' (the GPUs of this machine, or
    # train.replicas logical CPU devices), 'multi_worker' (machines listed in TF_CONFIG) or 'tpu'.
    distribute: Literal["none", "mirrored", "multi_worker", "tpu"] = "none"
    # Devices for 'mirrored' (None: every GPU, or 1 CPU device).
    replicas: Optional[int] = None
    # Whether batch_tokens is the budget of the whole step ('global', split over replicas) or of
    # each replica ('replica': the step grows with the replicas).
    batch_scope: Literal["global", "replica"] = "global"
    # Gradients of this many batches are summed before each update (large batches on one device).
    # learning_rate and warmup_steps refer to batch_tokens batches: with updates k batches large
    # (accumulation, or per-replica batches), warmup takes warmup_steps / k updates.
    accumulate_steps: int = 1
    # Number of most recent checkpoints kept (the best one is kept separately).
    keep_checkpoints: int = 3
    shuffle_buffer: int = 20000
    seed: int = 1234
    # Check the data (as `nmt data check` does, on at most nmt.jobs.DATA_CHECK_AT_START pairs per
    # split) at the run's first start, print what it finds and write data_check.json/.md.
    data_check: bool = True
    # Validate (loss, and BLEU when validation_bleu) and save a checkpoint every eval_every epochs,
    # or every eval_every_steps steps when that is set.
    eval_every: int = 1
    eval_every_steps: Optional[int] = None
    # Also save a (resumable) checkpoint every this many steps, without validating.
    save_every_steps: Optional[int] = None
    # Translate the validation split at each validation and score it with sacreBLEU, through the
    # same code and settings as `nmt evaluate --split validation --set decode.beam_size=<this beam>`.
    validation_bleu: bool = True
    # Beam used for validation BLEU (1 = greedy, the fastest).
    validation_beam_size: int = 1
    # What makes the checkpoint kept in checkpoints/best: highest validation BLEU, or lowest loss.
    best_metric: Literal["bleu", "loss"] = "bleu"
    # Stop after this many validations in a row without a better best_metric; None never stops early.
    early_stopping_patience: Optional[int] = None
    # At the end of training, average the last N checkpoints into checkpoints/averaged.
    average_last: Optional[int] = None
    # Keep an exponential moving average of the weights (Polyak averaging; e.g. 0.999, about the
    # last 1 / (1 - decay) updates, fewer early on: nmt/training/moving_average.py). Validation,
    # and so the best checkpoint, translation and export, use the average; training goes on from
    # the weights themselves (checkpoints/last). None: off.
    ema_decay: Optional[float] = None
    # Write TensorBoard event files (training and validation scalars, sample translations) to
    # <run dir>/tensorboard/.
    tensorboard: bool = True
    # A step whose loss or gradient is NaN or infinite is never applied. 'stop' ends training
    # there (exit 1; the run keeps its last checkpoint); 'skip' drops the step and goes on,
    # stopping after nonfinite_skip_limit such steps in a row.
    on_nonfinite: Literal["stop", "skip"] = "stop"
    nonfinite_skip_limit: int = 10

    def remaining(self, step: int, epochs_done: int, train_seconds: float, steps_per_epoch: int | None) -> tuple[float, str] | None:
        """Expected training seconds left at this point, at the pace so far (validations
        included), and the budget that ends training first (epochs, max_steps or max_minutes);
        None before the first step. Early stopping cannot be foreseen."""
        if step <= 0:
            return None
        per_step = train_seconds / step
        ends = [(max(0.0, self.max_minutes * 60 - train_seconds), "max_minutes")] if self.max_minutes is not None else []
        if self.max_steps is not None:
            ends.append((max(0, self.max_steps - step) * per_step, "max_steps"))
        if steps_per_epoch:
            ends.append((max(0, self.epochs - epochs_done) * steps_per_epoch * per_step, "epochs"))
        return min(ends) if ends else None

    def stop_reason(self, step: int, epoch: int, train_seconds: float, validations_without_improvement: int) -> str | None:
        """Which budget or rule ends training at this point, if any: max_steps, max_minutes,
        epochs or early_stopping."""
        if self.max_steps is not None and step >= self.max_steps:
            return "max_steps"
        if self.max_minutes is not None and train_seconds >= self.max_minutes * 60:
            return "max_minutes"
        if epoch >= self.epochs:
            return "epochs"
        if self.early_stopping_patience is not None and validations_without_improvement >= self.early_stopping_patience:
            return "early_stopping"
        return None


@dataclass(frozen=True)
class DecodeConfig:
    """Translation settings."""

    # A decoding batch holds sentences of similar length: at most batch_size of them and at most
    # batch_tokens source tokens, padding included (sentences x the longest). Larger batches
    # decode faster on CPUs; the token budget bounds the memory that long sentences take.
    batch_size: int = 256
    batch_tokens: int = 4096
    # 1 = greedy search; more = beam search keeping that many hypotheses per sentence.
    beam_size: int = 4
    # GNMT length penalty alpha: hypotheses are ranked by log-probability / ((5 + length) / 6) ** alpha;
    # 0 ranks by log-probability alone, larger values favour longer outputs.
    length_penalty: float = 0.6
    # Output length limit: ratio * source tokens + offset (and never above model.max_length).
    max_length_ratio: float = 1.5
    max_length_offset: int = 10
    # N > 0: no translation holds the same N subwords twice (a token that would repeat them is never
    # chosen), against the loops of an undertrained model; 0: off.
    no_repeat_ngram_size: int = 0
    # Lexical constraints (nmt translate --constraint) stand as whole words: a translation does not
    # go on with a constraint's last word ("Hund" not as the start of "Hunde" or "Hund-Leine"); false: it may.
    constraint_whole_words: bool = True
    # Sampling instead of search (e.g. for back-translation): each token drawn from the model's
    # distribution, its logits divided by temperature, cut to the top_k most likely tokens ('top_k')
    # or to the fewest whose probabilities add up to top_p ('top_p'). 'none': greedy or beam search.
    sampling: Literal["none", "top_k", "top_p"] = "none"
    temperature: float = 1.0
    top_k: int = 10
    top_p: float = 0.9
    # Seed of sampling: the same seed and input give the same samples; None draws a new one each time.
    seed: Optional[int] = None
    # Compute precision of the decoder: 'float32', or 'bfloat16' (weights rounded to bfloat16 once,
    # as they load; scores stay float32) where the CPU or GPU has bfloat16 units, float32 elsewhere.
    precision: Literal["float32", "bfloat16"] = "float32"


@dataclass(frozen=True)
class EvalConfig:
    """What `nmt evaluate` and the end of `nmt train` score."""

    split: SplitName = "test"
    # Which weights to use: the best by train.best_metric, the most recent, or the average written
    # by `nmt average` / train.average_last.
    checkpoint: Literal["best", "last", "averaged"] = "best"
    # Sample translations shown in report.md.
    num_samples: int = 12


@dataclass(frozen=True)
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def to_dict(self) -> dict[str, Any]:
        # Lists, not tuples, so that the dict dumps as plain YAML.
        return dataclasses.asdict(self, dict_factory=lambda items: {key: list(value) if isinstance(value, tuple) else value
                                                                   for key, value in items})


class _Loader(yaml.SafeLoader):
    """YAML as people write configs: 5e-4 is a number. YAML 1.1 (PyYAML's) reads an exponent
    without a dot as a string; YAML 1.2, and every other config reader, read a float."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load(path: Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> Config:
    """Reads a YAML config (or starts from the defaults) and applies `key.path=value` overrides.

    Raises:
        ConfigError: the file is missing or malformed, or a key or value is invalid.
    """
    raw = read_yaml(path) if path is not None else {}
    for override in overrides:
        key_path, value = parse_override(override)
        _set_path(raw, key_path, value)
    return from_dict(raw)


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"cannot read config file {path}: {error}") from None
    try:
        raw = yaml.load(text, Loader=_Loader)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"YAML syntax error in {path}{where}: {problem}") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path} must hold a mapping of sections ({_keys_of(Config)}), got {type(raw).__name__}")
    return raw


def parse_override(override: str) -> tuple[list[str], Any]:
    """Splits 'train.epochs=3' into (['train', 'epochs'], 3); the value is parsed as YAML."""
    key, sep, text = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set expects key.path=value (e.g. train.epochs=3), got {override!r}")
    try:
        value = yaml.load(text, Loader=_Loader) if text.strip() else None
    except yaml.YAMLError:
        value = text
    return key.strip().split("."), value


def _set_path(raw: dict[str, Any], key_path: list[str], value: Any) -> None:
    node = raw
    for part in key_path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"cannot set {'.'.join(key_path)!r}: {part!r} is not a section")
        node = child
    node[key_path[-1]] = value


def from_dict(raw: dict[str, Any]) -> Config:
    """Builds a Config from nested plain data, checking every key and type."""
    config = _build(Config, raw, path="")
    _check_values(config)
    return config


def to_yaml(config: Config) -> str:
    return yaml.safe_dump(config.to_dict(), sort_keys=False)


def _keys_of(cls: type) -> str:
    return ", ".join(f.name for f in dataclasses.fields(cls))


def _build(cls: type, raw: Any, path: str) -> Any:
    where = path or "the top level"
    if not isinstance(raw, dict):
        raise ConfigError(f"config key '{path}' must be a mapping with keys {_keys_of(cls)}, got {raw!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    for key in raw:
        if key not in fields:
            full = f"{path}.{key}" if path else str(key)
            close = difflib.get_close_matches(str(key), fields, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key {full!r}{hint}; valid keys in {where}: {_keys_of(cls)}")
    missing = [name for name, f in fields.items() if name not in raw
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"config key '{path}.{missing[0]}' is required; keys in {where}: {_keys_of(cls)}")
    values = {}
    for name, value in raw.items():
        full = f"{path}.{name}" if path else name
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value if value is not None else {}, full)
        else:
            values[name] = _convert(value, hint, full)
    return cls(**values)


def _convert(value: Any, hint: Any, path: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [option for option in options if option is not type(None)]
        for option in inner:
            try:
                return _convert(value, option, path)
            except ConfigError as error:
                if len(inner) == 1:
                    raise error from None
        raise ConfigError(f"config key '{path}' must be {' or '.join(map(_describe, inner))}; got {value!r}")
    if origin is tuple:
        item = typing.get_args(hint)[0]
        if value is None:  # a key written without a value
            return ()
        if not isinstance(value, list):
            raise ConfigError(f"config key '{path}' must be a list (of mappings with keys {_keys_of(item)}); got {value!r}")
        return tuple(_build(item, entry, f"{path}[{index}]") for index, entry in enumerate(value))
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"config key '{path}' must be one of {', '.join(map(str, choices))}; got {value!r}")
        return value
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is str:
        if isinstance(value, str):
            return value
    raise ConfigError(f"config key '{path}' must be {_describe(hint)}; got {value!r} ({type(value).__name__})")


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) is Literal:
        return " or ".join(repr(choice) for choice in typing.get_args(hint))
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def _check_values(config: Config) -> None:
    """Range and cross-field checks that types alone cannot express."""
    positive = {
        "data.max_length": config.data.max_length,
        "tokenizer.vocab_size": config.tokenizer.vocab_size,
        "tokenizer.max_sentences": config.tokenizer.max_sentences,
        "model.num_encoder_layers": config.model.num_encoder_layers,
        "model.num_decoder_layers": config.model.num_decoder_layers,
        "model.hidden_dim": config.model.hidden_dim,
        "model.num_heads": config.model.num_heads,
        "model.intermediate_dim": config.model.intermediate_dim,
        "model.max_length": config.model.max_length,
        "train.batch_tokens": config.train.batch_tokens,
        "train.epochs": config.train.epochs,
        "train.max_steps": config.train.max_steps,
        "train.max_minutes": config.train.max_minutes,
        "train.learning_rate": config.train.learning_rate,
        "train.warmup_steps": config.train.warmup_steps,
        "train.keep_checkpoints": config.train.keep_checkpoints,
        "train.shuffle_buffer": config.train.shuffle_buffer,
        "train.clip_norm": config.train.clip_norm,
        "train.eval_every": config.train.eval_every,
        "train.eval_every_steps": config.train.eval_every_steps,
        "train.save_every_steps": config.train.save_every_steps,
        "train.validation_beam_size": config.train.validation_beam_size,
        "train.early_stopping_patience": config.train.early_stopping_patience,
        "train.average_last": config.train.average_last,
        "train.replicas": config.train.replicas,
        "train.accumulate_steps": config.train.accumulate_steps,
        "train.nonfinite_skip_limit": config.train.nonfinite_skip_limit,
        "decode.beam_size": config.decode.beam_size,
        "decode.batch_size": config.decode.batch_size,
        "decode.batch_tokens": config.decode.batch_tokens,
        "decode.max_length_ratio": config.decode.max_length_ratio,
        "decode.temperature": config.decode.temperature,
        "decode.top_k": config.decode.top_k,
    }
    for key, value in positive.items():
        if value is not None and value != "auto" and value <= 0:
            raise ConfigError(f"config key '{key}' must be greater than 0; got {value}")
    fractions = {
        "model.dropout": config.model.dropout,
        "model.attention_dropout": config.model.attention_dropout,
        "train.label_smoothing": config.train.label_smoothing,
        "train.adam_beta1": config.train.adam_beta1,
        "train.adam_beta2": config.train.adam_beta2,
    }
    for key, value in fractions.items():
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"config key '{key}' must be in [0, 1); got {value}")
    if not 0.0 < config.tokenizer.character_coverage <= 1.0:
        raise ConfigError(
            f"config key 'tokenizer.character_coverage' must be in (0, 1]; got {config.tokenizer.character_coverage}"
        )
    if config.decode.no_repeat_ngram_size < 0:
        raise ConfigError(
            f"config key 'decode.no_repeat_ngram_size' must be 0 (off) or more; got {config.decode.no_repeat_ngram_size}")
    if config.decode.max_length_offset < 0:
        raise ConfigError(f"config key 'decode.max_length_offset' must be 0 or more; got {config.decode.max_length_offset}")
    if not 0.0 < config.decode.top_p <= 1.0:
        raise ConfigError(f"config key 'decode.top_p' must be in (0, 1]; got {config.decode.top_p}")
    if config.decode.length_penalty < 0:
        raise ConfigError(f"config key 'decode.length_penalty' must be 0 or more; got {config.decode.length_penalty}")
    if config.train.best_metric == "bleu" and not config.train.validation_bleu:
        raise ConfigError(
            "config key 'train.best_metric' is 'bleu' but train.validation_bleu is false; "
            "set train.validation_bleu=true or train.best_metric=loss"
        )
    if config.train.average_last is not None and config.train.average_last > config.train.keep_checkpoints:
        raise ConfigError(
            f"config key 'train.average_last' ({config.train.average_last}) exceeds train.keep_checkpoints "
            f"({config.train.keep_checkpoints}): only that many checkpoints are kept; raise keep_checkpoints"
        )
    if config.train.ema_decay is not None and not 0.0 < config.train.ema_decay < 1.0:
        raise ConfigError(f"config key 'train.ema_decay' must be in (0, 1), e.g. 0.999 (null: off); got {config.train.ema_decay}")
    if config.train.replicas is not None and config.train.distribute != "mirrored":
        raise ConfigError(
            f"config key 'train.replicas' applies to train.distribute=mirrored only (it is {config.train.distribute!r}); "
            "remove it or set train.distribute=mirrored"
        )
    if config.train.batch_tokens == "auto" and config.train.distribute == "multi_worker":
        raise ConfigError("train.batch_tokens=auto would be measured by each worker on its own: measure it on one "
                          "machine (nmt train --dry-run shows the value) and set that number on all of them")
    if config.eval.num_samples < 0:
        raise ConfigError(f"config key 'eval.num_samples' must be 0 or more; got {config.eval.num_samples}")
    if config.model.hidden_dim % config.model.num_heads:
        raise ConfigError(
            f"config key 'model.hidden_dim' ({config.model.hidden_dim}) must be divisible by "
            f"'model.num_heads' ({config.model.num_heads})"
        )
    _check_attention(config.model)
    if config.model.share_embeddings and not config.tokenizer.joint:
        raise ConfigError(
            "config key 'model.share_embeddings' needs one vocabulary for both languages: "
            "set tokenizer.joint=true or model.share_embeddings=false"
        )
    if config.data.source_lang == config.data.target_lang:
        raise ConfigError(
            f"config keys 'data.source_lang' and 'data.target_lang' are both {config.data.source_lang!r}; "
            "they must name two different languages"
        )
    for index, corpus in enumerate(config.data.extra_train):
        where = f"data.extra_train[{index}]"
        if corpus.weight <= 0:
            raise ConfigError(f"config key '{where}.weight' must be greater than 0 (passes over the corpus per epoch); "
                              f"got {corpus.weight}")
        if corpus.tag is not None and (not corpus.tag or any(char.isspace() for char in corpus.tag)
                                       or corpus.tag in RESERVED_PIECES):
            raise ConfigError(f"config key '{where}.tag' must be a word of its own, e.g. '<bt>' (not empty, no spaces, "
                              f"none of {', '.join(RESERVED_PIECES)}); got {corpus.tag!r}")
    if config.train.init_from is None:
        for key, value in (("tokenizer.update_vocab", config.tokenizer.update_vocab),
                           ("train.resume_optimizer", config.train.resume_optimizer)):
            if value:
                raise ConfigError(f"config key '{key}' applies when starting from another run: set train.init_from "
                                  "(nmt train --init-from RUN) or remove it")
    if config.tokenizer.sample_alpha is not None:
        if config.tokenizer.sample_alpha <= 0:
            raise ConfigError(f"config key 'tokenizer.sample_alpha' must be greater than 0, e.g. 0.1 (null: off); "
                              f"got {config.tokenizer.sample_alpha}")
        if config.tokenizer.model_type != "unigram":
            raise ConfigError("config key 'tokenizer.sample_alpha' needs tokenizer.model_type=unigram: SentencePiece "
                              "samples segmentations of unigram models only; set model_type=unigram or remove it")
    if config.tokenizer.sample_nbest < 2:
        raise ConfigError(f"config key 'tokenizer.sample_nbest' must be at least 2; got {config.tokenizer.sample_nbest}")
    if config.tokenizer.vocab_size < 8:
        raise ConfigError(f"config key 'tokenizer.vocab_size' must be at least 8; got {config.tokenizer.vocab_size}")


def _check_attention(model: ModelConfig) -> None:
    if model.num_kv_heads is not None and model.attention != "grouped_query":
        raise ConfigError(
            f"config key 'model.num_kv_heads' applies to model.attention=grouped_query only (it is {model.attention!r}); "
            "remove it or set model.attention=grouped_query"
        )
    if model.attention == "grouped_query":
        if model.num_kv_heads is None:
            raise ConfigError("model.attention=grouped_query needs 'model.num_kv_heads', the number of key/value heads (e.g. 2)")
        if model.num_kv_heads <= 0 or model.num_heads % model.num_kv_heads:
            raise ConfigError(
                f"config key 'model.num_kv_heads' ({model.num_kv_heads}) must divide 'model.num_heads' ({model.num_heads})"
            )
    if not model.attention_projections and model.attention not in ("additive", "dot", "scaled_dot"):
        raise ConfigError(
            f"model.attention={model.attention} splits projected queries, keys and values into heads: it needs "
            "model.attention_projections=true (or choose additive, dot or scaled_dot)"
        )
