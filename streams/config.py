"""Load and validate configs/streams.toml: topics, release streams, caps.

Every error names where in the file, the value found and what to do, and is
raised before the worker touches Kafka. Unknown keys are errors too (a typo
in a privacy setting must not silently fall back to a default).
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path
from typing import Any

from privmon.privacy.accountant import BudgetExceeded, check_policies, headroom, scaled
from privmon.privacy.checks import PrivacyConfigError
from privmon.privacy.kinds import KINDS, Metric
from privmon.privacy.params import (
    ContributionBounds,
    HorizonCap,
    ParticipationCap,
    PrivacyBudget,
    StreamPolicy,
)
from privmon.streams.retention import Retention, RetentionError
from privmon.streams.schema import METRIC_FIELDS

# Where every default config path is found (one place): the configs shipped as package
# data (configs/ of a checkout, privmon/configs/ of a wheel), unless $PRIVMON_CONFIG
# names a pipeline config file (the default --config of every command, e.g.
# configs/demo.toml) or a directory of configs named like configs/ (streams.toml,
# alerts.toml, acls.toml, demo.toml).
CONFIG_ENV = "PRIVMON_CONFIG"
_chosen = Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else None
CONFIG_DIR = (_chosen if _chosen is not None and not _chosen.is_file()
              else Path(str(resources.files("privmon.configs"))))
DEFAULT_PATH = _chosen if _chosen is not None and _chosen.is_file() else CONFIG_DIR / "streams.toml"


class ConfigError(ValueError):
    """configs/streams.toml is missing something, has a bad value, or breaks a cap."""


@dataclass(frozen=True, kw_only=True)
class Topics:
    raw: str
    dlq: str
    partials: str
    ledger: str
    progress: str
    aggregate_prefix: str
    alerts: str = "privmon.alerts"  # written by the alert agent (privmon alerts)
    # stage 1's participation-cap state (streams/participation_state.py)
    participation: str = "privmon.participation"

    def aggregate(self, stream: str) -> str:
        return f"{self.aggregate_prefix}{stream}"


@dataclass(frozen=True, kw_only=True)
class PipelineConfig:
    source: Path
    policy_version: str
    app_id: str
    topics: Topics
    policies: tuple[StreamPolicy, ...]
    global_caps: tuple[HorizonCap, ...]
    retention: Retention

    def policy(self, name: str) -> StreamPolicy:
        for p in self.policies:
            if p.name == name:
                return p
        raise KeyError(f"no release stream {name!r}; configured: {[p.name for p in self.policies]}")


def _table(where: str, raw: Any, *, required: set[str], optional: set[str] = frozenset()) -> dict:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a table, got {raw!r}")
    missing = sorted(required - set(raw))
    if missing:
        raise ConfigError(f"{where}: missing {missing}; add them (see configs/streams.toml)")
    unknown = sorted(set(raw) - required - set(optional))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {unknown}; expected {sorted(required | set(optional))}"
        )
    return dict(raw)


def _build(where: str, cls: type, raw: Any, *, required: set[str], optional: set[str] = frozenset(),
           **extra: Any) -> Any:
    fields = _table(where, raw, required=required, optional=optional)
    try:
        return cls(**fields, **extra)
    except (PrivacyConfigError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _metric(where: str, raw: Any) -> Metric:
    metric = _metric_of_kind(where, raw)
    if metric.field not in METRIC_FIELDS:
        raise ConfigError(f"{where}.field = {metric.field!r}: expected one of "
                          f"{', '.join(METRIC_FIELDS)} (event fields a metric can aggregate)")
    return metric


def _metric_of_kind(where: str, raw: Any) -> Metric:
    kind = raw.get("kind") if isinstance(raw, Mapping) else None
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        *first, last = [repr(k) for k in KINDS]
        raise ConfigError(f"{where}.kind = {kind!r}: expected {', '.join(first)} or {last}")
    # TOML arrays arrive as lists; the metric configs hold tuples (frozen).
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in raw.items() if k != "kind"}
    return _build(where, cls, fields, required=set(cls.REQUIRED), optional=set(cls.OPTIONAL))


def _public_cells(where: str, name: Any, dims: tuple[str, ...], base: Path
                  ) -> tuple[tuple[str, ...], ...]:
    """The stream's cells from an inventory file beside the config: its [[cells]]
    tables, each naming (at least) the stream's dimensions; duplicates fold."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"{where}.public_cells = {name!r}: expected the name of an inventory "
                          "file beside this config (e.g. \"inventory.toml\")")
    path = base / name
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{where}.public_cells = {name!r}: no such file {path}; create it "
                          "with one [[cells]] table per cell") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{where}.public_cells: {path} is not valid TOML: {exc}") from None
    rows = raw.get("cells")
    if not isinstance(rows, list) or not rows:
        raise ConfigError(f"{where}.public_cells: {path} has no [[cells]] tables; add one per "
                          f"cell, each with {', '.join(dims)}")
    cells = set()
    for i, row in enumerate(rows):
        missing = [d for d in dims if not isinstance(row, Mapping) or d not in row]
        if missing:
            raise ConfigError(f"{where}.public_cells: {path} cells[{i}] = {row!r} lacks "
                              f"{missing}; every cell names {', '.join(dims)}")
        cell = tuple(row[d] for d in dims)
        if not all(isinstance(v, str) and v for v in cell):
            raise ConfigError(f"{where}.public_cells: {path} cells[{i}] = {row!r}: expected "
                              "non-empty strings")
        cells.add(cell)
    return tuple(sorted(cells))


