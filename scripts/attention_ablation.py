"""The attention ablation behind `scripts/benchmark.py attention`: each step of attention's history
trained for the same budget on one corpus, then measured.

Per variant: validation loss and BLEU (greedy and beam 4) at an equal step and at the end of an
equal number of minutes, training target tokens/s, beam-4 sentences/s, the decoding cache's bytes
per sentence, and the saturation diagnosis inside the trained model (per attention layer: the
standard deviation of the logits within a query's row, the mean maximum weight, the mean entropy,
and the gradient norm reaching the query and key kernels). Nothing is chosen on the test split.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import tensorflow as tf

from nmt import checkpoints, jobs
from nmt.config import Config
from nmt.data import tokenizer
from nmt.data.tokenizer import BOS_ID, EOS_ID, PAD_ID
from nmt.decoding.translator import Translator
from nmt.evaluation.evaluator import Evaluator
from nmt.model import masks
from nmt.model.transformer import build_transformer
from nmt.training.losses import label_smoothed_loss

# The ladder, one change at a time: steps 0-2 score with one head over the inputs themselves,
# then the projections (4-5), the heads (6), and the shared key/value heads beyond the paper.
LADDER = {
    "additive": ["model.attention=additive", "model.attention_projections=false"],
    "dot": ["model.attention=dot", "model.attention_projections=false"],
    "scaled_dot": ["model.attention=scaled_dot", "model.attention_projections=false"],
    "dot+projections": ["model.attention=dot"],
    "scaled_dot+projections": ["model.attention=scaled_dot"],
    "multi_head": ["model.attention=multi_head"],
    "multi_query": ["model.attention=multi_query"],
    "grouped_query": ["model.attention=grouped_query", "model.num_kv_heads=2"],
}
# Sentences of the validation split used for the diagnosis (teacher-forced on their references).
DIAGNOSIS_SENTENCES = 256


def run_variant(config_path: Path, variant: str, minutes: float, equal_steps: int, eval_every: int,
                overrides: list[str], run_dir: Path) -> dict:
    """Trains one variant from scratch in run_dir for `minutes` and measures it."""
    shutil.rmtree(run_dir, ignore_errors=True)
    budget = [
        f"train.max_minutes={minutes}", f"train.eval_every_steps={eval_every}", "train.keep_checkpoints=1000",
        "train.average_last=null", "train.early_stopping_patience=null", "eval.checkpoint=last",
        "train.validation_bleu=true", "train.validation_beam_size=1",
    ]
    with jobs.training_run(config_path, str(run_dir), [*overrides, *LADDER[variant], *budget]) as (config, run):
        summary = jobs.train(config, run, progress=False)
    curve = [json.loads(line) for line in run.metrics_file.read_text(encoding="utf-8").splitlines()]
    tokenizers = tokenizer.load(run.tokenizer_dir, config.tokenizer.joint)
    model = build_transformer(config.model, tokenizers.source_vocab_size, tokenizers.target_vocab_size)
    evaluator = Evaluator.of_split(config.data, "validation")

    def measure(path: Path, record: dict) -> dict:
        checkpoints.restore(path, model)
        found = {"step": checkpoints.step_of(path), "minutes": round(record["elapsed_minutes"], 2),
                 "validation_loss": round(record["validation_loss"], 4)}
        for name, beam in (("greedy", 1), ("beam4", 4)):
            beam_config = dataclasses.replace(config, decode=dataclasses.replace(config.decode, beam_size=beam))
            evaluation = evaluator.run(Translator(beam_config, model, tokenizers))
            found[f"{name}_bleu"] = evaluation.scores["bleu"]
            found[f"{name}_sentences_per_second"] = round(evaluation.sentences_per_second, 2)
        return found

    saved = {checkpoints.step_of(path): path for path in checkpoints.all_checkpoints(run.last_checkpoints)}
    by_step = {record["step"]: record for record in curve}
    result = {
        "variant": variant,
        "overrides": LADDER[variant],
        "steps": summary.steps,
        "train_minutes": round(summary.minutes, 2),
        "parameters": summary.parameters,
        "target_tokens_per_second": round(summary.target_tokens_per_second),
        "curve": [{"step": r["step"], "minutes": round(r["elapsed_minutes"], 2), "validation_loss": round(r["validation_loss"], 4),
                   "greedy_bleu": r.get("validation_bleu")} for r in curve],
        "at_equal_steps": measure(saved[equal_steps], by_step[equal_steps]) if equal_steps in saved else None,
        "at_equal_minutes": measure(saved[max(saved)], by_step[max(saved)]),
    }
    # The end state (the last checkpoint) is what the cache, speed and diagnosis describe.
    result["beam4_sentences_per_second"] = result["at_equal_minutes"]["beam4_sentences_per_second"]
    pairs = _validation_pairs(config, tokenizers, evaluator, DIAGNOSIS_SENTENCES)
    result["cache"] = cache_bytes(model, *pairs)
    result["diagnosis"] = diagnosis(model, *pairs)
    return result


def _validation_pairs(config: Config, tokenizers, evaluator: Evaluator, count: int) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """(source_ids, target_in, target_out) of the first `count` validation pairs (read once, by
    the evaluator), padded."""
    source = tokenizers.source.tokenize(tf.constant(evaluator.sources[:count]))[:, : config.model.max_length - 1]
    target = tokenizers.target.tokenize(tf.constant(evaluator.references[:count]))[:, : config.model.max_length - 1]
    bos = tf.fill([target.nrows(), 1], BOS_ID)
    eos = tf.fill([target.nrows(), 1], EOS_ID)
    return (
        source.to_tensor(PAD_ID),
        tf.concat([bos, target], axis=1).to_tensor(PAD_ID),
        tf.concat([target, eos], axis=1).to_tensor(PAD_ID),
    )


def cache_bytes(model, source_ids: tf.Tensor, target_in: tf.Tensor, target_out: tf.Tensor) -> dict:
    """Bytes the decoding cache holds per sentence of these lengths: the self-attention keys and
    values grow by one position per output token, the cross-attention's hold the source."""
    cache = model.start_decoding(source_ids[:1, :1])  # one sentence, one source token
    memory_per_token = sum(t.numpy().nbytes for layer in cache["layers"] for t in tf.nest.flatten(layer["memory"]))
    _, cache = model.decode_step(tf.constant([BOS_ID]), tf.constant(0), cache)
    self_per_position = sum(t.numpy().nbytes for layer in cache["layers"] for t in tf.nest.flatten(layer["self"]))
    source_length = float(tf.reduce_mean(tf.reduce_sum(tf.cast(source_ids != PAD_ID, tf.float32), axis=1)))
    target_length = float(tf.reduce_mean(tf.reduce_sum(tf.cast(target_out != PAD_ID, tf.float32), axis=1)))
    return {
        "self_bytes_per_position": self_per_position,
        "memory_bytes_per_source_token": memory_per_token,
        "bytes_per_sentence": round(self_per_position * target_length + memory_per_token * source_length),
        "mean_source_tokens": round(source_length, 2),
        "mean_target_tokens": round(target_length, 2),
    }


