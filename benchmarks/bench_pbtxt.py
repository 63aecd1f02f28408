"""Config editor benchmark: round trip against protobuf's text_format, and 50 edits.

Run by hand (results go to docs/benchmarks.md, "Config editor")::

    .venv/bin/python benchmarks/bench_pbtxt.py

(a) parse + print a config with 1,000 ``feature_configs`` (~129 KB) with hpo_tools.pbtxt, and
    ``text_format.Parse`` + ``MessageToString`` of the same text with the test schema
    (tests/protos/easyrec_like.proto); target: ratio ours / protobuf <= 1.0.
(b) apply 50 edits of every selector kind to the parsed document; target: under 20 ms.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from google.protobuf import message_factory, text_format  # noqa: E402

from hpo_tools.pbtxt import Document  # noqa: E402
from hpo_tools.pbtxt.schema import load_schema  # noqa: E402

N_FEATURES = 1000
HEADER = """\
# Benchmark config: an EasyRec-shaped DBMTL pipeline with 1,000 feature_configs.
train_input_path: "data/train.csv"
eval_input_path: "data/eval.csv"
model_dir: "experiments/bench"
data_config {
  batch_size: 512
  num_epochs: 1
  input_type: CSVInput
  label_fields: "clk"
  label_fields: "buy"
}
"""
FOOTER = """\
model_config {
  model_class: "DBMTL"
  feature_groups {
    group_name: "all"
    feature_names: "feature_0000"
    wide_deep: DEEP
  }
  dbmtl {
    bottom_dnn {
      hidden_units: [512, 256]
    }
    task_towers {
      tower_name: "ctr"
      label_name: "clk"
      loss_type: CLASSIFICATION
      dnn {
        hidden_units: 256
        hidden_units: 128
        hidden_units: 64
      }
      weight: 1.0
    }
    task_towers {
      tower_name: "cvr"
      label_name: "buy"
      dnn {
        hidden_units: [256, 128, 64]
      }
      relation_tower_names: ["ctr"]
      weight: 1.0
    }
    l2_regularization: 1e-6
  }
  embedding_regularization: 5e-6
}
train_config {
  optimizer_config {
    adam_optimizer {
      learning_rate {
        exponential_decay_learning_rate {
          initial_learning_rate: 0.001
          decay_steps: 1000
          decay_factor: 0.5
          min_learning_rate: 1e-7
        }
      }
    }
    use_moving_average: false
  }
  num_steps: 2000
  save_checkpoints_steps: 500
  sync_replicas: true
}
"""


def build_config(n: int = N_FEATURES) -> str:
    """A pipeline.config with n feature_configs (ids, raw features with boundaries, tags)."""
    parts = [HEADER]
    for i in range(n):
        name = f"feature_{i:04d}"
        if i % 10 == 9:
            parts.append(
                "feature_configs {\n"
                f'  input_names: "{name}"\n'
                "  feature_type: RawFeature\n"
                f"  embedding_dim: {8 + (i % 4) * 8}\n"
                "  boundaries: [0.1, 0.5, 1.0, 5.0]\n"
                "}\n"
            )
        else:
            kind = "TagFeature" if i % 10 == 4 else "IdFeature"
            comment = f"  # column {i}" if i % 3 == 0 else ""
            parts.append(
                "feature_configs {\n"
                f'  input_names: "{name}"{comment}\n'
                f"  feature_type: {kind}\n"
                f"  embedding_dim: {8 + (i % 4) * 8}\n"
                f"  hash_bucket_size: {100000 * (1 + i % 10)}\n"
                "}\n"
            )
    parts.append(FOOTER)
    return "".join(parts)


LR = "train_config.optimizer_config[0].adam_optimizer.learning_rate.exponential_decay_learning_rate"


def fifty_edits() -> dict[str, object]:
    """50 edit entries of every kind the issue names."""
    edits: dict[str, object] = {"feature_configs[:].embedding_dim": 16}  # 1: [:]
    for k in range(16):  # 16: [input_names[0]=...]
        name = f"feature_{k * 60 + 1:04d}"
        edits[f"feature_configs[input_names[0]={name}].hash_bucket_size"] = 7000 + k
    edits.update({  # 4: >= / <= conditions
        "feature_configs[hash_bucket_size>=900000].embedding_dim": 48,
        "feature_configs[hash_bucket_size<=100000].embedding_dim": 4,
        "feature_configs[embedding_dim>=32].feature_type": "IdFeature",
        "feature_configs[hash_bucket_size<=7003].embedding_dim": 12,
    })
    edits.update({  # 3: slices
        "feature_configs[10:20].embedding_dim": 24,
        "feature_configs[:5].feature_type": "TagFeature",
        "feature_configs[-10:].embedding_dim": 32,
    })
    edits.update({  # 3: negative indices
        "feature_configs[-1].embedding_dim": 64,
        "feature_configs[-2].input_names[0]": "renamed",
        "model_config.dbmtl.task_towers[-1].weight": 0.5,
    })
    edits.update({  # 4: hidden_units[j]
        "model_config.dbmtl.bottom_dnn.hidden_units[0]": 1024,
        "model_config.dbmtl.bottom_dnn.hidden_units[-1]": 128,
        "model_config.dbmtl.task_towers[0].dnn.hidden_units[1]": 96,
        'model_config.dbmtl.task_towers[tower_name="cvr"].dnn.hidden_units[2]': 48,
    })
    edits.update({  # 4: learning-rate paths
        f"{LR}.initial_learning_rate": 0.0005,
        f"{LR}.decay_steps": 2000,
        f"{LR}.decay_factor": 0.7,
        f"{LR}.min_learning_rate": 1e-8,
    })
    edits.update({  # 3: multi-key entries
        "train_config.num_steps;train_config.save_checkpoints_steps": "4000;1000",
        "model_config.dbmtl.l2_regularization;model_config.embedding_regularization": "1e-5;1e-6",
        "data_config.batch_size;data_config.num_epochs": [1024, 2],
    })
    edits.update({  # 2: enums
        "feature_configs[3].feature_type": "TagFeature",
        "model_config.dbmtl.task_towers[0].loss_type": "CLASSIFICATION",
    })
    edits.update({  # 2: list values
        "model_config.dbmtl.task_towers[0].dnn.hidden_units": [512, 256, 128, 64],
        "feature_configs[9].boundaries": [0.2, 0.4, 0.8],
    })
    edits.update({  # 8: other scalars
        "model_dir": "experiments/bench_edited",
        "train_config.sync_replicas": False,
        "train_config.optimizer_config[0].use_moving_average": True,
        "model_config.dbmtl.task_towers[0].weight": 2.0,
        "model_config.dbmtl.task_towers[1].label_name": "buy2",
        "feature_configs[500].hash_bucket_size": 123,
        "feature_configs[input_names[0]=feature_0999].embedding_dim": 8,
        "data_config.input_type": "CSVInputV2",
    })
    assert len(edits) == 50, len(edits)
    return edits


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Median wall and CPU time in ms over `repeat` runs (after one warm-up), and the result.

    CPU time (this process only) is the fairer number on a shared, loaded machine; wall time is
    what a user waits.
    """
    result = fn()
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        result = fn()
        cpu.append((time.process_time() - start_cpu) * 1000.0)
        wall.append((time.perf_counter() - start) * 1000.0)
    return statistics.median(wall), statistics.median(cpu), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20, help="timed runs per measurement")
    args = parser.parse_args(argv)

    text = build_config()
    schema = load_schema(proto_path=REPO / "tests" / "protos", message="easyrec_like.EasyRecConfig")
    message_class = message_factory.GetMessageClass(schema)
    edits = fifty_edits()

    def ours_round_trip() -> str:
        return Document.parse(text, "bench.config").to_text()

    def protobuf_round_trip() -> str:
        message = message_class()
        text_format.Parse(text, message)
        return text_format.MessageToString(message, as_utf8=True)

    ours = timed(ours_round_trip, args.repeat)
    assert ours[2] == text
    pb = timed(protobuf_round_trip, args.repeat)

    docs = [Document.parse(text, "bench.config") for _ in range(args.repeat + 1)]
    docs_schema = [Document.parse(text, "bench.config") for _ in range(args.repeat + 1)]
    it = iter(docs)
    it_schema = iter(docs_schema)
    edit = timed(lambda: next(it).apply(edits), args.repeat)
    edit_schema = timed(lambda: next(it_schema).apply(edits, schema=schema), args.repeat)

    def whole() -> str:
        doc = Document.parse(text, "bench.config")
        doc.apply(edits)
        return doc.to_text()

    whole = timed(whole, args.repeat)
    edited = whole[2]
    # The edited text is still a valid config for protobuf, with the values we wrote.
    check = message_class()
    text_format.Parse(edited, check)
    assert check.feature_configs[1].hash_bucket_size == 7000
    assert check.feature_configs[-2].input_names[0] == "renamed"
    assert list(check.model_config.dbmtl.task_towers[0].dnn.hidden_units) == [512, 256, 128, 64]

    size_kb = len(text.encode("utf-8")) / 1000
    print(f"python {platform.python_version()}, protobuf text_format "
          f"({_protobuf_impl()}), config {size_kb:.0f} KB, {N_FEATURES} feature_configs, "
          f"median of {args.repeat} runs")
    rows = [
        ("(a) round trip: hpo_tools.pbtxt parse + print", ours),
        ("(a) round trip: protobuf text_format Parse + MessageToString", pb),
        ("(b) apply 50 edits, no schema (target < 20 ms)", edit),
        ("(b) apply 50 edits, with schema", edit_schema),
        ("parse + 50 edits + print, no schema", whole),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"| {'measurement'.ljust(width)} | wall ms | CPU ms |")
    print(f"|{'-' * (width + 2)}|--------:|-------:|")
    for label, (wall_ms, cpu_ms, _) in rows:
        print(f"| {label.ljust(width)} | {wall_ms:7.2f} | {cpu_ms:6.2f} |")
    ratio = f"{ours[0] / pb[0]:.2f} (CPU {ours[1] / pb[1]:.2f})"
    print(f"| {'(a) ratio ours / protobuf (target <= 1.0)'.ljust(width)} | {ratio:>16} |")
    return 0


def _protobuf_impl() -> str:
    import google.protobuf
    from google.protobuf.internal import api_implementation

    return f"{google.protobuf.__version__}, {api_implementation.Type()}"


if __name__ == "__main__":
    raise SystemExit(main())
