"""Read and write files by path: local paths (atomic writes), ``oss://bucket/key`` objects and
``hdfs://host:port/path`` files (through WebHDFS, :mod:`hpo_tools.hdfs`).

::

    from hpo_tools import storage
    text = storage.read_text("oss://my-bucket/configs/pipeline.config")
    storage.write_text("trial/configs/pipeline.config", text)      # temp file + os.replace
    new_bytes = storage.read_bytes("oss://b/model/eval_val/events.out.tfevents.1", offset=4096)
    storage.write_json_atomic("trial/result.json", {"final": None})   # local state files

Every atomic local write in the package goes through :func:`write_bytes_atomic` (and
:func:`write_json_atomic` on top of it).

OSS credentials come from the environment (``OSS_ACCESS_KEY_ID``, ``OSS_ACCESS_KEY_SECRET``,
``OSS_ENDPOINT``) or else from an ossutil-style file (``~/.ossutilconfig``, section
``[Credentials]`` with ``accessKeyID``, ``accessKeySecret``, ``endpoint``). They are read only when
an ``oss://`` path is first used, never logged and never written anywhere. ``oss2`` is imported
only on that path too.

``hdfs://`` paths go to the namenode's WebHDFS HTTP API: its address is ``HPO_TOOLS_WEBHDFS``
(``http://namenode:9870``) or the path's own port when that is a namenode HTTP port, the user
``HADOOP_USER_NAME`` (see :mod:`hpo_tools.hdfs`).
"""

from __future__ import annotations

import configparser
import contextlib
import errno
import functools
import json
import logging
import os
import shutil
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from hpo_tools import cloud
from hpo_tools.errors import StorageError
from hpo_tools.hdfs import HdfsStorage, is_hdfs, split_url, webhdfs_address

__all__ = [
    "OssCredentials",
    "Storage",
    "DEFAULT_OSS_CONFIG",
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "write_bytes_atomic",
    "write_json_atomic",
    "check_path",
    "exists",
    "size",
    "list_dir",
    "list_tree",
    "copy_file",
    "is_remote",
]

_logger = logging.getLogger(__name__)

DEFAULT_OSS_CONFIG = "~/.ossutilconfig"
ENV_ACCESS_KEY_ID = "OSS_ACCESS_KEY_ID"
ENV_ACCESS_KEY_SECRET = "OSS_ACCESS_KEY_SECRET"
ENV_ENDPOINT = "OSS_ENDPOINT"

# With this header OSS answers 416 to a range that starts at or past the end of the object,
# instead of its default of ignoring the range and sending the whole object.
_STANDARD_RANGE = {"x-oss-range-behavior": "standard"}


def is_remote(path: str | os.PathLike[str]) -> bool:
    """True for ``scheme://...`` paths other than ``file://`` (``oss://``, ``hdfs://``, ...)."""
    text = os.fspath(path)
    scheme, sep, _ = text.partition("://")
    return bool(sep) and scheme.isidentifier() and scheme.lower() != "file"


