"""The subset of an EasyRec ``pipeline.config`` the local trainer supports, as typed settings.

The config is read with our own editor (:class:`hpo_tools.pbtxt.Document`); no TensorFlow and no
EasyRec protos are needed. Every field present in a message the trainer reads must be either
supported or on a short allow-list of harmless fields (:data:`IGNORED_FIELDS`); anything else is a
one-line :class:`~hpo_tools.errors.ConfigError` naming the field, never silently ignored.
The supported subset is documented in docs/trainer.md.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Optional

from hpo_tools.errors import ConfigError, did_you_mean

__all__ = [
    "InputField",
    "FeatureSpec",
    "TowerSpec",
    "ModelSpec",
    "OptimizerSpec",
    "TrainerSettings",
    "IGNORED_FIELDS",
    "load_settings",
    "settings_from_document",
]

_logger = logging.getLogger(__name__)

_INT_TYPES = ("INT32", "INT64")
_FLOAT_TYPES = ("FLOAT", "DOUBLE")
_INPUT_TYPES = _INT_TYPES + _FLOAT_TYPES + ("STRING",)
#: EasyRec's default of ``dbmtl.l2_regularization`` and ``deepfm.l2_regularization`` (protos).
_EASYREC_L2_DEFAULT = 1e-4

#: Fields accepted and deliberately without effect on the local trainer (documented).
IGNORED_FIELDS: dict[str, frozenset[str]] = {
    "": frozenset({"export_config"}),
    "data_config": frozenset({"prefetch_size", "shuffle_buffer_size", "num_parallel_calls"}),
    "train_config": frozenset({"sync_replicas", "save_summary_steps"}),
    "eval_config": frozenset(),
}


@dataclass(frozen=True)
class InputField:
    """One CSV column: ``data_config.input_fields``."""

    name: str
    input_type: str = "STRING"
    default_val: str = ""


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: an ``IdFeature`` (hashed or identity ids) or a ``RawFeature`` (numeric)."""

    name: str
    input_name: str
    kind: str  # "id" | "raw"
    embedding_dim: int = 0
    hash_bucket_size: int = 0
    num_buckets: int = 0
    boundaries: tuple[float, ...] = ()

    @property
    def vocab_size(self) -> int:
        """Rows of the embedding table (0 for a raw value without boundaries)."""
        if self.kind == "id":
            return self.hash_bucket_size or self.num_buckets
        return len(self.boundaries) + 1 if self.boundaries else 0

    @property
    def output_dim(self) -> int:
        """Width of this feature in the concatenated input layer."""
        if self.embedding_dim:
            return self.embedding_dim
        return 1


@dataclass(frozen=True)
class TowerSpec:
    """One DBMTL task tower."""

    name: str
    label: str
    dnn: tuple[int, ...] = ()
    relation_dnn: tuple[int, ...] = ()
    relation_tower_names: tuple[str, ...] = ()
    weight: float = 1.0


@dataclass(frozen=True)
class ModelSpec:
    """``model_config``: a DBMTL (``towers``) or a DeepFM (one task on the first label)."""

    kind: str  # "dbmtl" | "deepfm"
    groups: dict[str, tuple[str, ...]]
    towers: tuple[TowerSpec, ...]
    bottom_dnn: tuple[int, ...] = ()
    deep_dnn: tuple[int, ...] = ()
    wide_output_dim: int = 1
    l2_regularization: float = 0.0
    embedding_regularization: float = 0.0


