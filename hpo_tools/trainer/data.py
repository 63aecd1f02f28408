"""Synthetic Taobao-like click/buy data with a known generating process (numpy only, no TensorFlow).

The process is described in ``docs/data.md``. In short: users and items carry latent taste vectors
of dimension :data:`LATENT_DIM`; the click logit is their dot product plus item, user, position,
hour and price effects; a buy (only after a click) has its own latent part. Items are drawn from a
long-tailed popularity law, and every day item popularity, item appeal and user taste drift a
little.

Files (no header line, like EasyRec's ``CSVInput``; columns in :data:`COLUMNS` order)::

    OUT_DIR/daily/YYYYMMDD.csv     one file per day, the last day is ``end_date``
    OUT_DIR/train.csv              every day but the last
    OUT_DIR/eval.csv               the last day

Example:
    >>> paths = write_dataset("data", days=8, rows_per_day=20000, seed=0)
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hpo_tools import storage
from hpo_tools.errors import ConfigError
from hpo_tools.trainer import DEFAULT_END_DATE

__all__ = [
    "COLUMNS",
    "LATENT_DIM",
    "DEFAULT_END_DATE",
    "DataSpec",
    "DatasetPaths",
    "generate_days",
    "write_dataset",
    "read_columns",
]

_logger = logging.getLogger(__name__)

#: The CSV columns, in file order (no header line in the files).
COLUMNS: tuple[str, ...] = (
    "clk", "buy", "user_id", "age_level", "gender", "pvalue_level", "shopping_level",
    "occupation", "new_user_class_level", "city_level", "item_id", "cate_id", "brand_id",
    "campaign_id", "customer_id", "price", "pid", "hour", "weekday", "user_click_cnt_7d",
    "item_ctr_7d", "user_cate_affinity",
)

#: Dimension of the latent user/item taste vectors: embeddings much smaller than this underfit.
LATENT_DIM = 8


@dataclass(frozen=True)
class DataSpec:
    """Sizes and strengths of the generating process (defaults are what `make-data` uses)."""

    n_users: int = 500
    n_items: int = 800
    n_cates: int = 40
    n_brands: int = 300
    n_campaigns: int = 600
    n_customers: int = 200
    base_click_logit: float = -3.2
    latent_scale: float = 0.8
    zipf_exponent: float = 1.05
    popularity_drift: float = 0.35
    appeal_drift: float = 0.12
    taste_drift: float = 0.12


@dataclass(frozen=True)
class DatasetPaths:
    """What :func:`write_dataset` wrote."""

    daily: tuple[Path, ...]
    train: Path
    eval: Path
    dates: tuple[str, ...]


def _parse_date(text: str) -> _dt.date:
    try:
        return _dt.datetime.strptime(text, "%Y%m%d").date()
    except ValueError as err:
        raise ConfigError(f"--end-date: expected YYYYMMDD, got {text!r}") from err


def _day_list(days: int, end_date: str) -> list[_dt.date]:
    end = _parse_date(end_date)
    return [end - _dt.timedelta(days=days - 1 - k) for k in range(days)]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


class _World:
    """Users, items and their latent factors; :meth:`step_day` applies one day of drift."""

    def __init__(self, spec: DataSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.rng = rng
        d = LATENT_DIM
        s = spec.latent_scale
        # Users: demographics, and a taste vector that is partly shared by the (age, gender) group
        # (so cold users are partly predictable) and partly individual (needs the user embedding).
        nu = spec.n_users
        self.age = rng.integers(1, 7, nu)
        self.gender = rng.integers(1, 3, nu)
        self.pvalue = rng.integers(1, 4, nu)
        self.shopping = rng.integers(1, 4, nu)
        self.occupation = rng.integers(0, 2, nu)
        self.new_user_class = rng.integers(1, 5, nu)
        self.city = rng.integers(1, 6, nu)
        group_taste = rng.normal(0.0, s, (7, 3, d))
        self.user_taste = 0.6 * group_taste[self.age, self.gender] + 0.8 * rng.normal(0, s, (nu, d))
        self.user_activity = rng.normal(0.0, 0.5, nu)
        self.user_buy_taste = rng.normal(0.0, s, (nu, d))
        # Items: category -> brand -> item; taste vectors are nested the same way.
        ni = spec.n_items
        cate_vec = rng.normal(0.0, s, (spec.n_cates, d))
        self.cate_vec = cate_vec
        brand_cate = rng.integers(0, spec.n_cates, spec.n_brands)
        brand_vec = cate_vec[brand_cate] + 0.5 * rng.normal(0, s, (spec.n_brands, d))
        self.brand = rng.integers(0, spec.n_brands, ni)
        self.cate = brand_cate[self.brand]
        self.customer = self.brand % spec.n_customers
        self.campaign = rng.integers(0, spec.n_campaigns, ni)
        self.item_vec = 0.7 * brand_vec[self.brand] + 0.6 * rng.normal(0, s, (ni, d))
        self.item_buy_vec = 0.5 * self.item_vec + 0.7 * rng.normal(0, s, (ni, d))
        cate_price = rng.normal(0.0, 0.6, spec.n_cates)
        self.log_price = np.log(60.0) + cate_price[self.cate] + rng.normal(0.0, 0.5, ni)
        self.item_appeal = rng.normal(0.0, 0.5, ni)
        # Popularity: a Zipf law over a random permutation of items (long tail).
        ranks = rng.permutation(ni) + 1
        self.log_popularity = -spec.zipf_exponent * np.log(ranks)
        self.recent_ctr = _sigmoid(spec.base_click_logit + self.item_appeal)

    def step_day(self) -> None:
        """Drift: item popularity and appeal, and user taste, move a little each day."""
        spec, rng = self.spec, self.rng
        self.log_popularity = self.log_popularity + rng.normal(
            0.0, spec.popularity_drift, spec.n_items
        )
        self.item_appeal = self.item_appeal + rng.normal(0.0, spec.appeal_drift, spec.n_items)
        keep = np.sqrt(1.0 - spec.taste_drift**2)
        noise = rng.normal(0.0, spec.latent_scale, self.user_taste.shape)
        self.user_taste = keep * self.user_taste + spec.taste_drift * noise

    def sample_day(self, date: _dt.date, rows: int) -> dict[str, np.ndarray]:
        """Draw ``rows`` impressions of ``date``; returns column -> array."""
        spec, rng = self.spec, self.rng
        user_weight = np.exp(self.user_activity)
        users = rng.choice(spec.n_users, rows, p=user_weight / user_weight.sum())
        item_weight = np.exp(self.log_popularity - self.log_popularity.max())
        items = rng.choice(spec.n_items, rows, p=item_weight / item_weight.sum())
        pid = rng.integers(1, 3, rows)
        hour = rng.integers(0, 24, rows)
        weekday = np.full(rows, date.weekday())
        price = np.exp(self.log_price[items] + rng.normal(0.0, 0.1, rows))

        taste = np.einsum("ij,ij->i", self.user_taste[users], self.item_vec[items])
        price_sensitivity = 0.25 * (4 - self.pvalue[users])
        logit = (
            spec.base_click_logit
            + taste
            + self.item_appeal[items]
            + 0.5 * self.user_activity[users]
            + np.where(pid == 1, 0.3, -0.3)
            + 0.25 * np.sin((hour - 14) / 24.0 * 2 * np.pi)
            - price_sensitivity * (np.log(price) - np.log(60.0))
        )
        clk = (rng.random(rows) < _sigmoid(logit)).astype(np.int64)
        buy_logit = (
            -2.0
            + np.einsum("ij,ij->i", self.user_buy_taste[users], self.item_buy_vec[items])
            + 0.5 * (self.shopping[users] - 2)
            - 0.5 * (np.log(price) - np.log(60.0))
            + 0.5 * taste
        )
        buy = clk * (rng.random(rows) < _sigmoid(buy_logit)).astype(np.int64)

        # Numeric features: noisy views of the hidden quantities, as a feature pipeline sees them.
        click_cnt = rng.poisson(3.0 * np.exp(self.user_activity[users])).astype(np.float64)
        item_ctr = np.clip(self.recent_ctr[items] + rng.normal(0.0, 0.02, rows), 0.0, 1.0)
        affinity = _sigmoid(
            np.einsum("ij,ij->i", self.user_taste[users], self.cate_vec[self.cate[items]])
            + rng.normal(0.0, 0.5, rows)
        )
        # Yesterday's click-through rate per item feeds tomorrow's item_ctr_7d (a lagged feature).
        self.recent_ctr = 0.7 * self.recent_ctr + 0.3 * _sigmoid(
            spec.base_click_logit + self.item_appeal
        )
        return {
            "_p_clk": _sigmoid(logit),  # true probabilities: not written, for docs/tests
            "_p_buy": _sigmoid(logit) * _sigmoid(buy_logit),
            "clk": clk,
            "buy": buy,
            "user_id": users,
            "age_level": self.age[users],
            "gender": self.gender[users],
            "pvalue_level": self.pvalue[users],
            "shopping_level": self.shopping[users],
            "occupation": self.occupation[users],
            "new_user_class_level": self.new_user_class[users],
            "city_level": self.city[users],
            "item_id": items,
            "cate_id": self.cate[items],
            "brand_id": self.brand[items],
            "campaign_id": self.campaign[items],
            "customer_id": self.customer[items],
            "price": price,
            "pid": pid,
            "hour": hour,
            "weekday": weekday,
            "user_click_cnt_7d": click_cnt,
            "item_ctr_7d": item_ctr,
            "user_cate_affinity": affinity,
        }


_ID_PREFIX = {
    "user_id": "u",
    "item_id": "i",
    "cate_id": "c",
    "brand_id": "b",
    "campaign_id": "cp",
    "customer_id": "cu",
}
_FLOAT_COLUMNS = {"price": 2, "user_click_cnt_7d": 0, "item_ctr_7d": 4, "user_cate_affinity": 4}


def _format_column(name: str, values: np.ndarray) -> np.ndarray:
    if name in _ID_PREFIX:
        return np.char.add(_ID_PREFIX[name], values.astype(str))
    if name in _FLOAT_COLUMNS:
        return np.char.mod(f"%.{_FLOAT_COLUMNS[name]}f", values)
    return values.astype(np.int64).astype(str)


def _to_csv(columns: dict[str, np.ndarray]) -> str:
    formatted = [_format_column(name, columns[name]) for name in COLUMNS]
    lines = formatted[0]
    for col in formatted[1:]:
        lines = np.char.add(np.char.add(lines, ","), col)
    return "\n".join(lines.tolist()) + "\n"


def generate_days(
    days: int,
    rows_per_day: int,
    seed: int = 0,
    end_date: str = DEFAULT_END_DATE,
    spec: DataSpec | None = None,
) -> list[tuple[str, dict[str, np.ndarray]]]:
    """Generate ``days`` consecutive days ending at ``end_date`` (``YYYYMMDD``).

    Args:
        days: number of days (>= 2: the last day is the evaluation split).
        rows_per_day: impressions per day (>= 10).
        seed: the only source of randomness; the same arguments give the same data.
        end_date: the last day, ``YYYYMMDD``.
        spec: sizes and strengths of the process (default :class:`DataSpec`).

    Returns:
        ``[(YYYYMMDD, {column: array}), ...]`` in date order.

    Raises:
        ConfigError: on a bad count or date.
    """
    if days < 2:
        raise ConfigError(f"--days: expected at least 2 (train days + 1 eval day), got {days}")
    if rows_per_day < 10:
        raise ConfigError(f"--rows-per-day: expected at least 10, got {rows_per_day}")
    dates = _day_list(days, end_date)
    world = _World(spec or DataSpec(), np.random.default_rng(seed))
    out = []
    for k, date in enumerate(dates):
        if k:
            world.step_day()
        out.append((date.strftime("%Y%m%d"), world.sample_day(date, rows_per_day)))
    return out


def write_dataset(
    out_dir: str | os.PathLike[str],
    days: int = 8,
    rows_per_day: int = 20000,
    seed: int = 0,
    end_date: str = DEFAULT_END_DATE,
) -> DatasetPaths:
    """Write the daily files and the train/eval splits under ``out_dir`` (see module docstring)."""
    root = Path(out_dir)
    generated = generate_days(days, rows_per_day, seed=seed, end_date=end_date)
    texts = []
    daily = []
    for date, columns in generated:
        text = _to_csv(columns)
        path = root / "daily" / f"{date}.csv"
        storage.write_text(path, text)
        texts.append(text)
        daily.append(path)
    storage.write_text(root / "train.csv", "".join(texts[:-1]))
    storage.write_text(root / "eval.csv", texts[-1])
    _logger.info("wrote %d days (%s..%s) under %s", days, generated[0][0], generated[-1][0], root)
    return DatasetPaths(
        daily=tuple(daily),
        train=root / "train.csv",
        eval=root / "eval.csv",
        dates=tuple(date for date, _ in generated),
    )


def read_columns(path: str | os.PathLike[str]) -> dict[str, list[str]]:
    """Read one of our CSV files back as column -> list of strings (for tests and inspection)."""
    rows = Path(path).read_text(encoding="utf-8").splitlines()
    fields = [row.split(",") for row in rows if row]
    for number, row in enumerate(fields, start=1):
        if len(row) != len(COLUMNS):
            raise ConfigError(f"{path}:{number}: expected {len(COLUMNS)} columns, got {len(row)}")
    return {name: [row[k] for row in fields] for k, name in enumerate(COLUMNS)}
