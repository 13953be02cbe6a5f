"""Training throughput of the reference toolkit (OpenNMT-tf 2.32 on TensorFlow 2.12) on the data,
model and batching of an nmt config, for `scripts/benchmark.py speed --reference-python`.

Runs under the reference's own Python (`make benchmark-speed-reference` installs it into
.venv-reference: it needs TensorFlow 2.12, which cannot share an environment with nmt's). It reads
the job that benchmark.py writes (SentencePiece-segmented training text, the vocabulary, the model
and batch settings), trains for warmup + steps steps, and prints one JSON object: target and
source+target tokens/s over the steps after the warm-up, from OpenNMT-tf's own step logs.
"""

import argparse
import json
import logging
import re
import sys
from pathlib import Path

import opennmt
import tensorflow as tf

# OpenNMT-tf's log line every save_summary_steps steps, e.g.
# "Step = 40 ; steps/s = 0.61, tokens/s = 4858 (2417 source, 2441 target) ; Learning rate = ..."
_STEP_LINE = re.compile(r"Step = (\d+) ; steps/s = ([\d.]+), tokens/s = \d+ \((\d+) source, (\d+) target\)")


class _StepLog(logging.Handler):
    def __init__(self):
        super().__init__()
        self.records = []

    def emit(self, record):
        match = _STEP_LINE.match(record.getMessage())
        if match:
            step, steps_per_s, source, target = match.groups()
            self.records.append((int(step), float(steps_per_s), int(source), int(target)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("job", type=Path, help="job.json written by scripts/benchmark.py")
    job = json.loads(parser.parse_args().job.read_text())
    model_settings, work = job["model"], Path(job["directory"])
    model = opennmt.models.Transformer(
        source_inputter=opennmt.inputters.WordEmbedder(embedding_size=model_settings["hidden_dim"]),
        target_inputter=opennmt.inputters.WordEmbedder(embedding_size=model_settings["hidden_dim"]),
        num_layers=model_settings["num_layers"],
        num_units=model_settings["hidden_dim"],
        num_heads=model_settings["num_heads"],
        ffn_inner_dim=model_settings["intermediate_dim"],
        dropout=model_settings["dropout"],
        attention_dropout=model_settings["attention_dropout"],
        ffn_dropout=model_settings["dropout"],
        share_embeddings=opennmt.models.EmbeddingsSharingLevel.ALL,
    )
    report_every = 10
    config = {
        "model_dir": str(work / "model"),
        "data": {
            "train_features_file": str(work / "train.source"),
            "train_labels_file": str(work / "train.target"),
            "source_vocabulary": str(work / "vocabulary.txt"),
            "target_vocabulary": str(work / "vocabulary.txt"),
        },
        "params": {
            "optimizer": "Adam",
            "optimizer_params": {"beta_1": 0.9, "beta_2": job["adam_beta2"], "epsilon": 1e-9},
            "learning_rate": 2.0,
            "decay_type": "NoamDecay",
            "decay_params": {"model_dim": model_settings["hidden_dim"], "warmup_steps": job["warmup_steps"]},
            "label_smoothing": job["label_smoothing"],
        },
        "train": {
            "batch_size": job["batch_tokens"],
            "batch_type": "tokens",
            "length_bucket_width": 1,
            "maximum_features_length": job["max_length"],
            "maximum_labels_length": job["max_length"],
            "max_step": job["warmup"] + job["steps"],
            "save_summary_steps": report_every,
            "save_checkpoints_steps": 10**9,
            "keep_checkpoint_max": 1,
        },
    }
    handler = _StepLog()
    tf.get_logger().addHandler(handler)
    tf.get_logger().setLevel(logging.INFO)
    opennmt.Runner(model, config, auto_config=False).train(num_devices=1)
    timed = [record for record in handler.records if record[0] > job["warmup"]]
    if not timed:
        sys.exit(f"no OpenNMT-tf step log after step {job['warmup']}: {handler.records}")
    # Each log covers report_every steps at its own rate: tokens / seconds over all of them.
    seconds = sum(report_every / steps_per_s for _, steps_per_s, _, _ in timed)
    source = sum(rate * report_every / steps_per_s for _, steps_per_s, rate, _ in timed)
    target = sum(rate * report_every / steps_per_s for _, steps_per_s, _, rate in timed)
    print(json.dumps({
        "toolkit": f"OpenNMT-tf {opennmt.__version__}, TensorFlow {tf.__version__}",
        "timed_steps": report_every * len(timed),
        "seconds": round(seconds, 2),
        "train_tokens_per_s": round((source + target) / seconds),
        "train_target_tokens_per_s": round(target / seconds),
    }))


if __name__ == "__main__":
    main()
