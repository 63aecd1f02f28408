"""``WebHdfsServer``: a real WebHDFS REST server on localhost, backed by a directory.

Not a fake of an SDK: two real HTTP servers (``http.server``, each in a thread of its own) that
speak the protocol of the Hadoop WebHDFS REST API, so that :mod:`hpo_tools.hdfs` is tested over
real HTTP round trips, redirects included::

    with WebHdfsServer(tmp_path / "hdfs") as server:
        os.environ["HPO_TOOLS_WEBHDFS"] = server.url          # the namenode
        storage.write_text("hdfs://nn:9000/exp/pipeline.config", text)
        assert (tmp_path / "hdfs/exp/pipeline.config").read_text() == text

HDFS path ``/a/b`` is the file ``ROOT/a/b``: a test (or a job) writes event files there and the
server serves them as they grow. The two roles are the namenode's and a datanode's:

- namenode (:attr:`url`): ``GETFILESTATUS``, ``LISTSTATUS``, ``RENAME`` (plain: a ``boolean``;
  ``renameoptions=OVERWRITE``: HDFS's rename2, an empty 200 or an error), ``DELETE``,
  ``MKDIRS``; ``OPEN`` and ``CREATE`` answer ``307 Temporary Redirect`` to the datanode
  (``noredirect=true``: ``200 {"Location": ...}``), after the checks the namenode makes (a
  missing file; an ``offset`` at or past the end of a non-empty file; a ``CREATE`` over a
  directory or, without ``overwrite=true``, over a file);
- datanode (:attr:`datanode_url`): ``OPEN`` (``offset``, ``length``; a directory is
  ``Path is not a file``) and ``CREATE`` (the data; ``201 Created`` with a ``webhdfs://``
  ``Location``). A file being written is visible while it is written, as in HDFS.

Errors are ``RemoteException`` JSON with Hadoop's status codes (404 ``FileNotFoundException``,
403 ``IOException`` and its kinds, 400 ``IllegalArgumentException``). ``user.name`` is taken as
given (simple authentication; ``dr.who`` when absent). What tests steer:

- :attr:`requests`: every request, in order (role, method, op, HDFS path, query);
- :meth:`deny_writes` (``AccessControlException`` for writes under a path);
- :meth:`fail_next` (the next request of an op answers a given ``RemoteException``);
- :attr:`stall` (a ``threading.Event``: requests wait for it, at most 30 s: a server that
  stopped answering).
"""

from __future__ import annotations

import http.server
import json
import os
import posixpath
import shutil
import threading
import urllib.parse
from collections import deque
from pathlib import Path
from typing import Any, NamedTuple

__all__ = ["WebHdfsServer", "WebHdfsRequest"]

_PREFIX = "/webhdfs/v1"
_STALL_LIMIT = 30.0
_JAVA_CLASSES = {
    "FileNotFoundException": "java.io.FileNotFoundException",
    "IOException": "java.io.IOException",
    "IllegalArgumentException": "java.lang.IllegalArgumentException",
    "AccessControlException": "org.apache.hadoop.security.AccessControlException",
    "FileAlreadyExistsException": "org.apache.hadoop.fs.FileAlreadyExistsException",
    "ParentNotDirectoryException": "org.apache.hadoop.fs.ParentNotDirectoryException",
    "PathIsNotEmptyDirectoryException": "org.apache.hadoop.fs.PathIsNotEmptyDirectoryException",
    "StandbyException": "org.apache.hadoop.ipc.StandbyException",
    "SafeModeException": "org.apache.hadoop.hdfs.server.namenode.SafeModeException",
}
_NAMENODE_OPS = {
    "GET": ("OPEN", "GETFILESTATUS", "LISTSTATUS"),
    "PUT": ("CREATE", "MKDIRS", "RENAME"),
    "DELETE": ("DELETE",),
}
_DATANODE_OPS = {"GET": ("OPEN",), "PUT": ("CREATE",)}
_WRITE_OPS = ("CREATE", "MKDIRS", "RENAME", "DELETE")


