"""hdfs:// storage through WebHDFS, over real HTTP against WebHdfsServer (hpo_tools/testing)."""

from __future__ import annotations

import getpass
import socket
import threading

import pytest

from hpo_tools import storage
from hpo_tools.errors import StorageError
from hpo_tools.hdfs import HdfsStorage, WebHdfsClient, WebHdfsError, split_url, webhdfs_address
from hpo_tools.metrics import Follower, MetricSpec, build_source
from hpo_tools.storage import Storage
from hpo_tools.testing.webhdfs import WebHdfsServer
from tests.metrics.eventlib import append_events, scalar_event, version_event

NN = "hdfs://nn:9000"  # the RPC address users write; WebHDFS is HPO_TOOLS_WEBHDFS


@pytest.fixture
def server(tmp_path):
    with WebHdfsServer(tmp_path / "hdfs") as running:
        yield running


@pytest.fixture
def env(server, monkeypatch):
    monkeypatch.setenv("HPO_TOOLS_WEBHDFS", server.url)
    monkeypatch.setenv("HADOOP_USER_NAME", "alice")
    monkeypatch.delenv("HPO_TOOLS_FAKE_CLOUD", raising=False)
    return server


@pytest.fixture
def store(env):
    return Storage()


def _ops(server, role=None):
    return [(r.role, r.method, r.op) for r in server.requests if role in (None, r.role)]


# ---------------------------------------------------------------- writes and reads


def test_write_then_read_round_trip_over_webhdfs(server, store):
    text = 'train_config {\r\n  num_steps: 5\r\n}\r\n# é\n'
    store.write_text(f"{NN}/exp/configs/pipeline.config", text)
    # The bytes are in the server's file system, exactly (CRLF and UTF-8 kept)...
    assert (server.root / "exp/configs/pipeline.config").read_bytes() == text.encode()
    # ...and come back through OPEN.
    assert store.read_text(f"{NN}/exp/configs/pipeline.config") == text


def test_write_is_create_via_the_datanode_then_rename_over_the_target(server, store):
    store.write_bytes(f"{NN}/exp/a.config", b"old")
    server.requests.clear()
    store.write_bytes(f"{NN}/exp/a.config", b"new")
    # Step 1 (namenode, no data) -> 307 -> step 2 (datanode, the data) -> RENAME OVERWRITE.
    assert _ops(server) == [("namenode", "PUT", "CREATE"), ("datanode", "PUT", "CREATE"),
                            ("namenode", "PUT", "RENAME")]
    create, _, rename = server.requests
    # The data went to a temp name beside the target, never to the target itself...
    assert create.path.startswith("/exp/.a.config.") and create.path.endswith(".tmp")
    assert rename.path == create.path and rename.query["destination"] == "/exp/a.config"
    assert rename.query["renameoptions"] == "OVERWRITE"
    # ...which now holds the new bytes, with no temp file left.
    assert sorted(p.name for p in (server.root / "exp").iterdir()) == ["a.config"]
    assert (server.root / "exp/a.config").read_bytes() == b"new"


def test_a_failed_rename_leaves_the_old_file_and_no_temp_file(server, store):
    store.write_bytes(f"{NN}/exp/a.config", b"old")
    server.fail_next("RENAME", 403, "SafeModeException", "Name node is in safe mode.")
    with pytest.raises(StorageError, match=r"^hdfs://nn:9000/exp/a.config: cannot write it on "
                       r"HDFS: HTTP 403 SafeModeException: Name node is in safe mode\.$"):
        store.write_bytes(f"{NN}/exp/a.config", b"new")
    # Readers still see the old file; the temp file was deleted.
    assert (server.root / "exp/a.config").read_bytes() == b"old"
    assert [p.name for p in (server.root / "exp").iterdir()] == ["a.config"]
    assert _ops(server)[-1] == ("namenode", "DELETE", "DELETE")


def test_paths_are_quoted_and_unquoted(server, store):
    url = f"{NN}/exp/with space/ünï 50%.txt"
    store.write_text(url, "x")
    assert (server.root / "exp/with space/ünï 50%.txt").read_text() == "x"
    assert store.list_dir(f"{NN}/exp/with space") == [url]


def test_user_name_is_hadoop_user_name(server, store):
    store.write_text(f"{NN}/u/x", "x")
    store.read_text(f"{NN}/u/x")
    # Every request, datanode ones included, carries user.name=alice.
    assert server.users() == {"alice"}


