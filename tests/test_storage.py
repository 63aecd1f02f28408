"""Storage: local atomic files and oss:// objects (through FakeBucket, an in-memory oss2.Bucket)."""

from __future__ import annotations

import json
import logging
import os
import stat
import threading

import pytest

from hpo_tools import storage
from hpo_tools.errors import StorageError
from hpo_tools.storage import OssCredentials, Storage
from hpo_tools.testing.oss import FakeBucket

SECRET = "s3cr3t-%-value"
OSSUTILCONFIG = f"""[Credentials]
language=EN
endpoint=oss-cn-hangzhou.aliyuncs.com
accessKeyID=LTAI-test-id
accessKeySecret={SECRET}
"""


@pytest.fixture(autouse=True)
def _no_real_credentials(monkeypatch, tmp_path_factory):
    """Tests never see the machine's OSS env vars or ~/.ossutilconfig."""
    for name in ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    return home


@pytest.fixture
def bucket():
    return FakeBucket("bkt")


@pytest.fixture
def store(bucket):
    return Storage(bucket_factory=lambda name: bucket)


# ---------------------------------------------------------------- local files


def test_local_round_trip_keeps_crlf_and_non_ascii(tmp_path):
    # The config editor promises byte-identical output, so no newline translation anywhere.
    path = tmp_path / "p.config"
    text = 'a: "é"\r\nb: 2\r\n'
    Storage().write_text(path, text)
    assert path.read_bytes() == text.encode("utf-8")
    assert Storage().read_text(path) == text


def test_local_write_replaces_without_leaving_temp_files(tmp_path):
    path = tmp_path / "p.config"
    path.write_text("old\n")
    Storage().write_text(path, "new\n")
    assert path.read_text() == "new\n"
    # Only the target remains: the temp file was renamed over it.
    assert [p.name for p in tmp_path.iterdir()] == ["p.config"]


def test_failed_local_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "p.config"
    path.write_text("old\n")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match=r"p\.config: cannot write \(No space left on device\)"):
        Storage().write_text(path, "new\n")
    # Nothing half-written: the old content is intact and the temp file is gone.
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["p.config"]


def test_local_write_keeps_existing_file_mode(tmp_path):
    path = tmp_path / "p.config"
    path.write_text("old\n")
    path.chmod(0o640)
    Storage().write_text(path, "new\n")
    # The temp file is created with the umask's mode; the user's mode must survive the rewrite.
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


def test_local_write_creates_parent_directories(tmp_path):
    path = tmp_path / "trial" / "configs" / "p.config"
    Storage().write_text(path, "x: 1\n")
    assert path.read_text() == "x: 1\n"


def test_local_read_of_missing_file_names_the_path(tmp_path):
    with pytest.raises(StorageError, match=r"nope\.config: no such file"):
        Storage().read_text(tmp_path / "nope.config")


def test_local_read_bytes_from_offset(tmp_path):
    path = tmp_path / "events"
    path.write_bytes(b"0123456789")
    assert Storage().read_bytes(path, 4) == b"456789"
    # Past the end there is simply nothing new yet.
    assert Storage().read_bytes(path, 10) == b""
    assert Storage().read_bytes(path, 99) == b""


def test_local_exists_and_size(tmp_path):
    path = tmp_path / "f"
    assert not Storage().exists(path)
    path.write_bytes(b"abc")
    assert Storage().exists(path)
    assert Storage().size(path) == 3


def test_local_list_dir_lists_files_only_sorted(tmp_path):
    for name in ("b.txt", "a.txt"):
        (tmp_path / name).write_text("x")
    (tmp_path / "sub").mkdir()
    assert Storage().list_dir(tmp_path) == [str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]


def test_local_list_dir_of_missing_directory_is_empty(tmp_path):
    # Followers poll directories that the trainer has not created yet.
    assert Storage().list_dir(tmp_path / "not-yet") == []


def test_file_scheme_is_a_local_path(tmp_path):
    path = tmp_path / "f"
    path.write_text("hi")
    assert Storage().read_text(f"file://{path}") == "hi"


@pytest.mark.parametrize(
    "path, remote",
    [
        ("oss://b/k", True),
        ("hdfs://nn/x", True),
        ("/tmp/x", False),
        ("file:///tmp/x", False),
        ("rel/x.config", False),
        ("C:/x", False),
    ],
)
def test_is_remote(path, remote):
    assert storage.is_remote(path) is remote


def test_hdfs_without_a_webhdfs_address_says_what_to_set(monkeypatch):
    # hdfs:// is read through WebHDFS (tests/test_hdfs.py); an RPC port gives no HTTP address.
    monkeypatch.delenv("HPO_TOOLS_WEBHDFS", raising=False)
    with pytest.raises(StorageError, match=r"^hdfs://nn:9000/x: .* set HPO_TOOLS_WEBHDFS"):
        Storage().read_text("hdfs://nn:9000/x")


