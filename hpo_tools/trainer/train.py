"""Train and evaluate one model: CSV in, EasyRec's model_dir layout out.

Layout written under ``model_dir`` (the layout EasyRec/Estimator writes, so the same metric
sources read both)::

    model_dir/checkpoint, model.ckpt-<step>.index, model.ckpt-<step>.data-00000-of-00001
    model_dir/eval_val/events.out.tfevents.*   TF1-style ``simple_value`` scalars per checkpoint:
                                               auc_<tower>, loss_<tower>, loss (DBMTL) or
                                               auc, loss (DeepFM)

One evaluation runs on the whole eval file after every ``save_checkpoints_steps`` steps and after
the last step. Logs go to the ``hpo_tools.trainer`` logger: where training started from
(``start: ...``) and one ``eval step=N key=value ...`` line per evaluation.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Optional

import numpy as np

from hpo_tools.errors import ConfigError
from hpo_tools.trainer.config import FeatureSpec, InputField, TrainerSettings

__all__ = ["TrainResult", "train_and_evaluate", "resolve_checkpoint", "roc_auc", "EVAL_DIR"]

_logger = logging.getLogger(__name__)

#: Evaluation events go to ``model_dir/EVAL_DIR`` (EasyRec's name for the eval of ``eval_val``).
EVAL_DIR = "eval_val"
_CKPT_NAME = "model.ckpt"
_EVAL_CHUNK = 8192


@dataclass(frozen=True)
class TrainResult:
    """What one run did: its evaluations (``{"step": N, <tag>: value, ...}``) and checkpoints."""

    evaluations: tuple[dict[str, float], ...]
    checkpoints: tuple[str, ...]
    started_from: str
    final_step: int


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Exact ROC AUC (ties count one half); 0.5 when one class is missing."""
    labels = np.asarray(labels) > 0.5
    positives = int(labels.sum())
    negatives = labels.size - positives
    if positives == 0 or negatives == 0:
        return 0.5
    order = np.argsort(scores, kind="mergesort")
    _, inverse, counts = np.unique(np.asarray(scores)[order], return_inverse=True,
                                   return_counts=True)
    average_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = np.empty(labels.size)
    ranks[order] = average_rank[inverse]
    return float((ranks[labels].sum() - positives * (positives + 1) / 2.0)
                 / (positives * negatives))


def _log_loss(labels: np.ndarray, probs: np.ndarray) -> float:
    probs = np.clip(probs, 1e-7, 1 - 1e-7)
    return float(-np.mean(labels * np.log(probs) + (1 - labels) * np.log(1 - probs)))


# --------------------------------------------------------------------------------------------
# Data


@dataclass(frozen=True)
class _Table:
    """A CSV file turned into model inputs (numpy) and labels."""

    inputs: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    rows: int


def _read_csv(path: str, fields: Sequence[InputField], separator: str) -> list[Any]:
    import tensorflow as tf

    if not path:
        raise ConfigError("no input path: give train_input_path/eval_input_path in the config "
                          "or --train_input_path/--eval_input_path")
    paths = []
    for part in path.split(","):  # EasyRec's CSVInput: comma-separated paths, each a glob
        found = sorted(tf.io.gfile.glob(part)) if any(c in part for c in "*?[") else [part]
        if not found or not all(tf.io.gfile.exists(p) for p in found):
            raise ConfigError(f"{part}: input file not found")
        for one in found:
            if tf.io.gfile.isdir(one):
                raise ConfigError(f"{one}: is a directory, expected a CSV file or a glob")
        paths.extend(found)
    defaults = []
    for f in fields:
        if f.input_type in ("INT32", "INT64"):
            defaults.append(tf.constant([int(f.default_val or 0)], tf.int64))
        elif f.input_type in ("FLOAT", "DOUBLE"):
            defaults.append(tf.constant([float(f.default_val or 0.0)], tf.float32))
        else:
            defaults.append(tf.constant([f.default_val], tf.string))
    columns: list[list[Any]] = [[] for _ in fields]
    for one in paths:
        lines = tf.strings.split(tf.io.read_file(one), "\n")
        lines = tf.boolean_mask(lines, tf.strings.length(lines) > 0)
        try:
            decoded = tf.io.decode_csv(lines, defaults, field_delim=separator)
        except (tf.errors.InvalidArgumentError, ValueError) as err:
            first = str(err).strip().splitlines()[0][:200]
            raise ConfigError(f"{one}: cannot read as {len(fields)} {separator!r}-separated "
                              f"columns of data_config.input_fields: {first}") from err
        for k, col in enumerate(decoded):
            columns[k].append(col)
    return [tf.concat(c, axis=0) if len(c) > 1 else c[0] for c in columns]