def test_user_name_defaults_to_the_login_name(server, monkeypatch):
    monkeypatch.delenv("HADOOP_USER_NAME", raising=False)
    Storage(hdfs=HdfsStorage(server.url)).exists(f"{NN}/x")
    assert server.users() == {getpass.getuser()}


# ---------------------------------------------------------------- offset reads


def test_offset_reads_fetch_only_the_new_bytes(server, store):
    path = server.root / "logs/job.log"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"0123456789")
    url = f"{NN}/logs/job.log"
    assert store.read_bytes(url, 4) == b"456789"
    # A tail read asks the length first, then OPENs exactly the bytes after the offset.
    opens = [r for r in server.requests if r.op == "OPEN"]
    assert [(r.role, r.query.get("offset"), r.query.get("length")) for r in opens] == [
        ("namenode", "4", "6"), ("datanode", "4", "6")]

    server.requests.clear()
    # Nothing new: b"" from the status call alone (the namenode would refuse that OPEN).
    assert store.read_bytes(url, 10) == b"" and store.read_bytes(url, 99) == b""
    assert {r.op for r in server.requests} == {"GETFILESTATUS"}

    with open(path, "ab") as handle:
        handle.write(b"abc")
    assert store.read_bytes(url, 10) == b"abc"


def test_the_namenode_refuses_an_open_at_the_end_of_a_file(server):
    # Why tail reads ask the length first: HDFS answers this with an error, not with b"".
    (server.root / "f").write_bytes(b"abc")
    client = WebHdfsClient(server.url, user="alice")
    assert client.open("/f", 1, 1) == b"b"
    with pytest.raises(WebHdfsError) as info:
        client.open("/f", 3)
    assert (info.value.status, info.value.exception) == (403, "IOException")
    assert "Offset=3 out of the range [0, 3)" in info.value.detail


# ---------------------------------------------------------------- listing, exists, size


def test_list_dir_lists_the_files_directly_in_a_directory(server, store):
    for name in ("eval_val/events.out.tfevents.2.h", "eval_val/events.out.tfevents.1.h",
                 "eval_val/sub/deeper.txt", "model.ckpt"):
        target = server.root / "m" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"x")
    # Sorted hdfs:// URLs with the authority as written; no directories.
    assert store.list_dir(f"{NN}/m/eval_val/") == [
        f"{NN}/m/eval_val/events.out.tfevents.1.h", f"{NN}/m/eval_val/events.out.tfevents.2.h"]
    # Missing directory or a file: nothing (the event reader waits for the directory).
    assert store.list_dir(f"{NN}/m/nope") == []
    assert store.list_dir(f"{NN}/m/model.ckpt") == []
    assert store.list_tree(f"{NN}/m") == [
        "eval_val/events.out.tfevents.1.h", "eval_val/events.out.tfevents.2.h",
        "eval_val/sub/deeper.txt", "model.ckpt"]
    assert store.list_tree(f"{NN}/nope") == []


def test_exists_and_size(server, store):
    (server.root / "d").mkdir()
    (server.root / "d/f").write_bytes(b"12345")
    assert store.exists(f"{NN}/d/f") and store.exists(f"{NN}/d")
    assert not store.exists(f"{NN}/d/g")
    assert store.size(f"{NN}/d/f") == 5


def test_copy_file_between_local_and_hdfs(server, store, tmp_path):
    local = tmp_path / "pipeline.config"
    local.write_text("a: 1\n")
    store.copy_file(local, f"{NN}/c/pipeline.config")
    store.copy_file(f"{NN}/c/pipeline.config", tmp_path / "back.config")
    assert (tmp_path / "back.config").read_text() == "a: 1\n"


# ---------------------------------------------------------------- errors


def test_missing_file_and_directory_errors(server, store):
    (server.root / "d").mkdir()
    with pytest.raises(StorageError, match=r"^hdfs://nn:9000/nope: no such file or directory on "
                       r"HDFS$"):
        store.read_text(f"{NN}/nope")
    with pytest.raises(StorageError, match=r"^hdfs://nn:9000/d: is a directory, expected a file"):
        store.read_bytes(f"{NN}/d")
    with pytest.raises(StorageError, match=r"^hdfs://nn:9000/d: is a directory"):
        store.read_bytes(f"{NN}/d", 3)
    with pytest.raises(StorageError, match="no such file"):
        store.size(f"{NN}/nope")


