"""A self-contained HTML report of a ``metrics.json`` payload (see :mod:`recsys.evaluation.runner`).

Every plot is a PNG embedded as base64, and the page has no external asset (no script, no style
sheet, no font), so ``report.html`` can be mailed, archived or opened offline. Plots are drawn with
matplotlib's object API (:class:`matplotlib.figure.Figure` with the Agg canvas), never ``pyplot``:
no global state, safe in worker processes; matplotlib is imported only when a plot is drawn.

Examples
--------
>>> # html = render_report(json.load(open("out/metrics.json")))
>>> # Path("out/report.html").write_text(html)
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "SUMMARY_METRICS",
    "fit_time_png",
    "metric_bars_png",
    "popularity_png",
    "precision_recall_png",
    "render_report",
]

SUMMARY_METRICS: tuple[str, ...] = ("ndcg@10", "recall@10", "precision@10", "hit@10")
"""The metrics of the bar chart and the first columns of the table."""
_TABLE_EXTRA: tuple[str, ...] = ("map@10", "mrr@10", "coverage@10", "novelty@10")

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
table { border-collapse: collapse; font-size: 0.85em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; vertical-align: top; }
th { background: #f3f3f3; } td.name, td.params { text-align: left; } td.params { font-family: monospace; }
figure { margin: 1.5em 0; } figcaption { font-size: 0.85em; color: #555; }
img { max-width: 100%; }
"""


