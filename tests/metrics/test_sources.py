"""Sources: stdout regexes and JSON files read incrementally; the type registry."""

from __future__ import annotations

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.metrics import (
    MetricPoint,
    MetricSource,
    MetricSpec,
    build_source,
    register_source_type,
)
from hpo_tools.metrics import sources as sources_module
from hpo_tools.metrics.sources import JsonSource, StdoutSource

ACC = r"accuracy=([0-9.]+)"
LOSS = r"loss: ([0-9.]+)"


def _append(path, text):
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(text)


def _steps(points):
    return [(p.step, dict(p.values)) for p in points]


def test_stdout_step_completes_when_every_weighted_regex_has_matched(tmp_path):
    log = tmp_path / "train.log"
    spec = MetricSpec.from_config({ACC: 1, LOSS: -1})
    source = StdoutSource(str(log), spec)
    _append(log, "epoch 1\naccuracy=0.5\n")
    # Only one of the two regexes matched so far: no step yet.
    assert source.poll() == []

    _append(log, "loss: 0.7\naccuracy=0.6\n")

    # Step 1 completes on the loss line; the next accuracy starts step 2.
    assert _steps(source.poll()) == [(1, {ACC: 0.5, LOSS: 0.7})]
    _append(log, "noise\nloss: 0.4\n")
    assert _steps(source.poll()) == [(2, {ACC: 0.6, LOSS: 0.4})]