def test_permission_denied_names_the_user_and_what_to_set(server, store):
    server.deny_writes("/secure")
    with pytest.raises(StorageError) as info:
        store.write_text(f"{NN}/secure/x.config", "x")
    message = str(info.value)
    assert message.startswith("hdfs://nn:9000/secure/x.config: permission denied on HDFS for "
                              "user alice (Permission denied: user=alice, access=WRITE")
    assert message.endswith("set HADOOP_USER_NAME to a user that may write it")
    assert not (server.root / "secure").exists()


def test_standby_namenode_says_to_point_at_the_active_one(server, store):
    server.fail_next("GETFILESTATUS", 403, "StandbyException",
                     "Operation category READ is not supported in state standby")
    with pytest.raises(StorageError, match=rf"^hdfs://nn:9000/x: the namenode at {server.url} is "
                       r"the standby one; set HPO_TOOLS_WEBHDFS to the active namenode's address$"):
        store.size(f"{NN}/x")


def test_an_answer_that_is_not_webhdfs_is_named(server, monkeypatch):
    # An HTTP server that is not WebHDFS (here: a wrong path prefix) answers 404 with HTML.
    monkeypatch.setenv("HPO_TOOLS_WEBHDFS", server.url + "/gateway")
    with pytest.raises(StorageError, match=r"^hdfs://nn:9000/x: cannot read it on HDFS: HTTP 404:"
                       r" not a WebHDFS answer; is http://127.0.0.1:\d+/gateway the namenode's"):
        Storage().read_bytes(f"{NN}/x")


def test_an_unreachable_namenode_is_one_line(monkeypatch):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HPO_TOOLS_WEBHDFS", f"http://127.0.0.1:{port}")
    with pytest.raises(StorageError, match=rf"^hdfs://nn:9000/x: cannot check it: cannot "
                       rf"reach WebHDFS at http://127.0.0.1:{port} \(.*refused.*\); is "
                       r"HPO_TOOLS_WEBHDFS"):
        Storage().exists(f"{NN}/x")


def test_a_namenode_that_stops_answering_times_out(server):
    server.stall = threading.Event()  # requests wait until it is set (stop() sets it)
    store = Storage(hdfs=HdfsStorage(server.url, user="alice", timeout=0.3))
    with pytest.raises(StorageError, match=r"^hdfs://nn:9000/x: cannot read it: cannot reach "
                       r"WebHDFS at .*(timed out|no answer within 0.3 s)"):
        store.read_bytes(f"{NN}/x")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("hdfs://nn:9000/a/../b", r"'\.\.' is not allowed"),
        ("hdfs://nn:x/a", r"the port is not a number"),
        ("hdfs://nn:9000/a?b", r"no '\?' or '#'"),
    ],
)
def test_malformed_hdfs_urls_are_refused_before_any_request(server, store, url, message):
    with pytest.raises(StorageError, match=message):
        store.read_bytes(url)
    # check_path (what trial files are checked with) refuses them too.
    with pytest.raises(StorageError, match=message):
        storage.check_path(url)
    assert server.requests == []


# ---------------------------------------------------------------- where WebHDFS is


def test_webhdfs_address_comes_from_the_environment_then_the_port():
    env = {"HPO_TOOLS_WEBHDFS": "http://master:9870/"}
    # The variable serves every hdfs:// path, whatever its host (the RPC address)...
    assert webhdfs_address("hdfs://emr-header-1:9000/x", env) == "http://master:9870"
    assert webhdfs_address("hdfs:///x", env) == "http://master:9870"
    # ...a gateway's path prefix is kept...
    gateway = {"HPO_TOOLS_WEBHDFS": "https://knox:8443/gateway/default"}
    assert webhdfs_address("hdfs:///x", gateway) == "https://knox:8443/gateway/default"
    # ...and without it a namenode HTTP(S) port written in the path is used as it is.
    assert webhdfs_address("hdfs://nn:9870/x", {}) == "http://nn:9870"
    assert webhdfs_address("hdfs://nn:50070/x", {}) == "http://nn:50070"
    assert webhdfs_address("hdfs://nn:9871/x", {}) == "https://nn:9871"


