"""The schema a trial's config edits are applied with (docs/config-editor.md, "Schema in
trials").

With a schema, trial edits behave like EasyRec's ``edit_config``: an edit naming a field of the
schema that the config does not hold creates it (the tuner's edits and the trial file's own
alike), and every value is checked against its field's type. The schema is, in order:

1. the entry point's options: ``--proto-path DIR --message PKG.MSG`` or ``--proto-module
   MODULE:MSG`` (:func:`hpo_tools.pbtxt.schema.load_schema`);
2. else the one of an installed EasyRec, ``easy_rec.python.protos.pipeline_pb2:EasyRecConfig``,
   read from the module's source when a config is first edited (importing EasyRec would import
   TensorFlow; see :mod:`hpo_tools.pbtxt.pb2_source`); ``--no-easyrec-schema`` turns it off.
   It is a guess about the config, so it is used only for a config whose top-level fields are
   all fields of ``EasyRecConfig`` (a trial.ini may edit other protobuf text too);
3. else none: an edit naming an absent field is an error, except the file's own edits a
   platform's EasyRec applies (:attr:`hpo_tools.trial.plan.ConfigWrite.passthrough`).
"""

from __future__ import annotations

import argparse
import logging
from typing import Any, Callable

from hpo_tools.errors import ConfigError

__all__ = [
    "EASYREC_SCHEMA",
    "ConfigSchema",
    "config_schema",
    "add_trial_schema_arguments",
    "schema_from_args",
    "schema_from_command",
]

_logger = logging.getLogger(__name__)

#: The root message of an installed EasyRec's pipeline config.
EASYREC_SCHEMA = "easy_rec.python.protos.pipeline_pb2:EasyRecConfig"


class ConfigSchema:
    """The schema trial edits are applied with, loaded once, when first asked for.

    Build one with :meth:`given`, :meth:`installed_easyrec` or :meth:`none`;
    :meth:`for_document` says which descriptor (or None) edits of one config use.

    Example:
        >>> ConfigSchema.none().for_document(None) is None
        True
    """

    def __init__(
        self,
        load: Callable[[], Any],
        *,
        origin: str,
        implicit: bool = False,
    ) -> None:
        self._load: Callable[[], Any] | None = load
        self._descriptor: Any = None
        self.origin = origin
        self.implicit = implicit

    @classmethod
    def given(cls, descriptor: Any, origin: str = "the schema given") -> ConfigSchema:
        """A schema the user chose: used for every config edited."""
        descriptor = getattr(descriptor, "DESCRIPTOR", descriptor)  # a message class too
        return cls(lambda: descriptor, origin=origin)

    @classmethod
    def none(cls) -> ConfigSchema:
        """No schema (``--no-easyrec-schema``)."""
        return cls(lambda: None, origin="no schema")

    @classmethod
    def installed_easyrec(cls, spec: str = EASYREC_SCHEMA) -> ConfigSchema:
        """The schema of an installed EasyRec, if there is one (looked for on first use)."""
        return cls(lambda: _load_installed(spec), origin=f"{spec} (installed)", implicit=True)

    @property
    def descriptor(self) -> Any:
        """The root message ``Descriptor``, or None; loaded on first use."""
        if self._load is not None:
            load, self._load = self._load, None
            self._descriptor = load()
        return self._descriptor

    def for_document(self, document: Any) -> Any:
        """The descriptor edits of ``document`` (a :class:`hpo_tools.pbtxt.Document`) use:
        the given schema always; an installed one only when it knows every top-level field of
        the document; else None."""
        descriptor = self.descriptor
        if descriptor is None or not self.implicit:
            return descriptor
        unknown = [n for n in document.field_names() if n not in descriptor.fields_by_name]
        if unknown:
            _logger.info(
                "%s: top-level field %r is not in %s: its edits use no schema",
                document.source, unknown[0], self.origin,
            )
            return None
        return descriptor

    def __repr__(self) -> str:
        return f"ConfigSchema({self.origin})"


def _load_installed(spec: str) -> Any:
    """The descriptor of ``spec`` (``module:Message``) read from the module's source; None
    when it is not installed or cannot be read (a warning: trials then run without it)."""
    from hpo_tools.pbtxt.pb2_source import find_module_source, load_pb2_source

    module, _, message = spec.partition(":")
    path = find_module_source(module)
    if path is None:
        _logger.debug("no %s installed: trial edits use no schema", module)
        return None
    try:
        descriptor = load_pb2_source(path, message)
    except ConfigError as err:
        _logger.warning("%s cannot be read (%s): trial edits use no schema", path, err)
        return None
    _logger.info("trial edits use the schema %s from %s", descriptor.full_name, path)
    return descriptor


def config_schema(schema: Any) -> ConfigSchema:
    """What an API's ``schema=`` argument means: a :class:`ConfigSchema` as it is; None for the
    default, an installed EasyRec's (:meth:`ConfigSchema.installed_easyrec`); a ``Descriptor``
    (or a message class) for that schema."""
    if isinstance(schema, ConfigSchema):
        return schema
    if schema is None:
        return ConfigSchema.installed_easyrec()
    return ConfigSchema.given(schema)


def add_trial_schema_arguments(parser: argparse.ArgumentParser) -> None:
    """The schema options of a command that runs or checks trials: those of ``hpo-tools edit``
    plus ``--no-easyrec-schema``."""
    from hpo_tools.pbtxt.schema import add_schema_arguments

    group = add_schema_arguments(parser)
    group.add_argument(
        "--no-easyrec-schema",
        action="store_true",
        help="without --proto-path/--proto-module, do not use the schema of an installed "
        f"EasyRec ({EASYREC_SCHEMA})",
    )


def schema_from_args(args: argparse.Namespace) -> ConfigSchema:
    """The schema :func:`add_trial_schema_arguments`' options ask for.

    Raises:
        ConfigError: the options are unusable (:func:`hpo_tools.pbtxt.schema.load_schema`).
    """
    from hpo_tools.pbtxt.schema import load_schema_from_args

    descriptor = load_schema_from_args(args)
    if descriptor is not None:
        if args.proto_module is not None:
            origin = f"--proto-module {args.proto_module}"
        else:
            origin = f"--proto-path {args.proto_path} --message {args.message}"
        return ConfigSchema.given(descriptor, origin)
    if getattr(args, "no_easyrec_schema", False):
        return ConfigSchema.none()
    return ConfigSchema.installed_easyrec()


def schema_from_command(trial_command: str) -> ConfigSchema:
    """The schema the trials of an experiment use: :func:`schema_from_args` of the schema
    options in its ``trialCommand`` (``python3 -m hpo_tools.run --config trial.ini
    --proto-module my_pb2:Config``), so that a pre-check agrees with the trials.

    Raises:
        ConfigError: the options are unusable.
    """
    import shlex

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    add_trial_schema_arguments(parser)
    try:
        argv = shlex.split(trial_command)
    except ValueError:
        argv = trial_command.split()
    args, _ = parser.parse_known_args(argv)
    return schema_from_args(args)
