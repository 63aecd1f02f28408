"""DBMTL and DeepFM as small ``tf.Module`` s (TensorFlow is imported by the caller, train.py).

Variables are initialised from a numpy generator seeded by the caller, so a model is the same for
the same seed whatever TensorFlow's own seed state is. Shapes follow EasyRec's models:

* DBMTL: the ``all`` group's embeddings -> ``bottom_dnn`` -> per tower ``dnn``; each tower's
  ``relation_dnn`` sees its own ``dnn`` output and the relation outputs of ``relation_tower_names``;
  a final dense layer gives the tower's logit.
* DeepFM: first-order ``wide`` group (one weight per id / bucket / raw value) + second-order FM over
  the ``deep`` group's embeddings + ``dnn`` over their concatenation -> one logit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence

import numpy as np
import tensorflow as tf

from hpo_tools.trainer.config import FeatureSpec, ModelSpec

__all__ = ["RecModel"]

_logger = logging.getLogger(__name__)


def _glorot(rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, (fan_in, fan_out)).astype(np.float32)


def _truncated_normal(rng: np.random.Generator, shape: tuple[int, int], std: float) -> np.ndarray:
    values = rng.standard_normal(shape)
    np.clip(values, -2.0, 2.0, out=values)
    return (values * std).astype(np.float32)


class _Dense(tf.Module):
    def __init__(self, rng: np.random.Generator, fan_in: int, units: int, name: str) -> None:
        super().__init__(name=name)
        self.kernel = tf.Variable(_glorot(rng, fan_in, units), name="kernel")
        self.bias = tf.Variable(np.zeros(units, np.float32), name="bias")

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        return tf.matmul(x, self.kernel) + self.bias


class _Mlp(tf.Module):
    """ReLU layers; :attr:`out_dim` is the last layer's width (the input width when empty)."""

    def __init__(self, rng: np.random.Generator, fan_in: int, units: Sequence[int],
                 name: str) -> None:
        super().__init__(name=name)
        self.layers = []
        for k, width in enumerate(units):
            self.layers.append(_Dense(rng, fan_in, width, name=f"{name}_{k}"))
            fan_in = width
        self.out_dim = fan_in

    def __call__(self, x: tf.Tensor) -> tf.Tensor:
        for layer in self.layers:
            x = tf.nn.relu(layer(x))
        return x

    def kernels(self) -> list[tf.Variable]:
        return [layer.kernel for layer in self.layers]