def diagnosis(model, source_ids: tf.Tensor, target_in: tf.Tensor, target_out: tf.Tensor) -> dict:
    """Per attention kind ("encoder", "decoder_self", "cross") a list over layers of the logits'
    standard deviation within a query's row of allowed keys, the mean maximum weight, the mean
    entropy (nats), each averaged over heads and real query positions, and the L2 norm of the
    loss's gradient with respect to the layer's query and key kernels (None without them)."""
    maps = model.attention_maps(source_ids, target_in)
    source_real = masks.padding_mask(source_ids)  # (batch, 1, src_len)
    allowed = {
        "encoder": (source_real, tf.transpose(source_real, [0, 2, 1])),
        "decoder_self": (masks.decoder_self_mask(target_in), masks.padding_mask(target_in)[:, 0, :, tf.newaxis]),
        "cross": (masks.cross_mask(target_in, source_ids), masks.padding_mask(target_in)[:, 0, :, tf.newaxis]),
    }
    layers_of = {
        "encoder": [layer.self_attention for layer in model.encoder_layers],
        "decoder_self": [layer.self_attention for layer in model.decoder_layers],
        "cross": [layer.cross_attention for layer in model.decoder_layers],
    }
    with tf.GradientTape() as tape:
        logits = model({"source_ids": source_ids, "target_in": target_in})
        loss, tokens, _ = label_smoothed_loss(target_out, logits, 0.0)
        loss = loss / tokens
    kernels = {kind: [attention.score_kernels() for attention in layers] for kind, layers in layers_of.items()}
    gradients = tape.gradient(loss, kernels)
    found = {}
    for kind, layer_maps in maps.items():
        keys_allowed, query_real = allowed[kind]
        keys_allowed = tf.cast(keys_allowed[:, tf.newaxis], tf.float32)  # (batch, 1, queries, keys)
        rows = tf.cast(query_real, tf.float32)[:, tf.newaxis] * tf.ones_like(layer_maps[0]["weights"][..., :1])
        found[kind] = []
        for index, layer in enumerate(layer_maps):
            logit, weight = tf.cast(layer["logits"], tf.float32), tf.cast(layer["weights"], tf.float32)
            count = tf.reduce_sum(keys_allowed, axis=-1, keepdims=True)
            mean = tf.reduce_sum(logit * keys_allowed, axis=-1, keepdims=True) / count
            std = tf.sqrt(tf.reduce_sum(tf.square(logit - mean) * keys_allowed, axis=-1, keepdims=True) / count)
            entropy = -tf.reduce_sum(tf.where(weight > 0, weight * tf.math.log(tf.maximum(weight, 1e-30)), 0.0), axis=-1, keepdims=True)
            peak = tf.reduce_max(weight, axis=-1, keepdims=True)
            grads = [g for g in gradients[kind][index] if g is not None]

            def row_mean(values):
                return round(float(tf.reduce_sum(values * rows) / tf.reduce_sum(rows)), 4)

            found[kind].append({
                "layer": index,
                "logit_std": row_mean(std),
                "mean_max_weight": row_mean(peak),
                "mean_entropy": row_mean(entropy),
                "query_key_gradient_norm": float(f"{float(tf.linalg.global_norm(grads)):.4g}") if grads else None,
            })
    return found


