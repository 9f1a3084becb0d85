"""The capacity planners' report: HTML with PNG plots from the daily capacity stream.

  # capacity releases (one row per day x (region, server), see releases.to_frame)
  #   -> per region and per server: daily bandwidth and sessions, noise std summed
  #      in quadrature over released cells -> 95% bands
  #   -> peak hours: the released hour-of-day buckets, summed over days and servers
  #   -> growth: weighted least-squares trend of the daily totals
  #   -> PNGs (matplotlib, Agg) + report.html with the PNGs embedded (self-contained)

Everything here is post-processing of released values: no budget is spent.
Cells that were never released (under k, or held back by DP selection) are
absent, so totals are totals over released cells; the report says so.
"""

from __future__ import annotations

import base64
import html
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

Z95 = 1.959963984540054
PANELS = ("bandwidth_by_region", "sessions_by_region", "top_servers", "peak_hours", "growth")


@dataclass(frozen=True)
class Trend:
    per_day: float        # slope, units per day
    per_day_se: float     # standard error of the slope (noise and day-to-day variation)
    level: float          # fitted value on the last day
    pct_per_30d: float    # 30 * slope / level, in percent


def _summed(frame: pd.DataFrame, by: list[str], metric: str) -> pd.DataFrame:
    """Sum a metric over released cells per group; std in quadrature (noise is independent)."""
    g = frame.assign(_var=frame[f"{metric}_std"] ** 2).groupby(by, sort=True)
    out = g.agg(value=(metric, "sum"), var=("_var", "sum"), cells=(metric, "size"))
    out["std"] = np.sqrt(out["var"])
    out["low"] = out["value"] - Z95 * out["std"]
    out["high"] = out["value"] + Z95 * out["std"]
    return out.drop(columns="var").reset_index()


MIN_TREND_DAYS = 3.0  # a per-30-days growth from less data than this is not shown
MIN_TREND_WINDOWS = 5


def trend(days: pd.Series, values: pd.Series, stds: pd.Series) -> Trend | None:
    """Weighted least squares of value on day (weights 1/noise variance); the slope's
    standard error is scaled by the residual spread, so it covers real variation too.
    None with fewer than MIN_TREND_WINDOWS windows or MIN_TREND_DAYS days of data: a
    30-day extrapolation from minutes of releases (the demo's) would be noise."""
    x = (days - days.min()).dt.total_seconds().to_numpy() / 86_400
    y = values.to_numpy(dtype=float)
    if len(x) < MIN_TREND_WINDOWS or np.ptp(x) < MIN_TREND_DAYS:
        return None
    w = 1 / np.maximum(stds.to_numpy(dtype=float), 1e-9) ** 2
    X = np.column_stack([np.ones_like(x), x])
    cov = np.linalg.inv(X.T @ (w[:, None] * X))
    beta = cov @ X.T @ (w * y)
    resid = y - X @ beta
    scale = max(float((w * resid**2).sum() / (len(x) - 2)), 1.0)
    se = math.sqrt(cov[1, 1] * scale)
    level = float(beta[0] + beta[1] * x.max())
    pct = 100 * 30 * float(beta[1]) / level if level > 0 else float("nan")
    return Trend(per_day=float(beta[1]), per_day_se=se, level=level, pct_per_30d=pct)


def _bucket_columns(frame: pd.DataFrame) -> list[tuple[int, str]]:
    cols = []
    for c in frame.columns:
        if c.startswith("hour.bucket.") and not c.endswith(
                ("_std", "_ci95_low", "_ci95_high", "_raw")):
            cols.append((int(float(c.split(".")[-1].split("-")[0])), c))
    return sorted(cols)


def _bands(ax: object, data: pd.DataFrame, key: str, scale: float, label_fmt: str) -> None:
    """Value and 95% band per group, clipped at 0: bandwidth and sessions cannot be
    negative, whatever the noise drew (clipping is post-processing)."""
    for name, part in data.groupby(key, sort=True):
        t = part["window_start"]
        ax.plot(t, part["value"].clip(lower=0) / scale, marker="o", ms=3,
                label=label_fmt.format(name))
        ax.fill_between(t, part["low"].clip(lower=0) / scale,
                        part["high"].clip(lower=0) / scale, alpha=0.2)


def _save(fig: object, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)


