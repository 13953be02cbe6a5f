"""SentencePiece subword models: trained with the `sentencepiece` package, applied with tensorflow-text.

Training needs the `sentencepiece` trainer (tensorflow-text only applies models); tokenizing inside
tf.data and at translation time uses tensorflow-text's SentencepieceTokenizer, which reads the
same model file, so training and inference share one implementation of the segmentation.
"""

from __future__ import annotations

import io
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import sentencepiece as spm
import tensorflow as tf
import tensorflow_text as tf_text
from sentencepiece import sentencepiece_model_pb2

from nmt import atomic
from nmt.config import DataConfig, TokenizerConfig
from nmt.data import sources
from nmt.data.corpus import Corpus
from nmt.errors import RunDirError

log = logging.getLogger("nmt")

PAD_ID, UNK_ID, BOS_ID, EOS_ID = 0, 1, 2, 3


@dataclass(frozen=True)
class Tokenizers:
    source: tf_text.SentencepieceTokenizer
    target: tf_text.SentencepieceTokenizer

    @property
    def source_vocab_size(self) -> int:
        return int(self.source.vocab_size())

    @property
    def target_vocab_size(self) -> int:
        return int(self.target.vocab_size())


class SegmentationSampler:
    """Subword regularization (Kudo, 2018, its l-best variant): a sentence's segmentation drawn
    among its `nbest` best ones with probability proportional to P(segmentation)^alpha, where
    P is the unigram model's product of piece probabilities.

    SentencePiece's own sampling draws from a generator that TensorFlow cannot seed; here the
    candidates come from the model and the draw from a stateless generator, so the same seed
    gives the same segmentations in any process (a resumed epoch reads the batches it would have).
    """

    def __init__(self, model: bytes, alpha: float, nbest: int):
        self.alpha = alpha
        self._nbest = tf_text.SentencepieceTokenizer(model=model, out_type=tf.int32, nbest_size=nbest, return_nbest=True)
        proto = sentencepiece_model_pb2.ModelProto()
        proto.ParseFromString(model)
        scores = [piece.score for piece in proto.pieces]
        # The model file scores the unknown piece 0; segmenting, SentencePiece gives it the lowest
        # score less 10 (its kUnkPenalty).
        scores[UNK_ID] = min(scores) - 10.0
        self._scores = tf.constant(scores, dtype=tf.float32)

    def tokenize(self, sentences: tf.Tensor, seed: tf.Tensor) -> tf.RaggedTensor:
        """(sentences,) strings -> (sentences, None) ids, one sampled segmentation each; seed: a
        shape (2,) integer tensor, as tf.random's stateless functions take."""
        # Asked for a batch, the n-best op returns the candidates of all sentences in one list,
        # without saying which belong to which when a short sentence has fewer than nbest.
        candidates = tf.map_fn(
            lambda sentence: self._nbest.tokenize(tf.reshape(sentence, [1])), sentences,
            fn_output_signature=tf.RaggedTensorSpec([None, None], tf.int32, ragged_rank=1), parallel_iterations=32)
        log_p = tf.reduce_sum(tf.gather(self._scores, candidates), axis=-1)
        # One Gumbel draw per candidate: the argmax of alpha * log P + Gumbel noise samples a
        # candidate with probability proportional to P^alpha.
        uniform = tf.random.stateless_uniform(tf.shape(log_p.flat_values), seed=seed, minval=1e-20, maxval=1.0)
        perturbed = log_p.with_flat_values(self.alpha * log_p.flat_values - tf.math.log(-tf.math.log(uniform)))
        chosen = tf.argmax(perturbed.to_tensor(default_value=-float("inf")), axis=1, output_type=tf.int64)
        return tf.gather(candidates.values, candidates.row_starts() + chosen)


@dataclass(frozen=True)
class Samplers:
    source: SegmentationSampler
    target: SegmentationSampler


