"""`hpo-tools make-data OUT_DIR`: write the synthetic Taobao-like click/buy data set as CSV."""

from __future__ import annotations

import argparse

NAME = "make-data"
HELP = "write a synthetic click/buy CSV data set (daily files + train/eval splits)"
DESCRIPTION = """\
Write a synthetic Taobao-like click/buy data set from a known generating process
(see docs/data.md), as CSV files without a header line:

  OUT_DIR/daily/YYYYMMDD.csv   one file per day, the last one is --end-date
  OUT_DIR/train.csv            every day but the last
  OUT_DIR/eval.csv             the last day

The same arguments always give byte-identical files.
Exit codes: 0 written; 2 bad arguments (nothing written).

example:
  hpo-tools make-data demo-data --days 8 --rows-per-day 20000
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the command's arguments to ``parser``."""
    from hpo_tools.trainer import DEFAULT_END_DATE

    parser.add_argument("out_dir", metavar="OUT_DIR", help="directory to write into")
    parser.add_argument(
        "--days", type=int, default=8, help="number of days, at least 2 (default: 8)"
    )
    parser.add_argument(
        "--rows-per-day",
        type=int,
        default=20000,
        help="impressions per day, at least 10 (default: 20000)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    parser.add_argument(
        "--end-date",
        default=DEFAULT_END_DATE,
        help=f"last day as YYYYMMDD (default: {DEFAULT_END_DATE})",
    )


def run(args: argparse.Namespace) -> int:
    """Write the data set; returns the exit code."""
    from hpo_tools.trainer.data import write_dataset

    paths = write_dataset(
        args.out_dir,
        days=args.days,
        rows_per_day=args.rows_per_day,
        seed=args.seed,
        end_date=args.end_date,
    )
    print(f"daily files: {paths.daily[0].parent}/{{{paths.dates[0]}..{paths.dates[-1]}}}.csv")
    print(f"train: {paths.train} ({len(paths.dates) - 1} days)")
    print(f"eval:  {paths.eval} (day {paths.dates[-1]})")
    return 0
