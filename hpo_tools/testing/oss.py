"""``FakeBucket``: an in-memory stand-in for ``oss2.Bucket``, for tests. **A fake, not OSS.**

It implements exactly the ``oss2.Bucket`` methods :mod:`hpo_tools.storage` calls, with oss2's
signatures, result attributes and exception classes, so the shipped storage code (including the
real ``oss2.ObjectIterator`` paging over ``list_objects``) runs unchanged against it::

    bucket = FakeBucket()
    store = Storage(bucket_factory=lambda name: bucket)

Behaviour copied from OSS: a missing key raises ``oss2.exceptions.NoSuchKey`` (``NotFound`` for
HEAD); a byte range starting at or past the end is ignored (whole object, HTTP 200) unless the
request carries ``x-oss-range-behavior: standard``, which makes it a 416 ``InvalidRange``; a valid
range answers 206. Every call is recorded in :attr:`FakeBucket.calls` so tests can check, e.g.,
that a tail read used a ranged GET. No network, no credentials.

:class:`FakeDirectoryBucket` is the same fake with its objects in files (``ROOT/<bucket>/<key>``):
the OSS of the fake cloud (``HPO_TOOLS_FAKE_CLOUD=ROOT``, :mod:`hpo_tools.cloud`), shared by
every process that uses the directory.
"""

from __future__ import annotations

import contextlib
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "FakeDirectoryBucket",
    "FakeBucket",
    "FakeGetObjectResult",
    "FakeHeadObjectResult",
    "FakeListObjectsResult",
]


@dataclass
class FakeGetObjectResult:
    """What ``get_object`` returns: ``read()`` the body; ``status`` 200 or 206."""

    body: bytes
    status: int

    @property
    def content_length(self) -> int:
        return len(self.body)

    def read(self) -> bytes:
        return self.body


@dataclass
class FakeHeadObjectResult:
    """What ``head_object`` returns (only the attribute storage reads)."""

    content_length: int
    status: int = 200


@dataclass
class FakeListObjectsResult:
    """What ``list_objects`` returns, with the attributes ``oss2.ObjectIterator`` reads."""

    object_list: list[Any]
    prefix_list: list[str]
    is_truncated: bool
    next_marker: str
    status: int = 200


def _server_error(cls_name: str, status: int, code: str, message: str) -> Exception:
    import oss2

    cls = getattr(oss2.exceptions, cls_name)
    return cls(
        status, {"x-oss-request-id": "fake-request"}, b"", {"Code": code, "Message": message}
    )


def _no_such_key() -> Exception:
    return _server_error("NoSuchKey", 404, "NoSuchKey", "The specified key does not exist.")


class FakeBucket:
    """In-memory ``oss2.Bucket`` stand-in (a fake for tests).

    Args:
        bucket_name: Reported as ``bucket_name`` like the real object.
        objects: Initial contents, key -> bytes.

    Attributes:
        objects: The stored objects, key -> bytes (tests may read or change it directly).
        calls: ``(method, args, kwargs)`` for every call, in order.
    """

    def __init__(self, bucket_name: str = "fake-bucket", objects: dict[str, bytes] | None = None):
        self.bucket_name = bucket_name
        self.objects: dict[str, bytes] = dict(objects or {})
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self._lock = threading.Lock()

    def _record(self, method: str, *args: Any, **kwargs: Any) -> None:
        self.calls.append((method, args, kwargs))

    # -- where objects are kept (FakeDirectoryBucket keeps them in files) ----------------------

    def _get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise _no_such_key() from None

    def _put(self, key: str, body: bytes) -> None:
        self.objects[key] = body

    def _has(self, key: str) -> bool:
        return key in self.objects

    def _sizes(self, prefix: str) -> dict[str, int]:
        """Key -> size of every object whose key starts with ``prefix``."""
        return {k: len(v) for k, v in self.objects.items() if k.startswith(prefix)}

    # -- the oss2.Bucket methods storage calls ---------------------------------------------

    def get_object(
        self,
        key: str,
        byte_range: tuple[int | None, int | None] | None = None,
        headers: dict[str, str] | None = None,
        progress_callback: Any = None,
        process: Any = None,
        params: Any = None,
    ) -> FakeGetObjectResult:
        """Like ``oss2.Bucket.get_object``; ``byte_range`` is inclusive ``(first, last)``."""
        self._record("get_object", key, byte_range=byte_range, headers=headers)
        with self._lock:
            data = self._get(key)
        if byte_range is None or byte_range == (None, None):
            return FakeGetObjectResult(data, 200)
        first, last = byte_range
        standard = (headers or {}).get("x-oss-range-behavior") == "standard"
        if first is None:  # suffix range: the last `last` bytes
            start, end = max(len(data) - int(last or 0), 0), len(data)
        else:
            start, end = first, len(data) if last is None else min(last + 1, len(data))
        if start >= len(data) or start >= end:
            if standard:
                raise _server_error(
                    "ServerError", 416, "InvalidRange", "The requested range is not satisfiable"
                )
            return FakeGetObjectResult(data, 200)
        return FakeGetObjectResult(data[start:end], 206)

    def put_object(
        self,
        key: str,
        data: bytes | str,
        headers: dict[str, str] | None = None,
        progress_callback: Any = None,
    ) -> FakeHeadObjectResult:
        """Like ``oss2.Bucket.put_object``: replaces the whole object at once."""
        self._record("put_object", key, data)
        body = data.encode("utf-8") if isinstance(data, str) else bytes(data)
        with self._lock:
            self._put(key, body)
        return FakeHeadObjectResult(len(body))

    def object_exists(self, key: str, headers: dict[str, str] | None = None) -> bool:
        """Like ``oss2.Bucket.object_exists``."""
        self._record("object_exists", key)
        with self._lock:
            return self._has(key)

    def head_object(
        self, key: str, headers: dict[str, str] | None = None, params: Any = None
    ) -> FakeHeadObjectResult:
        """Like ``oss2.Bucket.head_object``: ``NotFound`` (no body on HEAD) when missing."""
        self._record("head_object", key)
        with self._lock:
            if not self._has(key):
                raise _server_error("NotFound", 404, "", "")
            return FakeHeadObjectResult(len(self._get(key)))

    def list_objects(
        self,
        prefix: str = "",
        delimiter: str = "",
        marker: str = "",
        max_keys: int = 100,
        headers: dict[str, str] | None = None,
    ) -> FakeListObjectsResult:
        """Like ``oss2.Bucket.list_objects``: one page of keys after ``marker``, in key order."""
        import oss2

        self._record("list_objects", prefix=prefix, delimiter=delimiter, marker=marker)
        with self._lock:
            sizes = self._sizes(prefix)
        keys: set[str] = set()
        common: set[str] = set()  # "directories", as OSS lists them with a delimiter
        for key in sizes:
            rest = key[len(prefix) :]
            if delimiter and delimiter in rest:
                common.add(prefix + rest.split(delimiter, 1)[0] + delimiter)
            else:
                keys.add(key)
        remaining = sorted(e for e in keys | common if e > marker)
        page, truncated = remaining[:max_keys], len(remaining) > max_keys
        objects = [
            oss2.models.SimplifiedObjectInfo(e, 0, "fake-etag", "Normal", sizes[e], "Standard")
            for e in page
            if e in keys
        ]
        prefixes = [e for e in page if e in common]
        return FakeListObjectsResult(objects, prefixes, truncated, page[-1] if truncated else "")