def test_stdout_regex_matching_twice_before_the_step_completes_keeps_the_latest(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("accuracy=0.1\naccuracy=0.2\nloss: 1.0\n")
    source = StdoutSource(str(log), MetricSpec.from_config({ACC: 1, LOSS: -1}))
    assert _steps(source.poll()) == [(1, {ACC: 0.2, LOSS: 1.0})]


def test_stdout_partial_last_line_waits_until_its_newline_or_the_drain(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("accuracy=0.9")  # the job is still printing the number
    source = StdoutSource(str(log), MetricSpec.from_config({ACC: 1}))
    # "0.9" might still become "0.95": not read before the newline.
    assert source.poll() == []
    _append(log, "5\n")
    assert _steps(source.poll()) == [(1, {ACC: 0.95})]
    _append(log, "accuracy=0.97")
    # At the end of the job the last line counts even without a newline.
    assert _steps(source.drain()) == [(2, {ACC: 0.97})]


def test_stdout_zero_weight_regex_only_adds_its_value(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("loss: 0.3\naccuracy=0.8\n")
    source = StdoutSource(str(log), MetricSpec.from_config({ACC: 1, LOSS: 0}))
    # The zero-weight loss is not required but is kept in the step it matched in.
    assert _steps(source.poll()) == [(1, {LOSS: 0.3, ACC: 0.8})]


def test_stdout_utf8_split_across_polls_is_decoded_whole(tmp_path):
    log = tmp_path / "train.log"
    data = "精度 accuracy=0.5\n".encode()
    log.write_bytes(data[:1])
    source = StdoutSource(str(log), MetricSpec.from_config({ACC: 1}))
    source.poll()
    with open(log, "ab") as handle:
        handle.write(data[1:])
    assert _steps(source.poll()) == [(1, {ACC: 0.5})]


@pytest.mark.parametrize(("regex", "found"), [("accuracy=[0-9.]+", 0), ("(a)=(b)", 2)])
def test_stdout_regex_needs_exactly_one_capture_group(tmp_path, regex, found):
    with pytest.raises(ConfigError, match=f"exactly one capture group.*found {found}"):
        StdoutSource(str(tmp_path / "log"), MetricSpec.from_config({regex: 1}))


def test_stdout_invalid_regex_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="not a valid regex"):
        StdoutSource(str(tmp_path / "log"), MetricSpec.from_config({"acc=([0-9": 1}))


def test_stdout_missing_log_is_waited_for(tmp_path):
    source = StdoutSource(str(tmp_path / "later.log"), MetricSpec.from_config({ACC: 1}))
    assert source.poll() == [] and source.found() is False


def test_json_lines_with_step_key_and_nested_objects(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"global_step": 100, "eval": {"auc": 0.7}, "tag": "x", "ok": true}\n')
    source = JsonSource(str(path), MetricSpec.from_config({"eval.auc": 1}))
    # The step comes from global_step; nested keys are dotted; strings and bools are not metrics.
    assert _steps(source.poll()) == [(100, {"eval.auc": 0.7})]
    path.write_text(path.read_text() + '{"step": 200, "eval": {"auc": 0.8}}\n')
    # Incremental: only the new line.
    assert _steps(source.poll()) == [(200, {"eval.auc": 0.8})]


def test_json_lines_without_step_key_are_numbered_by_order(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"auc": 0.1}\n\n{"auc": 0.2}\n')
    source = JsonSource(str(path), MetricSpec.from_config({"auc": 1}))
    assert _steps(source.poll()) == [(1, {"auc": 0.1}), (2, {"auc": 0.2})]


def test_json_last_object_without_newline_is_read_once_it_parses(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text('{"auc": 0.1')
    source = JsonSource(str(path), MetricSpec.from_config({"auc": 1}))
    assert source.poll() == []
    path.write_text('{"auc": 0.15}')
    # json.dump without a trailing newline is complete once the object closes.
    assert _steps(source.poll()) == [(1, {"auc": 0.15})]


def test_json_single_pretty_printed_document(tmp_path):
    path = tmp_path / "result.json"
    path.write_text('[\n  {"step": 1, "auc": 0.5},\n  {"step": 2, "auc": 0.6}\n]\n')
    source = JsonSource(str(path), MetricSpec.from_config({"auc": 1}))
    # A multi-line document is parsed whole: a list gives one step per object.
    assert _steps(source.poll()) == [(1, {"auc": 0.5}), (2, {"auc": 0.6})]
    # Unchanged document: nothing new.
    assert source.poll() == []


def test_json_garbage_line_is_skipped(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"auc": 0.1}\nTraceback (most recent call last)\n{"auc": 0.2}\n')
    source = JsonSource(str(path), MetricSpec.from_config({"auc": 1}))
    assert _steps(source.poll()) == [(1, {"auc": 0.1}), (2, {"auc": 0.2})]
    assert "not JSON" in caplog.text


def test_json_integer_too_large_for_a_float_is_not_a_metric_and_not_a_crash(tmp_path):
    path = tmp_path / "metrics.jsonl"
    huge = "1" + "0" * 400  # valid JSON, but float() of it raises OverflowError
    path.write_text(
        f'{{"step": 1, "auc": {huge}, "loss": 0.5}}\n{{"step": {huge}, "auc": 0.2}}\n'
        '{"step": 3, "auc": 0.3}\n'
    )
    source = JsonSource(str(path), MetricSpec.from_config({"auc": 1}))
    # The huge value is dropped (its step keeps the other metrics), the huge step falls back to
    # the position, and the lines after it are still read.
    assert _steps(source.poll()) == [(1, {"loss": 0.5}), (2, {"auc": 0.2}), (3, {"auc": 0.3})]


def test_json_nested_too_deeply_is_a_bad_line_not_a_crash(tmp_path):
    path = tmp_path / "metrics.jsonl"
    deep_list = "[" * 100_000 + "]" * 100_000  # json.loads raises RecursionError on this
    deep_object = '{"a":' * 900 + "1" + "}" * 900  # parses; flattening must not recurse 900 deep
    path.write_text(f'{{"auc": 0.5}}\n{deep_list}\n{deep_object}\n{{"auc": 0.6}}\n')
    source = JsonSource(str(path), MetricSpec.from_config({"auc": 1}))
    points = source.poll()
    # The deep list is skipped like any bad line; the deep object is one (auc-less) step; the
    # lines around them are read.
    assert [(p.step, p.values.get("auc")) for p in points] == [(1, 0.5), (2, None), (3, 0.6)]
    assert list(points[1].values) == ["a." * 899 + "a"]


def test_json_lines_after_a_first_line_that_is_not_json_are_read(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('starting evaluation\n{"auc": 0.5}\n{"auc": 0.6}\n')
    source = JsonSource(str(path), MetricSpec.from_config({"auc": 1}))
    # A header line that cannot start a JSON document is skipped like a bad line later in the
    # file would be; it must not switch the source to "one multi-line document" and lose all.
    assert _steps(source.poll()) == [(1, {"auc": 0.5}), (2, {"auc": 0.6})]
    assert "not JSON" in caplog.text


def test_unknown_source_type_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"unknown source type 'sumary'.*did you mean 'summary'"):
        build_source("sumary", "x", spec=MetricSpec.from_config({"a": 1}))


def test_a_type_a_platform_reads_is_built_by_the_platform_passed():
    class ListSource(MetricSource):
        def poll(self):
            return [MetricPoint(1, {"a": 3.0})]

    class MemoryPlatform:
        metric_source_types = ("memory",)

        def metric_source(self, type_name, location, spec):
            return ListSource(f"{type_name}:{location}")

    spec = MetricSpec.from_config({"a": 1})
    source = build_source("Memory", "here", spec=spec, platform=MemoryPlatform())
    # The platform's own type goes to the platform, with the type and the location.
    assert isinstance(source, ListSource) and source.location == "memory:here"
    # Without that platform the type is unknown here (metrics names no platform).
    with pytest.raises(ConfigError, match="unknown source type 'memory'"):
        build_source("memory", "here", spec=spec)


def test_registered_source_type_is_built_by_its_factory(monkeypatch):
    class ListSource(MetricSource):
        def poll(self):
            return [MetricPoint(1, {"a": 2.0})]

    monkeypatch.setattr(sources_module, "_FACTORIES", dict(sources_module._FACTORIES))
    register_source_type("Memory", lambda location, spec: ListSource(location))

    source = build_source("memory", "here", spec=MetricSpec.from_config({"a": 1}))

    # Names are case-insensitive; the factory gets the location.
    assert isinstance(source, ListSource) and source.location == "here"
    assert _steps(source.poll()) == [(1, {"a": 2.0})]


def test_empty_location_is_a_config_error():
    with pytest.raises(ConfigError, match="empty location"):
        build_source("summary", "  ", spec=MetricSpec.from_config({"a": 1}))


def test_stdout_large_log_is_read_in_bounded_chunks_in_one_poll(tmp_path, monkeypatch):
    monkeypatch.setattr(sources_module, "_MAX_READ", 64)  # tiny chunks for the test
    log = tmp_path / "train.log"
    log.write_text("".join(f"noise line {i}\naccuracy=0.{i}\n" for i in range(1, 40)))
    source = StdoutSource(str(log), MetricSpec.from_config({ACC: 1}))
    # All 39 evaluations in one poll although each read is 64 bytes; lines split across chunks
    # are joined.
    points = source.poll()
    assert [p.step for p in points] == list(range(1, 40))
    assert points[-1].values == {ACC: 0.39}


def test_stdout_rewritten_log_forgets_the_half_step_of_the_old_file(tmp_path):
    log = tmp_path / "train.log"
    log.write_text("noise\n" * 10 + "accuracy=0.9\n")
    spec = MetricSpec.from_config({ACC: 1, LOSS: -1})
    source = StdoutSource(str(log), spec)
    assert source.poll() == []  # accuracy seen, loss not yet
    log.write_text("loss: 0.5\n")  # the job restarted and truncated its log

    # The old file's accuracy does not complete a step with the new file's loss.
    assert source.poll() == []


def test_json_document_larger_than_one_read_chunk(tmp_path, monkeypatch):
    monkeypatch.setattr(sources_module, "_MAX_READ", 16)
    path = tmp_path / "result.json"
    path.write_text('{\n  "step": 3,\n  "auc": 0.5,\n  "padding": "' + "x" * 100 + '"\n}\n')
    source = JsonSource(str(path), MetricSpec.from_config({"auc": 1}))
    # The whole document is read across chunks before parsing.
    assert _steps(source.poll()) == [(3, {"auc": 0.5})]


def test_table_type_is_read_by_the_maxcompute_platform_not_registered_here():
    from hpo_tools.platforms.maxcompute import MaxComputePlatform

    # Importing the platform registers nothing: `table` is the MaxCompute platform's own type,
    # built only through a MaxCompute platform the caller passes.
    assert "table" not in sources_module._FACTORIES
    assert "table" in MaxComputePlatform.metric_source_types
    with pytest.raises(ConfigError, match="unknown source type 'table'"):
        build_source("table", "SELECT step, auc FROM t", spec=MetricSpec.from_config({"auc": 1}))


def test_a_type_registered_with_takes_platform_gets_the_platform_passed(monkeypatch):
    seen = []

    def factory(location, spec, platform):
        seen.append(platform)
        return JsonSource(location, spec)

    monkeypatch.setattr(sources_module, "_FACTORIES", dict(sources_module._FACTORIES))
    register_source_type("needs-platform", factory, takes_platform=True)
    spec = MetricSpec.from_config({"a": 1})
    marker = object()

    build_source("needs-platform", "x.json", spec=spec, platform=marker)
    build_source("needs-platform", "x.json", spec=spec)

    # the caller's platform, and None (not some other platform) when the caller has none
    assert seen == [marker, None]


def test_a_plain_factory_is_called_without_the_platform(monkeypatch):
    calls = []

    def factory(location, spec):  # the (location, spec) shape: a platform must not break it
        calls.append(location)
        return JsonSource(location, spec)

    monkeypatch.setattr(sources_module, "_FACTORIES", dict(sources_module._FACTORIES))
    register_source_type("plain", factory)

    build_source("plain", "x.json", spec=MetricSpec.from_config({"a": 1}), platform=object())

    assert calls == ["x.json"]
