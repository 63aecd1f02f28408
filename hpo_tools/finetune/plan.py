"""A finetune trial file -> its days, and one ordinary trial file text per day.

A finetune trial file is a trial file (either format, docs/trials.md) whose values may use

- ``{bizdate}``, ``{eval_ymd}``, ``{predate}``: the day trained, the day after, the day before
  (:mod:`hpo_tools.dates`);
- ``{model_dir}``: this trial's model directory of the day (``[finetune_config] model_dir``);
- ``{fine_tune_checkpoint}``: where the day starts from: the begin model
  (``[finetune_config] fine_tune_checkpoint``) on the first day, this trial's ``{model_dir}`` of
  the previous day afterwards.

The days come from ``--start_time``/``--end_time``, else ``[finetune_config] start_time/end_time``,
else from Jinja day lists: keys ``cmd<N>_<YYYYMMDD>`` and ``metric_source_<YYYYMMDD>`` (what
``{% for bizdate in date_list %}cmd1_{{bizdate}}=...{% endfor %}`` renders to).

The classic format (``config_finetune.ini``) chains through ``-Dedit_config_json``: its
``train_config.fine_tune_checkpoint`` is the begin model on the first day, and the previous day's
``-Dmodel_dir`` (``.../<exp_id>_<trial_id>``) afterwards.

:func:`load_plan` reads the file once; :meth:`FinetunePlan.day_settings` gives the ordinary
:class:`~hpo_tools.trial.settings.TrialSettings` of one day, which the one trial runner runs.
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo_tools.dates import Day, day_range, parse_date, placeholder_names, substitute_dates
from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.trial import templating
from hpo_tools.trial.settings import TrialSettings, TrialVariables, parse_trial_text

__all__ = [
    "FINETUNE_SECTION",
    "FINETUNE_KEYS",
    "CHECKPOINT_EDIT",
    "FinetunePlan",
    "load_plan",
    "is_finetune_text",
]

FINETUNE_SECTION = "finetune_config"
FINETUNE_KEYS = ("start_time", "end_time", "model_dir", "fine_tune_checkpoint", "resume")
CHECKPOINT_EDIT = "train_config.fine_tune_checkpoint"

_SECTION_LINE = re.compile(r"^\s*\[([^\]]+)\]\s*$")
_KEY_LINE = re.compile(r"^([A-Za-z_][\w.\-]*)\s*=")
_DAY_KEY = re.compile(r"^(cmd\d+|metric_source)_(\d{8})$")
_DAY_KEY_IN_RAW_TEXT = re.compile(r"^\s*(cmd\d+|metric_source)_(\d{8}|\{\{)", re.MULTILINE)


def is_finetune_text(text: str) -> bool:
    """Whether a trial file's text is a finetune trial file (has days of its own)."""
    return bool(
        re.search(r"^\s*\[finetune_config\]\s*$", text, re.MULTILINE)
        or _DAY_KEY_IN_RAW_TEXT.search(text)
    )


