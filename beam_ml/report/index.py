"""The runs index: `<output_dir>/index.html`, every run under an output directory in one table (status, data
span, counts, key metrics, blessed, pushed version, a link to its report) and a chart of each metric over the runs.
Rewritten whole after every run: the ended runs as the lineage store recorded them (so a run whose directory was
cleaned up keeps its row and its point on the charts), and from their run records the runs the store does not have
(still running, or recorded in no store).
"""
from __future__ import annotations

import datetime
import os
from typing import Optional

from beam_ml.core import fileutil
from beam_ml.core.lock import PathLock
from beam_ml.core.layout import RunLayout, runs_index_file
from beam_ml.lineage.queries import run_history
from beam_ml.lineage.store import open_store, store_turn
from beam_ml.report import charts
from beam_ml.report.page import escaped, page_head
from beam_ml.report.read import run_records

def _duration(record: dict) -> str:
    try:
        took = (datetime.datetime.fromisoformat(record["finished"])
                - datetime.datetime.fromisoformat(record["started"])).total_seconds()
    except (KeyError, TypeError, ValueError):
        return ""
    return f"{took:.0f} s"


def _span(record: dict) -> str:
    selection = record.get("span_selection") or {}
    spans = selection.get("spans") or []
    text = ", ".join(str(s.get("span", s)) if isinstance(s, dict) else str(s) for s in spans)
    return text


def render_index(output_dir: str, records: list[dict]) -> str:
    """The index page of `records` (run records, any order; shown newest first)."""
    records = sorted(records, key=lambda r: r.get("started") or "")
    metrics = sorted({name for r in records for name in (r.get("metrics") or {})})
    with_spans = any(_span(r) for r in records)
    rows = []
    for record in reversed(records):
        run_id = record.get("run_id") or os.path.basename(record.get("run_dir", ""))
        report = RunLayout(record.get("run_dir") or run_id).report_link
        link = (f'{escaped(run_id)} <span class="muted">(directory removed)</span>' if record.get("removed") else
                f'<a href="{escaped(report)}">{escaped(run_id)}</a>')
        counts = record.get("counts") or {}
        pushed = record.get("pushed_model_dir")
        cells = [link, escaped(record.get("job", "")),
                 f'<span class="status {escaped(record.get("status", ""))}">{escaped(record.get("status", ""))}</span>',
                 escaped((record.get("started") or "")[:19].replace("T", " ")), escaped(_duration(record)),
                 *([escaped(_span(record))] if with_spans else []),
                 escaped(counts.get("read", "")), escaped(counts.get("dead_letter", ""))]
        cells += [escaped(f"{record['metrics'][m]:.4g}") if m in (record.get("metrics") or {}) else "" for m in metrics]
        cells += [{True: "yes", False: "no"}.get(record.get("blessed"), ""),
                  escaped(os.path.basename(pushed)) if pushed else ""]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    headers = ["run", "job", "status", "started (UTC)", "took", *(["spans"] if with_spans else []), "read",
               "dead letters", *metrics, "blessed", "pushed version"]
    table = ("<table class=\"runs\"><thead><tr>" + "".join(f"<th>{escaped(h)}</th>" for h in headers)
             + "</tr></thead><tbody>" + "".join(rows) + "</tbody></table>")
    figures = []
    for metric in metrics:
        if metric == "example_count":
            continue  # a count, not a quality
        points = [(r.get("run_id", ""), (r.get("metrics") or {}).get(metric)) for r in records
                  if r.get("status") == "succeeded"]
        chart = charts.line_chart(points)
        if chart:
            figures.append(f"<figure><figcaption>{escaped(metric)} over runs</figcaption>{chart}</figure>")
    title = f"Runs in {output_dir}"
    return (f"{page_head(title)}<body><header><h1>{escaped(title)}</h1></header><main>"
            f'<section id="runs"><h2>{len(records)} runs</h2>{table}</section>'
            + (f'<section id="metrics"><h2>Metrics over runs</h2><div class="figures">{"".join(figures)}</div>'
               f'</section>' if figures else "")
            + "</main></body></html>\n")


def index_records(output_dir: str, store: Optional[tuple[str, Optional[str]]]) -> list[dict]:
    """The runs under `output_dir` for the index: those the lineage store `store` (URI, password) recorded, as it
    recorded them, then those on disk it does not have. A recorded run whose directory is gone has `removed`."""
    on_disk = run_records(output_dir)
    if store is None:
        return on_disk
    with store_turn(store[0], output_dir):
        recorded = run_history(open_store(*store), output_dir)
    there, known = {r["run_dir"] for r in on_disk}, {r["run_dir"] for r in recorded}
    return ([{**r, **({} if r["run_dir"] in there else {"removed": True})} for r in recorded]
            + [r for r in on_disk if r["run_dir"] not in known])


def write_index(output_dir: str, store: Optional[tuple[str, Optional[str]]] = None) -> str:
    """Rewrites `<output_dir>/index.html` (whole) from the lineage store `store` (URI, password; `run_store`) and
    the run records under it; returns its path."""
    path = runs_index_file(output_dir)
    with PathLock(path + ".lock", owner=output_dir, ttl_seconds=300, wait_seconds=120):  # the newest listing wins
        fileutil.write_text(path, render_index(output_dir, index_records(output_dir, store)))
    return path
