"""HDFS through WebHDFS: ``hdfs://`` paths read and written over the namenode's HTTP REST API.

::

    from hpo_tools.hdfs import HdfsStorage
    hdfs = HdfsStorage()        # where WebHDFS is and who we are: from the environment
    hdfs.read_bytes("hdfs://nn:9000/m/eval_val/events.out.tfevents.1", offset=4096)   # new bytes
    hdfs.write_bytes("hdfs://nn:9000/exp/pipeline.config", data)   # temp file, then RENAME
    hdfs.list_dir("hdfs://nn:9000/m/eval_val")                     # files directly in it

:mod:`hpo_tools.storage` hands every ``hdfs://`` path here; nothing else imports this module.

**Where WebHDFS is.** An ``hdfs://HOST:PORT/PATH`` names the namenode's RPC port (8020, 9000),
which speaks Hadoop's binary protocol; WebHDFS is served on the namenode's HTTP port
(``dfs.namenode.http-address``: 9870, 50070 on Hadoop 2). So the address comes from
``HPO_TOOLS_WEBHDFS`` (``http://namenode:9870``, or ``https://...``; a path prefix such as a
Knox gateway's is kept), which serves every ``hdfs://`` path of the process whatever its host;
without it, a path whose port *is* a namenode HTTP port (9870, 50070; 9871, 50470 for HTTPS) is
sent to its own host and port; anything else is a :class:`~hpo_tools.errors.StorageError`
saying what to set. :func:`webhdfs_address` is that decision, without any network call.

**Who we are.** Simple authentication: ``user.name`` is ``HADOOP_USER_NAME`` when set (as the
Hadoop client does), else the login name. Kerberos (SPNEGO) and delegation tokens are not
supported: a 401 says so.

**The protocol** (the Hadoop WebHDFS REST API): ``OPEN`` (``offset``, ``length``) and ``CREATE``
are answered by the namenode with a 307 redirect to a datanode, which this client follows itself
(once; ``CREATE``'s data is sent to the datanode only); ``GETFILESTATUS``, ``LISTSTATUS``,
``RENAME`` (with ``renameoptions=OVERWRITE``, HDFS's atomic replace) and ``DELETE`` are answered
by the namenode. Errors are the ``RemoteException`` JSON, turned into one-line
``StorageError``\\ s that start with the ``hdfs://`` path. Only the standard library is used;
every request has a timeout (30 s by default) and never goes through an HTTP proxy (namenodes
and datanodes are cluster-internal addresses).
"""

from __future__ import annotations

import contextlib
import getpass
import json
import logging
import os
import posixpath
import threading
import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any, Callable, NamedTuple

from hpo_tools import cloud
from hpo_tools.errors import StorageError

__all__ = [
    "ENV_WEBHDFS",
    "ENV_USER",
    "HTTP_PORTS",
    "DEFAULT_TIMEOUT",
    "HdfsPath",
    "HdfsStorage",
    "WebHdfsClient",
    "WebHdfsError",
    "hadoop_user",
    "is_hdfs",
    "split_url",
    "webhdfs_address",
]

_logger = logging.getLogger(__name__)

ENV_WEBHDFS = "HPO_TOOLS_WEBHDFS"
ENV_USER = "HADOOP_USER_NAME"
#: Namenode HTTP(S) ports: an ``hdfs://`` path written with one of them is served there.
HTTP_PORTS: Mapping[int, str] = {9870: "http", 50070: "http", 9871: "https", 50470: "https"}
DEFAULT_TIMEOUT = 30.0
_PREFIX = "/webhdfs/v1"
_MAX_ERROR_BODY = 64 * 1024
_MAX_MESSAGE = 300
_REDIRECTS = (301, 302, 303, 307, 308)
_SET_IT = (
    f"set {ENV_WEBHDFS} to the namenode's WebHDFS address (dfs.namenode.http-address), e.g. "
    f"{ENV_WEBHDFS}=http://{{host}}:9870 (port 50070 on Hadoop 2)"
)


def is_hdfs(path: str) -> bool:
    """True for ``hdfs://...`` paths."""
    return path.startswith("hdfs://")