@dataclass(frozen=True)
class OptimizerSpec:
    """``train_config.optimizer_config``: optimizer and learning-rate schedule."""

    kind: str = "adam"  # "adam" | "momentum" | "sgd"
    schedule: str = "constant"  # "constant" | "exponential"
    learning_rate: float = 0.001
    decay_steps: int = 0
    decay_factor: float = 1.0
    staircase: bool = True
    min_learning_rate: float = 0.0
    beta1: float = 0.9
    beta2: float = 0.999
    momentum: float = 0.9

    def rate_at(self, step: int) -> float:
        """The learning rate used for the update at global step ``step`` (EasyRec's formula)."""
        if self.schedule == "constant":
            return self.learning_rate
        exponent = step / self.decay_steps
        if self.staircase:
            exponent = float(step // self.decay_steps)
        return max(self.learning_rate * self.decay_factor**exponent, self.min_learning_rate)


@dataclass(frozen=True)
class TrainerSettings:
    """Everything the trainer needs, read from a ``pipeline.config`` (or built in tests)."""

    input_fields: tuple[InputField, ...]
    label_fields: tuple[str, ...]
    features: tuple[FeatureSpec, ...]
    model: ModelSpec
    optimizer: OptimizerSpec = field(default_factory=OptimizerSpec)
    batch_size: int = 32
    num_epochs: int = 0
    separator: str = ","
    shuffle: bool = True
    num_steps: int = 0
    save_checkpoints_steps: int = 1000
    keep_checkpoint_max: int = 10
    log_step_count_steps: int = 100
    fine_tune_checkpoint: str = ""
    train_input_path: str = ""
    eval_input_path: str = ""
    model_dir: str = ""
    eval_num_examples: int = 0
    source: str = "<settings>"


# --------------------------------------------------------------------------------------------
# Reading a Document


class _Reader:
    """Reads messages of one config, checking that every present field is known."""

    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, message: str) -> ConfigError:
        return ConfigError(f"{self.source}: {path}: {message}")

    def check_fields(self, msg: Any, path: str, supported: Iterable[str]) -> None:
        """Raise for the first field of ``msg`` that is neither supported nor ignored."""
        supported = set(supported)
        ignored = IGNORED_FIELDS.get(path, frozenset())
        for name in msg.field_names():
            if name in supported or name in ignored:
                if name in ignored:
                    _logger.debug("%s: %s.%s has no effect on the local trainer",
                                  self.source, path, name)
                continue
            where = f"{path}.{name}" if path else name
            raise self.fail(
                where,
                "not supported by the local trainer (supported here: "
                + ", ".join(sorted(supported)) + ")" + did_you_mean(name, supported),
            )

    def one(self, msg: Any, name: str, path: str, default: Any = None, kind: type = object) -> Any:
        value = msg.get_one(name, default=default)
        if value is None:
            return None
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if kind is not object and not isinstance(value, kind):
            raise self.fail(f"{path}.{name}" if path else name,
                            f"expected {kind.__name__}, got {value!r}")
        return value

    def positive_int(self, msg: Any, name: str, path: str, default: Optional[int] = None,
                     allow_zero: bool = False) -> int:
        value = self.one(msg, name, path, default=default, kind=int)
        if value is None:
            raise self.fail(f"{path}.{name}", "required")
        if value < 0 or (value == 0 and not allow_zero):
            raise self.fail(f"{path}.{name}", f"expected a positive integer, got {value}")
        return int(value)

    def units(self, msg: Any, name: str, path: str) -> tuple[int, ...]:
        """A DNN sub-message ``name { hidden_units: [...] }`` -> the unit counts (() if absent)."""
        if not msg.has(name):
            return ()
        dnn = msg.get_one(name)
        sub = f"{path}.{name}"
        self.check_fields(dnn, sub, {"hidden_units", "use_bn", "dropout_ratio", "activation"})
        if dnn.get_one("use_bn", default=False):
            raise self.fail(f"{sub}.use_bn", "batch normalization is not supported; set false")
        dropout = [float(x) for x in dnn.get("dropout_ratio")]
        if any(dropout):
            raise self.fail(f"{sub}.dropout_ratio", "dropout is not supported; remove it")
        activation = dnn.get_one("activation", default="tf.nn.relu")
        if activation not in ("tf.nn.relu", "relu"):
            raise self.fail(f"{sub}.activation", f"only relu is supported, got {activation!r}")
        units = tuple(int(u) for u in dnn.get("hidden_units"))
        if not units or any(u <= 0 for u in units):
            raise self.fail(f"{sub}.hidden_units", f"expected positive sizes, got {list(units)}")
        return units