def render(frame: pd.DataFrame, out_dir: Path, *, title: str = "Capacity report",
           top_servers: int = 5) -> Path:
    """Write the PNG panels and a self-contained report.html into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if frame.empty:
        raise ValueError("no capacity releases in the chosen period: nothing to report "
                         "(is the worker running, and --days long enough?)")
    out_dir.mkdir(parents=True, exist_ok=True)
    gb = 1e9
    bw = _summed(frame, ["window_start", "region"], "bytes.sum")
    sess = _summed(frame, ["window_start", "region"], "events")

    fig, ax = plt.subplots(figsize=(9, 4.5))
    _bands(ax, bw, "region", gb, "{}")
    ax.set(title="Bandwidth per region (95% noise bands)", ylabel="GB per window", xlabel="window")
    ax.legend(fontsize=8)
    _save(fig, out_dir / "bandwidth_by_region.png")

    fig, ax = plt.subplots(figsize=(9, 4.5))
    _bands(ax, sess, "region", 1.0, "{}")
    ax.set(title="Sessions per region (95% noise bands)", ylabel="session reports per window",
           xlabel="window")
    ax.legend(fontsize=8)
    _save(fig, out_dir / "sessions_by_region.png")

    fig, ax = plt.subplots(figsize=(9, 4.5))
    if "server" in frame.columns:
        per_server = _summed(frame, ["window_start", "server"], "bytes.sum")
        top = (per_server.groupby("server")["value"].sum().sort_values(ascending=False)
               .head(top_servers).index.tolist())
        _bands(ax, per_server[per_server["server"].isin(top)], "server", gb, "{}")
        ax.set(title=f"Top {len(top)} servers by bandwidth (95% noise bands)",
               ylabel="GB per window", xlabel="window")
        ax.legend(fontsize=8)
    else:  # e.g. configs/demo.toml: the capacity stream is released per region only
        ax.text(0.5, 0.5, "the capacity stream has no server dimension: per region only",
                ha="center", va="center", transform=ax.transAxes)
        ax.set(title="Top servers by bandwidth")
    _save(fig, out_dir / "top_servers.png")

    buckets = _bucket_columns(frame)
    peaks: dict[str, tuple[int, float, float]] = {}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    if buckets:
        hours = np.array([h for h, _ in buckets])
        for region, part in frame.groupby("region", sort=True):
            vals = np.array([part[c].sum() for _, c in buckets], dtype=float)
            sds = np.array([math.sqrt((part[f"{c}_std"] ** 2).sum()) for _, c in buckets])
            ax.errorbar(hours, vals, yerr=Z95 * sds, marker="o", ms=3, capsize=2, label=region)
            peak = int(np.argmax(vals))
            peaks[region] = (int(hours[peak]), float(vals[peak]), float(sds[peak]))
        ax.legend(fontsize=8)
    else:
        ax.text(0.5, 0.5, "the capacity stream releases no hour-of-day buckets",
                ha="center", va="center", transform=ax.transAxes)
    ax.set(title="Peak hours: session reports per hour of day, UTC (95% noise bars)",
           xlabel="hour of day (UTC)", ylabel="session reports", xticks=range(0, 24, 2))
    _save(fig, out_dir / "peak_hours.png")

    totals_bw = _summed(frame, ["window_start"], "bytes.sum")
    totals_s = _summed(frame, ["window_start"], "events")
    trends = {"bandwidth (GB/window)": (totals_bw, gb), "sessions (reports/window)": (totals_s, 1)}
    fitted: dict[str, Trend | None] = {}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, (name, (data, scale)) in zip(axes, trends.items(), strict=True):
        tr = trend(data["window_start"], data["value"] / scale, data["std"] / scale)
        fitted[name] = tr
        t = data["window_start"]
        ax.errorbar(t, data["value"] / scale, yerr=Z95 * data["std"] / scale, fmt="o", ms=3,
                    capsize=2, label="released total")
        if tr is not None:
            days = (t - t.min()).dt.total_seconds() / 86_400
            x_end = days.max()
            line = tr.level + tr.per_day * (days - x_end)
            ax.plot(t, line, "--", label=f"trend {tr.pct_per_30d:+.1f}% per 30 d")
        ax.set(title=f"Growth: {name}", xlabel="window")
        ax.legend(fontsize=8)
    _save(fig, out_dir / "growth.png")

    page = _html(frame, out_dir, title=title, bw=bw, sess=sess, peaks=peaks, fitted=fitted)
    path = out_dir / "report.html"
    path.write_text(page)
    return path


def _img(out_dir: Path, name: str, alt: str) -> str:
    data = base64.b64encode((out_dir / f"{name}.png").read_bytes()).decode()
    return f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">' \
           f"<figcaption>{html.escape(alt)}</figcaption></figure>"


def _html(frame: pd.DataFrame, out_dir: Path, *, title: str, bw: pd.DataFrame,
          sess: pd.DataFrame, peaks: dict, fitted: dict) -> str:
    last = frame["window_start"].max()
    first = frame["window_start"].min()
    rows = []
    for region in sorted(frame["region"].unique()):
        b = bw[(bw["region"] == region) & (bw["window_start"] == last)]
        s = sess[(sess["region"] == region) & (sess["window_start"] == last)]
        peak = peaks.get(region)
        rows.append(
            "<tr>" + "".join(f"<td>{html.escape(str(x))}</td>" for x in (
                region,
                f"{b['value'].iloc[0] / 1e9:.2f} ± {Z95 * b['std'].iloc[0] / 1e9:.2f}"
                if len(b) else "not released",
                f"{s['value'].iloc[0]:,.0f} ± {Z95 * s['std'].iloc[0]:,.0f}"
                if len(s) else "not released",
                f"{peak[0]:02d}:00-{peak[0] + 1:02d}:00" if peak else "-",
            )) + "</tr>")
    growth = "".join(
        f"<li>{html.escape(name)}: "
        + (f"{t.per_day:+.4g} ± {Z95 * t.per_day_se:.2g} per day "
           f"({t.pct_per_30d:+.1f}% per 30 days)" if t else
           f"too little data for a trend (needs {MIN_TREND_WINDOWS} windows over "
           f"{MIN_TREND_DAYS:g} days or more)")
        + "</li>" for name, t in fitted.items())
    eps = sorted(frame["epsilon"].unique())
    cell = ", ".join(["window", *(d for d in ("region", "server") if d in frame.columns)])
    figures = "\n".join(_img(out_dir, n, n.replace("_", " ")) for n in PANELS)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1000px;margin:2em auto}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
figure{{margin:1.5em 0}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1>
<p>Windows {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC, {frame['window_start'].nunique()}
windows, {len(frame)} released ({cell}) cells, from the differentially private
capacity stream (epsilon per window: {", ".join(f"{e:g}" for e in eps)}). Every value is noisy:
± and the bands are 95% noise intervals. Totals are over released cells only; cells with too few
accounts are never released.</p>
<h2>Latest window per region</h2>
<table><tr><th>region</th><th>bandwidth GB</th><th>session reports</th><th>peak hour (UTC)</th></tr>
{"".join(rows)}</table>
<h2>Growth trend (all regions)</h2><ul>{growth}</ul>
{figures}
</body></html>
"""