class HdfsPath(NamedTuple):
    """An ``hdfs://`` URL taken apart: ``authority`` (``host:port``, may be empty) and the
    absolute, normalised HDFS ``path`` (``/a/b``; ``/`` for the root)."""

    url: str
    authority: str
    host: str
    port: int | None
    path: str

    def child(self, name: str) -> str:
        """The ``hdfs://`` URL of ``name`` directly inside this path."""
        base = "" if self.path == "/" else self.path
        return f"hdfs://{self.authority}{base}/{name}"


def split_url(url: str) -> HdfsPath:
    """``hdfs://HOST:PORT/PATH`` -> :class:`HdfsPath`.

    Raises:
        StorageError: Not an ``hdfs://`` URL, a bad port, a query or fragment, or a ``..``.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "hdfs":
        raise StorageError(f"{url}: expected hdfs://HOST:PORT/PATH")
    if parts.query or parts.fragment or "?" in url or "#" in url:
        raise StorageError(f"{url}: expected hdfs://HOST:PORT/PATH (no '?' or '#' in HDFS paths)")
    try:
        port = parts.port
    except ValueError:
        raise StorageError(f"{url}: the port is not a number") from None
    raw = parts.path or "/"
    if ".." in raw.split("/"):
        raise StorageError(f"{url}: '..' is not allowed in an HDFS path")
    path = posixpath.normpath(raw)
    if path.startswith("//"):  # normpath keeps a leading "//"
        path = "/" + path.lstrip("/")
    return HdfsPath(url, parts.netloc, parts.hostname or "", port, path)


def webhdfs_address(url: str, environ: Mapping[str, str] | None = None) -> str:
    """The WebHDFS base address (``http://nn:9870``) that serves ``url``; no network call.

    ``HPO_TOOLS_WEBHDFS`` when set, else the path's own host and port when the port is a
    namenode HTTP port (:data:`HTTP_PORTS`).

    Raises:
        StorageError: ``url`` is malformed, ``HPO_TOOLS_WEBHDFS`` is malformed, or neither
            gives an address (the message says what to set).
    """
    parsed = split_url(url)
    env = os.environ if environ is None else environ
    configured = env.get(ENV_WEBHDFS, "").strip()
    if configured:
        return _checked_address(configured)
    scheme = HTTP_PORTS.get(parsed.port or 0)
    if scheme and parsed.host:
        return f"{scheme}://{parsed.authority.rpartition('@')[2]}"
    host = parsed.host or "NAMENODE"
    if parsed.port:
        why = f"port {parsed.port} is not a namenode HTTP port (9870, 50070)"
    elif parsed.host:
        why = "no port given"
    else:
        why = "no namenode given"
    raise StorageError(
        f"{url}: HDFS is read through WebHDFS and {why}; " + _SET_IT.format(host=host)
    )


def _checked_address(value: str) -> str:
    """``HPO_TOOLS_WEBHDFS`` checked: ``http(s)://HOST[:PORT][/prefix]``, trailing ``/`` cut."""
    parts = urllib.parse.urlsplit(value)
    if parts.username is not None or parts.password is not None:
        # Never echo the value: it holds a credential.
        raise StorageError(
            f"{ENV_WEBHDFS}: credentials in the address are not supported (WebHDFS is used "
            "with simple authentication: user.name from HADOOP_USER_NAME)"
        )
    try:
        port_ok = parts.port is not None or ":" not in parts.netloc.rpartition("]")[2]
    except ValueError:
        port_ok = False
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or not port_ok:
        raise StorageError(
            f"{ENV_WEBHDFS}={value}: expected http://HOST:PORT, the namenode's WebHDFS "
            "address (dfs.namenode.http-address), e.g. http://namenode:9870"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def hadoop_user(environ: Mapping[str, str] | None = None) -> str | None:
    """``HADOOP_USER_NAME``, else the login name, else None (then no ``user.name`` is sent)."""
    env = os.environ if environ is None else environ
    user = env.get(ENV_USER, "").strip()
    if user:
        return user
    try:
        return getpass.getuser() or None
    except (OSError, KeyError, ImportError):  # no passwd entry (some containers)
        return None


class WebHdfsError(StorageError):
    """A WebHDFS call failed. ``exception`` is the ``RemoteException``'s short Java class name
    (``FileNotFoundException``) or ``""``; ``status`` the HTTP status or None when the server
    was not reached; ``detail`` the server's message or the network error, one line."""

    def __init__(
        self, address: str, status: int | None, exception: str, detail: str
    ) -> None:
        self.address = address
        self.status = status
        self.exception = exception
        self.detail = detail
        super().__init__(self.describe())

    def describe(self) -> str:
        """``HTTP 403 AccessControlException: Permission denied: ...`` and the like."""
        if self.status is None:
            return f"cannot reach WebHDFS at {self.address} ({self.detail})"
        head = f"HTTP {self.status}" + (f" {self.exception}" if self.exception else "")
        return f"{head}: {self.detail}" if self.detail else head


class _Response(NamedTuple):
    status: int
    headers: Any
    body: bytes


class WebHdfsClient:
    """The WebHDFS REST calls hpo-tools makes against one namenode, by HDFS path (``/a/b``).

    Args:
        address: The namenode's WebHDFS base address, ``http://namenode:9870``.
        user: Sent as ``user.name`` (simple authentication); None sends none.
        timeout: Seconds each HTTP request may wait on the network.

    Every failure raises :class:`WebHdfsError`.

    Example:
        >>> client = WebHdfsClient("http://namenode:9870", user="hadoop")
        >>> client.url("/a b/c", "OPEN", {"offset": 5})
        'http://namenode:9870/webhdfs/v1/a%20b/c?op=OPEN&user.name=hadoop&offset=5'
    """

    def __init__(
        self, address: str, *, user: str | None = None, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.address = address.rstrip("/")
        self.user = user
        self.timeout = float(timeout)
        self._opener: Any = None

    def __repr__(self) -> str:
        return f"WebHdfsClient({self.address!r}, user={self.user!r}, timeout={self.timeout})"

    # ------------------------------------------------------------ operations

    def open(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        """``OPEN``: the bytes of ``path`` from ``offset`` (``length`` of them, or to the end).

        The namenode refuses an offset at or past the end of a non-empty file; see
        :meth:`HdfsStorage.read_bytes` for a tail read that never sends one.
        """
        params: dict[str, Any] = {}
        if offset:
            params["offset"] = offset
        if length is not None:
            params["length"] = length
        return self._call("GET", path, "OPEN", params, follow=True).body

    def status(self, path: str) -> dict[str, Any]:
        """``GETFILESTATUS``: the ``FileStatus`` object (``type``, ``length``, ...)."""
        data = self._json(self._call("GET", path, "GETFILESTATUS"), "FileStatus")
        if not isinstance(data, dict):
            raise self._bad_answer("GETFILESTATUS")
        return data

    def list_status(self, path: str) -> list[dict[str, Any]]:
        """``LISTSTATUS``: the ``FileStatus`` of each entry (a file lists itself, suffix ``""``)."""
        data = self._json(self._call("GET", path, "LISTSTATUS"), "FileStatuses")
        entries = data.get("FileStatus") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise self._bad_answer("LISTSTATUS")
        return [e for e in entries if isinstance(e, dict)]

    def create(self, path: str, data: bytes, *, overwrite: bool = False) -> None:
        """``CREATE`` in two steps: the namenode names a datanode (307), the data goes there."""
        params = {"overwrite": "true" if overwrite else "false"}
        self._call("PUT", path, "CREATE", params, data=bytes(data), follow=True)

    def rename(self, src: str, dst: str, *, overwrite: bool = False) -> bool:
        """``RENAME`` ``src`` to ``dst``. With ``overwrite`` it is HDFS's rename with
        ``OVERWRITE`` (``dst`` replaced atomically, errors raised, True); without, the
        boolean of the plain rename (False when ``dst`` exists or ``src`` does not)."""
        params = {"destination": dst}
        if overwrite:
            params["renameoptions"] = "OVERWRITE"
        response = self._call("PUT", src, "RENAME", params)
        if overwrite:
            return True
        return bool(self._json(response, "boolean"))

    def delete(self, path: str, *, recursive: bool = False) -> bool:
        """``DELETE``: True when something was deleted."""
        params = {"recursive": "true" if recursive else "false"}
        return bool(self._json(self._call("DELETE", path, "DELETE", params), "boolean"))

    # ------------------------------------------------------------ HTTP

    def url(self, path: str, op: str, params: Mapping[str, Any] | None = None) -> str:
        """The request URL of ``op`` on ``path``."""
        query: dict[str, Any] = {"op": op}
        if self.user:
            query["user.name"] = self.user
        query.update(params or {})
        quoted = urllib.parse.quote(path if path.startswith("/") else "/" + path, safe="/")
        return f"{self.address}{_PREFIX}{quoted}?{urllib.parse.urlencode(query)}"

    def _call(
        self,
        method: str,
        path: str,
        op: str,
        params: Mapping[str, Any] | None = None,
        *,
        data: bytes | None = None,
        follow: bool = False,
    ) -> _Response:
        """One request; with ``follow``, a redirect is followed once, ``data`` sent only there."""
        url = self.url(path, op, params)
        first_body = b"" if method in ("PUT", "POST") else None
        response = self._send(method, url, data if not follow else first_body)
        if follow and response.status in _REDIRECTS:
            location = response.headers.get("Location")
            if not location:
                raise self._bad_answer(op, f"HTTP {response.status} without a Location")
            response = self._send(method, location, data if data is not None else first_body)
        elif follow and data is not None:  # the data would never have been sent
            raise self._bad_answer(op, f"HTTP {response.status}, not a redirect to a datanode")
        if response.status in _REDIRECTS:
            raise self._bad_answer(op, f"unexpected HTTP {response.status} redirect")
        return response

    def _send(self, method: str, url: str, data: bytes | None) -> _Response:
        import http.client
        import socket
        import urllib.error
        import urllib.request

        request = urllib.request.Request(url, data=data, method=method)
        if data:
            request.add_header("Content-Type", "application/octet-stream")
        try:
            with self._build_opener().open(request, timeout=self.timeout) as answer:
                return _Response(answer.status, answer.headers, answer.read())
        except urllib.error.HTTPError as err:
            try:
                if err.code in _REDIRECTS:
                    return _Response(err.code, err.headers, b"")
                body = err.read(_MAX_ERROR_BODY) if err.fp is not None else b""
            except OSError:
                body = b""
            finally:
                err.close()
            raise self._error(err.code, body) from None
        except urllib.error.URLError as err:
            raise WebHdfsError(self.address, None, "", _one_line(str(err.reason))) from err
        except (TimeoutError, socket.timeout) as err:
            raise WebHdfsError(
                self.address, None, "", f"no answer within {self.timeout:g} s"
            ) from err
        except (OSError, http.client.HTTPException) as err:
            detail = _one_line(str(err)) or type(err).__name__
            raise WebHdfsError(self.address, None, "", detail) from err

    def _build_opener(self) -> Any:
        if self._opener is None:
            import urllib.request

            class _NoRedirect(urllib.request.HTTPRedirectHandler):
                """Hands redirects back: the client follows them itself (PUT data included)."""

                def redirect_request(self, *args: Any, **kwargs: Any) -> None:
                    return None

            # No ProxyHandler entries: an http_proxy meant for the internet must not carry
            # requests to the cluster's namenode and datanodes.
            self._opener = urllib.request.build_opener(
                urllib.request.ProxyHandler({}), _NoRedirect()
            )
        return self._opener

    def _error(self, status: int, body: bytes) -> WebHdfsError:
        try:
            remote = json.loads(body.decode("utf-8")).get("RemoteException")
        except (ValueError, UnicodeDecodeError, AttributeError):
            remote = None
        if isinstance(remote, dict):
            exception = str(remote.get("exception") or remote.get("javaClassName") or "")
            exception = exception.rsplit(".", 1)[-1]
            return WebHdfsError(
                self.address, status, exception, _one_line(str(remote.get("message") or ""))
            )
        if status == 401:
            detail = "the cluster asks for Kerberos (SPNEGO), which hpo-tools does not support"
        else:
            detail = f"not a WebHDFS answer; is {self.address} the namenode's HTTP address?"
        return WebHdfsError(self.address, status, "", detail)

    def _json(self, response: _Response, key: str) -> Any:
        try:
            data = json.loads(response.body.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise self._bad_answer(key, "the answer is not JSON") from None
        if not isinstance(data, dict) or key not in data:
            raise self._bad_answer(key, f"no {key!r} in the answer")
        return data[key]

    def _bad_answer(self, what: str, detail: str = "") -> WebHdfsError:
        return WebHdfsError(
            self.address, 200, "", f"unexpected {what} answer" + (f": {detail}" if detail else "")
        )


ClientFactory = Callable[..., Any]


class HdfsStorage:
    """What :class:`hpo_tools.storage.Storage` does with ``hdfs://`` paths.

    Args:
        address: The WebHDFS address for every path; default :func:`webhdfs_address` (from
            ``HPO_TOOLS_WEBHDFS`` or the path), looked up on each call.
        user: ``user.name``; default :func:`hadoop_user`, looked up on each call.
        timeout: Seconds each HTTP request may wait.
        environ: The environment to read (default ``os.environ``).
        client_factory: Builds the client for ``(address, user=, timeout=)``; default
            :class:`WebHdfsClient` (through :func:`hpo_tools.cloud.build`, so a fake cloud
            never reaches a real namenode).

    Example:
        >>> hdfs = HdfsStorage(address="http://127.0.0.1:9870")
        >>> hdfs.client("hdfs://nn:9000/x").address
        'http://127.0.0.1:9870'
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        user: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        environ: Mapping[str, str] | None = None,
        client_factory: ClientFactory | None = None,
    ) -> None:
        self._address = None if address is None else _checked_address(address)
        self._user = user
        self._timeout = timeout
        self._environ = environ
        self._client_factory = client_factory
        self._clients: dict[tuple[str, str | None], Any] = {}
        self._lock = threading.Lock()

    def client(self, url: str) -> Any:
        """The client that serves ``url`` (one per address and user, reused)."""
        address = self._address or webhdfs_address(url, self._environ)
        user = self._user if self._user is not None else hadoop_user(self._environ)
        key = (address, user)
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                if self._client_factory is not None:
                    client = self._client_factory(address, user=user, timeout=self._timeout)
                else:
                    client = cloud.build(
                        "hdfs", WebHdfsClient, address, user=user, timeout=self._timeout
                    )
                self._clients[key] = client
                _logger.debug("WebHDFS at %s as user %s", address, user)
        return client

    # ------------------------------------------------------------ storage's interface

    def read_bytes(self, url: str, offset: int = 0) -> bytes:
        """The bytes of ``url`` from ``offset`` to its end; ``b""`` when offset >= size.

        ``offset == 0`` is one ``OPEN``. A tail read (``offset > 0``) asks ``GETFILESTATUS``
        first and sends ``OPEN`` with ``offset`` and ``length`` only when the file grew (the
        namenode answers an offset at or past the end with an error, not with nothing).
        """
        parsed = split_url(url)
        client = self.client(url)
        if offset == 0:
            with _errors(url, "read", client):
                return client.open(parsed.path)
        with _errors(url, "read", client):
            status = client.status(parsed.path)
        if status.get("type") == "DIRECTORY":
            raise StorageError(f"{url}: is a directory, expected a file")
        length = int(status.get("length") or 0)
        if offset >= length:
            return b""
        with _errors(url, "read", client):
            return client.open(parsed.path, offset, length - offset)

    def write_bytes(self, url: str, data: bytes) -> None:
        """Write ``data`` to ``url`` atomically: ``CREATE`` a temp file beside it
        (``.<name>.<pid>.<hex>.tmp``), then ``RENAME`` it over ``url`` (``OVERWRITE``); a
        reader sees the old file or the new one. The temp file is deleted when the rename fails.
        """
        parsed = split_url(url)
        if parsed.path == "/":
            raise StorageError(f"{url}: expected a file path, got the root directory")
        client = self.client(url)
        parent, name = posixpath.split(parsed.path)
        tmp = posixpath.join(parent, f".{name}.{os.getpid()}.{os.urandom(4).hex()}.tmp")
        with _errors(url, "write", client):
            client.create(tmp, data, overwrite=False)
        try:
            with _errors(url, "write", client):
                client.rename(tmp, parsed.path, overwrite=True)
        except BaseException:
            try:
                client.delete(tmp)
            except StorageError as err:  # the rename's error is the one to report
                _logger.warning("could not delete the temp file %s on HDFS: %s", tmp, err)
            raise

    def exists(self, url: str) -> bool:
        """True when ``url`` is an existing file or directory."""
        parsed = split_url(url)
        client = self.client(url)
        try:
            client.status(parsed.path)
        except WebHdfsError as err:
            if err.exception == "FileNotFoundException":
                return False
            raise _storage_error(url, "check", client, err) from err
        return True

    def size(self, url: str) -> int:
        """Length of the file in bytes (0 for a directory)."""
        parsed = split_url(url)
        client = self.client(url)
        with _errors(url, "stat", client):
            return int(client.status(parsed.path).get("length") or 0)

    def list_dir(self, url: str) -> list[str]:
        """``hdfs://`` URLs of the files directly in ``url``, sorted; ``[]`` when it does not
        exist or is a file."""
        parsed = split_url(url)
        client = self.client(url)
        try:
            entries = client.list_status(parsed.path)
        except WebHdfsError as err:
            if err.exception == "FileNotFoundException":
                return []
            raise _storage_error(url, "list", client, err) from err
        names = [
            str(e.get("pathSuffix"))
            for e in entries
            if e.get("type") == "FILE" and e.get("pathSuffix")
        ]
        return sorted(parsed.child(name) for name in names)

    def list_tree(self, url: str) -> list[str]:
        """The files under the directory ``url`` at any depth, as ``/``-separated paths
        relative to it, sorted; ``[]`` when it does not exist (one ``LISTSTATUS`` per
        directory)."""
        parsed = split_url(url)
        client = self.client(url)
        found: list[str] = []
        pending = [""]
        while pending:
            relative = pending.pop()
            path = posixpath.join(parsed.path, relative) if relative else parsed.path
            try:
                entries = client.list_status(path)
            except WebHdfsError as err:
                if err.exception == "FileNotFoundException":
                    continue  # gone (or never there): nothing under it
                raise _storage_error(url, "list", client, err) from err
            for entry in entries:
                name = str(entry.get("pathSuffix") or "")
                if not name:  # the path is a file: it lists itself
                    continue
                joined = f"{relative}/{name}" if relative else name
                if entry.get("type") == "DIRECTORY":
                    pending.append(joined)
                elif entry.get("type") == "FILE":
                    found.append(joined)
        return sorted(found)


@contextlib.contextmanager
def _errors(url: str, action: str, client: Any) -> Iterator[None]:
    """Turn a WebHdfsError into a one-line StorageError starting with ``url``."""
    try:
        yield
    except WebHdfsError as err:
        raise _storage_error(url, action, client, err) from err


def _storage_error(url: str, action: str, client: Any, err: WebHdfsError) -> StorageError:
    """One line starting with the path: what failed and what to do about it."""
    user = getattr(client, "user", None)
    detail = err.detail
    if err.exception == "FileNotFoundException":
        if "not a file" in detail:
            return StorageError(f"{url}: is a directory, expected a file")
        return StorageError(f"{url}: no such file or directory on HDFS")
    if err.exception in ("AccessControlException", "SecurityException"):
        return StorageError(
            f"{url}: permission denied on HDFS for user {user or '(none)'} ({detail}); "
            f"set {ENV_USER} to a user that may {action} it"
        )
    if err.exception == "StandbyException":
        return StorageError(
            f"{url}: the namenode at {err.address} is the standby one; set {ENV_WEBHDFS} to "
            "the active namenode's address"
        )
    if err.status is None:
        return StorageError(
            f"{url}: cannot {action} it: cannot reach WebHDFS at {err.address} ({detail}); "
            f"is {ENV_WEBHDFS} the namenode's HTTP address?"
        )
    return StorageError(f"{url}: cannot {action} it on HDFS: {err.describe()}")


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= _MAX_MESSAGE else line[: _MAX_MESSAGE - 3] + "..."