@dataclass(frozen=True)
class OssCredentials:
    """Where to reach OSS and with which key; the key never appears in ``repr`` or logs.

    Example:
        >>> OssCredentials("LTAIxxxx", "secret", "oss-cn-hangzhou.aliyuncs.com")
        OssCredentials(access_key_id='***', access_key_secret='***', \
endpoint='oss-cn-hangzhou.aliyuncs.com', source='explicit')
    """

    access_key_id: str
    access_key_secret: str
    endpoint: str
    source: str = "explicit"

    def __repr__(self) -> str:
        return (
            f"OssCredentials(access_key_id='***', access_key_secret='***', "
            f"endpoint={self.endpoint!r}, source={self.source!r})"
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> OssCredentials | None:
        """Credentials from ``OSS_ACCESS_KEY_ID`` / ``_SECRET`` / ``OSS_ENDPOINT``, or None.

        Raises:
            StorageError: The key pair is set but ``OSS_ENDPOINT`` is not.
        """
        env = os.environ if environ is None else environ
        key_id, secret = env.get(ENV_ACCESS_KEY_ID, ""), env.get(ENV_ACCESS_KEY_SECRET, "")
        if not key_id or not secret:
            return None
        endpoint = env.get(ENV_ENDPOINT, "")
        if not endpoint:
            raise StorageError(
                f"{ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} are set but {ENV_ENDPOINT} is "
                "not; set it, e.g. oss-cn-hangzhou.aliyuncs.com"
            )
        return cls(key_id, secret, endpoint, source="environment")

    @classmethod
    def from_file(cls, path: str | os.PathLike[str] = DEFAULT_OSS_CONFIG) -> OssCredentials:
        """Credentials from an ossutil config file (``[Credentials]`` section).

        Raises:
            StorageError: The file is missing or lacks the section or a key.
        """
        file = Path(os.path.expanduser(os.fspath(path)))
        parser = configparser.RawConfigParser()  # raw: a '%' in a secret is not interpolation
        try:
            with open(file, encoding="utf-8") as handle:
                parser.read_file(handle)
        except FileNotFoundError as err:
            raise StorageError(f"OSS config {file}: no such file") from err
        except (OSError, configparser.Error, UnicodeDecodeError) as err:
            raise StorageError(f"OSS config {file}: cannot read it ({type(err).__name__})") from err
        if not parser.has_section("Credentials"):
            raise StorageError(f"OSS config {file}: no [Credentials] section")
        values = {}
        for key in ("accessKeyID", "accessKeySecret", "endpoint"):
            value = parser.get("Credentials", key, fallback="").strip()
            if not value:
                raise StorageError(f"OSS config {file}: [Credentials] has no {key}")
            values[key] = value
        return cls(
            values["accessKeyID"], values["accessKeySecret"], values["endpoint"], source=str(file)
        )

    @classmethod
    def load(
        cls,
        config_path: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> OssCredentials:
        """The environment's credentials when set, else the file's (default ``~/.ossutilconfig``).

        Raises:
            StorageError: Neither source has credentials.
        """
        from_env = cls.from_env(environ)
        if from_env is not None:
            return from_env
        file = Path(os.path.expanduser(os.fspath(config_path or DEFAULT_OSS_CONFIG)))
        if config_path is None and not file.exists():
            raise StorageError(
                f"no OSS credentials: set {ENV_ACCESS_KEY_ID}, {ENV_ACCESS_KEY_SECRET} and "
                f"{ENV_ENDPOINT}, or write {DEFAULT_OSS_CONFIG} ([Credentials] accessKeyID, "
                "accessKeySecret, endpoint)"
            )
        return cls.from_file(file)


BucketFactory = Callable[[str], Any]


def _split_oss(path: str) -> tuple[str, str]:
    rest = path[len("oss://") :]
    bucket, _, key = rest.partition("/")
    if not bucket:
        raise StorageError(f"{path}: expected oss://BUCKET/KEY")
    return bucket, key


class Storage:
    """Reads and writes local, ``oss://`` and ``hdfs://`` paths; the object behind this module's
    functions.

    Args:
        oss: OSS credentials; when None they are loaded on first ``oss://`` use, from the
            environment or else ``oss_config``.
        oss_config: The ossutil-style file to fall back on (default ``~/.ossutilconfig``).
        bucket_factory: Builds the bucket object for a bucket name. The default builds an
            ``oss2.Bucket`` (its fake under ``HPO_TOOLS_FAKE_CLOUD``, see
            :mod:`hpo_tools.cloud`); tests pass :class:`hpo_tools.testing.oss.FakeBucket`s.
        hdfs: What serves ``hdfs://`` paths; default an :class:`hpo_tools.hdfs.HdfsStorage`
            with the WebHDFS address and user from the environment.

    Example:
        >>> from hpo_tools.testing.oss import FakeBucket
        >>> bucket = FakeBucket()
        >>> store = Storage(bucket_factory=lambda name: bucket)
        >>> store.write_text("oss://b/x.config", "a: 1\\n")
        >>> store.read_text("oss://b/x.config")
        'a: 1\\n'
    """

    def __init__(
        self,
        oss: OssCredentials | None = None,
        *,
        oss_config: str | os.PathLike[str] | None = None,
        bucket_factory: BucketFactory | None = None,
        hdfs: HdfsStorage | None = None,
    ) -> None:
        self._oss = oss
        self._oss_config = oss_config
        self._bucket_factory = bucket_factory
        self._buckets: dict[str, Any] = {}
        self._hdfs = hdfs

    # ------------------------------------------------------------ public API

    def read_bytes(self, path: str | os.PathLike[str], offset: int = 0) -> bytes:
        """The bytes of ``path`` from ``offset`` to its end (``b""`` when offset >= size).

        On OSS this is one ranged GET, so a follower can tail a growing remote file cheaply; on
        HDFS a status call, then an OPEN with offset and length only when the file grew.
        """
        if offset < 0:
            raise ValueError(f"offset must be >= 0, got {offset}")
        text = self._check(path)
        if is_hdfs(text):
            return self._hdfs_storage().read_bytes(text, offset)
        if not text.startswith("oss://"):
            try:
                with open(text, "rb") as handle:
                    handle.seek(offset)
                    return handle.read()
            except FileNotFoundError as err:
                raise StorageError(f"{text}: no such file") from err
            except IsADirectoryError as err:
                raise StorageError(f"{text}: is a directory, expected a file") from err
            except OSError as err:
                raise StorageError(f"{text}: cannot read ({err.strerror or err})") from err
        return self._oss_read(text, offset)

    def read_text(self, path: str | os.PathLike[str]) -> str:
        """The UTF-8 text of ``path``, line endings untouched (CRLF stays CRLF)."""
        data = self.read_bytes(path)
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise StorageError(f"{os.fspath(path)}: not UTF-8 text ({err.reason})") from err

    def write_text(self, path: str | os.PathLike[str], text: str) -> None:
        """Write ``text`` as UTF-8: local via a temp file + ``os.replace``; OSS in one PUT;
        HDFS as a temp file renamed over the target."""
        self.write_bytes(path, text.encode("utf-8"))

    def write_bytes(self, path: str | os.PathLike[str], data: bytes) -> None:
        """Write ``data`` to ``path``; nothing half-written is ever visible at ``path``."""
        text = self._check(path)
        if is_hdfs(text):
            self._hdfs_storage().write_bytes(text, data)
            return
        if text.startswith("oss://"):
            bucket_name, key = self._object(text)
            with _oss_errors(text, "write"):
                self._bucket(bucket_name).put_object(key, data)
            return
        write_bytes_atomic(text, data)

    def exists(self, path: str | os.PathLike[str]) -> bool:
        """True when ``path`` is an existing file (or local / HDFS directory) / OSS object."""
        text = self._check(path)
        if is_hdfs(text):
            return self._hdfs_storage().exists(text)
        if not text.startswith("oss://"):
            return os.path.exists(text)
        bucket_name, key = self._object(text)
        with _oss_errors(text, "check"):
            return bool(self._bucket(bucket_name).object_exists(key))

    def size(self, path: str | os.PathLike[str]) -> int:
        """Size of the file or object in bytes."""
        text = self._check(path)
        if is_hdfs(text):
            return self._hdfs_storage().size(text)
        if not text.startswith("oss://"):
            try:
                return os.stat(text).st_size
            except FileNotFoundError as err:
                raise StorageError(f"{text}: no such file") from err
        bucket_name, key = self._object(text)
        with _oss_errors(text, "stat"):
            return int(self._bucket(bucket_name).head_object(key).content_length)

    def list_dir(self, path: str | os.PathLike[str]) -> list[str]:
        """Paths of the files directly in ``path``, sorted; ``[]`` when it does not exist."""
        text = self._check(path)
        if is_hdfs(text):
            return self._hdfs_storage().list_dir(text)
        if not text.startswith("oss://"):
            if not os.path.isdir(text):
                return []
            with os.scandir(text) as entries:
                return sorted(os.path.join(text, e.name) for e in entries if e.is_file())
        import oss2

        bucket_name, key = _split_oss(text)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        bucket = self._bucket(bucket_name)
        with _oss_errors(text, "list"):
            keys = [
                obj.key
                for obj in oss2.ObjectIterator(bucket, prefix=prefix, delimiter="/")
                if not obj.is_prefix() and obj.key != prefix
            ]
        return sorted(f"oss://{bucket_name}/{k}" for k in keys)

    def list_tree(self, path: str | os.PathLike[str]) -> list[str]:
        """The files under the directory ``path`` at any depth, as ``/``-separated paths
        relative to it, sorted; ``[]`` when it does not exist. On OSS: every object under the
        prefix ``KEY/`` (directory marker objects, ending in ``/``, left out)."""
        text = self._check(path)
        if is_hdfs(text):
            return self._hdfs_storage().list_tree(text)
        if not text.startswith("oss://"):
            found = []
            for root, _dirs, names in os.walk(text):
                relative = os.path.relpath(root, text)
                for name in names:
                    joined = name if relative == "." else os.path.join(relative, name)
                    found.append(joined.replace(os.sep, "/"))
            return sorted(found)
        import oss2

        bucket_name, key = _split_oss(text)
        prefix = key.rstrip("/") + "/" if key.strip("/") else ""
        bucket = self._bucket(bucket_name)
        with _oss_errors(text, "list"):
            keys = [obj.key for obj in oss2.ObjectIterator(bucket, prefix=prefix)]
        return sorted(k[len(prefix):] for k in keys if not k.endswith("/"))

    def copy_file(self, src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        """Copy one file or object to ``dst``; nothing half-written is ever visible at ``dst``.

        Local to local streams through a temp file beside ``dst`` + ``os.replace`` (parents
        created); anything involving OSS or HDFS reads the whole file, then writes it with
        :meth:`write_bytes`.
        """
        source, target = self._check(src), self._check(dst)
        if is_remote(source) or is_remote(target):
            self.write_bytes(target, self.read_bytes(source))
            return
        _copy_local_atomic(source, target)

    # ------------------------------------------------------------ helpers

    @staticmethod
    def _check(path: str | os.PathLike[str]) -> str:
        text = os.fspath(path)
        if text.startswith("file://"):
            return text[len("file://") :]
        if text.startswith("oss://"):
            return text
        if is_hdfs(text):
            split_url(text)  # StorageError for a malformed URL
            return text
        if is_remote(text):
            raise StorageError(
                f"{text}: unsupported scheme; use a local path, oss://BUCKET/KEY or "
                "hdfs://HOST:PORT/PATH"
            )
        return text

    def _hdfs_storage(self) -> HdfsStorage:
        if self._hdfs is None:
            self._hdfs = HdfsStorage()
        return self._hdfs

    @staticmethod
    def _object(path: str) -> tuple[str, str]:
        bucket, key = _split_oss(path)
        if not key or key.endswith("/"):
            raise StorageError(f"{path}: expected oss://BUCKET/KEY naming an object")
        return bucket, key

    def _credentials(self) -> OssCredentials:
        if self._oss is None:
            self._oss = OssCredentials.load(self._oss_config)
            _logger.debug("OSS credentials from %s", self._oss.source)
        return self._oss

    def _bucket(self, name: str) -> Any:
        bucket = self._buckets.get(name)
        if bucket is None:
            factory = self._bucket_factory or self._oss2_bucket
            bucket = self._buckets[name] = factory(name)
        return bucket

    def _oss2_bucket(self, name: str) -> Any:
        # The credentials are looked up (and required) under the fake cloud too (hpo_tools.cloud).
        return cloud.build("oss", _real_oss2_bucket, self._credentials(), name)

    def _oss_read(self, path: str, offset: int) -> bytes:
        import oss2

        bucket_name, key = self._object(path)
        bucket = self._bucket(bucket_name)
        if offset == 0:
            with _oss_errors(path, "read"):
                return bytes(bucket.get_object(key).read())
        try:
            result = bucket.get_object(
                key, byte_range=(offset, None), headers=dict(_STANDARD_RANGE)
            )
            data = bytes(result.read())
        except oss2.exceptions.OssError as err:
            if err.status == 416:  # the range starts at or past the end: nothing new yet
                return b""
            raise _storage_error(path, "read", err) from err
        if getattr(result, "status", 206) == 200:  # range ignored: the whole object came back
            return data[offset:]
        return data


def _real_oss2_bucket(creds: OssCredentials, name: str) -> Any:
    """An ``oss2.Bucket`` for bucket ``name`` (builds offline; no network call)."""
    import oss2

    # oss2 logs the access key id and signed request headers at DEBUG; keep them out of
    # `hpo-tools -vv` output unless the user configured the "oss2" logger on purpose.
    oss2_logger = logging.getLogger("oss2")
    if oss2_logger.level == logging.NOTSET:
        oss2_logger.setLevel(logging.INFO)
    auth = oss2.Auth(creds.access_key_id, creds.access_key_secret)
    try:
        return oss2.Bucket(auth, creds.endpoint, name)
    except oss2.exceptions.ClientError as err:  # oss2 checks names and endpoints locally
        detail = str(err.body).replace("ClientError: ", "").strip()
        raise StorageError(f"oss://{name}/: {detail}") from err


@contextlib.contextmanager
def _oss_errors(path: str, action: str) -> Iterator[None]:
    """Turn oss2 exceptions into one-line StorageErrors naming the path."""
    import oss2

    try:
        yield
    except oss2.exceptions.OssError as err:
        raise _storage_error(path, action, err) from err


def _storage_error(path: str, action: str, err: Any) -> StorageError:
    import oss2

    if isinstance(err, oss2.exceptions.NotFound):
        return StorageError(f"{path}: no such object (or bucket)")
    if isinstance(err, oss2.exceptions.RequestError):
        return StorageError(f"{path}: cannot reach OSS to {action} it ({type(err).__name__})")
    code = getattr(err, "code", "") or type(err).__name__
    message = (getattr(err, "message", "") or "").replace("\n", " ")
    request_id = getattr(err, "request_id", "")
    detail = f"HTTP {err.status} {code}" + (f": {message}" if message else "")
    if request_id:
        detail += f" (request id {request_id})"
    return StorageError(f"{path}: cannot {action} it on OSS: {detail}")


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to the local file ``path`` so that no reader ever sees it half-written.

    The bytes go to a temp file in the same directory, named for this process and thread plus a
    random part (``.<name>.<pid>.<thread>.<hex>.tmp``, created exclusively), are flushed to disk,
    and the temp file is renamed over ``path`` with ``os.replace``. Missing parent directories
    are created. A file that is replaced keeps its mode; a new one gets ``0o666`` minus the umask
    (applied by the kernel, so the process's umask is never changed). On any failure the temp
    file is removed and ``path`` is left as it was.

    Raises:
        StorageError: naming the path, when it cannot be written (the ``OSError`` is chained),
            or when it is an ``oss://`` or ``hdfs://`` path: use :func:`write_bytes` there.
    """
    text = Storage._check(path)
    if is_remote(text):
        raise StorageError(f"{text}: atomic writes are for local paths; use storage.write_bytes")
    target = Path(text)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            mode: int | None = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = None
        fd, tmp = _create_temp(target)
    except OSError as err:
        raise StorageError(f"{target}: cannot write ({err.strerror or err})") from err
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError):
            raise StorageError(f"{target}: cannot write ({err.strerror or err})") from err
        raise


def _copy_local_atomic(source: str, target: str) -> None:
    """Stream the local file ``source`` to ``target`` as :func:`write_bytes_atomic` writes."""
    try:
        reader = open(source, "rb")
    except FileNotFoundError as err:
        raise StorageError(f"{source}: no such file") from err
    except OSError as err:
        raise StorageError(f"{source}: cannot read ({err.strerror or err})") from err
    with reader:
        path = Path(target)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = _create_temp(path)
        except OSError as err:
            raise StorageError(f"{target}: cannot write ({err.strerror or err})") from err
        try:
            with os.fdopen(fd, "wb") as handle:
                shutil.copyfileobj(reader, handle, 1 << 20)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException as err:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            if isinstance(err, OSError):
                raise StorageError(
                    f"{source} -> {target}: cannot copy ({err.strerror or err})") from err
            raise


def write_json_atomic(path: str | os.PathLike[str], data: Any, *, sort_keys: bool = False) -> None:
    """Write ``data`` as JSON (``indent=2``, then a newline) with :func:`write_bytes_atomic`.

    The data is serialised before any file is touched, so a value JSON cannot hold raises
    ``TypeError``/``ValueError`` and leaves no temp file behind.

    Raises:
        StorageError: see :func:`write_bytes_atomic`.
    """
    text = json.dumps(data, indent=2, sort_keys=sort_keys) + "\n"
    write_bytes_atomic(path, text.encode("utf-8"))


def _create_temp(target: Path) -> tuple[int, str]:
    """Create and open a fresh temp file beside ``target``: (descriptor, path)."""
    prefix = f".{target.name}.{os.getpid()}.{threading.get_ident()}."
    for _ in range(100):
        tmp = os.path.join(target.parent, f"{prefix}{os.urandom(4).hex()}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:  # pragma: no cover - a leftover of a dead process, same pid
            continue
    raise FileExistsError(errno.EEXIST, "no unused temp file name", str(target))  # pragma: no cover


def check_path(path: str | os.PathLike[str]) -> str:
    """``path`` as storage reads it (``file://`` stripped); StorageError for a scheme it cannot
    read, and for an ``hdfs://`` path whose WebHDFS address the environment does not give
    (``HPO_TOOLS_WEBHDFS``). No network call. Lets a trial file be refused when it is read, not
    after its jobs ran."""
    text = Storage._check(path)
    if is_hdfs(text):
        webhdfs_address(text)
    return text


@functools.lru_cache(maxsize=1)
def _default() -> Storage:
    """The process's shared Storage (credentials loaded once, buckets reused)."""
    return Storage()


def read_text(path: str | os.PathLike[str]) -> str:
    """See :meth:`Storage.read_text`."""
    return _default().read_text(path)


def read_bytes(path: str | os.PathLike[str], offset: int = 0) -> bytes:
    """See :meth:`Storage.read_bytes`."""
    return _default().read_bytes(path, offset)


def write_text(path: str | os.PathLike[str], text: str) -> None:
    """See :meth:`Storage.write_text`."""
    _default().write_text(path, text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """See :meth:`Storage.write_bytes`."""
    _default().write_bytes(path, data)


def exists(path: str | os.PathLike[str]) -> bool:
    """See :meth:`Storage.exists`."""
    return _default().exists(path)


def size(path: str | os.PathLike[str]) -> int:
    """See :meth:`Storage.size`."""
    return _default().size(path)


def list_dir(path: str | os.PathLike[str]) -> list[str]:
    """See :meth:`Storage.list_dir`."""
    return _default().list_dir(path)


def list_tree(path: str | os.PathLike[str]) -> list[str]:
    """See :meth:`Storage.list_tree`."""
    return _default().list_tree(path)


def copy_file(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
    """See :meth:`Storage.copy_file`."""
    _default().copy_file(src, dst)
