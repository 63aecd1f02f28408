"""Real or fake cloud clients: the one decision, for every cloud SDK client the package builds.

Each place that builds a cloud SDK client builds it through :func:`build`::

    bucket = cloud.build("oss", _real_oss2_bucket, credentials, bucket_name)   # storage.py
    client = cloud.build("maxcompute", _real_odps, **kwargs)                   # maxcompute.py

With ``HPO_TOOLS_FAKE_CLOUD`` unset (the shipped path) that is ``real(*args, **kwargs)``, the
real SDK client. With ``HPO_TOOLS_FAKE_CLOUD=DIR`` it is the service's registered fake, called
as ``fake(root, *args, **kwargs)`` with ``root`` the absolute ``DIR``: an offline dry run
(docs/running-trials.md, "Dry runs without a cloud account"). A service with no fake registered
is an error under the fake cloud, never a silent call to the real one.

Registering a fake is one line in :data:`FAKES` (or a :func:`register_fake` call): the
service name, the fake factory as ``"module:function"`` (imported only under the fake cloud, so
the shipped path never loads ``hpo_tools.testing``), and what the start-up notice says about
where that service's work goes.
"""

from __future__ import annotations

import importlib
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, NamedTuple, TypeVar

from hpo_tools.errors import ConfigError

__all__ = [
    "ENV_FAKE_CLOUD",
    "FAKES",
    "FakeService",
    "build",
    "fake_root",
    "notice",
    "register_fake",
]

_logger = logging.getLogger(__name__)

ENV_FAKE_CLOUD = "HPO_TOOLS_FAKE_CLOUD"

T = TypeVar("T")


class FakeService(NamedTuple):
    """A service's fake: ``factory`` is ``"module:function"``, called as
    ``function(root, *args, **kwargs)`` with the real factory's arguments; ``notice`` says
    where its work goes, ``{root}`` standing for the fake cloud's directory."""

    factory: str
    notice: str


#: Service name -> its fake. One line per cloud SDK client the package builds.
FAKES: dict[str, FakeService] = {
    "oss": FakeService("hpo_tools.testing.fake_cloud:oss_bucket",
                       "OSS at {root}/<bucket>/<key>"),
    "maxcompute": FakeService("hpo_tools.testing.fake_cloud:odps_client",
                              "MaxCompute jobs recorded in {root}/.maxcompute/submissions.jsonl"),
    "hdfs": FakeService("hpo_tools.testing.fake_cloud:hdfs_client",
                        "HDFS at {root}/.hdfs/<path>"),
    "dlc": FakeService("hpo_tools.testing.dlc:fake_cloud_client",
                       "DLC jobs recorded in {root}/.dlc/submissions.jsonl"),
    "pai": FakeService("hpo_tools.testing.pai_training:fake_cloud_client",
                       "PAI training jobs recorded in {root}/.pai/submissions.jsonl"),
    "paiflow": FakeService("hpo_tools.testing.paiflow:fake_cloud_client",
                           "PAI-Flow runs recorded in {root}/.paiflow/submissions.jsonl"),
}


def register_fake(service: str, factory: str, notice: str) -> None:
    """Register (or replace) ``service``'s fake; see :class:`FakeService`."""
    if ":" not in factory:
        raise ValueError(f"fake factory {factory!r}: expected 'module:function'")
    FAKES[service] = FakeService(factory, notice)


def fake_root(environ: Mapping[str, str] | None = None) -> Path | None:
    """The fake cloud's directory (absolute), or None when ``HPO_TOOLS_FAKE_CLOUD`` is unset
    or empty: then every client is the real one.

    Raises:
        ConfigError: The variable names something that is not a directory.
    """
    env = os.environ if environ is None else environ
    value = env.get(ENV_FAKE_CLOUD, "")
    if not value:
        return None
    root = Path(value).expanduser().resolve()
    if not root.is_dir():
        raise ConfigError(
            f"{ENV_FAKE_CLOUD}={value}: no such directory; create it (OSS objects go in "
            "DIR/<bucket>/<key>) or unset the variable to use the real cloud"
        )
    return root


def notice(environ: Mapping[str, str] | None = None) -> str | None:
    """The one-line notice an entry point prints first under the fake cloud, else None.

    Raises:
        ConfigError: see :func:`fake_root`.
    """
    root = fake_root(environ)
    if root is None:
        return None
    where = ", ".join(fake.notice.format(root=root) for fake in FAKES.values())
    return f"fake cloud ({ENV_FAKE_CLOUD}), nothing is sent to any cloud: {where}"


def _fake_factory(service: str) -> Callable[..., Any]:
    fake = FAKES.get(service)
    if fake is None:
        raise ConfigError(
            f"{ENV_FAKE_CLOUD} is set but {service} has no fake client; unset it to use the "
            f"real {service}"
        )
    module_name, _, function = fake.factory.partition(":")
    return getattr(importlib.import_module(module_name), function)


def build(service: str, real: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``service``'s client: ``real(*args, **kwargs)``, or its fake under the fake cloud.

    Args:
        service: A key of :data:`FAKES` (``"oss"``, ``"maxcompute"``, ...).
        real: Builds the real SDK client (imports the SDK itself).
        args, kwargs: The client's arguments, handed to the fake as well (it may check that
            credentials are there, and must neither keep nor write them).

    Raises:
        ConfigError: Under the fake cloud: a bad ``HPO_TOOLS_FAKE_CLOUD`` or no fake for
            ``service``.
    """
    root = fake_root()
    if root is None:
        return real(*args, **kwargs)
    client = _fake_factory(service)(root, *args, **kwargs)
    _logger.info("fake cloud: %s client is %s (%s)", service, type(client).__name__, root)
    return client  # type: ignore[no-any-return]