class RecModel(tf.Module):
    """A DBMTL or DeepFM model over the configured features.

    Inputs are a mapping feature name -> tensor: int64 row indices for features with an embedding
    table, float32 values for raw features without boundaries. Calling returns
    ``(logits, regularization)`` where ``logits`` maps tower name -> ``[batch]`` logits.
    """

    def __init__(self, model: ModelSpec, features: Sequence[FeatureSpec],
                 rng: np.random.Generator) -> None:
        super().__init__(name="rec_model")
        self.spec = model
        self.feature_specs = {f.name: f for f in features}
        names = [f.name for f in features]
        if model.kind == "dbmtl":
            self.deep_names = list(model.groups.get("all", names)) if model.groups else names
            self.wide_names: list[str] = []
        else:
            self.deep_names = list(model.groups["deep"]) if model.groups else names
            self.wide_names = list(model.groups["wide"]) if model.groups else names
        self.tables = {}
        for name in dict.fromkeys(self.deep_names):
            spec = self.feature_specs[name]
            if spec.vocab_size:
                std = 1.0 / np.sqrt(spec.embedding_dim)
                self.tables[name] = tf.Variable(
                    _truncated_normal(rng, (spec.vocab_size, spec.embedding_dim), std),
                    name=f"emb_{name}")
            elif spec.embedding_dim:  # raw value times a learned vector
                self.tables[name] = tf.Variable(
                    _truncated_normal(rng, (1, spec.embedding_dim), 1.0), name=f"emb_{name}")
        self.wide_tables = {}
        for name in dict.fromkeys(self.wide_names):
            spec = self.feature_specs[name]
            rows = spec.vocab_size or 1
            self.wide_tables[name] = tf.Variable(
                _truncated_normal(rng, (rows, 1), 0.01), name=f"wide_{name}")
        deep_width = sum(self.feature_specs[n].output_dim for n in self.deep_names)
        if model.kind == "dbmtl":
            self.bottom = _Mlp(rng, deep_width, model.bottom_dnn, "bottom_dnn")
            self.tower_dnns = {}
            self.relation_dnns = {}
            self.outputs = {}
            relation_width: dict[str, int] = {}
            for tower in model.towers:
                dnn = _Mlp(rng, self.bottom.out_dim, tower.dnn, f"{tower.name}_dnn")
                width = dnn.out_dim + sum(relation_width[r] for r in tower.relation_tower_names)
                relation = _Mlp(rng, width, tower.relation_dnn, f"{tower.name}_relation_dnn")
                relation_width[tower.name] = relation.out_dim
                self.tower_dnns[tower.name] = dnn
                self.relation_dnns[tower.name] = relation
                self.outputs[tower.name] = _Dense(rng, relation.out_dim, 1, f"{tower.name}_out")
        else:
            self.deep = _Mlp(rng, deep_width, model.deep_dnn, "dnn")
            self.deep_out = _Dense(rng, self.deep.out_dim, 1, "dnn_out")
            self.wide_bias = tf.Variable(np.zeros(1, np.float32), name="wide_bias")

    def _embed(self, name: str, value: tf.Tensor) -> tf.Tensor:
        spec = self.feature_specs[name]
        if spec.vocab_size:
            return tf.gather(self.tables[name], value)
        if spec.embedding_dim:
            return tf.expand_dims(value, 1) * self.tables[name]
        return tf.expand_dims(value, 1)

    def dense_kernels(self) -> list[tf.Variable]:
        """Kernels that ``l2_regularization`` applies to."""
        if self.spec.kind == "dbmtl":
            kernels = self.bottom.kernels()
            for tower in self.spec.towers:
                kernels += self.tower_dnns[tower.name].kernels()
                kernels += self.relation_dnns[tower.name].kernels()
                kernels.append(self.outputs[tower.name].kernel)
            return kernels
        return self.deep.kernels() + [self.deep_out.kernel]

    def __call__(self, inputs: Mapping[str, tf.Tensor]) -> tuple[dict[str, tf.Tensor], tf.Tensor]:
        embedded = [self._embed(n, inputs[n]) for n in self.deep_names]
        # EasyRec's embedding_regularization: L2 on the looked-up embeddings of the batch.
        looked_up = [e for n, e in zip(self.deep_names, embedded) if n in self.tables]
        emb_reg = tf.add_n([tf.nn.l2_loss(e) for e in looked_up] or [tf.constant(0.0)])
        x = tf.concat(embedded, axis=1)
        spec = self.spec
        logits: dict[str, tf.Tensor] = {}
        if spec.kind == "dbmtl":
            bottom = self.bottom(x)
            relation_out: dict[str, tf.Tensor] = {}
            for tower in spec.towers:
                own = self.tower_dnns[tower.name](bottom)
                joined = tf.concat([own] + [relation_out[r] for r in tower.relation_tower_names],
                                   axis=1)
                relation_out[tower.name] = self.relation_dnns[tower.name](joined)
                logits[tower.name] = tf.squeeze(self.outputs[tower.name](relation_out[tower.name]),
                                                axis=1)
        else:
            wide = [self._wide(n, inputs[n]) for n in self.wide_names]
            wide_logit = tf.add_n(wide) + self.wide_bias if wide else self.wide_bias
            stacked = tf.stack(embedded, axis=1)  # [batch, fields, dim]
            summed = tf.reduce_sum(stacked, axis=1)
            fm = 0.5 * tf.reduce_sum(summed * summed - tf.reduce_sum(stacked * stacked, axis=1),
                                     axis=1)
            deep = tf.squeeze(self.deep_out(self.deep(x)), axis=1)
            logits[spec.towers[0].name] = wide_logit + fm + deep
        reg = spec.embedding_regularization * emb_reg
        if spec.l2_regularization:
            reg += spec.l2_regularization * tf.add_n([tf.nn.l2_loss(k)
                                                      for k in self.dense_kernels()])
        return logits, reg

    def _wide(self, name: str, value: tf.Tensor) -> tf.Tensor:
        spec = self.feature_specs[name]
        table = self.wide_tables[name]
        if spec.vocab_size:
            return tf.squeeze(tf.gather(table, value), axis=1)
        return value * table[0, 0]