def _read_data_config(r: _Reader, doc: Any) -> dict[str, Any]:
    if not doc.has("data_config"):
        raise r.fail("data_config", "required")
    data = doc.get_one("data_config")
    r.check_fields(
        data,
        "data_config",
        {"batch_size", "num_epochs", "input_type", "separator", "label_fields", "input_fields",
         "shuffle"},
    )
    input_type = data.get_one("input_type", default="CSVInput")
    if input_type != "CSVInput":
        raise r.fail("data_config.input_type", f"only CSVInput is supported, got {input_type}")
    fields = []
    for k, item in enumerate(data.get("input_fields")):
        path = f"data_config.input_fields[{k}]"
        r.check_fields(item, path, {"input_name", "input_type", "default_val"})
        name = r.one(item, "input_name", path, kind=str)
        if not name:
            raise r.fail(f"{path}.input_name", "required")
        ftype = item.get_one("input_type", default="STRING")
        if ftype not in _INPUT_TYPES:
            raise r.fail(f"{path}.input_type",
                         f"expected one of {', '.join(_INPUT_TYPES)}, got {ftype}")
        default_val = str(item.get_one("default_val", default=""))
        if default_val and ftype != "STRING":
            try:
                (int if ftype in _INT_TYPES else float)(default_val)
            except ValueError:
                raise r.fail(f"{path}.default_val",
                             f"expected a {ftype} value, got {default_val!r}") from None
        fields.append(InputField(name, ftype, default_val))
    if not fields:
        raise r.fail("data_config.input_fields", "at least one input field is required")
    names = [f.name for f in fields]
    labels = tuple(str(x) for x in data.get("label_fields"))
    if not labels:
        raise r.fail("data_config.label_fields", "at least one label field is required")
    by_name = {f.name: f for f in fields}
    for label in labels:
        if label not in by_name:
            raise r.fail("data_config.label_fields",
                         f"{label!r} is not an input field" + did_you_mean(label, names))
        if by_name[label].input_type == "STRING":
            raise r.fail("data_config.label_fields", f"label {label!r} must be a numeric field")
    return {
        "input_fields": tuple(fields),
        "label_fields": labels,
        "batch_size": r.positive_int(data, "batch_size", "data_config", default=32),
        "num_epochs": r.positive_int(data, "num_epochs", "data_config", default=0,
                                     allow_zero=True),
        "separator": str(data.get_one("separator", default=",")),
        "shuffle": bool(data.get_one("shuffle", default=True)),
    }


def _read_feature(r: _Reader, msg: Any, path: str, fields: dict[str, InputField]) -> FeatureSpec:
    r.check_fields(
        msg,
        path,
        {"input_names", "feature_name", "feature_type", "embedding_dim", "hash_bucket_size",
         "num_buckets", "boundaries"},
    )
    inputs = [str(x) for x in msg.get("input_names")]
    if len(inputs) != 1:
        raise r.fail(f"{path}.input_names", f"expected exactly one input name, got {inputs}")
    input_name = inputs[0]
    if input_name not in fields:
        raise r.fail(f"{path}.input_names",
                     f"{input_name!r} is not a data_config input field"
                     + did_you_mean(input_name, fields))
    name = str(msg.get_one("feature_name", default=input_name))
    ftype = msg.get_one("feature_type", default="IdFeature")
    dim = r.positive_int(msg, "embedding_dim", path, default=0, allow_zero=True)
    input_type = fields[input_name].input_type
    hash_size = r.positive_int(msg, "hash_bucket_size", path, default=0, allow_zero=True)
    num_buckets = r.positive_int(msg, "num_buckets", path, default=0, allow_zero=True)
    boundaries = tuple(float(b) for b in msg.get("boundaries"))
    if ftype == "IdFeature":
        if boundaries:
            raise r.fail(f"{path}.boundaries", "only RawFeature takes boundaries")
        if bool(hash_size) == bool(num_buckets):
            raise r.fail(path, "an IdFeature needs exactly one of hash_bucket_size, num_buckets")
        if not dim:
            raise r.fail(f"{path}.embedding_dim", "an IdFeature needs embedding_dim > 0")
        if input_type in _FLOAT_TYPES:
            raise r.fail(f"{path}.input_names",
                         f"IdFeature input {input_name!r} must be STRING or INT, not {input_type}")
        return FeatureSpec(name, input_name, "id", dim, hash_size, num_buckets)
    if ftype == "RawFeature":
        if hash_size or num_buckets:
            raise r.fail(path, "a RawFeature takes boundaries, not hash_bucket_size/num_buckets")
        if input_type == "STRING":
            raise r.fail(f"{path}.input_names", f"RawFeature input {input_name!r} must be numeric")
        if list(boundaries) != sorted(set(boundaries)):
            raise r.fail(f"{path}.boundaries", "expected strictly increasing values")
        if boundaries and not dim:
            raise r.fail(f"{path}.embedding_dim",
                         "a RawFeature with boundaries needs embedding_dim")
        return FeatureSpec(name, input_name, "raw", dim, boundaries=boundaries)
    raise r.fail(f"{path}.feature_type",
                 f"only IdFeature and RawFeature are supported, got {ftype}")