def layer_mean(result: dict, kind: str, field: str) -> float | None:
    values = [layer[field] for layer in result["diagnosis"][kind] if layer[field] is not None]
    return sum(values) / len(values) if values else None


def markdown(entries: dict) -> str:
    """One table per corpus, variants in ladder order."""
    lines = ["# The evolution of attention, measured", ""]
    for corpus, entry in entries.items():
        lines += [
            f"## {corpus}: `{entry['config']}`, {entry['minutes']} minutes per variant",
            "",
            f"Machine: {entry['machine']['cpu']}, {entry['machine']['cores']} cores ({', '.join(entry['machine']['cpu_vector_units'])}); "
            f"code {entry['code']}; ablation-wide settings: {', '.join(entry['overrides']) or 'none'}; "
            f"equal steps = step {entry['equal_steps']}. BLEU on the validation split (sacreBLEU), nothing on test.",
            "",
            "| variant | params | steps | target tok/s | loss @ steps | greedy @ steps | beam 4 @ steps | loss @ minutes "
            "| greedy @ minutes | beam 4 @ minutes | beam-4 sent/s | cache KiB/sentence | cross logit std | cross max weight "
            "| cross entropy | q/k grad norm (cross) |",
            "|" + " --- |" * 16,
        ]
        for variant in LADDER:
            result = entry["variants"].get(variant)
            if result is None:
                continue
            steps, minutes = result["at_equal_steps"] or {}, result["at_equal_minutes"]

            def cell(found: dict, field: str, digits: int = 2) -> str:
                return f"{found[field]:.{digits}f}" if found.get(field) is not None else "–"

            gradient = layer_mean(result, "cross", "query_key_gradient_norm")
            lines.append(
                f"| {variant} | {result['parameters']:,} | {result['steps']} | {result['target_tokens_per_second']:,} "
                f"| {cell(steps, 'validation_loss', 3)} | {cell(steps, 'greedy_bleu')} | {cell(steps, 'beam4_bleu')} "
                f"| {cell(minutes, 'validation_loss', 3)} | {cell(minutes, 'greedy_bleu')} | {cell(minutes, 'beam4_bleu')} "
                f"| {result['beam4_sentences_per_second']:.1f} | {result['cache']['bytes_per_sentence'] / 1024:.1f} "
                f"| {layer_mean(result, 'cross', 'logit_std'):.2f} | {layer_mean(result, 'cross', 'mean_max_weight'):.3f} "
                f"| {layer_mean(result, 'cross', 'mean_entropy'):.3f} | {'–' if gradient is None else f'{gradient:.3g}'} |"
            )
        lines.append("")
    lines += [
        "Cross-attention diagnosis columns are means over decoder layers (per layer and for encoder and decoder "
        "self-attention in attention.json). A row's logit std is taken over the keys a query may attend to.",
        "",
    ]
    return "\n".join(lines)


def plot(entries: dict, path: Path) -> None:
    """Validation BLEU against minutes for each corpus, and beam-4 speed against cache size."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpora = list(entries)
    figure, axes = plt.subplots(1, len(corpora) + 1, figsize=(6 * (len(corpora) + 1), 4.5))
    colours = dict(zip(LADDER, plt.cm.tab10.colors))
    for axis, corpus in zip(axes, corpora):
        for variant, result in entries[corpus]["variants"].items():
            points = [(p["minutes"], p["greedy_bleu"]) for p in result["curve"] if p["greedy_bleu"] is not None]
            if points:
                axis.plot(*zip(*points), marker="o", markersize=3, label=variant, color=colours.get(variant))
        axis.set(title=f"{corpus}: validation BLEU (greedy)", xlabel="training minutes", ylabel="BLEU")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    last = entries[corpora[-1]]
    axis = axes[-1]
    for variant, result in last["variants"].items():
        x, y = result["cache"]["bytes_per_sentence"] / 1024, result["beam4_sentences_per_second"]
        axis.scatter([x], [y], color=colours.get(variant))
        axis.annotate(variant, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    axis.set(title=f"{corpora[-1]}: beam-4 decoding", xlabel="decoding cache per sentence (KiB)", ylabel="sentences/s")
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def summary_line(result: dict) -> str:
    minutes = result["at_equal_minutes"]
    return (f"{result['variant']}: {result['steps']} steps, validation BLEU greedy {minutes['greedy_bleu']:.2f} / "
            f"beam 4 {minutes['beam4_bleu']:.2f}, {result['beam4_sentences_per_second']:.1f} beam-4 sent/s, "
            f"cache {result['cache']['bytes_per_sentence'] / 1024:.1f} KiB/sentence")