def test_unknown_scheme_is_rejected():
    with pytest.raises(StorageError, match=r"s3://b/x: unsupported scheme"):
        Storage().read_text("s3://b/x")


def test_module_functions_use_local_storage(tmp_path):
    # The contract's module-level functions work without building a Storage.
    path = tmp_path / "m.txt"
    storage.write_text(path, "m\n")
    assert storage.read_text(path) == "m\n"
    assert storage.read_bytes(path, 1) == b"\n"
    assert storage.exists(path) and storage.size(path) == 2
    assert storage.list_dir(tmp_path) == [str(path)]


def test_module_write_bytes_writes_raw_bytes(tmp_path):
    # storage.write_bytes is part of the module contract (docs/architecture.md), beside
    # write_text: bytes go to the file unchanged, no encoding or newline translation.
    path = tmp_path / "raw.bin"
    storage.write_bytes(path, b"\x00\xff\r\n")
    assert path.read_bytes() == b"\x00\xff\r\n"


# ---------------------------------------------------------------- atomic helpers


def test_write_json_atomic_writes_indented_json_with_a_trailing_newline(tmp_path):
    # The runner's params.json / result.json format: indent=2, keys in insertion order, "\n".
    data = {"b": 1, "a": [1.5, None, True], "name": "é"}
    path = tmp_path / "result.json"
    storage.write_json_atomic(path, data)
    assert path.read_text(encoding="utf-8") == json.dumps(data, indent=2) + "\n"


def test_write_json_atomic_sorts_keys_on_request(tmp_path):
    # The job registry writes its records with sorted keys (stable diffs between saves).
    path = tmp_path / "t1.json"
    storage.write_json_atomic(path, {"b": 1, "a": 2}, sort_keys=True)
    assert path.read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_write_json_atomic_takes_a_str_path_and_creates_parent_directories(tmp_path):
    # Trial directories are created lazily; the first write must not need a mkdir first.
    path = tmp_path / "trials" / "t1" / "params.json"
    storage.write_json_atomic(str(path), [1, 2])
    assert json.loads(path.read_text()) == [1, 2]


def test_write_json_atomic_of_unserialisable_data_touches_nothing(tmp_path):
    path = tmp_path / "result.json"
    path.write_text("old\n")
    with pytest.raises(TypeError):
        storage.write_json_atomic(path, {"x": object()})
    # Serialising happens before any file is opened: old content intact, no temp file.
    assert path.read_text() == "old\n"
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_write_bytes_atomic_failure_names_the_path_and_removes_the_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "t1.json"
    path.write_bytes(b"old")

    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match=r"t1\.json: cannot write \(No space left on device\)"):
        storage.write_bytes_atomic(path, b"new")
    # Nothing half-written is visible and nothing is left behind.
    assert path.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["t1.json"]