def _feature_input(spec: FeatureSpec, column: Any, field: InputField) -> np.ndarray:
    import tensorflow as tf

    if spec.kind == "id" and spec.hash_bucket_size:
        text = column if field.input_type == "STRING" else tf.strings.as_string(column)
        return tf.strings.to_hash_bucket_fast(text, spec.hash_bucket_size).numpy()
    if spec.kind == "id":
        if field.input_type == "STRING":
            try:
                column = tf.strings.to_number(column, out_type=tf.int64)
            except tf.errors.InvalidArgumentError as err:
                raise ConfigError(f"feature {spec.name}: num_buckets needs integer values in "
                                  f"column {field.name!r}") from err
        ids = column.numpy().astype(np.int64)
        # Out-of-range ids fall into bucket 0, like an identity column with default_value 0.
        return np.where((ids >= 0) & (ids < spec.num_buckets), ids, 0)
    values = column.numpy().astype(np.float32)
    if spec.boundaries:
        return np.searchsorted(np.asarray(spec.boundaries), values, side="right").astype(np.int64)
    return values


def load_table(path: str, settings: TrainerSettings) -> _Table:
    """Read a CSV file (or glob) into the model's inputs and the labels."""
    columns = _read_csv(path, settings.input_fields, settings.separator)
    by_name = {f.name: (f, c) for f, c in zip(settings.input_fields, columns)}
    inputs = {}
    for spec in settings.features:
        field, column = by_name[spec.input_name]
        inputs[spec.name] = _feature_input(spec, column, field)
    labels = {name: by_name[name][1].numpy().astype(np.float32)
              for name in settings.label_fields}
    rows = int(next(iter(labels.values())).shape[0])
    if rows == 0:
        raise ConfigError(f"{path}: no rows")
    return _Table(inputs, labels, rows)


def _batch(table: _Table, index: np.ndarray) -> tuple[dict[str, Any], dict[str, Any]]:
    return ({k: v[index] for k, v in table.inputs.items()},
            {k: v[index] for k, v in table.labels.items()})


# --------------------------------------------------------------------------------------------
# Checkpoints and events


def resolve_checkpoint(path: str) -> str:
    """A checkpoint prefix from a prefix or a directory (its latest checkpoint).

    Raises:
        ConfigError: when ``path`` holds no checkpoint.
    """
    import tensorflow as tf

    if tf.io.gfile.isdir(path):
        latest = tf.train.latest_checkpoint(path)
        if latest is None:
            raise ConfigError(f"fine_tune_checkpoint: no checkpoint in directory {path}")
        return latest
    if not tf.io.gfile.exists(path + ".index"):
        raise ConfigError(f"fine_tune_checkpoint: {path} is neither a checkpoint prefix "
                          f"(no {path}.index) nor a directory")
    return path


class _EventWriter:
    """Writes TF1-style ``simple_value`` scalar events (what Estimator/EasyRec eval writes)."""

    def __init__(self, logdir: str) -> None:
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._writer = EventFileWriter(logdir)

    def write(self, step: int, values: Mapping[str, float]) -> None:
        from tensorboard.compat.proto import event_pb2, summary_pb2

        summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=k, simple_value=v)
                                             for k, v in values.items()])
        self._writer.add_event(event_pb2.Event(wall_time=time.time(), step=step,
                                               summary=summary))
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


# --------------------------------------------------------------------------------------------
# Training


