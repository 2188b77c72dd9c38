"""The self-contained HTML evaluation report.

One file, no external assets: charts are PNGs from matplotlib's Agg canvas
embedded as base64 data URIs, styles are inline, and every piece of text that
came from a question set, a document or an answer is HTML-escaped.
"""

from __future__ import annotations

import base64
import io
import textwrap
from html import escape
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ._eval import EvalReport, QuestionResult

_CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{margin-top:2em;border-bottom:1px solid #ccc}h3{margin-top:1.5em}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ddd;padding:3px 8px;
vertical-align:top}th{background:#f3f3f3;text-align:left}td.n{text-align:right;
font-variant-numeric:tabular-nums}img{max-width:100%;margin:.5em 0}.meta td:first-child{
font-weight:600}.reason{color:#a30}.small{font-size:12px;color:#555}
"""


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _png(fig: Figure) -> str:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img alt="chart" src="data:image/png;base64,{data}">'


def _bars(title: str, groups: list[str], series: dict[str, list[float]], ylabel: str) -> str:
    """Grouped bars: one group per x label, one bar per series."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(max(6.0, 1.3 * len(groups) * max(1, len(series)) / 2), 3.6))
    ax = fig.add_subplot()
    x = np.arange(len(groups))
    width = 0.8 / max(1, len(series))
    for i, (name, values) in enumerate(series.items()):
        bars = ax.bar(x + (i - (len(series) - 1) / 2) * width, values, width, label=name)
        ax.bar_label(bars, fmt="%.2f", fontsize=7)
    # wrapped, so that long labels do not run into each other on a narrow chart;
    # "$" escaped, so that no label turns into mathtext
    ax.set_xticks(x, [textwrap.fill(g, 12).replace("$", r"\$") for g in groups])
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _value(v: float | None) -> float:
    return float("nan") if v is None else float(v)


def _charts(report: EvalReport) -> list[str]:
    from ._eval import METRIC_ROWS

    modes = list(report.modes)
    label = {name: text for text, name, _ in METRIC_ROWS}
    retrieval = ["recall_at_1", "recall_at_3", "recall_at_5", "mrr_at_10", "ndcg_at_10"]
    answers = ["accuracy", "citation_precision", "abstention_recall", "false_abstention_rate"]
    charts = [
        _bars(
            "Evidence retrieval",
            [label[m] for m in retrieval],
            {
                mode: [_value(getattr(report.modes[mode].overall, m)) for m in retrieval]
                for mode in modes
            },
            "share of answerable questions",
        ),
        _bars(
            "Answers and abstention",
            [label[m] for m in answers],
            {
                mode: [_value(getattr(report.modes[mode].overall, m)) for m in answers]
                for mode in modes
            },
            "rate",
        ),
    ]
    kinds = sorted({k for m in report.modes.values() for k in m.by_kind})
    handled: dict[str, list[float]] = {}
    for mode in modes:
        handled[mode] = []
        for kind in kinds:
            rs = [r for r in report.modes[mode].results if r.kind == kind]
            ok = [bool(r.correct) if r.answerable else r.abstained for r in rs]
            handled[mode].append(float(np.mean(ok)) if ok else float("nan"))
    charts.append(
        _bars(
            "Handled right, by kind (answered correctly, or abstained when unanswerable)",
            kinds,
            handled,
            "share of questions",
        )
    )
    charts.append(
        _bars(
            "Latency of one ask",
            ["p50", "p95"],
            {
                mode: [
                    _value(report.modes[mode].overall.latency_p50_ms),
                    _value(report.modes[mode].overall.latency_p95_ms),
                ]
                for mode in modes
            },
            "ms",
        )
    )
    if report.calibration is not None:
        charts.append(_calibration_chart(report))
    return charts


def _calibration_chart(report: EvalReport) -> str:
    from matplotlib.figure import Figure

    cal = report.calibration
    assert cal is not None
    any_mode = next(iter(report.modes.values())).results
    answerable = {r.id for r in any_mode if r.answerable}
    finite = {k: v for k, v in cal.scores.items() if np.isfinite(v)}
    a = [v for k, v in finite.items() if k in answerable]
    u = [v for k, v in finite.items() if k not in answerable]
    fig = Figure(figsize=(7, 3.4))
    ax = fig.add_subplot()
    bins = np.linspace(
        min(finite.values(), default=0), max(finite.values(), default=1), 30
    ).tolist()
    ax.hist(a, bins=bins, alpha=0.6, label="answerable")
    ax.hist(u, bins=bins, alpha=0.6, label="unanswerable")
    ax.axvline(cal.threshold, color="k", linestyle="--", label=f"threshold {cal.threshold:.3f}")
    ax.axvline(cal.previous_threshold, color="grey", linestyle=":", label="previous")
    ax.set_xlabel("evidence score")
    ax.set_ylabel("questions")
    ax.set_title(f"Evidence scores ({cal.mode}); abstain below the threshold")
    ax.legend(fontsize=8)
    return _png(fig)


def _metric_table(report: EvalReport) -> str:
    from ._eval import METRIC_ROWS, fmt

    modes = list(report.modes)
    head = "".join(f"<th>{_e(m)}</th>" for m in modes)
    rows = []
    for label, name, spec in METRIC_ROWS:
        cells = "".join(
            f'<td class="n">{_e(fmt(getattr(report.modes[m].overall, name), spec))}</td>'
            for m in modes
        )
        rows.append(f"<tr><th>{_e(label)}</th>{cells}</tr>")
    return f"<table><tr><th>metric</th>{head}</tr>{''.join(rows)}</table>"


def _kind_table(report: EvalReport) -> str:
    from ._eval import KIND_COLUMNS, fmt

    heads = ["mode", "kind", "n", *(head for _, head in KIND_COLUMNS)]
    rows = []
    for mode, m in report.modes.items():
        for kind, ms in m.by_kind.items():
            cells = "".join(
                f'<td class="n">{_e(fmt(getattr(ms, attr)))}</td>' for attr, _ in KIND_COLUMNS
            )
            rows.append(
                f'<tr><td>{_e(mode)}</td><td>{_e(kind)}</td><td class="n">{ms.n}</td>{cells}</tr>'
            )
    head = "".join(f"<th>{_e(h)}</th>" for h in heads)
    return f"<table><tr>{head}</tr>{''.join(rows)}</table>"


def _failure_row(r: QuestionResult) -> str:
    if r.answerable:
        expected = "answers: " + " | ".join(_e(a) for a in r.answers)
        expected += f'<br><span class="small">evidence: {_e(r.evidence)}</span>'
    else:
        expected = "<em>abstain</em>"
    got = "<em>abstained</em>" if r.abstained else _e(r.answer)
    rank = "-" if r.first_hit_rank is None else str(r.first_hit_rank)
    citations = "<br>".join(_e(c) for c in r.top_citations) or "-"
    reasons = "<br>".join(_e(x) for x in r.failure_reasons)
    return (
        f'<tr><td>{_e(r.id)}</td><td>{_e(r.kind)}</td><td class="reason">{reasons}</td>'
        f"<td>{_e(r.question)}</td><td>{expected}</td><td>{got}</td>"
        f'<td class="n">{rank}</td><td class="small">{citations}</td></tr>'
    )


def _failures(report: EvalReport) -> str:
    parts = []
    for mode, m in report.modes.items():
        failures = m.failures
        parts.append(f"<h3>{_e(mode)}: {len(failures)} of {len(m.results)}</h3>")
        if not failures:
            parts.append("<p>None.</p>")
            continue
        head = "".join(
            f"<th>{h}</th>"
            for h in (
                "id",
                "kind",
                "why",
                "question",
                "expected",
                "got",
                "evidence rank",
                "top citations",
            )
        )
        rows = "".join(_failure_row(r) for r in failures)
        parts.append(f"<table><tr>{head}</tr>{rows}</table>")
    return "".join(parts)


def render_html(report: EvalReport) -> str:
    """The whole report as one HTML string."""
    meta = [
        ("question set", report.questions_file),
        ("questions", report.n_questions),
        ("index version", report.index_version),
        ("model", report.model.get("name", "")),
        (
            "chunking",
            f"{report.chunking.get('max_tokens')} tokens, "
            f"{report.chunking.get('overlap_sentences')} overlap sentences",
        ),
        ("top_k (answers)", report.top_k),
        ("ranking depth", report.ranking_depth),
        ("abstain threshold", f"{report.abstain_threshold:.4f}"),
        ("created", report.created_at),
    ]
    meta_rows = "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in meta)
    calibration = ""
    if report.calibration is not None:
        c = report.calibration
        calibration = (
            "<h2>Calibration</h2><p>"
            f"Mode {_e(c.mode)}: threshold {c.threshold:.4f} (was {c.previous_threshold:.4f}); "
            f"balanced accuracy {c.balanced_accuracy:.3f} (was {c.previous_balanced_accuracy:.3f});"
            f" abstention recall {c.abstention_recall:.3f}, false abstention "
            f"{c.false_abstention_rate:.3f}; {c.n_answerable} answerable, {c.n_unanswerable} "
            "unanswerable. The figures above use this threshold and were measured on the same "
            "questions it was chosen on, so they are optimistic."
            + (f" Stored in {_e(c.stored_at)}." if c.stored_at else "")
            + "</p>"
        )
    charts = "".join(_charts(report))
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        "<title>citeqa evaluation</title>"
        f"<style>{_CSS}</style></head><body>"
        "<h1>citeqa evaluation</h1>"
        f'<table class="meta">{meta_rows}</table>'
        '<p class="small">Retrieval metrics judge character-span overlap between retrieved '
        "passages and the evidence, on answerable questions. <em>naive</em> is dense retrieval "
        "over fixed 256-token windows, answering with the first two sentences of the top window."
        "</p>"
        f"<h2>Metrics by mode</h2>{_metric_table(report)}"
        f"<h2>By kind</h2>{_kind_table(report)}"
        f"<h2>Charts</h2>{charts}"
        f"{calibration}"
        f"<h2>Failures</h2>{_failures(report)}"
        "</body></html>\n"
    )