def _families(metrics: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    families = metrics.get("families")
    if not isinstance(families, Mapping) or not families:
        raise ValueError("metrics must have a non-empty 'families' mapping (the metrics.json payload)")
    return dict(families)


def _figure(width: float, height: float, ncols: int = 1) -> tuple[Any, Any]:
    from matplotlib.figure import Figure  # lazy: only reports need matplotlib

    figure = Figure(figsize=(width, height), dpi=100, layout="constrained")
    return figure, figure.subplots(1, ncols, squeeze=False)[0]


def _png(figure: Any) -> bytes:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _colors(names: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: palette(i % palette.N) for i, name in enumerate(names)}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def metric_bars_png(metrics: Mapping[str, Any], names: Sequence[str] = SUMMARY_METRICS) -> bytes:
    """Grouped bars of the test metrics per family; error bars are the CV std where present.

    Parameters
    ----------
    metrics : dict
        The ``metrics.json`` payload.
    names : sequence of str
        Metric keys to plot, one group of bars each.

    Returns
    -------
    bytes
        A PNG image.
    """
    families = _families(metrics)
    colors = _colors(list(families))
    figure, (axes,) = _figure(max(7.0, 1.6 * len(names) + 0.25 * len(families)), 4.2)
    width = 0.8 / len(families)
    for i, (family, result) in enumerate(families.items()):
        values = [_number(result.get(name)) or 0.0 for name in names]
        std = result.get("cv", {}).get("std", {})
        errors = [_number(std.get(name)) or 0.0 for name in names]
        positions = [g - 0.4 + width * (i + 0.5) for g in range(len(names))]
        axes.bar(positions, values, width, label=family, color=colors[family])
        if any(errors):
            axes.errorbar(positions, values, yerr=errors, fmt="none", ecolor="black", capsize=2, lw=0.8)
    axes.set_xticks(range(len(names)), list(names))
    axes.set_ylabel("test value")
    axes.set_title(f"Test metrics per family ({metrics.get('protocol', '?')} protocol)")
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    axes.grid(axis="y", alpha=0.3)
    return _png(figure)


def _curve(result: Mapping[str, Any], metric: str) -> tuple[list[int], list[float]]:
    points = sorted(
        (int(key.split("@", 1)[1]), float(value))
        for key, value in result.items()
        if key.startswith(f"{metric}@") and _number(value) is not None
    )
    return [k for k, _ in points], [v for _, v in points]


def precision_recall_png(metrics: Mapping[str, Any]) -> bytes:
    """Precision@k and recall@k against k, one line per family (PNG bytes)."""
    families = _families(metrics)
    colors = _colors(list(families))
    figure, axes = _figure(11.0, 4.0, ncols=2)
    for axis, metric in zip(axes, ("precision", "recall"), strict=True):
        for family, result in families.items():
            ks, values = _curve(result, metric)
            axis.plot(ks, values, marker="o", label=family, color=colors[family])
        axis.set_xlabel("k")
        axis.set_ylabel(f"{metric}@k")
        axis.set_title(f"{metric.capitalize()} at k")
        axis.grid(alpha=0.3)
    axes[1].legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return _png(figure)


def popularity_png(metrics: Mapping[str, Any]) -> bytes:
    """Popularity bias of each family's top-10 lists against the test positives' (PNG bytes)."""
    families = _families(metrics)
    colors = _colors(list(families))
    reference = metrics.get("dataset", {}).get("popularity", {})
    figure, axes = _figure(10.0, 0.8 + 0.35 * len(families), ncols=2)
    labels = {
        "head_share": "share of top-10 slots on the 10% most popular items",
        "mean_percentile": "mean popularity percentile of recommended items",
    }
    names = list(families)[::-1]
    for axis, (key, label) in zip(axes, labels.items(), strict=True):
        values = [_number(families[n].get("popularity", {}).get(key)) or 0.0 for n in names]
        axis.barh(names, values, color=[colors[n] for n in names])
        data_value = _number(reference.get(key))
        if data_value is not None:
            axis.axvline(data_value, color="black", ls="--", lw=1, label="test positives")
            axis.legend(fontsize="small", loc="lower right")
        axis.set_xlim(0, 1)
        axis.set_xlabel(label, fontsize="small")
        axis.grid(axis="x", alpha=0.3)
    return _png(figure)


def fit_time_png(metrics: Mapping[str, Any]) -> bytes:
    """Seconds to fit each family's chosen model on train+validation (PNG bytes)."""
    families = _families(metrics)
    colors = _colors(list(families))
    names = list(families)[::-1]
    seconds = [max(_number(families[n].get("fit_seconds")) or 0.0, 1e-4) for n in names]
    figure, (axes,) = _figure(7.0, 0.8 + 0.35 * len(families))
    axes.barh(names, seconds, color=[colors[n] for n in names])
    if max(seconds) / min(seconds) > 100:
        axes.set_xscale("log")
    axes.set_xlabel("fit seconds (chosen parameters, train+validation)")
    axes.grid(axis="x", alpha=0.3)
    return _png(figure)


def _image(png: bytes, alt: str, caption: str) -> str:
    encoded = base64.b64encode(png).decode("ascii")
    return (
        f'<figure><img alt="{html.escape(alt)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _cell(value: Any, digits: int = 4) -> str:
    number = _number(value)
    return "–" if number is None else f"{number:.{digits}f}"


def _table(families: Mapping[str, Mapping[str, Any]]) -> str:
    columns = [*SUMMARY_METRICS, *_TABLE_EXTRA]
    with_cv = any("cv" in result for result in families.values())
    header = ["family", *columns, "top-10% share", "fit s", *(["CV ndcg@10"] if with_cv else []), "params"]
    rows = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"]
    for family, result in families.items():
        cells = [f'<td class="name">{html.escape(family)}</td>']
        cells += [f"<td>{_cell(result.get(c))}</td>" for c in columns]
        cells.append(f"<td>{_cell(result.get('popularity', {}).get('head_share'), 3)}</td>")
        cells.append(f"<td>{_cell(result.get('fit_seconds'), 2)}</td>")
        if with_cv:
            cv = result.get("cv", {})
            mean, std = cv.get("mean", {}).get("ndcg@10"), cv.get("std", {}).get("ndcg@10")
            cells.append(f"<td>{_cell(mean)} ± {_cell(std)}</td>" if cv else "<td>–</td>")
        params = json.dumps(result.get("params", {}), sort_keys=True, default=str)
        cells.append(f'<td class="params">{html.escape(params)}</td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    return "<table>" + "".join(rows) + "</table>"


def _dataset(dataset: Mapping[str, Any]) -> str:
    shown = {k: v for k, v in dataset.items() if not isinstance(v, Mapping)}
    items = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in shown.items()
    )
    return f"<table>{items}</table>"


def render_report(metrics: Mapping[str, Any], *, title: str = "Wayfinder offline evaluation") -> str:
    """The whole report as one HTML string, plots embedded.

    Parameters
    ----------
    metrics : dict
        The ``metrics.json`` payload: ``protocol``, ``dataset`` and ``families``.
    title : str
        Page title and heading.

    Returns
    -------
    str
        A complete HTML document without external references.
    """
    families = _families(metrics)
    k_values = sorted({int(key.split("@")[1]) for r in families.values() for key in r if "@" in key})
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>',
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p>Protocol <b>{html.escape(str(metrics.get('protocol', '?')))}</b>; families: "
        f"{html.escape(', '.join(families))}; cut-offs k = {html.escape(str(k_values))}. "
        "Parameters were chosen on validation NDCG@10, then refitted on train+validation and "
        "scored on test.</p>",
        "<h2>Dataset</h2>",
        _dataset(metrics.get("dataset", {})),
        "<h2>Results</h2>",
        _table(families),
        _image(
            metric_bars_png(metrics),
            "metric bars",
            "Test metrics @10 per family; error bars: ±1 std over cross-validation folds, when run.",
        ),
        _image(precision_recall_png(metrics), "precision and recall at k", "Precision@k and recall@k."),
        _image(
            popularity_png(metrics),
            "popularity bias",
            "Popularity bias of the top-10 lists; the dashed line is the test positives' own value "
            "(popularity counted on train+validation).",
        ),
        _image(fit_time_png(metrics), "fit time", "Fit time of the chosen model on train+validation."),
        "</body></html>",
    ]
    return "\n".join(parts)