def samplers(directory: Path, config: TokenizerConfig) -> Samplers | None:
    """Segmentation samplers for the training data from the model(s) in directory, or None when
    tokenizer.sample_alpha is off."""
    if config.sample_alpha is None:
        return None
    files = model_files(directory, config.joint)
    source = SegmentationSampler(files["source"].read_bytes(), config.sample_alpha, config.sample_nbest)
    target = source if config.joint else SegmentationSampler(files["target"].read_bytes(), config.sample_alpha,
                                                             config.sample_nbest)
    return Samplers(source, target)


def model_files(directory: Path, joint: bool) -> dict[str, Path]:
    """The model file(s) used for each side."""
    if joint:
        return {"source": directory / "joint.model", "target": directory / "joint.model"}
    return {"source": directory / "source.model", "target": directory / "target.model"}


def train(
    config: TokenizerConfig,
    source_texts: Iterable[str],
    target_texts: Iterable[str],
    directory: Path,
    tags: Sequence[str] = (),
) -> None:
    """Trains the SentencePiece model(s) and writes them atomically into directory. tags: pieces
    reserved in the source model as control symbols (data.extra_train's tags), which no text
    encodes to: only the input pipeline puts them in."""
    directory.mkdir(parents=True, exist_ok=True)
    files = model_files(directory, config.joint)
    if config.joint:
        _train_one(config, [*source_texts, *target_texts], files["source"], tags)
    else:
        _train_one(config, list(source_texts), files["source"], tags)
        _train_one(config, list(target_texts), files["target"])


def _train_one(config: TokenizerConfig, sentences: list[str], path: Path, tags: Sequence[str] = ()) -> None:
    atomic.write_bytes(path, _trained(config, sentences, tags))


def _trained(config: TokenizerConfig, sentences: list[str], tags: Sequence[str] = ()) -> bytes:
    """A serialized SentencePiece model trained on sentences, with tags as control symbols."""
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        control_symbols=list(tags),
        sentence_iterator=iter(sentences),
        model_writer=model,
        model_type=config.model_type,
        vocab_size=config.vocab_size,
        character_coverage=config.character_coverage,
        input_sentence_size=config.max_sentences,
        shuffle_input_sentence=True,
        # A small corpus may not support the requested size; take the largest vocabulary it does.
        hard_vocab_limit=False,
        pad_id=PAD_ID,
        unk_id=UNK_ID,
        bos_id=BOS_ID,
        eos_id=EOS_ID,
        num_threads=os.cpu_count() or 1,
        minloglevel=2,
    )
    return model.getvalue()


def extend(directory: Path, config: TokenizerConfig, source_texts: list[str], target_texts: list[str],
           tags: Sequence[str] = ()) -> dict[str, int]:
    """Adds to the model(s) in directory the pieces that new text needs and they lack: each
    character they cannot encode, and the pieces holding such characters of a model trained on the
    new text (whole words, when frequent). The pieces are appended, so every old piece keeps its
    id, and text made of known characters is segmented exactly as before. Returns the pieces added
    per model file. tags missing from the source model are appended to it as control symbols."""
    files = model_files(directory, config.joint)
    texts = {"source": source_texts, "target": target_texts}
    if config.joint:
        texts = {"source": [*source_texts, *target_texts]}
    return {files[side].name: _extend_one(files[side], config, sentences, tags if side == "source" else ())
            for side, sentences in texts.items()}


def _extend_one(path: Path, config: TokenizerConfig, sentences: list[str], tags: Sequence[str] = ()) -> int:
    old = sentencepiece_model_pb2.ModelProto()
    old.ParseFromString(path.read_bytes())
    known = {piece.piece for piece in old.pieces}
    added = _pieces_for(old, config, sentences)
    control = [tag for tag in tags if tag not in known]
    if not added and not control:
        return 0
    for piece, score in added:
        old.pieces.add(piece=piece, score=score, type=sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL)
    for tag in control:
        old.pieces.add(piece=tag, score=0.0, type=sentencepiece_model_pb2.ModelProto.SentencePiece.CONTROL)
    atomic.write_bytes(path, old.SerializeToString())
    return len(added) + len(control)