def _read_features(r: _Reader, doc: Any, fields: dict[str, InputField]) -> tuple[FeatureSpec, ...]:
    # field_names(), not has(): the editor aliases feature_configs <-> feature_config.features.
    present = set(doc.field_names())
    if {"feature_configs", "feature_config"} <= present:
        raise r.fail("feature_config", "give either feature_configs or feature_config, not both")
    if "feature_config" in present:
        holder = doc.get_one("feature_config")
        r.check_fields(holder, "feature_config", {"features"})
        items, base = holder.get("features"), "feature_config.features"
    else:
        items, base = doc.get("feature_configs"), "feature_configs"
    features = [_read_feature(r, m, f"{base}[{k}]", fields) for k, m in enumerate(items)]
    if not features:
        raise r.fail(base, "at least one feature is required")
    seen: set[str] = set()
    for feature in features:
        if feature.name in seen:
            raise r.fail(base, f"feature name {feature.name!r} appears twice")
        seen.add(feature.name)
    return tuple(features)


def _read_groups(r: _Reader, model: Any, names: Sequence[str]) -> dict[str, tuple[str, ...]]:
    groups: dict[str, tuple[str, ...]] = {}
    for k, group in enumerate(model.get("feature_groups")):
        path = f"model_config.feature_groups[{k}]"
        r.check_fields(group, path, {"group_name", "feature_names", "wide_deep"})
        gname = str(group.get_one("group_name", default=""))
        members = tuple(str(x) for x in group.get("feature_names"))
        for member in members:
            if member not in names:
                raise r.fail(f"{path}.feature_names",
                             f"{member!r} is not a feature" + did_you_mean(member, names))
        groups[gname] = members
    return groups


def _read_dbmtl(r: _Reader, model: Any, labels: Sequence[str]) -> dict[str, Any]:
    dbmtl = model.get_one("dbmtl")
    r.check_fields(dbmtl, "model_config.dbmtl", {"bottom_dnn", "task_towers", "l2_regularization"})
    towers: list[TowerSpec] = []
    for k, tower in enumerate(dbmtl.get("task_towers")):
        path = f"model_config.dbmtl.task_towers[{k}]"
        r.check_fields(
            tower, path,
            {"tower_name", "label_name", "loss_type", "metrics_set", "dnn", "relation_dnn",
             "relation_tower_names", "weight", "num_class"},
        )
        name = r.one(tower, "tower_name", path, kind=str)
        if not name:
            raise r.fail(f"{path}.tower_name", "required")
        # EasyRec: "label for the task, default is label_fields by order".
        by_order = labels[k] if k < len(labels) else None
        label = r.one(tower, "label_name", path, default=by_order, kind=str)
        if label is None:
            raise r.fail(f"{path}.label_name",
                         f"required: no label_fields[{k}] to match this tower by order")
        if label not in labels:
            raise r.fail(f"{path}.label_name",
                         f"{label!r} is not in data_config.label_fields"
                         + did_you_mean(label, labels))
        loss_type = tower.get_one("loss_type", default="CLASSIFICATION")
        if loss_type != "CLASSIFICATION":
            raise r.fail(f"{path}.loss_type", f"only CLASSIFICATION is supported, got {loss_type}")
        if tower.get_one("num_class", default=1) != 1:
            raise r.fail(f"{path}.num_class", "only num_class: 1 is supported")
        _check_auc_only(r, tower, path)
        relations = tuple(str(x) for x in tower.get("relation_tower_names"))
        earlier = [t.name for t in towers]
        for rel in relations:
            if rel not in earlier:
                raise r.fail(f"{path}.relation_tower_names",
                             f"{rel!r} is not an earlier tower" + did_you_mean(rel, earlier))
        weight = r.one(tower, "weight", path, default=1.0, kind=float)
        towers.append(TowerSpec(name, label, r.units(tower, "dnn", path),
                                r.units(tower, "relation_dnn", path), relations, weight))
    if not towers:
        raise r.fail("model_config.dbmtl.task_towers", "at least one task tower is required")
    if len({t.name for t in towers}) != len(towers):
        raise r.fail("model_config.dbmtl.task_towers", "tower names must be unique")
    return {
        "towers": tuple(towers),
        "bottom_dnn": r.units(dbmtl, "bottom_dnn", "model_config.dbmtl"),
        "l2_regularization": r.one(dbmtl, "l2_regularization", "model_config.dbmtl",
                                   default=_EASYREC_L2_DEFAULT, kind=float),
    }


