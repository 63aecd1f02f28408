"""A finetune trial file -> a :class:`~hpo_tools.trial.plan.TrialPlan` with one stage per day.

A finetune trial file is a trial file (either format, docs/trial-files.md) whose values may use

- ``{bizdate}``, ``{eval_ymd}``, ``{predate}``: the day trained, the day after, the day before
  (:mod:`hpo_tools.dates`);
- ``{model_dir}``: this trial's model directory of the day (``[finetune_config] model_dir``);
- ``{fine_tune_checkpoint}``: where the day starts from: the begin model
  (``[finetune_config] fine_tune_checkpoint``) on the first day, this trial's ``{model_dir}`` of
  the previous day afterwards.

The days come from ``--start_time``/``--end_time``, else ``[finetune_config] start_time/end_time``,
else from Jinja day lists: keys ``cmd<N>_<YYYYMMDD>`` and ``metric_source_<YYYYMMDD>`` (what
``{% for bizdate in date_list %}cmd1_{{bizdate}}=...{% endfor %}`` renders to).

Each day's text (its day keys selected, placeholders filled in) is parsed by the ordinary trial
file parser (:mod:`hpo_tools.trial.settings`) into the day's stage. Where the format decides
the model directory and chains days by a config edit (the classic ``config_finetune.ini``:
``-Dmodel_dir/<exp_id>_<trial_id>`` and ``train_config.fine_tune_checkpoint`` in
``-Dedit_config_json``; see ``TrialPlan.model_dir`` / ``checkpoint_edit``), the chained
checkpoint is passed to the parser as that edit; otherwise the file chains itself through
``{fine_tune_checkpoint}``, which must appear somewhere.

:func:`read_finetune_file` reads the file once; :meth:`FinetuneFile.to_plan` builds every day's
stage; the one trial runner
(:func:`hpo_tools.trial.runner.run_plan`) runs them, one intermediate result per day, the days'
scores combined by ``source_list_final_mode`` (default ``avg``).

With ``[finetune_config] budget=days`` (and ``budget_scale``), Hyperband/BOHB's
``TRIAL_BUDGET`` is the number of days trained: the first ``round(TRIAL_BUDGET *
budget_scale)`` days of the window. Day k of every trial is the same day, so the per-day
intermediate results of trials with different budgets line up.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from hpo_tools.dates import Day, placeholder_names, substitute_dates
from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.finetune.days import (
    FINETUNE_SECTION,
    day_keys,
    find_days,
    is_finetune_text,
    select_day_keys,
    source_list_final_mode,
    split_finetune_section,
)
from hpo_tools.metrics.score import FinalMode
from hpo_tools.trial import templating
from hpo_tools.trial.plan import COMMANDS_PER_STAGE, Stage, TrialPlan, TrialVariables
from hpo_tools.trial.settings import parse_trial_text, read_text

_logger = logging.getLogger(__name__)

__all__ = [
    "FINETUNE_SECTION",
    "FINETUNE_KEYS",
    "FinetuneFile",
    "read_finetune_file",
    "is_finetune_text",
]

FINETUNE_KEYS = (
    "start_time", "end_time", "model_dir", "fine_tune_checkpoint", "resume", "budget",
    "budget_scale",
)
#: What ``[finetune_config] budget`` may say ``TRIAL_BUDGET`` counts.
BUDGET_KINDS = ("days",)
# A stand-in for the checkpoint while the first day is read to learn what the format decides.
_CHECKPOINT_STAND_IN = "(begin model)"

@dataclass(frozen=True)
class FinetuneFile:
    """A finetune trial file, read: its days and how to build each day's stage.

    Attributes:
        source: the trial file's path.
        days: the days, in order.
        resume: ``[finetune_config] resume``.
        stage_mode: how the days' scores combine (``source_list_final_mode``, default ``avg``).
        first: the first day's plan, read with a stand-in checkpoint: what the format decides
            (``model_dir``, ``checkpoint_edit``, ``start_checkpoint``).
    """

    source: str
    days: tuple[Day, ...]
    resume: bool
    stage_mode: FinalMode
    text: str = dataclasses.field(repr=False)
    options: Mapping[str, str] = dataclasses.field(repr=False)
    variables: TrialVariables = dataclasses.field(repr=False)
    environ: Mapping[str, str] = dataclasses.field(repr=False)
    first: Any = dataclasses.field(default=None, repr=False)
    day_keyed: bool = False
    budget: Mapping[str, Any] | None = None

    @property
    def chained_by_its_commands(self) -> bool:
        """hpo_tools 0.1.x's finetune files chain the days in their own commands: day keys
        (``cmd1_{{bizdate}}``, one command per day written out by Jinja, each naming the model
        it starts from, e.g. ``-Dfine_tune_checkpoint=.../{{predate}}_model/${trial_id}``), no
        ``[finetune_config]``, no chaining edit of the format, and neither
        ``{fine_tune_checkpoint}`` nor ``{model_dir}`` anywhere. The days then run as written,
        in order, nothing filled in; otherwise hpo-tools chains them (and insists on it)."""
        return (self.day_keyed and not self.options
                and (self.first is None or not self.first.checkpoint_edit)
                and not {"fine_tune_checkpoint", "model_dir"} & set(placeholder_names(self.text)))

    def where(self, key: str) -> str:
        """How messages name ``[finetune_config] key``."""
        return f"{self.source}: [{FINETUNE_SECTION}] {key}"

    def _option(self, key: str, day: Day | None = None) -> str | None:
        raw = self.options.get(key)
        if raw is None or not raw.strip():
            return None
        value = templating.substitute(
            raw,
            self.variables.as_dict(),
            environ=self.environ,
            source=self.source,
            section=FINETUNE_SECTION,
            key=key,
        ).strip()
        if day is not None:
            value = substitute_dates(value, day, where=self.where(key))
        return value

    def _placeholders(self, day: Day, checkpoint: str | None) -> dict[str, str]:
        extra = {}
        model_dir = self._option("model_dir", day)
        if model_dir is not None:
            extra["model_dir"] = model_dir
        if checkpoint is not None:
            extra["fine_tune_checkpoint"] = checkpoint
        return extra

    def day_text(self, day: Day, checkpoint: str | None) -> str:
        """The trial file of ``day``: its day keys selected, placeholders filled in."""
        text = select_day_keys(self.text, day)
        if "model_dir" in placeholder_names(text) and self._option("model_dir") is None:
            raise ConfigError(f"{self.where('model_dir')} is required but missing",
                              source=self.source, section=FINETUNE_SECTION, key="model_dir")
        return substitute_dates(
            text, day, where=self.source, extra=self._placeholders(day, checkpoint)
        )

    def parse_day(self, day: Day, checkpoint: str | None) -> TrialPlan:
        """The ordinary plan of ``day`` starting from ``checkpoint``."""
        edit = self.first.checkpoint_edit if self.first is not None else None
        return parse_trial_text(
            self.day_text(day, checkpoint),
            source=self.source,
            variables=self.variables,
            environ=self.environ,
            extra_edits={edit: checkpoint} if edit and checkpoint is not None else None,
        )

    def model_dir(self, day: Day) -> str:
        """This trial's model directory of ``day``: the format's, else ``[finetune_config]``'s."""
        if self.first is not None and self.first.model_dir is not None:
            return str(self.parse_day(day, _CHECKPOINT_STAND_IN).model_dir)
        value = self._option("model_dir", day)
        if value is None:
            raise ConfigError(f"{self.where('model_dir')} is required but missing",
                              source=self.source, section=FINETUNE_SECTION, key="model_dir")
        return value

    def begin_checkpoint(self) -> str:
        """The model the first day starts from."""
        value = self._option("fine_tune_checkpoint", self.days[0])
        if value is not None:
            return value
        if self.first is not None and self.first.start_checkpoint:
            return str(self.first.start_checkpoint)
        if self.first is not None and self.first.checkpoint_edit:
            raise ConfigError(
                f"{self.source}: the first day needs the begin model: set "
                f"\"{self.first.checkpoint_edit}\" in the file's config edits or "
                f"[{FINETUNE_SECTION}] fine_tune_checkpoint", source=self.source,
            )
        raise ConfigError(f"{self.where('fine_tune_checkpoint')} is required but missing "
                          "(the begin model the first day starts from)",
                          source=self.source, section=FINETUNE_SECTION,
                          key="fine_tune_checkpoint")

    def checkpoint(self, day: Day, *, chain_first_day: bool = False) -> str | None:
        """Where ``day`` starts from: the begin model on the first day (or, with
        ``chain_first_day``, the model of the day before it), else the previous day's model;
        None when the file's own commands say (:attr:`chained_by_its_commands`)."""
        if self.chained_by_its_commands:
            return None
        if day == self.days[0] and not chain_first_day:
            return self.begin_checkpoint()
        return self.model_dir(day.previous())

    def stage(self, day: Day, *, chain_first_day: bool = False, redo: bool = False) -> Stage:
        """The stage of ``day``."""
        checkpoint = self.checkpoint(day, chain_first_day=chain_first_day)
        plan = self.parse_day(day, checkpoint)
        (stage,) = plan.stages
        if len(stage.commands) >= COMMANDS_PER_STAGE:
            raise ConfigError(f"{self.source}: a finetune day has at most "
                              f"{COMMANDS_PER_STAGE - 1} commands", source=self.source)
        extra = self._placeholders(day, checkpoint)
        # A record copy (dst None) is of what the platform reads itself: not filled in.
        writes = tuple(
            dataclasses.replace(w, day=day, placeholders=extra) if w.dst is not None else w
            for w in stage.config_writes
        )
        # Within the day, several sources combine by final_mode; across days by stage_mode.
        spec = dataclasses.replace(
            stage.metric.spec, source_list_final_mode=stage.metric.spec.final_mode
        )
        return dataclasses.replace(
            stage,
            name=day.bizdate,
            label=f"day {day}",
            config_writes=writes,
            metric=dataclasses.replace(stage.metric, spec=spec),
            directory=f"days/{day.bizdate}",
            command_base=int(day.bizdate) * COMMANDS_PER_STAGE,
            redo=redo,
            record={"day": day.bizdate},
        )

    def check_own_model_dir(self) -> None:
        """Raise when ``[finetune_config] model_dir`` is not this trial's own.

        Concurrent trials would write the same directory and start day 2 from whichever trial
        wrote day 1 last. A model directory the format decides is the trial's own already
        (the classic ``-Dmodel_dir`` gets ``/<exp_id>_<trial_id>``).
        """
        if self.first is not None and self.first.model_dir is not None:
            return
        if self.chained_by_its_commands:
            return  # no model directory of ours: the commands name theirs
        trial_id = self.variables.trial_id
        model_dir = self.model_dir(self.days[0])
        if trial_id not in model_dir:
            raise ConfigError(
                f"{self.where('model_dir')} is {model_dir!r} for day {self.days[0]}: not this "
                f"trial's own, it must hold the trial id {trial_id!r} (e.g. "
                f"${{NNI_OUTPUT_DIR}}/model/{{bizdate}}), else concurrent trials read and write "
                f"each other's models", source=self.source, section=FINETUNE_SECTION,
                key="model_dir",
            )

    def check_chaining(self) -> None:
        """Raise when a file that hpo-tools chains never uses ``{fine_tune_checkpoint}``."""
        if self.first is not None and self.first.checkpoint_edit:
            return
        if self.chained_by_its_commands:
            _logger.info("%s: the days are chained by the file's own commands (no "
                         "{fine_tune_checkpoint}, no [finetune_config]): run as written",
                         self.source)
            return
        day = self.days[0]
        text = select_day_keys(self.text, day)
        if "fine_tune_checkpoint" in placeholder_names(text):
            return
        from hpo_tools import storage

        for write in self.first.stages[0].config_writes:
            if "fine_tune_checkpoint" in placeholder_names(storage.read_text(write.src)):
                return
        raise ConfigError(
            f"{self.source}: nothing uses {{fine_tune_checkpoint}}: day 2 would not start from "
            f"day 1's model; pass it to the trainer (--fine_tune_checkpoint "
            f"{{fine_tune_checkpoint}}) or write it in the training config", source=self.source,
        )

    def to_plan(
        self,
        *,
        chain_first_day: bool = False,
        resume: bool | None = None,
        retrain: Sequence[Day] = (),
    ) -> TrialPlan:
        """The trial plan: one stage per day.

        Args:
            chain_first_day: the first day starts from this trial's model of the day before
                (``finetune-daily`` after its first day), not from the begin model.
            resume: skip finished days and succeeded commands (default: the file's).
            retrain: days to train again even when the registry has them finished.
        """
        again = {day.bizdate for day in retrain}
        stages = tuple(
            self.stage(day, chain_first_day=chain_first_day if i == 0 else True,
                       redo=day.bizdate in again)
            for i, day in enumerate(self.days)
        )
        if resume is None:
            resume = self.resume or self.first.resume
        outputs = self.first.outputs
        if outputs is not None:  # [output_config]: the trial's model is its last day's
            last = self.days[-1]
            outputs = self.parse_day(
                last, self.checkpoint(last, chain_first_day=chain_first_day)).outputs
        return dataclasses.replace(
            self.first,
            outputs=outputs,
            stages=stages,
            stage_mode=self.stage_mode,
            resume=resume,
            record={**dict(self.first.record), "days": [d.bizdate for d in self.days],
                    **({"budget_days": dict(self.budget)} if self.budget else {})},
            format=f"finetune {self.first.format}",
        )