_TEMP_SUFFIX = ".fake-oss.tmp"


class FakeDirectoryBucket(FakeBucket):
    """A :class:`FakeBucket` whose objects are files: key ``a/b.config`` of bucket ``name`` is
    the file ``root/name/a/b.config`` (a fake, not OSS).

    Everything :class:`FakeBucket` does (ranges, oss2's exceptions, :attr:`calls`) holds; in
    addition, as on OSS:

    - the bucket must exist: with no directory ``root/name`` every call raises
      ``oss2.exceptions.NoSuchBucket``;
    - a key is a path inside the bucket: a key with an empty, ``.`` or ``..`` part (or ending
      in ``/``) raises ``oss2.exceptions.InvalidObjectName``, so nothing outside
      ``root/name`` is ever read or written;
    - a write replaces the whole object at once (temp file beside it + ``os.replace``), so a
      reader in another process never sees half an object; directories are created as needed.

    Listing walks the directory: files are objects, directories only prefixes (OSS has no
    empty directories). :attr:`objects` is not used.

    Args:
        root: The directory holding one directory per bucket.
        bucket_name: The bucket (one directory under ``root``).
    """

    def __init__(self, root: str | os.PathLike[str], bucket_name: str) -> None:
        super().__init__(bucket_name)
        self.root = Path(root)
        self.directory = self.root / bucket_name

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if not key or any(part in ("", ".", "..") for part in parts):
            raise _server_error("InvalidObjectName", 400, "InvalidObjectName",
                                f"The object name {key!r} is not a path inside the bucket.")
        self._check_bucket()
        return self.directory.joinpath(*parts)

    def _check_bucket(self) -> None:
        if not self.directory.is_dir():
            raise _server_error("NoSuchBucket", 404, "NoSuchBucket",
                                f"The specified bucket does not exist ({self.directory}).")

    @contextlib.contextmanager
    def _io(self, key: str) -> Iterator[None]:
        """A file system error as the server error OSS would send (not an OSError)."""
        try:
            yield
        except OSError as err:
            raise _server_error("ServerError", 500, "FakeCloudIOError",
                                f"{key}: {err.strerror or err}") from err

    def _get(self, key: str) -> bytes:
        path = self._path(key)
        if not path.is_file():
            raise _no_such_key()
        with self._io(key):
            return path.read_bytes()

    def _put(self, key: str, body: bytes) -> None:
        path = self._path(key)
        with self._io(key):
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}"
                                  f"{_TEMP_SUFFIX}")
            try:
                temp.write_bytes(body)
                os.replace(temp, path)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    temp.unlink()

    def _has(self, key: str) -> bool:
        return self._path(key).is_file()

    def _sizes(self, prefix: str) -> dict[str, int]:
        self._check_bucket()
        sizes: dict[str, int] = {}
        # Walk only below the deepest directory the prefix names (no key has an empty, "." or
        # ".." part, so a prefix with one matches nothing: never walk outside the bucket).
        folders = prefix.split("/")[:-1]
        if any(part in ("", ".", "..") for part in folders):
            return sizes
        start = self.directory.joinpath(*folders)
        for folder, dirs, files in os.walk(start):
            dirs.sort()
            for name in files:
                if name.endswith(_TEMP_SUFFIX):
                    continue
                path = Path(folder, name)
                key = path.relative_to(self.directory).as_posix()
                if key.startswith(prefix):
                    with contextlib.suppress(FileNotFoundError):  # removed meanwhile
                        sizes[key] = path.stat().st_size
        return sizes