def _split_sections(text: str, source: str) -> tuple[str, dict[str, str], list[str]]:
    """Remove ``[finetune_config]`` from ``text``; return the rest, its raw values, its keys."""
    kept: list[str] = []
    section_lines: list[str] = []
    inside = False
    for line in text.splitlines():
        header = _SECTION_LINE.match(line)
        if header:
            inside = header.group(1).strip() == FINETUNE_SECTION
            if inside:
                continue
        (section_lines if inside else kept).append(line)
    if not section_lines:
        return text, {}, []
    parser = configparser.ConfigParser(interpolation=None, delimiters=("=",), strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(f"[{FINETUNE_SECTION}]\n" + "\n".join(section_lines))
    except configparser.Error as err:
        first = str(err).splitlines()[0]
        raise ConfigError(f"{source}: [{FINETUNE_SECTION}]: cannot parse: {first}") from err
    values = dict(parser[FINETUNE_SECTION])
    return "\n".join(kept) + "\n", values, list(values)


def _select_day_keys(text: str, day: Day | None) -> str:
    """Keep the ``cmd<N>_<day>`` / ``metric_source_<day>`` keys of ``day`` (renamed to ``cmd<N>``
    / ``metric_source``) and drop other days' keys with their continuation lines."""
    out: list[str] = []
    dropping = False
    for line in text.splitlines():
        stripped = line.strip()
        if _SECTION_LINE.match(line) or not stripped:
            dropping = False
            out.append(line)
            continue
        if stripped[0] in "#;":
            out.append(line)
            continue
        key = _KEY_LINE.match(line) if not line[0].isspace() else None
        if key is None:  # a continuation line of the value above
            if not dropping:
                out.append(line)
            continue
        dropping = False
        match = _DAY_KEY.match(key.group(1))
        if match is None:
            out.append(line)
        elif day is not None and match.group(2) == day.bizdate:
            out.append(match.group(1) + line[key.end(1):])
        else:
            dropping = True
    return "\n".join(out) + "\n"


def _day_keys(text: str) -> dict[str, set[str]]:
    """``{YYYYMMDD: {"cmd1", "metric_source", ...}}`` of the rendered text's day keys."""
    found: dict[str, set[str]] = {}
    for line in text.splitlines():
        if not line or line[0].isspace():
            continue
        key = _KEY_LINE.match(line)
        match = _DAY_KEY.match(key.group(1)) if key else None
        if match:
            found.setdefault(match.group(2), set()).add(match.group(1))
    return found


@dataclass(frozen=True)
class FinetunePlan:
    """The days of a finetune trial and how to build each day's trial file.

    Attributes:
        source: the trial file's path.
        days: the days, in order.
        format: ``"classic"`` or ``"platform"``.
        resume: continue at the first day the job registry has not seen finish.
        source_list_final_mode: how the days' scores combine (default ``avg``).
    """

    source: str
    days: tuple[Day, ...]
    format: str
    resume: bool
    source_list_final_mode: str
    text: str = dataclasses.field(repr=False)
    options: Mapping[str, str] = dataclasses.field(repr=False)
    variables: TrialVariables = dataclasses.field(repr=False)
    environ: Mapping[str, str] = dataclasses.field(repr=False)

    # -- per day -----------------------------------------------------------------------------

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
            value = substitute_dates(value, day, where=f"{self.where(key)}")
        return value

    def where(self, key: str) -> str:
        """How messages name ``[finetune_config] key``."""
        return f"{self.source}: [{FINETUNE_SECTION}] {key}"

    def model_dir(self, day: Day) -> str:
        """This trial's model directory of ``day``."""
        if self.format == "classic":
            settings = self._parse(day, checkpoint=None)
            assert settings.model_dir is not None  # the classic parser requires -Dmodel_dir
            return settings.model_dir
        value = self._option("model_dir", day)
        if value is None:
            raise ConfigError(f"{self.where('model_dir')} is required but missing")
        return value

    def begin_checkpoint(self) -> str:
        """The model the first day starts from."""
        value = self._option("fine_tune_checkpoint", self.days[0])
        if value is not None:
            return value
        if self.format == "classic":
            settings = self._parse(self.days[0], checkpoint=None)
            value = (settings.edit_config_json or {}).get(CHECKPOINT_EDIT)
            if value:
                return str(value)
            raise ConfigError(
                f"{self.source}: the first day needs the begin model: set "
                f"\"{CHECKPOINT_EDIT}\" in -Dedit_config_json or "
                f"[{FINETUNE_SECTION}] fine_tune_checkpoint"
            )
        raise ConfigError(f"{self.where('fine_tune_checkpoint')} is required but missing "
                          "(the begin model the first day starts from)")

    def checkpoint(self, day: Day, *, chain_first_day: bool = False) -> str:
        """Where ``day`` starts from: the begin model on the first day (or, with
        ``chain_first_day``, the model of the day before it), else the previous day's model."""
        if day == self.days[0] and not chain_first_day:
            return self.begin_checkpoint()
        return self.model_dir(day.previous())

    def _placeholders(self, day: Day, checkpoint: str | None) -> dict[str, str]:
        if self.format == "classic":
            return {}
        extra = {"model_dir": self.model_dir(day)}
        if checkpoint is not None:
            extra["fine_tune_checkpoint"] = checkpoint
        return extra

    def day_text(self, day: Day, checkpoint: str | None) -> str:
        """The trial file of ``day``: its day keys selected, placeholders filled in."""
        text = _select_day_keys(self.text, day)
        return substitute_dates(
            text, day, where=self.source, extra=self._placeholders(day, checkpoint)
        )

    def _parse(self, day: Day, checkpoint: str | None) -> TrialSettings:
        variables = self.variables
        if self.format == "classic" and checkpoint is not None:
            # The classic parser merges parameters into -Dedit_config_json: the chained
            # checkpoint goes in that way (after the file's own edits, so it wins).
            params = {**dict(variables.params), CHECKPOINT_EDIT: checkpoint}
            variables = dataclasses.replace(variables, params=params)
        return parse_trial_text(
            self.day_text(day, checkpoint),
            source=self.source,
            variables=variables,
            environ=self.environ,
        )

    def day_settings(
        self, day: Day, *, chain_first_day: bool = False, config_dir: Path | None = None
    ) -> TrialSettings:
        """The ordinary trial settings of ``day``.

        Config sources (``[params_config]`` SRC) holding placeholders are written, filled in,
        to ``config_dir`` and the day's edits read them from there.
        """
        checkpoint = self.checkpoint(day, chain_first_day=chain_first_day)
        settings = self._parse(day, checkpoint)
        edits = list(settings.config_edits)
        if edits and config_dir is not None:
            edits = [
                _day_config(edit, day, self._placeholders(day, checkpoint), config_dir)
                for edit in edits
            ]
        # Within the day, several sources combine by final_mode; across days by
        # source_list_final_mode (the plan's).
        metric = dataclasses.replace(settings.metric, source_list_final_mode=None)
        return dataclasses.replace(
            settings,
            config_edits=tuple(edits),
            metric=metric,
            resume=settings.resume or self.resume,
        )

    def check_own_model_dir(self) -> None:
        """Raise when a platform-format ``model_dir`` is not this trial's own.

        Concurrent trials would write the same directory and start day 2 from whichever trial
        wrote day 1 last. The classic format needs no check: the runner appends
        ``/<exp_id>_<trial_id>`` to ``-Dmodel_dir``.
        """
        if self.format == "classic":
            return
        trial_id = self.variables.trial_id
        model_dir = self.model_dir(self.days[0])
        if trial_id not in model_dir:
            raise ConfigError(
                f"{self.where('model_dir')} is {model_dir!r} for day {self.days[0]}: not this "
                f"trial's own, it must hold the trial id {trial_id!r} (e.g. "
                f"${{NNI_OUTPUT_DIR}}/model/{{bizdate}}), else concurrent trials read and write "
                f"each other's models"
            )

    def check_chaining(self) -> None:
        """Raise when nothing in a platform-format file uses ``{fine_tune_checkpoint}``."""
        if self.format == "classic":
            return
        day = self.days[0]
        text = _select_day_keys(self.text, day)
        if "fine_tune_checkpoint" in placeholder_names(text):
            return
        settings = self._parse(day, self.checkpoint(day))
        from hpo_tools import storage

        for edit in settings.config_edits:
            if "fine_tune_checkpoint" in placeholder_names(storage.read_text(edit.src)):
                return
        raise ConfigError(
            f"{self.source}: nothing uses {{fine_tune_checkpoint}}: day 2 would not start from "
            f"day 1's model; pass it to the trainer (--fine_tune_checkpoint "
            f"{{fine_tune_checkpoint}}) or write it in the training config"
        )


def _day_config(edit: Any, day: Day, extra: Mapping[str, str], config_dir: Path) -> Any:
    from hpo_tools import storage

    text = storage.read_text(edit.src)
    if not placeholder_names(text):
        return edit
    filled = substitute_dates(text, day, where=edit.src, extra=extra)
    path = config_dir / f"{edit.name}-{Path(edit.src).name}"
    storage.write_text(str(path), filled)
    return dataclasses.replace(edit, src=str(path))


def _days(
    source: str,
    options: Mapping[str, str],
    keyed: Mapping[str, set[str]],
    start_time: str | None,
    end_time: str | None,
) -> tuple[Day, ...]:
    if (start_time is None) != (end_time is None):
        given, missing = ("--start_time", "--end_time")[:: 1 if start_time else -1]
        raise ConfigError(f"{given} is given but {missing} is missing; give both or neither")
    section_start, section_end = options.get("start_time"), options.get("end_time")
    if (section_start is None) != (section_end is None):
        missing = "end_time" if section_end is None else "start_time"
        raise ConfigError(f"{source}: [{FINETUNE_SECTION}] {missing} is required with the other")
    if keyed:
        if start_time is not None or section_start is not None:
            raise ConfigError(
                f"{source}: the days are listed twice: cmd<N>_<YYYYMMDD> keys and "
                f"{'--start_time/--end_time' if start_time else 'start_time/end_time'}; "
                "keep one"
            )
        days = [parse_date(text, what=f"{source}: key suffix") for text in sorted(keyed)]
        commands = sorted(k for k in keyed[days[0].bizdate] if k.startswith("cmd"))
        for day in days:
            names = keyed[day.bizdate]
            if sorted(k for k in names if k.startswith("cmd")) != commands:
                raise ConfigError(
                    f"{source}: day {day} has commands "
                    f"{', '.join(sorted(k for k in names if k.startswith('cmd'))) or 'none'} "
                    f"but day {days[0]} has {', '.join(commands) or 'none'}"
                )
        return tuple(days)
    if start_time is not None and end_time is not None:
        start = parse_date(start_time, what="--start_time")
        end = parse_date(end_time, what="--end_time")
        return tuple(day_range(start, end, what="--start_time/--end_time"))
    if section_start is not None and section_end is not None:
        start = parse_date(section_start, what=f"{source}: [{FINETUNE_SECTION}] start_time")
        end = parse_date(section_end, what=f"{source}: [{FINETUNE_SECTION}] end_time")
        return tuple(day_range(start, end, what=f"{source}: [{FINETUNE_SECTION}]"))
    raise ConfigError(
        f"{source}: a finetune trial needs its days: --start_time/--end_time, "
        f"[{FINETUNE_SECTION}] start_time/end_time, or cmd<N>_<YYYYMMDD> keys"
    )


def load_plan(
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
) -> FinetunePlan:
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
        own_model_dir: require a platform-format ``model_dir`` to hold the trial id (a search;
            ``finetune-daily``, one chain outside any search, may write where serving reads).

    Raises:
        ConfigError: unreadable file, bad or missing days, unknown ``[finetune_config]`` keys,
            a ``model_dir`` shared by all trials, or anything the first day's trial file gets
            wrong.
    """
    source = str(path)
    env = dict(os.environ if environ is None else environ)
    if text is None:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{source}: cannot read trial file: {err.strerror or err}") from err
    rendered = templating.render_jinja(
        text, source=source, context={**variables.as_dict(), "env": env}
    )
    rest, options, keys = _split_sections(rendered, source)
    for key in keys:
        if key not in FINETUNE_KEYS:
            raise ConfigError(
                f"{source}: [{FINETUNE_SECTION}] {key}: unknown key"
                + did_you_mean(key, FINETUNE_KEYS)
            )
    keyed = _day_keys(rest)
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
        window = _days(source, options, keyed, start_time, end_time)
    is_classic = bool(re.search(r"^\s*\[easyrec_cmd_config\]\s*$", rest, re.MULTILINE))
    resume_text = (options.get("resume") or "0").strip().lower()
    if resume_text not in ("0", "1", "true", "false", "yes", "no"):
        raise ConfigError(f"{source}: [{FINETUNE_SECTION}] resume: expected 0 or 1, "
                          f"got {resume_text!r}")
    list_mode = _source_list_final_mode(rest, source)
    plan = FinetunePlan(
        source=source,
        days=window,
        format="classic" if is_classic else "platform",
        resume=resume_text in ("1", "true", "yes"),
        source_list_final_mode=list_mode,
        text=rest,
        options=options,
        variables=variables,
        environ=env,
    )
    # Parse the first day now: every error of the file shows before anything runs.
    plan.day_settings(window[0])
    plan.check_chaining()
    if own_model_dir:
        plan.check_own_model_dir()
    return plan


def _source_list_final_mode(text: str, source: str) -> str:
    match = re.search(r"^source_list_final_mode\s*=\s*(\S+)\s*$", text, re.MULTILINE)
    if match is None:
        return "avg"
    value = match.group(1).lower()
    if value not in ("final", "best", "avg"):
        raise ConfigError(
            f"{source}: [metric_config] source_list_final_mode: expected one of final, best, "
            f"avg, got {match.group(1)!r}" + did_you_mean(value, ("final", "best", "avg"))
        )
    return value