def _budget_days(
    source: str,
    options: Mapping[str, str],
    params: Mapping[str, Any],
    window: tuple[Day, ...],
) -> tuple[tuple[Day, ...], dict[str, Any] | None]:
    """``[finetune_config] budget=days`` (and ``budget_scale``, default 1): with a
    ``TRIAL_BUDGET`` among the parameters, the trial trains the first
    ``round(TRIAL_BUDGET * budget_scale)`` days of the window (at least 1, at most all).

    Returns:
        The days to train, and what the trial records of its budget (None: no budget).

    Raises:
        ConfigError: ``budget`` is not ``days``, ``budget_scale`` is not a positive number or
            comes without ``budget``, or ``TRIAL_BUDGET`` is not a positive number.
    """
    import math

    from hpo_tools.trial.budget import BUDGET_PARAM, trial_budget

    def error(key: str, message: str) -> ConfigError:
        return ConfigError(f"{source}: [{FINETUNE_SECTION}] {key}: {message}",
                           source=source, section=FINETUNE_SECTION, key=key)

    kind = (options.get("budget") or "").strip().lower()
    scale_text = options.get("budget_scale")
    if not kind:
        if scale_text is not None:
            raise error("budget_scale", "needs budget=days")
        return window, None
    if kind not in BUDGET_KINDS:
        raise error("budget", f"expected {' or '.join(BUDGET_KINDS)} (what TRIAL_BUDGET "
                              f"counts), got {options.get('budget')!r}"
                    + did_you_mean(kind, BUDGET_KINDS))
    scale = 1.0
    if scale_text is not None:
        try:
            scale = float(scale_text)
        except ValueError:
            scale = float("nan")
        if not math.isfinite(scale) or scale <= 0:
            raise error("budget_scale", f"expected a positive number, got {scale_text!r}")
    budget = trial_budget(params, source=source)
    if budget is None:
        return window, None
    count = max(1, math.floor(budget * scale + 0.5))
    if count > len(window):
        _logger.warning("%s: %s %s x budget_scale %s is %d days, but the window has %d: "
                        "training all of them (set the tuner's maximum budget to the window)",
                        source, BUDGET_PARAM, budget, scale, count, len(window))
        count = len(window)
    record = {BUDGET_PARAM: budget, "budget": kind, "budget_scale": scale, "days": count}
    return window[:count], record


