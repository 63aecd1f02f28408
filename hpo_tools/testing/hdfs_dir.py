"""``FakeDirectoryWebHdfs``: the fake cloud's HDFS (``HPO_TOOLS_FAKE_CLOUD=DIR``). **A fake, not
HDFS**: nothing leaves the machine.

It answers the calls :class:`hpo_tools.hdfs.WebHdfsClient` makes (``open``, ``status``,
``list_status``, ``create``, ``rename``, ``delete``) from the directory ``DIR/.hdfs``: the HDFS
path ``/user/a/b`` of any namenode is the file ``DIR/.hdfs/user/a/b``. Results and errors have
WebHDFS's shapes (``FileStatus`` dicts; :class:`~hpo_tools.hdfs.WebHdfsError` with
``FileNotFoundException``, ``FileAlreadyExistsException``), so
:class:`hpo_tools.hdfs.HdfsStorage` runs its own code over it: tail reads, atomic writes by
rename, listing. A real WebHDFS round trip is tested with :mod:`hpo_tools.testing.webhdfs`.
"""

from __future__ import annotations

import os
import posixpath
from pathlib import Path
from typing import Any

from hpo_tools.hdfs import WebHdfsError

__all__ = ["FakeDirectoryWebHdfs", "HDFS_DIR"]

#: Where the fake cloud keeps HDFS files, under its directory.
HDFS_DIR = ".hdfs"


class FakeDirectoryWebHdfs:
    """WebHdfsClient's calls over ``root/.hdfs`` (``address`` and ``user`` are kept for
    messages, as the real client's)."""

    def __init__(self, root: Path, address: str, *, user: str | None = None,
                 timeout: float = 0.0) -> None:
        self.base = Path(root) / HDFS_DIR
        self.address = address
        self.user = user
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"FakeDirectoryWebHdfs({str(self.base)!r}, user={self.user!r})"

    def _file(self, path: str) -> Path:
        parts = [p for p in posixpath.normpath("/" + path).split("/") if p]
        if any(p in (".", "..") for p in parts):
            raise self._error(400, "IllegalArgumentException", f"Invalid path name {path}")
        return self.base.joinpath(*parts)

    def _error(self, status: int, exception: str, detail: str) -> WebHdfsError:
        return WebHdfsError(self.address, status, exception, detail)

    def _missing(self, path: str) -> WebHdfsError:
        return self._error(404, "FileNotFoundException", f"File does not exist: {path}")

    def _status(self, file: Path, suffix: str) -> dict[str, Any]:
        info = file.stat()
        directory = file.is_dir()
        return {"type": "DIRECTORY" if directory else "FILE",
                "length": 0 if directory else info.st_size, "pathSuffix": suffix,
                "modificationTime": int(info.st_mtime * 1000), "owner": self.user or "",
                "permission": "755" if directory else "644", "replication": 0 if directory else 3}

    def open(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        file = self._file(path)
        if file.is_dir():
            raise self._error(404, "FileNotFoundException", f"Path is not a file: {path}")
        try:
            with open(file, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                if offset and offset >= size:
                    raise self._error(403, "IOException",
                                      f"Offset={offset} out of the range [0, {size})")
                handle.seek(offset)
                return handle.read() if length is None else handle.read(length)
        except FileNotFoundError:
            raise self._missing(path) from None

    def status(self, path: str) -> dict[str, Any]:
        file = self._file(path)
        if not file.exists():
            raise self._missing(path)
        return self._status(file, "")

    def list_status(self, path: str) -> list[dict[str, Any]]:
        file = self._file(path)
        if not file.exists():
            raise self._missing(path)
        if file.is_file():
            return [self._status(file, "")]
        return [self._status(child, child.name) for child in sorted(file.iterdir())]

    def create(self, path: str, data: bytes, *, overwrite: bool = False) -> None:
        file = self._file(path)
        if file.exists() and not overwrite:
            raise self._error(403, "FileAlreadyExistsException", f"{path} already exists")
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_bytes(bytes(data))

    def rename(self, src: str, dst: str, *, overwrite: bool = False) -> bool:
        source, target = self._file(src), self._file(dst)
        if not source.exists():
            if overwrite:
                raise self._missing(src)
            return False
        if target.exists() and not overwrite:
            return False
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
        return True

    def delete(self, path: str, *, recursive: bool = False) -> bool:
        file = self._file(path)
        if not file.exists():
            return False
        if file.is_dir():
            if any(file.iterdir()) and not recursive:
                raise self._error(403, "PathIsNotEmptyDirectoryException",
                                  f"{path} is non empty")
            import shutil

            shutil.rmtree(file)
        else:
            file.unlink()
        return True