def test_write_bytes_atomic_temp_name_is_per_process_and_thread(tmp_path, monkeypatch):
    seen = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(os.path.basename(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    storage.write_bytes_atomic(tmp_path / "x.json", b"{}")
    # A leftover temp file says which process and thread wrote it; the name sits in the same
    # directory (os.replace never crosses file systems) and is hidden.
    prefix = f".x.json.{os.getpid()}.{threading.get_ident()}."
    assert len(seen) == 1 and seen[0].startswith(prefix) and seen[0].endswith(".tmp")


def test_write_bytes_atomic_from_many_threads_at_once(tmp_path):
    # The runner's reporter thread and its main thread may save the same file concurrently:
    # every write must succeed and the file must always hold one writer's whole content.
    path = tmp_path / "result.json"
    barrier = threading.Barrier(8)
    errors = []

    def content(n: int, i: int) -> bytes:
        return f"{n}:{i};".encode() * 1000

    def writer(n: int) -> None:
        barrier.wait()
        try:
            for i in range(20):
                storage.write_bytes_atomic(path, content(n, i))
        except Exception as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert path.read_bytes() in {content(n, i) for n in range(8) for i in range(20)}
    assert [p.name for p in tmp_path.iterdir()] == ["result.json"]


def test_write_bytes_atomic_new_file_follows_the_umask_which_is_left_alone(tmp_path):
    old = os.umask(0o027)
    try:
        storage.write_bytes_atomic(tmp_path / "new.json", b"{}")
        # A new file is 0o666 minus the umask, as open() would make it (not mkstemp's 0600);
        # the process's umask is not touched (other threads create files meanwhile).
        assert stat.S_IMODE((tmp_path / "new.json").stat().st_mode) == 0o640
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(old)


def test_write_bytes_atomic_rejects_oss_paths():
    # oss:// has no rename; one PUT (storage.write_bytes) is atomic there already.
    with pytest.raises(StorageError, match=r"oss://b/k: atomic writes are for local paths"):
        storage.write_bytes_atomic("oss://b/k", b"x")


# ---------------------------------------------------------------- oss:// through FakeBucket


def test_oss_round_trip_is_one_put_and_one_get(store, bucket):
    store.write_text("oss://bkt/cfg/p.config", "a: 1\r\n")
    assert bucket.objects["cfg/p.config"] == b"a: 1\r\n"
    assert store.read_text("oss://bkt/cfg/p.config") == "a: 1\r\n"
    assert [c[0] for c in bucket.calls] == ["put_object", "get_object"]


def test_oss_read_bytes_from_offset_is_a_ranged_get(store, bucket):
    bucket.objects["ev/events"] = b"0123456789"
    assert store.read_bytes("oss://bkt/ev/events", 6) == b"6789"
    method, args, kwargs = bucket.calls[-1]
    # A follower tails remote event files: only the new bytes may travel.
    assert (method, args, kwargs["byte_range"]) == ("get_object", ("ev/events",), (6, None))


def test_oss_read_at_end_returns_nothing_not_the_whole_object(store, bucket):
    # OSS ignores an unsatisfiable range unless asked for standard behaviour; without the header
    # a tail read at the end would get the whole file again.
    bucket.objects["ev/events"] = b"0123456789"
    assert store.read_bytes("oss://bkt/ev/events", 10) == b""
    assert bucket.calls[-1][2]["headers"] == {"x-oss-range-behavior": "standard"}


def test_oss_read_of_missing_object_names_the_path(store):
    with pytest.raises(StorageError, match=r"^oss://bkt/nope: no such object"):
        store.read_text("oss://bkt/nope")


def test_oss_exists_and_size(store, bucket):
    assert not store.exists("oss://bkt/a")
    bucket.objects["a"] = b"abcd"
    assert store.exists("oss://bkt/a")
    assert store.size("oss://bkt/a") == 4


def test_oss_size_of_missing_object(store):
    with pytest.raises(StorageError, match=r"oss://bkt/a: no such object"):
        store.size("oss://bkt/a")


def test_oss_list_dir_lists_direct_children_sorted(store, bucket):
    for key in ("m/eval/b", "m/eval/a", "m/eval/sub/c", "m/evalx", "m/eval/"):
        bucket.objects[key] = b"x"
    # Direct children only: not the sub-"directory", not the dir marker, not a sibling prefix.
    assert store.list_dir("oss://bkt/m/eval") == ["oss://bkt/m/eval/a", "oss://bkt/m/eval/b"]
    assert store.list_dir("oss://bkt/m/eval/") == ["oss://bkt/m/eval/a", "oss://bkt/m/eval/b"]


def test_oss_list_dir_follows_pages(store, bucket):
    # oss2.ObjectIterator asks for 100 keys a page; all 250 must come back.
    for i in range(250):
        bucket.objects[f"d/{i:03d}"] = b""
    listed = store.list_dir("oss://bkt/d")
    assert len(listed) == 250 and listed[0] == "oss://bkt/d/000" and listed[-1] == "oss://bkt/d/249"
    assert sum(1 for c in bucket.calls if c[0] == "list_objects") == 3


def test_oss_list_dir_of_missing_prefix_is_empty(store):
    assert store.list_dir("oss://bkt/none") == []


def test_oss_path_without_key_is_rejected(store):
    with pytest.raises(StorageError, match=r"oss://bkt/: expected oss://BUCKET/KEY"):
        store.read_text("oss://bkt/")


def test_bucket_factory_is_called_once_per_bucket():
    made = []

    def factory(name):
        made.append(name)
        return FakeBucket(name)

    store = Storage(bucket_factory=factory)
    store.write_text("oss://one/a", "1")
    store.write_text("oss://one/b", "2")
    store.write_text("oss://two/a", "3")
    assert made == ["one", "two"]


class _DenyingBucket(FakeBucket):
    def get_object(self, key, byte_range=None, headers=None, **kwargs):
        import oss2

        raise oss2.exceptions.AccessDenied(
            403, {"x-oss-request-id": "RID1"}, b"", {"Code": "AccessDenied", "Message": "denied"}
        )


def test_oss_server_error_is_one_line_with_status_code_and_request_id():
    store = Storage(
        OssCredentials("LTAI-test-id", SECRET, "oss-cn-hangzhou.aliyuncs.com"),
        bucket_factory=_DenyingBucket,
    )
    with pytest.raises(StorageError) as info:
        store.read_text("oss://bkt/k")
    message = str(info.value)
    assert message == (
        "oss://bkt/k: cannot read it on OSS: HTTP 403 AccessDenied: denied (request id RID1)"
    )
    assert SECRET not in message


# ---------------------------------------------------------------- credentials


def test_credentials_from_environment(monkeypatch):
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", "secret")
    monkeypatch.setenv("OSS_ENDPOINT", "oss-cn-beijing.aliyuncs.com")
    creds = OssCredentials.load()
    assert (creds.access_key_id, creds.access_key_secret, creds.endpoint) == (
        "id",
        "secret",
        "oss-cn-beijing.aliyuncs.com",
    )
    assert creds.source == "environment"


def test_environment_without_endpoint_is_an_error(monkeypatch):
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", "secret")
    with pytest.raises(StorageError, match="OSS_ENDPOINT is not"):
        OssCredentials.load()


def test_credentials_from_default_ossutilconfig(_no_real_credentials):
    (_no_real_credentials / ".ossutilconfig").write_text(OSSUTILCONFIG)
    creds = OssCredentials.load()
    # A '%' in the secret is kept verbatim (no configparser interpolation).
    assert (creds.access_key_id, creds.access_key_secret) == ("LTAI-test-id", SECRET)
    assert creds.endpoint == "oss-cn-hangzhou.aliyuncs.com"


def test_credentials_from_explicit_file(tmp_path):
    path = tmp_path / "my.ini"
    path.write_text(OSSUTILCONFIG)
    assert OssCredentials.load(path).source == str(path)


def test_environment_wins_over_file(monkeypatch, _no_real_credentials):
    (_no_real_credentials / ".ossutilconfig").write_text(OSSUTILCONFIG)
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", "env-id")
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", "env-secret")
    monkeypatch.setenv("OSS_ENDPOINT", "e")
    assert OssCredentials.load().access_key_id == "env-id"


def test_no_credentials_anywhere_says_where_to_put_them():
    with pytest.raises(
        StorageError, match=r"no OSS credentials: set OSS_ACCESS_KEY_ID.*ossutilconfig"
    ):
        OssCredentials.load()


def test_explicit_file_that_is_missing(tmp_path):
    with pytest.raises(StorageError, match=r"OSS config .*nope\.ini: no such file"):
        OssCredentials.load(tmp_path / "nope.ini")


@pytest.mark.parametrize(
    "text, pattern",
    [
        ("[Other]\nx=1\n", r"no \[Credentials\] section"),
        ("[Credentials]\naccessKeyID=a\nendpoint=e\n", r"\[Credentials\] has no accessKeySecret"),
    ],
)
def test_incomplete_ossutilconfig_names_file_and_key(tmp_path, text, pattern):
    path = tmp_path / "c.ini"
    path.write_text(text)
    with pytest.raises(StorageError, match=pattern):
        OssCredentials.from_file(path)


def test_credentials_repr_masks_the_keys():
    text = repr(OssCredentials("LTAI-test-id", SECRET, "e"))
    assert SECRET not in text and "LTAI-test-id" not in text and "***" in text


def test_default_bucket_is_a_real_oss2_bucket_built_from_credentials(tmp_path):
    # The production factory: building an oss2.Bucket makes no network call.
    path = tmp_path / "c.ini"
    path.write_text(OSSUTILCONFIG)
    store = Storage(oss_config=path)
    bucket = store._bucket("my-bucket")
    assert type(bucket).__module__.startswith("oss2")
    assert bucket.bucket_name == "my-bucket"
    assert "oss-cn-hangzhou.aliyuncs.com" in bucket.endpoint
    assert bucket.auth.credentials_provider.get_credentials().get_access_key_id() == "LTAI-test-id"


def test_invalid_bucket_name_is_a_storage_error(tmp_path):
    path = tmp_path / "c.ini"
    path.write_text(OSSUTILCONFIG)
    with pytest.raises(StorageError, match=r"^oss://B_ad/: The bucket_name is invalid"):
        Storage(oss_config=path).read_text("oss://B_ad/x")


def test_oss2_debug_logging_is_capped(tmp_path, monkeypatch):
    # oss2 logs the access key id and signed headers at DEBUG; `hpo-tools -vv` must not show them.
    monkeypatch.setattr(logging.getLogger("oss2"), "level", logging.NOTSET)
    path = tmp_path / "c.ini"
    path.write_text(OSSUTILCONFIG)
    Storage(oss_config=path)._bucket("my-bucket")
    assert logging.getLogger("oss2").getEffectiveLevel() >= logging.INFO


def test_secrets_never_reach_the_log(tmp_path, bucket, caplog):
    path = tmp_path / "c.ini"
    path.write_text(OSSUTILCONFIG)
    store = Storage(oss_config=path, bucket_factory=lambda name: bucket)
    store._credentials()
    with caplog.at_level(logging.DEBUG, logger="hpo_tools"):
        store.write_text("oss://bkt/a", "x")
        store.read_text("oss://bkt/a")
        store._credentials()
    assert SECRET not in caplog.text and "LTAI-test-id" not in caplog.text