def read_finetune_file(
    path: str | os.PathLike[str],
    *,
    variables: TrialVariables,
    environ: Mapping[str, str] | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
    days: Sequence[Day] | None = None,
    text: str | None = None,
    default_days: Sequence[Day] | None = None,
    own_model_dir: bool = True,
) -> FinetuneFile:
    """Read a finetune trial file.

    Args:
        path: the trial file.
        variables: the trial's identity and parameters (for ``${...}`` and Jinja).
        environ: the environment for ``${ENV_VAR}`` (default ``os.environ``).
        start_time, end_time: the window (``YYYY-MM-DD`` or ``YYYYMMDD``), both or neither.
        days: the days, given directly (``finetune-daily``); wins over everything else.
        text: the file's text when already read.
        default_days: the days when neither the flags nor the file give any (``check`` of a
            file whose days come from the runner's command line).
        own_model_dir: require ``[finetune_config] model_dir`` to hold the trial id (a search;
            ``finetune-daily``, one chain outside any search, may write where serving reads).

    Raises:
        ConfigError: unreadable file, bad or missing days, unknown ``[finetune_config]`` keys,
            a ``model_dir`` shared by all trials, or anything the first day's trial file gets
            wrong.
    """
    source = str(path)
    env = dict(os.environ if environ is None else environ)
    if text is None:
        text = read_text(path)
    rendered = templating.render_jinja(
        text, source=source, context={**variables.as_dict(), "env": env}
    )
    rest, options, keys = split_finetune_section(rendered, source)
    for key in keys:
        if key not in FINETUNE_KEYS:
            raise ConfigError(
                f"{source}: [{FINETUNE_SECTION}] {key}: unknown key"
                + did_you_mean(key, FINETUNE_KEYS),
                source=source, section=FINETUNE_SECTION, key=key,
            )
    keyed = day_keys(rest)
    if days:
        window = tuple(days)
        if keyed:
            missing = [d.bizdate for d in window if d.bizdate not in keyed]
            if missing:
                raise ConfigError(f"{source}: no cmd<N>_<YYYYMMDD> keys for day {missing[0]}")
    elif (default_days and not keyed and start_time is None and end_time is None
          and "start_time" not in options and "end_time" not in options):
        window = tuple(default_days)
    else:
        window = find_days(source, options, keyed, start_time, end_time)
    window, budget = _budget_days(source, options, variables.params, window)
    resume_text = (options.get("resume") or "0").strip().lower()
    if resume_text not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{source}: [{FINETUNE_SECTION}] resume: expected 0 or 1, "
                          f"got {resume_text!r}", source=source, section=FINETUNE_SECTION,
                          key="resume")
    finetune = FinetuneFile(
        source=source,
        days=window,
        resume=resume_text in ("1", "true", "yes"),
        stage_mode=FinalMode(source_list_final_mode(rest, source)),
        text=rest,
        options=options,
        variables=variables,
        environ=env,
        day_keyed=bool(keyed),
        budget=budget,
    )
    # The first day, read now: every error of the file shows before anything runs, and what
    # the format decides (model directory, chaining by edit) is known.
    checkpoint = finetune._option("fine_tune_checkpoint", window[0]) or _CHECKPOINT_STAND_IN
    first = finetune.parse_day(window[0], checkpoint)
    finetune = dataclasses.replace(finetune, first=first)
    finetune.stage(window[0])
    finetune.check_chaining()
    if own_model_dir:
        finetune.check_own_model_dir()
    return finetune
