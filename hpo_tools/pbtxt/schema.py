"""Optional schema for the config editor: a protobuf message ``Descriptor`` loaded from the user's
``.proto`` files (compiled at run time) or from an installed ``_pb2`` module.

Two ways in, one way out::

    load_schema(proto_path="protos/", message="easy_rec.protos.EasyRecConfig")
    load_schema(proto_module="easy_rec.python.protos.pipeline_pb2:EasyRecConfig")

``--proto-path`` runs grpcio-tools' ``protoc`` in a subprocess with ``--descriptor_set_out`` into a
temporary directory and builds a *private* ``DescriptorPool`` from the result. Nothing is written
next to the user's files, nothing is added to ``sys.path`` or ``sys.modules``, and the process-wide
default pool is left alone, so two different schemas (or the same one twice) load in one process
without "duplicate file name" conflicts.

The options that ask for a schema are the same in every command that takes one
(:func:`add_schema_arguments`, :func:`load_schema_from_args`).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from hpo_tools.errors import ConfigError, did_you_mean

__all__ = ["load_schema", "message_names", "add_schema_arguments", "load_schema_from_args"]

_logger = logging.getLogger(__name__)


def load_schema(
    *,
    proto_path: str | os.PathLike[str] | None = None,
    message: str | None = None,
    proto_module: str | None = None,
) -> Any:
    """Load the descriptor of the config's root message.

    Args:
        proto_path: A directory; every ``.proto`` file under it is compiled, with the directory
            as the import root (so ``import "easy_rec/python/protos/train.proto"`` works when it is
            the repository root). Needs ``message``.
        message: The root message's full name, ``pkg.Msg``; a bare ``Msg`` is accepted when exactly
            one message has that name.
        proto_module: ``module:Msg`` naming an importable ``_pb2`` module and a message class in
            it (``Outer.Inner`` for nested messages). Excludes ``proto_path``.

    Returns:
        The ``google.protobuf.descriptor.Descriptor`` of the root message.

    Raises:
        ConfigError: Both or neither source given, grpcio-tools missing, the ``.proto`` files do
            not compile (protoc's message is included), or the message is unknown.

    Example:
        >>> desc = load_schema(proto_path="tests/protos", message="easyrec_like.EasyRecConfig")
        >>> "feature_configs" in desc.fields_by_name
        True
    """
    if proto_module is not None:
        if proto_path is not None or message is not None:
            raise ConfigError(
                "give either --proto-module MODULE:MESSAGE or --proto-path DIR --message PKG.MSG, "
                "not both"
            )
        return _load_from_module(proto_module)
    if proto_path is None:
        raise ConfigError("a schema needs --proto-path DIR --message PKG.MSG or --proto-module")
    if not message:
        raise ConfigError(f"--proto-path {proto_path} needs --message PKG.MSG (the root message)")
    return _load_from_protos(Path(proto_path), message)


def add_schema_arguments(parser: argparse.ArgumentParser) -> Any:
    """``--proto-path DIR --message PKG.MSG | --proto-module MODULE:MSG``; the argument group
    (a command adds options of its own to it)."""
    group = parser.add_argument_group("schema (optional)")
    group.add_argument("--proto-path", metavar="DIR", help="compile the .proto files under DIR")
    group.add_argument("--message", metavar="PKG.MSG", help="root message for --proto-path")
    group.add_argument(
        "--proto-module", metavar="MODULE:MSG", help="root message class in an installed _pb2"
    )
    return group


def load_schema_from_args(args: argparse.Namespace) -> Any:
    """The schema Descriptor :func:`add_schema_arguments`' options ask for, or None.

    Raises:
        ConfigError: as :func:`load_schema`.
    """
    if args.proto_path is None and args.message is None and args.proto_module is None:
        return None
    return load_schema(
        proto_path=args.proto_path, message=args.message, proto_module=args.proto_module
    )


def message_names(descriptor: Any) -> list[str]:
    """Full names of every message in ``descriptor``'s file and the files it imports."""
    names: list[str] = []
    seen: set[str] = set()
    stack = [descriptor.file]
    while stack:
        file_desc = stack.pop()
        if file_desc.name in seen:
            continue
        seen.add(file_desc.name)
        names.extend(_file_message_names(file_desc))
        stack.extend(file_desc.dependencies)
    return sorted(names)


def _file_message_names(file_desc: Any) -> list[str]:
    names: list[str] = []
    stack = list(file_desc.message_types_by_name.values())
    while stack:
        desc = stack.pop()
        names.append(desc.full_name)
        stack.extend(desc.nested_types)
    return names


# ---------------------------------------------------------------- --proto-module


def _load_from_module(spec: str) -> Any:
    module_name, sep, attr_path = spec.partition(":")
    if not sep or not module_name or not attr_path:
        raise ConfigError(f"--proto-module {spec!r}: expected MODULE:MESSAGE, e.g. my_pb2:Config")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise ConfigError(f"--proto-module {spec!r}: cannot import {module_name!r}: {err}") from err
    file_desc = getattr(module, "DESCRIPTOR", None)
    obj: Any = module
    for part in attr_path.split("."):
        nxt = getattr(obj, part, None)
        if nxt is None:
            known = _file_message_names(file_desc) if file_desc is not None else []
            short = [n[len(file_desc.package) + 1 :] if file_desc.package else n for n in known]
            raise ConfigError(
                f"--proto-module {spec!r}: no message {attr_path!r} in {module_name}"
                + did_you_mean(attr_path, short)
            )
        obj = nxt
    descriptor = getattr(obj, "DESCRIPTOR", None)
    if descriptor is None or not hasattr(descriptor, "fields_by_name"):
        raise ConfigError(f"--proto-module {spec!r}: {attr_path!r} is not a protobuf message class")
    return descriptor


# ---------------------------------------------------------------- --proto-path


def _well_known_protos_dir() -> str:
    try:
        import grpc_tools  # noqa: F401  (only to find its bundled well-known .proto files)
    except ImportError as err:
        raise ConfigError(
            "--proto-path needs grpcio-tools to compile .proto files; "
            "install it with: pip install 'hpo-tools[schema]'"
        ) from err
    return str(Path(grpc_tools.__file__).resolve().parent / "_proto")


def _load_from_protos(root: Path, message: str) -> Any:
    if not root.is_dir():
        raise ConfigError(f"--proto-path {root}: not a directory")
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.proto") if p.is_file())
    if not files:
        raise ConfigError(f"--proto-path {root}: no .proto files in it")
    wkt_dir = _well_known_protos_dir()
    with tempfile.TemporaryDirectory(prefix="hpo-tools-protoc-") as tmp:
        out = Path(tmp) / "descriptors.pb"
        command = [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"--proto_path={root.resolve()}",
            f"--proto_path={wkt_dir}",
            f"--descriptor_set_out={out}",
            "--include_imports",
            *files,
        ]
        _logger.debug("compiling %d .proto file(s) under %s", len(files), root)
        proc = subprocess.run(command, capture_output=True, text=True, cwd=tmp, check=False)
        if proc.returncode != 0 or not out.exists():
            detail = "; ".join(line.strip() for line in proc.stderr.splitlines() if line.strip())
            raise ConfigError(
                f"--proto-path {root}: protoc failed: {detail or f'exit code {proc.returncode}'}"
            )
        data = out.read_bytes()
    pool = _pool_from_descriptor_set(data)
    return _find_message(pool, data, message, root)


def _pool_from_descriptor_set(data: bytes) -> Any:
    from google.protobuf import descriptor_pb2, descriptor_pool

    file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    pool = descriptor_pool.DescriptorPool()
    for file_proto in file_set.file:  # protoc lists dependencies before their dependents
        pool.AddSerializedFile(file_proto.SerializeToString())
    return pool


def _all_message_names(data: bytes) -> list[str]:
    from google.protobuf import descriptor_pb2

    file_set = descriptor_pb2.FileDescriptorSet.FromString(data)
    names: list[str] = []

    def walk(prefix: str, messages: Any) -> None:
        for msg in messages:
            full = f"{prefix}.{msg.name}" if prefix else msg.name
            names.append(full)
            walk(full, msg.nested_type)

    for file_proto in file_set.file:
        if file_proto.name.startswith("google/protobuf/"):
            continue
        walk(file_proto.package, file_proto.message_type)
    return names


def _find_message(pool: Any, data: bytes, message: str, root: Path) -> Any:
    try:
        return pool.FindMessageTypeByName(message)
    except KeyError:
        pass
    names = _all_message_names(data)
    by_short = [n for n in names if n.rsplit(".", 1)[-1] == message]
    if len(by_short) == 1:
        return pool.FindMessageTypeByName(by_short[0])
    if len(by_short) > 1:
        raise ConfigError(
            f"--message {message!r} is ambiguous under {root}: give the full name, one of "
            + ", ".join(sorted(by_short))
        )
    raise ConfigError(
        f"--message {message!r}: no such message in the .proto files under {root}"
        + did_you_mean(message, names + [n.rsplit(".", 1)[-1] for n in names])
    )