def _make_optimizer(settings: TrainerSettings, lr_var: Any) -> Any:
    import tensorflow as tf

    opt = settings.optimizer
    rate = lambda: lr_var  # noqa: E731  (read at every update)
    if opt.kind == "adam":
        return tf.compat.v1.train.AdamOptimizer(rate, beta1=opt.beta1, beta2=opt.beta2)
    if opt.kind == "momentum":
        return tf.compat.v1.train.MomentumOptimizer(rate, momentum=opt.momentum)
    return tf.compat.v1.train.GradientDescentOptimizer(rate)


def _max_steps(settings: TrainerSettings, rows: int) -> int:
    per_epoch = math.ceil(rows / settings.batch_size)
    limits = []
    if settings.num_steps:
        limits.append(settings.num_steps)
    if settings.num_epochs:
        limits.append(per_epoch * settings.num_epochs)
    if not limits:
        raise ConfigError(f"{settings.source}: train_config.num_steps or data_config.num_epochs "
                          "must be > 0 (otherwise training never ends)")
    return min(limits)


def train_and_evaluate(
    settings: TrainerSettings,
    model_dir: Optional[str] = None,
    train_input_path: Optional[str] = None,
    eval_input_path: Optional[str] = None,
    fine_tune_checkpoint: Optional[str] = None,
    seed: int = 0,
) -> TrainResult:
    """Train ``settings`` and evaluate at every checkpoint; the arguments override the config.

    Start: the latest checkpoint in ``model_dir`` when there is one (resume: model, optimizer and
    step); else the model variables of ``fine_tune_checkpoint`` (the step restarts at 0, the
    optimizer starts fresh, as EasyRec's fine_tune_checkpoint does); else a fresh model from
    ``seed``.

    Raises:
        ConfigError: on bad paths, data that do not match ``input_fields``, or an incompatible
            fine-tune checkpoint.
    """
    import tensorflow as tf

    settings = replace(
        settings,
        model_dir=model_dir or settings.model_dir,
        train_input_path=train_input_path or settings.train_input_path,
        eval_input_path=eval_input_path or settings.eval_input_path,
        fine_tune_checkpoint=(fine_tune_checkpoint if fine_tune_checkpoint is not None
                              else settings.fine_tune_checkpoint),
    )
    if not settings.model_dir:
        raise ConfigError(f"{settings.source}: no model_dir (give --model_dir or model_dir)")
    # Our own variables and batches come from numpy generators seeded below; this seeds the rest.
    tf.random.set_seed(seed)
    tf.config.experimental.enable_op_determinism()

    from hpo_tools.trainer.model import RecModel

    loading = time.monotonic()
    train = load_table(settings.train_input_path, settings)
    evaluation = load_table(settings.eval_input_path, settings)
    if settings.eval_num_examples and settings.eval_num_examples < evaluation.rows:
        keep = np.arange(settings.eval_num_examples)
        evaluation = _Table(*_batch(evaluation, keep), rows=settings.eval_num_examples)
    max_steps = _max_steps(settings, train.rows)

    model = RecModel(settings.model, settings.features, np.random.default_rng(seed))
    step_var = tf.Variable(0, dtype=tf.int64, name="global_step")
    lr_var = tf.Variable(settings.optimizer.rate_at(0), dtype=tf.float32, trainable=False)
    optimizer = _make_optimizer(settings, lr_var)
    checkpoint = tf.train.Checkpoint(step=step_var, model=model, optimizer=optimizer)
    os.makedirs(settings.model_dir, exist_ok=True)
    manager = tf.train.CheckpointManager(checkpoint, settings.model_dir,
                                         max_to_keep=settings.keep_checkpoint_max,
                                         checkpoint_name=_CKPT_NAME)
    started_from = _restore(settings, checkpoint, manager, model, seed)

    towers = settings.model.towers
    variables = list(model.trainable_variables)
    # autograph=False: the step functions have no tensor-dependent Python control flow, and
    # autograph would re-read this file's source when retracing (wrong code if it changed).

    @tf.function(reduce_retracing=True, autograph=False)
    def train_step(inputs: dict[str, tf.Tensor], labels: dict[str, tf.Tensor]) -> tf.Tensor:
        with tf.GradientTape() as tape:
            logits, reg = model(inputs)
            loss = reg
            for tower in towers:
                task = tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(
                    labels=labels[tower.label], logits=logits[tower.name]))
                loss += tower.weight * task
        grads = tape.gradient(loss, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    @tf.function(reduce_retracing=True, autograph=False)
    def predict(inputs: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        logits, _ = model(inputs)
        return {name: tf.sigmoid(value) for name, value in logits.items()}

    def evaluate(step: int) -> dict[str, float]:
        probs: dict[str, list[np.ndarray]] = {t.name: [] for t in towers}
        for start in range(0, evaluation.rows, _EVAL_CHUNK):
            index = np.arange(start, min(start + _EVAL_CHUNK, evaluation.rows))
            out = predict(_batch(evaluation, index)[0])
            for name in probs:
                probs[name].append(out[name].numpy())
        values: dict[str, float] = {}
        total = 0.0
        for tower in towers:
            p = np.concatenate(probs[tower.name])
            y = evaluation.labels[tower.label]
            suffix = f"_{tower.name}" if tower.name else ""
            values[f"auc{suffix}"] = roc_auc(y, p)
            loss = _log_loss(y, p)
            if suffix:
                values[f"loss{suffix}"] = loss
            total += tower.weight * loss
        values["loss"] = total
        writer.write(step, values)
        _logger.info("eval step=%d %s", step,
                     " ".join(f"{k}={v:.6f}" for k, v in values.items()))
        return dict(values, step=float(step))

    writer = _EventWriter(os.path.join(settings.model_dir, EVAL_DIR))
    evaluations: list[dict[str, float]] = []
    saved: list[str] = []
    step = int(step_var.numpy())
    per_epoch = math.ceil(train.rows / settings.batch_size)
    _logger.info("train rows=%d eval rows=%d steps=%d..%d batch_size=%d (data and model ready "
                 "in %.1f s)", train.rows, evaluation.rows, step, max_steps, settings.batch_size,
                 time.monotonic() - loading)
    began = time.monotonic()
    try:
        while step < max_steps:
            epoch, offset = divmod(step, per_epoch)
            order = (np.random.default_rng([seed, epoch]).permutation(train.rows)
                     if settings.shuffle else np.arange(train.rows))
            for b in range(offset, per_epoch):
                if step >= max_steps:
                    break
                index = order[b * settings.batch_size:(b + 1) * settings.batch_size]
                lr_var.assign(settings.optimizer.rate_at(step))
                loss = train_step(*_batch(train, index))
                step += 1
                step_var.assign(step)
                if step % settings.log_step_count_steps == 0:
                    _logger.info("train step=%d loss=%.6f lr=%.3g (%.1f s)", step, float(loss),
                                 float(lr_var.numpy()), time.monotonic() - began)
                if step % settings.save_checkpoints_steps == 0 or step == max_steps:
                    saved.append(manager.save(checkpoint_number=step))
                    evaluations.append(evaluate(step))
        if not evaluations:  # resumed at or past max_steps: evaluate what is there
            evaluations.append(evaluate(step))
    finally:
        writer.close()
    return TrainResult(tuple(evaluations), tuple(saved), started_from, step)


def _restore(settings: TrainerSettings, checkpoint: Any, manager: Any, model: Any,
             seed: int) -> str:
    import tensorflow as tf

    if manager.latest_checkpoint:
        checkpoint.restore(manager.latest_checkpoint)
        _logger.info("start: resumed from %s (model, optimizer and step)",
                     manager.latest_checkpoint)
        return manager.latest_checkpoint
    if settings.fine_tune_checkpoint:
        prefix = resolve_checkpoint(settings.fine_tune_checkpoint)
        try:
            status = tf.train.Checkpoint(model=model).read(prefix)
            status.assert_existing_objects_matched()
            status.expect_partial()  # the optimizer state and step are deliberately not read
        except (ValueError, AssertionError, tf.errors.OpError) as err:
            first = str(err).strip().splitlines()[0][:300]
            raise ConfigError(f"fine_tune_checkpoint: {prefix} does not fit this model "
                              f"(features or layer sizes differ?): {first}") from err
        _logger.info("start: fine_tune_checkpoint %s (model variables restored, step 0)", prefix)
        return prefix
    _logger.info("start: fresh model (seed=%d)", seed)
    return ""