def _read_deepfm(r: _Reader, model: Any, labels: Sequence[str]) -> dict[str, Any]:
    deepfm = model.get_one("deepfm")
    path = "model_config.deepfm"
    r.check_fields(deepfm, path, {"dnn", "wide_output_dim", "l2_regularization"})
    wide_dim = r.positive_int(deepfm, "wide_output_dim", path, default=1)
    if wide_dim != 1:
        raise r.fail(f"{path}.wide_output_dim", "only 1 is supported")
    return {
        "towers": (TowerSpec("", labels[0]),),
        "deep_dnn": r.units(deepfm, "dnn", path),
        "l2_regularization": r.one(deepfm, "l2_regularization", path,
                                   default=_EASYREC_L2_DEFAULT, kind=float),
    }


def _check_auc_only(r: _Reader, msg: Any, path: str) -> None:
    for k, metric in enumerate(msg.get("metrics_set")):
        names = list(metric.field_names())
        if names != ["auc"]:
            raise r.fail(f"{path}.metrics_set[{k}]", f"only auc is supported, got {names}")
        r.check_fields(metric.get_one("auc"), f"{path}.metrics_set[{k}].auc", set())


#: How the local models read each group: EasyRec embeds a WIDE group with wide_output_dim and a
#: DEEP one with embedding_dim, so another ``wide_deep`` would mean another model.
_GROUP_ROLES = {"dbmtl": {"all": "DEEP"}, "deepfm": {"wide": "WIDE", "deep": "DEEP"}}
_WIDE_DEEP = ("DEEP", "WIDE", "WIDE_AND_DEEP")


def _check_group_roles(r: _Reader, model: Any, kind: str) -> None:
    for k, group in enumerate(model.get("feature_groups")):
        path = f"model_config.feature_groups[{k}].wide_deep"
        wide_deep = group.get_one("wide_deep", default="DEEP")  # EasyRec's default
        if wide_deep not in _WIDE_DEEP:
            raise r.fail(path, f"expected one of {', '.join(_WIDE_DEEP)}, got {wide_deep}"
                         + did_you_mean(str(wide_deep), _WIDE_DEEP))
        gname = str(group.get_one("group_name", default=""))
        expected = _GROUP_ROLES[kind].get(gname)
        if expected and wide_deep != expected:
            raise r.fail(path, f"the local {kind} reads group {gname!r} as {expected}, "
                               f"got {wide_deep}")