def _stream(name: str, raw: Any, version: str, base: Path) -> StreamPolicy:
    where = f"streams.{name}"
    t = _table(where, raw, required={
        "window_ms", "dimensions", "k", "bounds", "budget", "participation", "horizon_caps",
        "metrics",
    }, optional={"grace_ms", "public_cells", "selection"})
    if not isinstance(t["dimensions"], list) or not all(isinstance(d, str) for d in
                                                         t["dimensions"]):
        raise ConfigError(f"{where}.dimensions = {t['dimensions']!r}: expected a list of "
                          "event fields, e.g. [\"server\", \"region\"]")
    public = (_public_cells(where, t["public_cells"], tuple(t["dimensions"]), base)
              if "public_cells" in t else ())
    if not isinstance(t["metrics"], list) or not t["metrics"]:
        raise ConfigError(f"{where}.metrics: expected at least one [[{where}.metrics]] table")
    metrics = tuple(_metric(f"{where}.metrics[{i}]", m) for i, m in enumerate(t["metrics"]))
    caps = tuple(
        _build(f"{where}.horizon_caps[{i}]", HorizonCap, c,
               required={"horizon_ms", "max_epsilon", "max_delta"})
        for i, c in enumerate(t["horizon_caps"])
    )
    try:
        return StreamPolicy(
            name=name,
            window_ms=t["window_ms"],
            grace_ms=t.get("grace_ms", 0),
            dimensions=tuple(t["dimensions"]),
            metrics=metrics,
            bounds=_build(f"{where}.bounds", ContributionBounds, t["bounds"],
                          required={"max_cells", "max_events_per_cell"}),
            budget=_build(f"{where}.budget", PrivacyBudget, t["budget"],
                          required={"mechanism", "epsilon", "delta", "shares"},
                          optional={"rho"}),
            k=t["k"],
            participation=_build(f"{where}.participation", ParticipationCap, t["participation"],
                                 required={"max_windows", "period_ms"}),
            horizon_caps=caps,
            policy_version=version,
            public_cells=public,
            selection=t.get("selection", "noisy_threshold"),
        )
    except (PrivacyConfigError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(path: Path | str = DEFAULT_PATH) -> PipelineConfig:
    """Parse, validate and budget-check the pipeline configuration."""
    path = Path(path)
    try:
        raw = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found; pass --config or create it") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        top = _table("(top level)", raw,
                     required={"policy_version", "app_id", "topics", "streams"},
                     optional={"global_caps", "retention", "derive_budgets"})
        topics = _build("topics", Topics, top["topics"],
                        required={"raw", "dlq", "partials", "ledger", "progress",
                                  "aggregate_prefix"}, optional={"alerts", "participation"})
        if not isinstance(top["streams"], Mapping) or not top["streams"]:
            raise ConfigError("streams: expected at least one [streams.<name>] table")
        version = str(top["policy_version"])
        policies = tuple(_stream(n, s, version, path.parent) for n, s in top["streams"].items())
        caps = tuple(
            _build(f"global_caps[{i}]", HorizonCap, c,
                   required={"horizon_ms", "max_epsilon", "max_delta"})
            for i, c in enumerate(top.get("global_caps", []))
        )
        for i, cap in enumerate(caps):
            for p in policies:
                period = p.participation.period_ms
                if cap.horizon_ms % period:
                    raise ConfigError(
                        f"global_caps[{i}].horizon_ms = {cap.horizon_ms}: expected a whole "
                        f"number of stream {p.name!r}'s participation periods ({period} ms), "
                        f"e.g. {max(1, cap.horizon_ms // period) * period}")
        derive = top.get("derive_budgets", False)
        if not isinstance(derive, bool):
            raise ConfigError(f"derive_budgets = {derive!r}: expected true or false")
        if derive:  # the caps state the guarantee wanted; the noise follows from them
            if not caps and not any(p.horizon_caps for p in policies):
                raise ConfigError("derive_budgets = true needs caps to derive from")
            factor = headroom(policies, caps)
            if not 0 < factor < math.inf:
                raise ConfigError(f"derive_budgets = true: no per-window budget meets the "
                                  f"caps (factor {factor}); raise a cap's delta or lower "
                                  "participation.max_windows")
            policies = tuple(scaled(p, factor) for p in policies)
        check_policies(policies, global_caps=caps)
        ret = _table("retention", top.get("retention", {}), required=set(), optional={
            "replay_margin_ms", "raw_ms", "dlq_ms", "partials_ms", "participation_ms",
            "delete_released_partials", "delete_every_s"})
        retention = Retention.for_policies(policies, **ret)
    except (ConfigError, BudgetExceeded, RetentionError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return PipelineConfig(source=path, policy_version=version, app_id=str(top["app_id"]),
                          topics=topics, policies=policies, global_caps=caps,
                          retention=retention)


def with_prefix(config: PipelineConfig, prefix: str) -> PipelineConfig:
    """The same pipeline on its own topics and groups (demo runs, tests)."""
    t = config.topics
    topics = Topics(raw=prefix + t.raw, dlq=prefix + t.dlq, partials=prefix + t.partials,
                    ledger=prefix + t.ledger, progress=prefix + t.progress,
                    aggregate_prefix=prefix + t.aggregate_prefix, alerts=prefix + t.alerts,
                    participation=prefix + t.participation)
    return replace(config, topics=topics, app_id=prefix + config.app_id)