def _pieces_for(old: sentencepiece_model_pb2.ModelProto, config: TokenizerConfig, sentences: list[str]) -> list[tuple[str, float]]:
    """(piece, score) to append to the model `old` so that it encodes the characters of sentences
    it cannot: the pieces holding them of a model trained on the sentences, and each alone."""
    processor = spm.SentencePieceProcessor(model_proto=old.SerializeToString())
    characters = {character for sentence in sentences for character in sentence if not character.isspace()}
    unknown = {character for character in characters if UNK_ID in processor.encode(character)}
    if not unknown:
        return []
    new = sentencepiece_model_pb2.ModelProto()
    new.ParseFromString(_trained(config, sentences))
    known = {piece.piece for piece in old.pieces}
    normal = sentencepiece_model_pb2.ModelProto.SentencePiece.NORMAL
    # Pieces are stored normalised (NFKC, with "▁" for a space): compare characters as the model sees them.
    unknown = set("".join(processor.normalize(character) for character in unknown).replace("▁", ""))
    added = [(piece.piece, piece.score) for piece in new.pieces
             if piece.type == normal and piece.piece not in known and set(piece.piece) & unknown]
    lowest = min(piece.score for piece in old.pieces if piece.type == normal)
    pieces = {piece for piece, _ in added}
    added += [(character, lowest) for character in sorted(unknown - pieces)]
    if config.model_type == "bpe":
        # BPE merges the pair whose piece scores highest: the new pieces merge after every old one.
        added = [(piece, lowest - 1 - rank) for rank, (piece, _) in enumerate(added)]
    return added


def load(directory: Path, joint: bool) -> Tokenizers:
    files = model_files(directory, joint)
    models = {}
    for side, path in files.items():
        try:
            models[side] = path.read_bytes()
        except FileNotFoundError:
            raise RunDirError(f"tokenizer model missing: {path}; re-run nmt train on this run directory") from None
    return Tokenizers(
        source=tf_text.SentencepieceTokenizer(model=models["source"], out_type=tf.int32),
        target=tf_text.SentencepieceTokenizer(model=models["target"], out_type=tf.int32),
    )


def piece_id(segmenter: tf_text.SentencepieceTokenizer, piece: str) -> int | None:
    """The id of a piece of the model's vocabulary (a control symbol too); None if it has none
    (SentencePiece gives an unknown piece the unknown piece's id)."""
    found = int(segmenter.string_to_id(piece))
    return None if found == UNK_ID else found


def prepare(config: TokenizerConfig, data: DataConfig, directory: Path) -> Tokenizers:
    """Loads the SentencePiece model(s) in directory, training them on the training corpora the first time."""
    if not exists(directory, config.joint):
        log.info("training SentencePiece (%s, %d pieces) on the training %s", config.model_type, config.vocab_size,
                 "corpora" if data.extra_train else "split")
        train(config, *training_sample(data, config.max_sentences), directory, sources.tags(data))
    return load(directory, config.joint)


def training_sample(data: DataConfig, size: int) -> tuple[list[str], list[str]]:
    """About `size` training pairs (sources, targets) spread over each training corpus, in its
    share of an epoch: what SentencePiece trains on."""
    corpora = sources.training_corpora(data)
    source_texts, target_texts = [], []
    for corpus, limit in zip(corpora, _sample_sizes(corpora, size)):
        corpus_sources, corpus_targets = sources.read_pairs(corpus.data, "train", limit=limit, spread=True)
        source_texts += corpus_sources
        target_texts += corpus_targets
    return source_texts, target_texts


def _sample_sizes(corpora: Sequence[Corpus], total: int) -> list[int]:
    """Pairs of each training corpus SentencePiece trains on, total in all: shares of what an
    epoch reads of each (its pairs times its weight); equal shares where a size is unknown."""
    reads = sources.epoch_reads(corpora)
    if reads is None:
        return [max(1, total // len(corpora))] * len(corpora)
    return [max(1, round(total * share / sum(reads))) for share in reads]


def exists(directory: Path, joint: bool) -> bool:
    return all(path.is_file() for path in model_files(directory, joint).values())