def _read_model(r: _Reader, doc: Any, labels: Sequence[str],
                features: Sequence[FeatureSpec]) -> ModelSpec:
    if not doc.has("model_config"):
        raise r.fail("model_config", "required")
    model = doc.get_one("model_config")
    r.check_fields(
        model, "model_config",
        {"model_class", "feature_groups", "dbmtl", "deepfm", "embedding_regularization"},
    )
    names = [f.name for f in features]
    groups = _read_groups(r, model, names)
    kinds = [k for k in ("dbmtl", "deepfm") if model.has(k)]
    if len(kinds) != 1:
        raise r.fail("model_config", "expected exactly one of dbmtl { } or deepfm { }")
    kind = kinds[0]
    model_class = model.get_one("model_class", default=kind.upper())
    expected = {"dbmtl": "DBMTL", "deepfm": "DeepFM"}[kind]
    if str(model_class).lower() != kind:
        raise r.fail("model_config.model_class",
                     f"expected {expected!r} for a {kind} {{ }} block, got {model_class!r}")
    parts = _read_dbmtl(r, model, labels) if kind == "dbmtl" else _read_deepfm(r, model, labels)
    _check_group_roles(r, model, kind)
    if kind == "dbmtl" and groups and "all" not in groups:
        raise r.fail("model_config.feature_groups",
                     "DBMTL reads the group named 'all'" + did_you_mean("all", groups))
    if kind == "deepfm":
        if "fm" in groups:
            k = list(groups).index("fm")
            raise r.fail(f"model_config.feature_groups[{k}]",
                         "DeepFM's 'fm' group is not supported by the local trainer "
                         "(its FM part uses the 'deep' group); remove the group")
        for needed in ("wide", "deep"):
            if groups and needed not in groups:
                raise r.fail("model_config.feature_groups",
                             f"DeepFM needs a group named {needed!r}")
        deep = groups.get("deep", tuple(names)) if groups else tuple(names)
        dims = {f.name: f.embedding_dim for f in features if f.name in deep}
        if len(set(dims.values())) != 1 or 0 in dims.values():
            raise r.fail("model_config.feature_groups",
                         "DeepFM's FM part needs one embedding_dim for all deep features, "
                         f"got {dims}")
    emb_reg = r.one(model, "embedding_regularization", "model_config", default=0.0, kind=float)
    return ModelSpec(kind=kind, groups=groups, embedding_regularization=emb_reg, **parts)


def _read_optimizer(r: _Reader, train: Any) -> OptimizerSpec:
    configs = train.get("optimizer_config")
    if len(configs) != 1:
        raise r.fail("train_config.optimizer_config",
                     f"expected exactly one optimizer_config, got {len(configs)}")
    opt_cfg = configs[0]
    base = "train_config.optimizer_config"
    kinds = {"adam_optimizer": "adam", "momentum_optimizer": "momentum", "sgd_optimizer": "sgd"}
    r.check_fields(opt_cfg, base, set(kinds) | {"use_moving_average"})
    if opt_cfg.get_one("use_moving_average", default=False):
        raise r.fail(f"{base}.use_moving_average", "moving averages are not supported; set false")
    present = [k for k in kinds if opt_cfg.has(k)]
    if len(present) != 1:
        raise r.fail(base, "expected exactly one of adam_optimizer, momentum_optimizer, "
                           "sgd_optimizer")
    name = present[0]
    opt = opt_cfg.get_one(name)
    path = f"{base}.{name}"
    extra = {"adam_optimizer": {"beta1", "beta2"},
             "momentum_optimizer": {"momentum_optimizer_value"},
             "sgd_optimizer": set()}[name]
    r.check_fields(opt, path, {"learning_rate"} | extra)
    values: dict[str, Any] = {"kind": kinds[name]}
    if name == "adam_optimizer":
        values["beta1"] = r.one(opt, "beta1", path, default=0.9, kind=float)
        values["beta2"] = r.one(opt, "beta2", path, default=0.999, kind=float)
    if name == "momentum_optimizer":
        values["momentum"] = r.one(opt, "momentum_optimizer_value", path, default=0.9, kind=float)
    if not opt.has("learning_rate"):
        raise r.fail(f"{path}.learning_rate", "required")
    lr = opt.get_one("learning_rate")
    lr_path = f"{path}.learning_rate"
    schedules = ("constant_learning_rate", "exponential_decay_learning_rate")
    r.check_fields(lr, lr_path, schedules)
    present = [s for s in schedules if lr.has(s)]
    if len(present) != 1:
        raise r.fail(lr_path, "expected exactly one of " + ", ".join(schedules))
    sched = lr.get_one(present[0])
    sched_path = f"{lr_path}.{present[0]}"
    if present[0] == "constant_learning_rate":
        r.check_fields(sched, sched_path, {"learning_rate"})
        values.update(schedule="constant",
                      learning_rate=r.one(sched, "learning_rate", sched_path, default=0.002,
                                          kind=float))
    else:
        r.check_fields(sched, sched_path, {"initial_learning_rate", "decay_steps", "decay_factor",
                                           "staircase", "min_learning_rate"})
        values.update(
            schedule="exponential",
            learning_rate=r.one(sched, "initial_learning_rate", sched_path, default=0.002,
                                kind=float),
            decay_steps=r.positive_int(sched, "decay_steps", sched_path, default=4000000),
            decay_factor=r.one(sched, "decay_factor", sched_path, default=0.95, kind=float),
            staircase=bool(sched.get_one("staircase", default=True)),
            min_learning_rate=r.one(sched, "min_learning_rate", sched_path, default=0.0,
                                    kind=float),
        )
    if values["learning_rate"] <= 0:
        raise r.fail(sched_path, f"the learning rate must be > 0, got {values['learning_rate']}")
    return OptimizerSpec(**values)


