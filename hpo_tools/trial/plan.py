"""The neutral trial plan: what one trial does, whatever file it was written in.

Every trial-file format is parsed once into a :class:`TrialPlan` (the classic
``config_begin.ini`` by :mod:`hpo_tools.trial.classic`, the platform ``trial.ini`` by
:mod:`hpo_tools.trial.trial_ini`, a finetune file by :mod:`hpo_tools.finetune.plan`), and
:func:`hpo_tools.trial.runner.run_plan` executes any plan:

- a plan has *stages*, run in order: a plain trial has one, a finetune trial one per day;
- a stage writes its edited training configs (:class:`ConfigWrite`: source, edits, destination,
  all decided when the plan was built), runs its commands in order, and is scored from its
  metric sources;
- with one stage (``stage_mode`` None) the stage's scored steps are the trial's intermediate
  results and its final result the trial's; with several (``stage_mode`` set) each stage's
  final result is one intermediate result and the stages' finals combine by ``stage_mode``.

Nothing here knows a format or a platform: the plan names its platform by its registry name
and carries its options.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from hpo_tools.dates import Day, substitute_dates
from hpo_tools.metrics.score import FinalMode, MetricSpec, OptimizeMode
from hpo_tools.trial import templating
from hpo_tools.trial.budget import Budget

__all__ = [
    "Command",
    "ConfigWrite",
    "MetricSettings",
    "PlatformSpec",
    "OssSettings",
    "OutputSettings",
    "Stage",
    "TrialPlan",
    "TrialVariables",
    "params_to_edits",
    "NON_CONFIG_PARAMS",
    "COMMANDS_PER_STAGE",
]

#: A stage has fewer commands than this (the job registry indexes them per stage).
COMMANDS_PER_STAGE = 100
# Parameters NNI advisors add that are not config paths (Hyperband / BOHB): applied, if at
# all, through [params_config] budget_path (hpo_tools.trial.budget).
#: Parameters NNI's tuners add to a parameter set that are not config paths: Hyperband/BOHB's
#: budget, PBT's checkpoint directories. A trial file uses them as ``${name}``.
NON_CONFIG_PARAMS = frozenset({"TRIAL_BUDGET", "load_checkpoint_dir", "save_checkpoint_dir"})


def params_to_edits(params: Mapping[str, Any]) -> dict[str, Any]:
    """Turn tuner parameters into config-editor edits.

    A nested choice ``{"opt": {"_name": "adam", "a.lr": 0.1}}`` becomes ``{"opt": "adam",
    "a.lr": 0.1}``; tuner-added keys (:data:`NON_CONFIG_PARAMS`) are left out.
    """
    edits: dict[str, Any] = {}
    for name, value in params.items():
        if name in NON_CONFIG_PARAMS:
            continue
        if isinstance(value, dict) and "_name" in value:
            edits[name] = value["_name"]
            edits.update(params_to_edits({k: v for k, v in value.items() if k != "_name"}))
        else:
            edits[name] = value
    return edits


@dataclass(frozen=True)
class TrialVariables:
    """The identity of one trial, for ``${...}`` and the directories."""

    exp_id: str
    trial_id: str
    output_dir: str
    params: Mapping[str, Any]

    def as_dict(self) -> dict[str, str]:
        """The ``${...}`` variables (see :func:`templating.trial_variables`)."""
        return templating.trial_variables(
            exp_id=self.exp_id,
            trial_id=self.trial_id,
            output_dir=self.output_dir,
            params=self.params,
        )


@dataclass(frozen=True)
class Command:
    """One command of a stage, run in order.

    Attributes:
        name: its key (``cmd1``); the job registry records success per command, which is what
            ``resume=1`` skips.
        text: the command, shaped by its platform (a shell line for Local, ``PAI ...`` or SQL
            for MaxCompute).
    """

    name: str
    text: str


@dataclass(frozen=True)
class ConfigWrite:
    """Read ``src``, fill in the day's placeholders, apply ``edits``, write the result.

    Attributes:
        name: the trial-file key that asked for it (``params_src_dst_filepath1``, ``-Dconfig``).
        src: the training config read (local or ``oss://``).
        dst: where the edited config goes; None: ``<stage dir>/configs/<file name of src>`` (a
            record of what was sent, as for the classic format, whose edits PAI applies itself).
        edits: the config-editor edits (``{path: value}``), applied all or nothing.
        day: a finetune day whose ``{bizdate}``-style placeholders are filled in first.
        placeholders: more ``{name}`` values filled in with the day's (``{model_dir}``).
        required: False when an unreadable ``src`` only costs the copy (the classic record).
        replacements: text replaced in ``src`` before anything else: hpo_tools 0.1.x's search
            keys written as placeholders (``{"${lr}": "0.01"}``), in any file, pbtxt or not.
        passthrough: edits the platform's own editor applies even where ``src`` lacks the
            field (EasyRec's ``edit_config`` on PAI creates any field of its schema), each with
            where it came from, for the notice (``config_begin.ini [easyrec_cmd_config]
            -Dedit_config_json``): the classic format's ``-Dedit_config_json`` edits and
            ``train_config.fine_tune_checkpoint``. Without a schema, such an edit naming an
            absent field whose parent is there is left out of the local copy with a notice
            (:meth:`left_to_platform`), not refused; the tuner's edits are never among them,
            so a typo in a search-space key is still caught.
        budget: ``[params_config] budget_path``: the field set to ``TRIAL_BUDGET *
            budget_scale``, typed by the field when the config is read
            (:meth:`edits_for`); None without one.
    """

    name: str
    src: str
    dst: str | None
    edits: Mapping[str, Any]
    day: Day | None = None
    placeholders: Mapping[str, str] = field(default_factory=dict)
    required: bool = True
    passthrough: Mapping[str, str] = field(default_factory=dict)
    replacements: Mapping[str, str] = field(default_factory=dict)
    budget: Budget | None = None

    @property
    def edits_anything(self) -> bool:
        """Whether the source is edited (parsed as protobuf text) rather than copied."""
        return bool(self.edits) or (self.budget is not None and self.budget.applies)

    def edits_for(self, document: Any, schema: Any = None) -> dict[str, Any]:
        """The edits applied to ``document``: :attr:`edits` without those
        :meth:`left_to_platform`, plus the budget's (typed by its field).

        Raises:
            ConfigError: the budget path is not a numeric field of ``document``.
        """
        left = set(self.left_to_platform(document, schema))
        edits = {k: v for k, v in self.edits.items() if k not in left}
        if self.budget is not None and self.budget.applies:
            edits.update(self.budget.edit(document, schema))
        return edits

    def left_to_platform(self, document: Any, schema: Any = None) -> list[str]:
        """The :attr:`passthrough` edits left out of ``document``'s local copy: without a
        schema, those naming a field ``document`` does not hold, whose parent it does
        (``train_config.fine_tune_checkpoint`` in a config without it). A path whose parent
        does not resolve is not among them (an error wherever it is applied), nor is any edit
        when there is a ``schema``: it creates the fields it knows and refuses the others, as
        EasyRec's ``edit_config`` would."""
        if schema is not None:
            return []
        absent = []
        for path in self.passthrough:
            if path not in self.edits or ";" in path or path.startswith("${"):
                continue  # "a;b" and ${name} keys are not one path: applied as they are
            if document.has(path):
                continue
            parent = _parent_path(path)
            if parent is None or document.has(parent):
                absent.append(path)
        return sorted(absent)

    def passthrough_notice(self, path: str) -> str:
        """The one-line notice for a :meth:`left_to_platform` path."""
        origin = self.passthrough.get(path) or self.name
        return (
            f"{origin}: {path} is not in this config ({self.src}); left to EasyRec's "
            "edit_config on the platform (the local copy lacks it; with a schema it is "
            "checked and created here)"
        )

    def source_text(self, text: str) -> str:
        """``src``'s text with the :attr:`replacements` made and the day's placeholders filled
        in."""
        for placeholder, value in self.replacements.items():
            text = text.replace(placeholder, value)
        if self.day is None:
            return text
        return substitute_dates(text, self.day, where=self.src, extra=self.placeholders)


def _parent_path(path: str) -> str | None:
    """``a.b[x=1].c`` -> ``a.b[x=1]``; None for a top-level field."""
    depth = 0
    for index in range(len(path) - 1, -1, -1):
        char = path[index]
        if char == "]":
            depth += 1
        elif char == "[":
            depth -= 1
        elif char == "." and depth == 0:
            return path[:index]
    return None


@dataclass(frozen=True)
class MetricSettings:
    """Where a stage's metrics come from and how they are scored.

    Attributes:
        metric_type: the source type (``summary``, ``stdout``, ``json``, or one a platform
            provides, such as ``table``).
        sources: the source locations, in order; ``""`` is the stage's own log (``stdout``).
        spec: the weights and modes, checked once when the plan was built.
    """

    metric_type: str
    sources: tuple[str, ...]
    spec: MetricSpec

    @property
    def metric_dict(self) -> dict[str, float]:
        return dict(self.spec.weights)

    @property
    def final_mode(self) -> str:
        return self.spec.final_mode.value

    @property
    def optimize_mode(self) -> str:
        return self.spec.optimize_mode.value

    @property
    def source_list_final_mode(self) -> str:
        """How several sources combine (``final_mode``'s when the file does not say)."""
        return self.spec.source_list_final_mode.value


@dataclass(frozen=True)
class OssSettings:
    """``[oss_config]``; the keys are kept out of ``repr``."""

    endpoint: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    access_key_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class OutputSettings:
    """``[output_config]``: where the experiment's best trial is copied when the experiment ends.

    Every trial records its own (``params.json`` ``"outputs"``, :meth:`to_record`); the
    experiment side (:mod:`hpo_tools.experiment.outputs`) copies the best trial's, without
    reading the trial file again.

    Attributes:
        model_dir: this trial's model directory, the source of both copies: its checkpoints,
            and its event files at any depth (``eval_val/``). Local paths are absolute.
        summary_path: where the best trial's event files go (``events.out.tfevents.*``, their
            subdirectories kept), or None.
        model_path: where the best trial's model directory goes (its contents), or None.
    """

    model_dir: str
    summary_path: str | None = None
    model_path: str | None = None

    def overlap(self, target: str) -> str | None:
        """``"same"`` when ``target`` is :attr:`model_dir` itself (nothing to copy),
        ``"inside"`` when it lies within it (a copy into its own source), else None."""
        source, dest = _directory(self.model_dir), _directory(target)
        if dest == source:
            return "same"
        if dest.startswith(source.rstrip("/") + "/"):
            return "inside"
        return None

    @classmethod
    def from_record(cls, record: object) -> OutputSettings | None:
        """The settings a trial recorded (:meth:`to_record`); None for anything else."""
        if not isinstance(record, Mapping):
            return None
        values = {k: record.get(k) for k in ("model_dir", "summary_path", "model_path")}
        if not all(v is None or isinstance(v, str) for v in values.values()):
            return None
        if not values["model_dir"] or not (values["summary_path"] or values["model_path"]):
            return None
        return cls(str(values["model_dir"]), values["summary_path"] or None,
                   values["model_path"] or None)

    def to_record(self) -> dict[str, str]:
        """The JSON-safe record in ``params.json`` (``None`` destinations left out)."""
        record = {"model_dir": self.model_dir}
        if self.summary_path is not None:
            record["summary_path"] = self.summary_path
        if self.model_path is not None:
            record["model_path"] = self.model_path
        return record


def _directory(path: str) -> str:
    """``path`` normalised for comparing directories (``a/./b/`` -> ``a/b``)."""
    import posixpath

    if "://" in path:
        scheme, _, rest = path.partition("://")
        return f"{scheme}://{posixpath.normpath(rest) if rest.strip('/') else rest.strip('/')}"
    return posixpath.normpath(path)


@dataclass(frozen=True)
class PlatformSpec:
    """The platform a plan runs on: its registry name and its options (secrets out of repr)."""

    name: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def create(self) -> Any:
        """Build the platform (contacts nothing: clients are built on first use)."""
        from hpo_tools.platforms import create_platform

        return create_platform(self.name, **dict(self.options))

    def platform_class(self) -> type:
        """The platform's class, without building it."""
        from hpo_tools.platforms import platform_class

        return platform_class(self.name)


@dataclass(frozen=True)
class Stage:
    """One stage of a trial: configs written, commands run, one scored result.

    Attributes:
        name: ``""`` for a plain trial's one stage; the day (``20220616``) for a finetune day.
        label: how messages name it (``day 2022-06-16``); ``""`` for a plain trial.
        commands: run in order.
        metric: where its metrics come from and how they score.
        config_writes: the edited configs written before the first command.
        directory: its directory relative to the trial directory (``days/20220616``); ``""``
            is the trial directory itself.
        command_base: the job registry's index of command ``cmdN`` is ``command_base + N``.
        redo: train it again even when the registry has it finished (``--retrain``); its
            commands are not skipped either.
        record: JSON-safe facts added to the stage's entry in the trial's ``result.json``
            (a finetune day's ``{"day": "20220616"}``).
        unit_steps: with a budget (``[params_config] budget_path``), the global steps of one
            budget unit: the stage's intermediate results go to NNI once per unit
            (:class:`~hpo_tools.trial.budget.UnitReports`), not once per evaluation; None:
            every scored step is reported.
        job_timeout: seconds a command's job may run without a sign of life (new output in
            the stage's log, a newly scored step) before the launcher takes it for hung,
            cancels it and fails the trial (``job_timeout``); None: no limit.
    """

    name: str
    commands: tuple[Command, ...]
    metric: MetricSettings
    config_writes: tuple[ConfigWrite, ...] = ()
    label: str = ""
    directory: str = ""
    command_base: int = 0
    redo: bool = False
    record: Mapping[str, Any] = field(default_factory=dict)
    unit_steps: float | None = None
    job_timeout: float | None = None


@dataclass(frozen=True)
class TrialPlan:
    """One trial, parsed: see the module docstring.

    Attributes:
        source: the trial file's path.
        format: which kind of file it came from, for log lines only (the runner never asks).
        platform: where the commands run.
        stages: in order; at least one.
        stage_mode: None for one stage whose steps are the trial's; else how the stages'
            final results combine into the trial's (finetune: ``avg`` by default).
        resume: skip what the job registry says already succeeded for this trial (finished
            stages, succeeded commands).
        params: the tuner's parameters (``params.json``).
        oss: ``[oss_config]``, when present (the runner exports it as OSS credentials).
        secrets: every credential value in the file (for the masker); not in ``repr``.
        record: more JSON-safe facts for the trial's ``params.json`` (a finetune trial's days).
        model_dir: where this trial's model goes, when the format decides it (the classic
            ``-Dmodel_dir/<exp_id>_<trial_id>``); finetune chains days through it.
        checkpoint_edit: the config edit that starts training from a checkpoint, when the
            format chains finetune days by edit (classic); None when the file chains them
            itself through ``{fine_tune_checkpoint}``.
        start_checkpoint: the checkpoint the file itself sets through ``checkpoint_edit``.
        schedule: the window the trial may start its jobs in (``[schedule_config]``), or None.
        monitor: where to say that the trial failed or set a new best (``[monitor_config]``).
        outputs: where the best trial's event files and model are copied at the experiment's
            end, and this trial's model directory (``[output_config]``), or None.
    """

    source: str
    format: str
    platform: PlatformSpec
    stages: tuple[Stage, ...]
    stage_mode: FinalMode | None = None
    resume: bool = False
    params: Mapping[str, Any] = field(default_factory=dict)
    oss: OssSettings | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)
    record: Mapping[str, Any] = field(default_factory=dict)
    model_dir: str | None = None
    checkpoint_edit: str | None = None
    start_checkpoint: str | None = None
    schedule: Any = None
    monitor: Any = None
    outputs: OutputSettings | None = None

    def __post_init__(self) -> None:
        if not self.stages:
            raise ValueError("a trial plan needs at least one stage")

    @property
    def optimize_mode(self) -> OptimizeMode:
        """The direction of the score (the first stage's; every stage shares it)."""
        return self.stages[0].metric.spec.optimize_mode

    def replace(self, **changes: Any) -> TrialPlan:
        """A copy with ``changes`` (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)
