"""The fake cloud's clients: what :func:`hpo_tools.cloud.build` returns under
``HPO_TOOLS_FAKE_CLOUD=DIR``. **Fakes, not the cloud**: nothing leaves the machine.

Each factory takes the fake cloud's directory and then the real client factory's own arguments
(credentials included: checked where the real SDK would need them, never kept), and returns a
fake with the SDK object's methods:

- ``oss``: :class:`~hpo_tools.testing.oss.FakeDirectoryBucket`, ``oss://bucket/key`` being the
  file ``DIR/bucket/key``;
- ``maxcompute``: :class:`~hpo_tools.testing.odps_dir.FakeDirectoryODPS`, submissions recorded
  in ``DIR/.maxcompute/`` and instances RUNNING until stopped unless
  ``DIR/.maxcompute/plan.json`` / ``HPO_TOOLS_FAKE_CLOUD_JOBS`` say otherwise;
- ``hdfs``: :class:`~hpo_tools.testing.hdfs_dir.FakeDirectoryWebHdfs`, ``hdfs://nn:port/a/b``
  being the file ``DIR/.hdfs/a/b`` (the WebHDFS address is still required, as in a real run).

A new service's fake goes here (or in a module of its own) and is registered with one line in
:data:`hpo_tools.cloud.FAKES`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hpo_tools.errors import StorageError
from hpo_tools.testing.odps_dir import FakeDirectoryODPS
from hpo_tools.testing.oss import FakeDirectoryBucket

__all__ = ["hdfs_client", "odps_client", "oss_bucket"]


def oss_bucket(root: Path, credentials: Any, name: str) -> FakeDirectoryBucket:
    """Bucket ``name`` as the directory ``root/name`` (``storage._real_oss2_bucket``'s args).

    Raises:
        StorageError: An invalid bucket name, as ``oss2.Bucket`` refuses it.
    """
    import oss2

    if not oss2.utils.is_valid_bucket_name(name):
        raise StorageError(f"oss://{name}/: The bucket_name is invalid, please check it.")
    return FakeDirectoryBucket(root, name)


def odps_client(root: Path, **kwargs: Any) -> FakeDirectoryODPS:
    """The MaxCompute client, from ``odps.ODPS``'s keyword arguments."""
    return FakeDirectoryODPS(root, **kwargs)


def hdfs_client(root: Path, address: str, **kwargs: Any) -> Any:
    """The WebHDFS client of ``address`` (``hdfs.WebHdfsClient``'s arguments): HDFS paths are
    files under ``root/.hdfs``, whatever the namenode."""
    from hpo_tools.testing.hdfs_dir import FakeDirectoryWebHdfs

    return FakeDirectoryWebHdfs(root, address, **kwargs)