def _read_train_config(r: _Reader, doc: Any) -> dict[str, Any]:
    if not doc.has("train_config"):
        raise r.fail("train_config", "required")
    train = doc.get_one("train_config")
    path = "train_config"
    r.check_fields(
        train, path,
        {"optimizer_config", "num_steps", "save_checkpoints_steps", "fine_tune_checkpoint",
         "log_step_count_steps", "keep_checkpoint_max"},
    )
    return {
        "optimizer": _read_optimizer(r, train),
        "num_steps": r.positive_int(train, "num_steps", path, default=0, allow_zero=True),
        "save_checkpoints_steps": r.positive_int(train, "save_checkpoints_steps", path,
                                                 default=1000),
        "keep_checkpoint_max": r.positive_int(train, "keep_checkpoint_max", path, default=10),
        "log_step_count_steps": r.positive_int(train, "log_step_count_steps", path, default=100),
        "fine_tune_checkpoint": str(train.get_one("fine_tune_checkpoint", default="")),
    }


def _read_eval_config(r: _Reader, doc: Any) -> dict[str, Any]:
    if not doc.has("eval_config"):
        return {}
    evaluation = doc.get_one("eval_config")
    r.check_fields(evaluation, "eval_config", {"metrics_set", "num_examples"})
    _check_auc_only(r, evaluation, "eval_config")
    return {"eval_num_examples": r.positive_int(evaluation, "num_examples", "eval_config",
                                                default=0, allow_zero=True)}


def settings_from_document(doc: Any, source: str = "pipeline.config") -> TrainerSettings:
    """Read :class:`TrainerSettings` from a parsed :class:`hpo_tools.pbtxt.Document`.

    Raises:
        ConfigError: naming the first unsupported or malformed field.
    """
    r = _Reader(source)
    r.check_fields(
        doc, "",
        {"train_input_path", "eval_input_path", "model_dir", "data_config", "feature_configs",
         "feature_config", "model_config", "train_config", "eval_config"},
    )
    data = _read_data_config(r, doc)
    fields = {f.name: f for f in data["input_fields"]}
    features = _read_features(r, doc, fields)
    model = _read_model(r, doc, data["label_fields"], features)
    return TrainerSettings(
        features=features,
        model=model,
        train_input_path=str(doc.get_one("train_input_path", default="")),
        eval_input_path=str(doc.get_one("eval_input_path", default="")),
        model_dir=str(doc.get_one("model_dir", default="")),
        source=source,
        **data,
        **_read_train_config(r, doc),
        **_read_eval_config(r, doc),
    )


def load_settings(path: str) -> TrainerSettings:
    """Parse the ``pipeline.config`` at ``path`` (local or ``oss://``) into settings."""
    from hpo_tools import storage
    from hpo_tools.pbtxt import Document

    text = storage.read_text(path)
    return settings_from_document(Document.parse(text, source=path), source=path)
