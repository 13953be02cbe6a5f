"""train.distribute=multi_worker with two workers on loopback, as two real `nmt train` processes."""

import contextlib
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

from nmt import config as config_lib
from nmt.config import DataConfig
from nmt.data import sources, tokenizer
from nmt.run_dir import RunDir

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"


def free_ports(count: int) -> list[int]:
    """Distinct free ports: every socket stays bound until all are chosen (one closed before the
    next is bound can give the same port twice, and two workers on one port never meet)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("localhost", 0))
        return [sock.getsockname()[1] for sock in sockets]


def test_two_workers_train_one_model(tmp_path, tfds_dir, package_env):
    # Workers must not prepare one TFDS dataset at the same time: it is prepared first.
    sources.load_split(DataConfig(data_dir=tfds_dir), "train")
    # Three steps need no more than a slice of the corpus, which the data check, the tokenizer and
    # the pipeline read faster.
    data = [f"data.data_dir={tfds_dir}", "data.train_split=train[:2000]"]
    # Each worker would train the same SentencePiece model at the same time: train it once here.
    config = config_lib.load(QUICKSTART, data)
    chief_run = RunDir(tmp_path / "run")
    tokenizer.prepare(config.tokenizer, config.data, chief_run.tokenizer_dir)
    shutil.copytree(chief_run.tokenizer_dir, tmp_path / "run" / "worker-1" / "tokenizer")
    cluster = {"worker": [f"localhost:{port}" for port in free_ports(2)]}
    command = [
        sys.executable, "-m", "nmt.cli", "train", "--config", str(QUICKSTART), "--run-dir", str(tmp_path / "run"),
        *(argument for setting in data for argument in ("--set", setting)), "--set", "train.distribute=multi_worker", "--set", "train.max_steps=3",
        "--set", "train.validation_bleu=false", "--set", "train.best_metric=loss",
        # One layer each side: the cluster's step traces faster, and what is tested is the same.
        "--set", "model.num_encoder_layers=1", "--set", "model.num_decoder_layers=1",
        # Keeps the closing evaluation of a 3-step model short: outputs of at most 2 tokens.
        "--set", "decode.beam_size=1", "--set", "decode.max_length_ratio=0.01", "--set", "decode.max_length_offset=1",
    ]
    workers = [
        subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**package_env, "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})},
        )
        for index in range(2)
    ]
    try:
        outputs = [worker.communicate(timeout=600)[0] for worker in workers]
    finally:
        for worker in workers:  # a worker waiting for a peer that failed would wait on forever
            worker.kill()
    for index, (worker, output) in enumerate(zip(workers, outputs)):
        assert worker.returncode == 0, f"worker {index}: {output[-3000:]}"
    chief, other = (
        [json.loads(line) for line in (path / "metrics.jsonl").read_text().splitlines()]
        for path in (tmp_path / "run", tmp_path / "run" / "worker-1")
    )
    assert chief[-1]["step"] == other[-1]["step"] == 3
    # Synchronous training: both workers hold the same weights, so they validate identically, and
    # report the same training loss, summed over both workers' batches.
    assert chief[-1]["validation_loss"] == other[-1]["validation_loss"]
    assert chief[-1]["train_loss"] == other[-1]["train_loss"]