@pytest.mark.parametrize(
    ("url", "env", "message"),
    [
        ("hdfs://emr-header-1:9000/x", {},
         r"^hdfs://emr-header-1:9000/x: HDFS is read through WebHDFS and port 9000 is not a "
         r"namenode HTTP port \(9870, 50070\); set HPO_TOOLS_WEBHDFS to the namenode's WebHDFS "
         r"address \(dfs\.namenode\.http-address\), e\.g\. "
         r"HPO_TOOLS_WEBHDFS=http://emr-header-1:9870 \(port 50070 on Hadoop 2\)$"),
        ("hdfs://nn/x", {}, r"and no port given; set HPO_TOOLS_WEBHDFS"),
        ("hdfs:///x", {}, r"and no namenode given; set .* HPO_TOOLS_WEBHDFS=http://NAMENODE:9870 "),
        ("hdfs://nn/x", {"HPO_TOOLS_WEBHDFS": "nn:9870"},
         r"^HPO_TOOLS_WEBHDFS=nn:9870: expected http://HOST:PORT"),
        ("hdfs://nn/x", {"HPO_TOOLS_WEBHDFS": "http://nn:98x0"}, r"expected http://HOST:PORT"),
    ],
)
def test_no_webhdfs_address_says_what_to_set(url, env, message):
    with pytest.raises(StorageError, match=message):
        webhdfs_address(url, env)


def test_credentials_in_the_address_are_refused_without_echoing_them():
    with pytest.raises(StorageError) as info:
        webhdfs_address("hdfs:///x", {"HPO_TOOLS_WEBHDFS": "http://bob:s3cret@nn:9870"})
    assert "s3cret" not in str(info.value) and "credentials" in str(info.value)


def test_check_path_needs_the_address_only_for_hdfs(monkeypatch):
    monkeypatch.delenv("HPO_TOOLS_WEBHDFS", raising=False)
    with pytest.raises(StorageError, match="set HPO_TOOLS_WEBHDFS"):
        storage.check_path("hdfs://nn:9000/m/eval_val")
    monkeypatch.setenv("HPO_TOOLS_WEBHDFS", "http://nn:9870")
    # No network call: nothing listens at nn:9870.
    assert storage.check_path("hdfs://nn:9000/m/eval_val") == "hdfs://nn:9000/m/eval_val"


def test_split_url_normalises_the_path():
    parsed = split_url("hdfs://nn:9000//a//b/./c/")
    assert (parsed.authority, parsed.host, parsed.port, parsed.path) == ("nn:9000", "nn", 9000,
                                                                         "/a/b/c")
    assert parsed.child("d") == "hdfs://nn:9000/a/b/c/d"
    assert split_url("hdfs://nn/").child("d") == "hdfs://nn/d"


def test_atomic_local_writes_refuse_hdfs_paths():
    with pytest.raises(StorageError, match="atomic writes are for local paths"):
        storage.write_bytes_atomic("hdfs://nn:9870/x", b"x")


# ---------------------------------------------------------------- metrics


def test_summary_source_follows_event_files_growing_on_hdfs(server, env, monkeypatch):
    monkeypatch.setattr(storage, "_default", lambda: Storage())
    events = server.root / "model/eval_val/events.out.tfevents.1700000000.worker"
    spec = MetricSpec.from_config({"auc": 1})
    follower = Follower([build_source("summary", f"{NN}/model/eval_val", spec=spec)], spec)
    # The job has not written anything yet: waited for, no error.
    assert follower.poll() == []

    events.parent.mkdir(parents=True)
    append_events(events, version_event(), scalar_event(100, auc=0.5))
    assert [(r.step, round(r.values["auc"], 6)) for r in follower.poll()] == [(100, 0.5)]
    first_size = events.stat().st_size

    server.requests.clear()
    append_events(events, scalar_event(200, auc=0.6))
    # Only the new step, read from the old end of the file (offset = what was read before).
    assert [(r.step, round(r.values["auc"], 6)) for r in follower.poll()] == [(200, 0.6)]
    opens = [r for r in server.requests if r.op == "OPEN" and r.role == "datanode"]
    assert [int(r.query["offset"]) for r in opens] == [first_size]

    # A second file (a restarted job) is picked up too; the final is the last step.
    append_events(events.with_name("events.out.tfevents.1700000500.worker"),
                  scalar_event(300, auc=0.7))
    assert [r.step for r in follower.poll()] == [300]
    assert follower.close().score == pytest.approx(0.7)
