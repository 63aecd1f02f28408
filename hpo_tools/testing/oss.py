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
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

__all__ = ["FakeBucket", "FakeGetObjectResult", "FakeHeadObjectResult", "FakeListObjectsResult"]


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

    def _get(self, key: str) -> bytes:
        try:
            return self.objects[key]
        except KeyError:
            raise _server_error(
                "NoSuchKey", 404, "NoSuchKey", "The specified key does not exist."
            ) from None

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
            self.objects[key] = body
        return FakeHeadObjectResult(len(body))

    def object_exists(self, key: str, headers: dict[str, str] | None = None) -> bool:
        """Like ``oss2.Bucket.object_exists``."""
        self._record("object_exists", key)
        with self._lock:
            return key in self.objects

    def head_object(
        self, key: str, headers: dict[str, str] | None = None, params: Any = None
    ) -> FakeHeadObjectResult:
        """Like ``oss2.Bucket.head_object``: ``NotFound`` (no body on HEAD) when missing."""
        self._record("head_object", key)
        with self._lock:
            if key not in self.objects:
                raise _server_error("NotFound", 404, "", "")
            return FakeHeadObjectResult(len(self.objects[key]))

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
            sizes = {k: len(v) for k, v in self.objects.items() if k.startswith(prefix)}
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