class WebHdfsRequest(NamedTuple):
    """One request the server answered: ``role`` is ``"namenode"`` or ``"datanode"``."""

    role: str
    method: str
    op: str
    path: str
    query: dict

    @property
    def user(self) -> str | None:
        """The ``user.name`` it was sent with."""
        return self.query.get("user.name")


class _Answer(Exception):
    """Raised inside a handler: send this status, JSON body and headers."""

    def __init__(self, status: int, body: Any = None, headers: dict | None = None) -> None:
        super().__init__(status)
        self.status = status
        self.body = body
        self.headers = headers or {}


def _remote(status: int, exception: str, message: str) -> _Answer:
    java = _JAVA_CLASSES.get(exception, f"java.io.{exception}")
    return _Answer(status, {"RemoteException": {
        "exception": exception, "javaClassName": java, "message": message}})


class WebHdfsServer:
    """A WebHDFS namenode and datanode on localhost serving the directory ``root``.

    Args:
        root: The directory that holds the file system (created when missing).
        host: The address both servers listen on.

    Attributes:
        url: The namenode's address, ``http://127.0.0.1:PORT`` (the ``HPO_TOOLS_WEBHDFS`` value).
        datanode_url: The datanode's address (where ``OPEN``/``CREATE`` are redirected).
        requests: Every request answered, in order.
        stall: When set to an Event that is not set, every request waits for it (at most 30 s).
    """

    def __init__(self, root: str | os.PathLike[str], *, host: str = "127.0.0.1") -> None:
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.host = host
        self.requests: list[WebHdfsRequest] = []
        self.stall: threading.Event | None = None
        self._denied: list[str] = []
        self._failures: dict[tuple[str, str], deque] = {}
        self._lock = threading.RLock()
        self._servers: list[http.server.ThreadingHTTPServer] = []
        self._threads: list[threading.Thread] = []
        self.url = ""
        self.datanode_url = ""

    # ------------------------------------------------------------ life cycle

    def start(self) -> WebHdfsServer:
        """Start both servers (each on a free port); returns self."""
        if self._servers:
            return self
        for role in ("namenode", "datanode"):
            server = http.server.ThreadingHTTPServer((self.host, 0), _handler(self, role))
            server.daemon_threads = True
            thread = threading.Thread(
                target=server.serve_forever, kwargs={"poll_interval": 0.05},
                name=f"webhdfs-{role}", daemon=True,
            )
            thread.start()
            self._servers.append(server)
            self._threads.append(thread)
        self.url = f"http://{self.host}:{self._servers[0].server_address[1]}"
        self.datanode_url = f"http://{self.host}:{self._servers[1].server_address[1]}"
        return self

    def stop(self) -> None:
        """Stop both servers (a stalled request is released first)."""
        if self.stall is not None:
            self.stall.set()
        for server in self._servers:
            server.shutdown()
            server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers.clear()
        self._threads.clear()

    def __enter__(self) -> WebHdfsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ what tests steer

    def local_path(self, hdfs_path: str) -> Path:
        """The file behind the HDFS path ``/a/b``."""
        relative = posixpath.normpath("/" + hdfs_path.lstrip("/")).lstrip("/")
        if relative.split("/")[0] == "..":
            raise ValueError(f"{hdfs_path}: outside the file system")
        return self.root / relative if relative not in ("", ".") else self.root

    def deny_writes(self, hdfs_path: str) -> None:
        """Writes (CREATE, MKDIRS, RENAME, DELETE) at or under ``hdfs_path`` are refused with
        ``AccessControlException``, for every user."""
        with self._lock:
            self._denied.append(posixpath.normpath("/" + hdfs_path.lstrip("/")))

    def fail_next(
        self,
        op: str,
        status: int = 403,
        exception: str = "IOException",
        message: str = "injected failure",
        *,
        role: str = "namenode",
    ) -> None:
        """The next ``op`` request to ``role`` answers ``status`` with this RemoteException
        (``exception=""`` answers a non-JSON body instead)."""
        with self._lock:
            self._failures.setdefault((role, op.upper()), deque()).append(
                (status, exception, message)
            )

    def users(self) -> set:
        """The ``user.name`` values seen."""
        return {r.user for r in self.requests}

    # ------------------------------------------------------------ the protocol

    def _answer(self, role: str, method: str, target: str, body: bytes) -> _Answer:
        parts = urllib.parse.urlsplit(target)
        query = dict(urllib.parse.parse_qsl(parts.query, keep_blank_values=True))
        if not parts.path.startswith(_PREFIX):
            return _Answer(404, b"<html><body>Not Found</body></html>")
        raw = "/" + urllib.parse.unquote(parts.path[len(_PREFIX):]).lstrip("/")
        path = posixpath.normpath(raw)
        op = query.get("op", "").upper()
        with self._lock:
            self.requests.append(WebHdfsRequest(role, method, op, path, query))
            queued = self._failures.get((role, op))
            failure = queued.popleft() if queued else None
        if self.stall is not None:
            self.stall.wait(_STALL_LIMIT)
        if failure is not None:
            status, exception, message = failure
            if not exception:
                return _Answer(status, message.encode("utf-8"))
            return _remote(status, exception, message)
        ops = (_NAMENODE_OPS if role == "namenode" else _DATANODE_OPS).get(method, ())
        if op not in ops:
            return _remote(400, "IllegalArgumentException",
                           f'Invalid value for webhdfs parameter "op": {op or "(none)"} '
                           f"is not a {method} operation of the {role}")
        if ".." in raw.split("/"):
            return _remote(400, "IllegalArgumentException", f"Invalid path name {raw}")
        user = query.get("user.name") or "dr.who"
        if op in _WRITE_OPS and self._is_denied(path, query):
            return _remote(403, "AccessControlException",
                           f'Permission denied: user={user}, access=WRITE, inode="{path}"'
                           ":hdfs:supergroup:drwxr-xr-x")
        handler = getattr(self, f"_{role}_{op.lower()}")
        try:
            return handler(path, query, body)
        except _Answer as answer:
            return answer

    def _is_denied(self, path: str, query: dict) -> bool:
        targets = [path]
        if query.get("destination"):
            targets.append(posixpath.normpath(query["destination"]))
        with self._lock:
            return any(t == d or t.startswith(d.rstrip("/") + "/")
                       for t in targets for d in self._denied)

    def _status(self, path: str, suffix: str = "") -> dict:
        local = self.local_path(path)
        stat = local.stat()
        is_dir = local.is_dir()
        return {
            "accessTime": 0 if is_dir else int(stat.st_atime * 1000),
            "blockSize": 0 if is_dir else 134217728,
            "childrenNum": len(os.listdir(local)) if is_dir else 0,
            "fileId": stat.st_ino,
            "group": "supergroup",
            "length": 0 if is_dir else stat.st_size,
            "modificationTime": int(stat.st_mtime * 1000),
            "owner": "hdfs",
            "pathSuffix": suffix,
            "permission": "755" if is_dir else "644",
            "replication": 0 if is_dir else 1,
            "storagePolicy": 0,
            "type": "DIRECTORY" if is_dir else "FILE",
        }

    def _require(self, path: str, message: str) -> Path:
        local = self.local_path(path)
        if not local.exists():
            raise _remote(404, "FileNotFoundException", message)
        return local

    def _redirect(self, op: str, path: str, query: dict, extra: dict) -> _Answer:
        params = {"op": op}
        if query.get("user.name"):
            params["user.name"] = query["user.name"]
        params["namenoderpcaddress"] = f"{self.host}:8020"
        params.update(extra)
        location = (f"{self.datanode_url}{_PREFIX}{urllib.parse.quote(path)}?"
                    f"{urllib.parse.urlencode(params)}")
        if query.get("noredirect", "").lower() == "true":
            return _Answer(200, {"Location": location})
        return _Answer(307, b"", {"Location": location})

    # namenode

    def _namenode_getfilestatus(self, path: str, query: dict, body: bytes) -> _Answer:
        self._require(path, f"File does not exist: {path}")
        return _Answer(200, {"FileStatus": self._status(path)})

    def _namenode_liststatus(self, path: str, query: dict, body: bytes) -> _Answer:
        local = self._require(path, f"File {path} does not exist.")
        if not local.is_dir():
            return _Answer(200, {"FileStatuses": {"FileStatus": [self._status(path)]}})
        names = sorted(os.listdir(local), key=lambda n: n.encode("utf-8"))
        entries = [self._status(posixpath.join(path, n), n) for n in names]
        return _Answer(200, {"FileStatuses": {"FileStatus": entries}})

    def _namenode_open(self, path: str, query: dict, body: bytes) -> _Answer:
        local = self._require(path, f"File {path} not found.")
        offset = _long(query, "offset", 0)
        length = 0 if local.is_dir() else local.stat().st_size
        if offset < 0 or (offset >= length > 0):
            raise _remote(403, "IOException",
                          f"Offset={offset} out of the range [0, {length}); OPEN, path={path}")
        extra = {"offset": offset}
        if "length" in query:
            extra["length"] = _long(query, "length", 0)
        return self._redirect("OPEN", path, query, extra)

    def _namenode_create(self, path: str, query: dict, body: bytes) -> _Answer:
        overwrite = query.get("overwrite", "false").lower() == "true"
        self._check_create(path, overwrite)
        return self._redirect("CREATE", path, query, {
            "createflag": "", "createparent": "true",
            "overwrite": "true" if overwrite else "false"})

    def _check_create(self, path: str, overwrite: bool) -> None:
        local = self.local_path(path)
        if local.is_dir():
            raise _remote(403, "FileAlreadyExistsException",
                          f"{path} already exists as a directory")
        if local.exists() and not overwrite:
            raise _remote(403, "FileAlreadyExistsException",
                          f"{path} for client {self.host} already exists")
        parent = posixpath.dirname(path)
        while parent != "/":
            if self.local_path(parent).is_file():
                raise _remote(403, "ParentNotDirectoryException",
                              f"{parent} (is not a directory)")
            parent = posixpath.dirname(parent)

    def _namenode_mkdirs(self, path: str, query: dict, body: bytes) -> _Answer:
        local = self.local_path(path)
        if local.is_file():
            raise _remote(403, "FileAlreadyExistsException", f"Path is not a directory: {path}")
        try:
            local.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise _remote(403, "FileAlreadyExistsException",
                          f"Parent path is not a directory: {path}") from None
        return _Answer(200, {"boolean": True})

    def _namenode_rename(self, path: str, query: dict, body: bytes) -> _Answer:
        destination = query.get("destination", "")
        if not destination:
            raise _remote(400, "IllegalArgumentException",
                          "Required param destination for op: RENAME is null or empty")
        if not destination.startswith("/"):
            raise _remote(400, "IllegalArgumentException",
                          f"Invalid parameter value: destination = {destination} "
                          "must be an absolute path")
        dst = posixpath.normpath(destination)
        options = {o.strip().upper() for o in query.get("renameoptions", "").split(",")
                   if o.strip()}
        if options - {"OVERWRITE", "NONE"}:
            raise _remote(400, "IllegalArgumentException",
                          f"Invalid value for webhdfs parameter \"renameoptions\": {options}")
        with self._lock:
            if options:
                return self._rename2(path, dst, "OVERWRITE" in options)
            return _Answer(200, {"boolean": self._rename(path, dst)})

    def _rename(self, src: str, dst: str) -> bool:
        """HDFS's plain rename: False rather than an error; into ``dst`` when it is a dir."""
        source, target = self.local_path(src), self.local_path(dst)
        if not source.exists():
            return False
        if src == dst:
            return True
        if target.is_dir():
            target = target / source.name
        if target.exists() or not target.parent.is_dir():
            return False
        os.rename(source, target)
        return True

    def _rename2(self, src: str, dst: str, overwrite: bool) -> _Answer:
        """HDFS's rename with options: an error for every failure; ``dst`` replaced atomically."""
        source, target = self.local_path(src), self.local_path(dst)
        if not source.exists():
            raise _remote(404, "FileNotFoundException", f"rename source {src} is not found.")
        if src == dst:
            raise _remote(403, "FileAlreadyExistsException",
                          f"The source {src} and destination {dst} are the same")
        if not target.parent.is_dir():
            raise _remote(404, "FileNotFoundException",
                          f"rename destination parent {posixpath.dirname(dst)} not found.")
        if target.exists():
            if not overwrite:
                raise _remote(403, "FileAlreadyExistsException",
                              f"rename destination {dst} already exists.")
            if target.is_dir() != source.is_dir():
                raise _remote(403, "IOException",
                              f"Source {src} and destination {dst} must both be directories"
                              if source.is_dir() else
                              f"Source {src} and destination {dst} must both be files")
            if target.is_dir() and any(target.iterdir()):
                raise _remote(403, "IOException",
                              f"rename destination directory is not empty: {dst}")
        os.replace(source, target)
        return _Answer(200, b"")

    def _namenode_delete(self, path: str, query: dict, body: bytes) -> _Answer:
        local = self.local_path(path)
        if not local.exists():
            return _Answer(200, {"boolean": False})
        if local.is_dir():
            if any(local.iterdir()) and query.get("recursive", "false").lower() != "true":
                raise _remote(403, "PathIsNotEmptyDirectoryException",
                              f"`{path} is non empty': Directory is not empty")
            shutil.rmtree(local)
        else:
            local.unlink()
        return _Answer(200, {"boolean": True})

    # datanode

    def _datanode_open(self, path: str, query: dict, body: bytes) -> _Answer:
        local = self._require(path, f"File does not exist: {path}")
        if local.is_dir():
            raise _remote(404, "FileNotFoundException", f"Path is not a file: {path}")
        offset = _long(query, "offset", 0)
        with open(local, "rb") as handle:
            handle.seek(offset)
            data = handle.read(_long(query, "length", -1) if "length" in query else -1)
        return _Answer(200, data, {"Content-Type": "application/octet-stream"})

    def _datanode_create(self, path: str, query: dict, body: bytes) -> _Answer:
        with self._lock:
            self._check_create(path, query.get("overwrite", "false").lower() == "true")
            local = self.local_path(path)
            local.parent.mkdir(parents=True, exist_ok=True)
            with open(local, "wb") as handle:  # visible while written, as in HDFS
                handle.write(body)
        host = urllib.parse.urlsplit(self.url).netloc
        return _Answer(201, b"", {"Location": f"webhdfs://{host}{path}"})


def _long(query: dict, name: str, default: int) -> int:
    value = query.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise _remote(400, "IllegalArgumentException",
                      f'Invalid value for webhdfs parameter "{name}": {value}') from None


def _handler(server: WebHdfsServer, role: str) -> type:
    class Handler(http.server.BaseHTTPRequestHandler):
        server_version = "WebHdfsServer"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base's name
            return None  # tests read server.requests, not stderr

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length > 0 else b""
            try:
                answer = server._answer(role, self.command, self.path, body)
            except _Answer as raised:
                answer = raised
            except Exception as err:  # noqa: BLE001 - a server answers, as Hadoop's does
                answer = _remote(500, "RuntimeException", f"{type(err).__name__}: {err}")
            if isinstance(answer.body, (dict, list)):
                payload = json.dumps(answer.body).encode("utf-8")
                content_type = "application/json"
            else:
                payload = bytes(answer.body or b"")
                content_type = "application/octet-stream" if answer.status < 300 else "text/html"
            self.send_response(answer.status)
            headers = {"Content-Type": content_type, **answer.headers}
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_PUT = do_POST = do_DELETE = _serve  # noqa: N815 - http.server's names

    return Handler
