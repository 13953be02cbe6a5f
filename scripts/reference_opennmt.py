"""Training and decoding throughput of the reference toolkit (OpenNMT-tf 2.32 on TensorFlow 2.12)
on the data, model and batching of an nmt config, for `scripts/benchmark.py speed --reference-python`.

Runs under the reference's own Python (`make benchmark-speed-reference` installs it into
.venv-reference: it needs TensorFlow 2.12, which cannot share an environment with nmt's). It reads
the job that benchmark.py writes (SentencePiece-segmented training text and test sources, the
vocabulary, the model, batch, learning-rate schedule and decoding settings), trains for train_steps steps, decodes the test
sources with each beam size asked for into test.beam<N> (space-separated pieces), and prints one JSON object:
target and source+target tokens/s over steps warmup+1 .. warmup+steps, from OpenNMT-tf's own step
logs, and each beam size's decoding seconds, from its own inference log (tracing excluded, as ours).
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


# predict_dataset's log_time line: the loop over the data after the graph is traced.
_PREDICTION_TIME = re.compile(r"Total prediction time \(s\): ([\d.]+)")


class _Log(logging.Handler):
    def __init__(self):
        super().__init__()
        self.steps = []
        self.prediction_seconds = []

    def emit(self, record):
        message = record.getMessage()
        if match := _STEP_LINE.match(message):
            step, steps_per_s, source, target = match.groups()
            self.steps.append((int(step), float(steps_per_s), int(source), int(target)))
        elif match := _PREDICTION_TIME.match(message):
            self.prediction_seconds.append(float(match.group(1)))


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
        "model_dir": job["model_dir"],
        "data": {
            "train_features_file": str(work / "train.source"),
            "train_labels_file": str(work / "train.target"),
            "source_vocabulary": str(work / "vocabulary.txt"),
            "target_vocabulary": str(work / "vocabulary.txt"),
        },
        "params": {
            "optimizer": "Adam",
            "optimizer_params": {"beta_1": job["adam_beta1"], "beta_2": job["adam_beta2"], "epsilon": job["adam_epsilon"]},
            # NoamDecay is scale * min(step / warmup**1.5, 1 / sqrt(step)) / sqrt(model_dim): this
            # scale makes it nmt's schedule, peaking at nmt's learning_rate after warmup_steps.
            "learning_rate": job["learning_rate"] * (model_settings["hidden_dim"] * job["warmup_steps"]) ** 0.5,
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
            "max_step": job["train_steps"],
            "save_summary_steps": report_every,
            "save_checkpoints_steps": 10**9,
            "keep_checkpoint_max": 1,
        },
    }
    log = _Log()
    tf.get_logger().addHandler(log)
    tf.get_logger().setLevel(logging.INFO)
    opennmt.Runner(model, config, auto_config=False).train(num_devices=1)
    timed = [record for record in log.steps if job["warmup"] < record[0] <= job["warmup"] + job["steps"]]
    if not timed:
        sys.exit(f"no OpenNMT-tf step log after step {job['warmup']}: {log.steps}")
    # Each log covers report_every steps at its own rate: tokens / seconds over all of them.
    seconds = sum(report_every / steps_per_s for _, steps_per_s, _, _ in timed)
    source = sum(rate * report_every / steps_per_s for _, steps_per_s, rate, _ in timed)
    target = sum(rate * report_every / steps_per_s for _, steps_per_s, _, rate in timed)
    decode = job["decode"]
    # nmt's decoding settings; batches of similar lengths as OpenNMT-tf's own inference
    # defaults for a Transformer make them (buckets 5 tokens wide).
    config["params"].update({"length_penalty": decode["length_penalty"], "maximum_decoding_length": decode["max_length"]})
    config["infer"] = {"batch_size": decode["batch_size"], "batch_type": "examples", "length_bucket_width": 5}
    for beam_size in decode["beam_sizes"]:
        config["params"]["beam_width"] = beam_size
        opennmt.Runner(model, config, auto_config=False).infer(
            decode["source_file"], predictions_file=str(work / f"test.beam{beam_size}"), log_time=True)
    result = {
        "toolkit": f"OpenNMT-tf {opennmt.__version__}, TensorFlow {tf.__version__}",
        "timed_steps": report_every * len(timed),
        "seconds": round(seconds, 2),
        "train_tokens_per_s": round((source + target) / seconds),
        "train_target_tokens_per_s": round(target / seconds),
    }
    if decode["beam_sizes"]:
        result["decode_steps"] = job["train_steps"]
        result["decode_seconds"] = dict(zip(map(str, decode["beam_sizes"]), log.prediction_seconds))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
