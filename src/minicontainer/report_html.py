"""A run report as one self-contained HTML page: inline SVG, no script, no network.

Three charts over the run's time: memory against ``-m``, CPU against
``--cpus`` and processes against ``--pids-limit``. Usage is a blue line, the
limit a red one (``LIMIT_COLOUR``, drawn with crisp edges so the picture can
be checked pixel by pixel: tests/cgroup1/test_report_run.py), and each OOM
kill a purple vertical line. Pure: a report dict in, text out.
"""

from __future__ import annotations

from html import escape

from minicontainer import report as R
from minicontainer import units

USAGE_COLOUR = "#1f77b4"
LIMIT_COLOUR = "#d62728"
OOM_COLOUR = "#9467bd"
WIDTH, HEIGHT = 720, 220
LEFT, RIGHT, TOP, BOTTOM = 80, 20, 20, 40  # margins for the axes' labels


def _nice_ticks(top: float, n: int = 4) -> list[float]:
    return [top * i / n for i in range(n + 1)]


def chart(title: str, points: list[tuple[float, float]], *, limit: float | None, duration: float,
          fmt, limit_label: str, marks: list[float] = ()) -> str:
    """One SVG line chart: ``points`` (t, value), a horizontal ``limit``, vertical ``marks``."""
    peak = max([v for _, v in points] + [limit or 0, 1e-9])
    top = peak * 1.15
    span = max(duration, max([t for t, _ in points] + [0]), 1e-3)
    w, h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def x(t: float) -> float:
        return LEFT + t / span * w

    def y(v: float) -> float:
        return TOP + h - v / top * h

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">',
             f'<rect x="{LEFT}" y="{TOP}" width="{w}" height="{h}" fill="#fafafa" stroke="#999"/>']
    for v in _nice_ticks(top):
        parts.append(f'<line x1="{LEFT}" x2="{LEFT + w}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#e5e5e5"/>')
        parts.append(f'<text x="{LEFT - 6}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{escape(fmt(v))}</text>')
    for t in _nice_ticks(span):
        parts.append(f'<text x="{x(t):.1f}" y="{TOP + h + 16}" text-anchor="middle" font-size="11">{t:.1f}s</text>')
    if points:
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{USAGE_COLOUR}" stroke-width="2"/>')
    if limit:
        # whole pixels and crisp edges: the line is exactly LIMIT_COLOUR on screen
        ly = round(y(limit))
        parts.append(f'<line class="limit" x1="{LEFT}" x2="{LEFT + w}" y1="{ly}" y2="{ly}" stroke="{LIMIT_COLOUR}" '
                     f'stroke-width="3" shape-rendering="crispEdges"/>')
        parts.append(f'<text x="{LEFT + 6}" y="{ly - 6}" font-size="12" '
                     f'fill="{LIMIT_COLOUR}">{escape(limit_label)}</text>')
    for t in marks:
        mx = round(x(t))
        parts.append(f'<line class="oom" x1="{mx}" x2="{mx}" y1="{TOP}" y2="{TOP + h}" stroke="{OOM_COLOUR}" '
                     f'stroke-width="3" shape-rendering="crispEdges"/>')
        parts.append(f'<text x="{mx - 4}" y="{TOP + h - 8}" text-anchor="end" font-size="12" '
                     f'fill="{OOM_COLOUR}">OOM kill at {t:.1f}s</text>')
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 6}" font-size="11">time since start</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def render(data: dict) -> str:
    samples = data["samples"]
    limits = data.get("limits") or {}
    duration = data.get("duration") or (samples[-1]["t"] if samples else 0)
    mem_limit, cpus, pids_limit = limits.get("memory"), limits.get("cpus"), limits.get("pids")
    charts = [
        ("Memory", chart("memory", R.series(samples, "memory_current"), limit=mem_limit, duration=duration,
                         fmt=lambda v: units.format_size(int(v)),
                         limit_label=f"limit {units.format_size(mem_limit)} (-m)" if mem_limit else "",
                         marks=R.oom_times(samples))),
        ("CPU (% of one CPU)", chart("cpu", R.cpu_series(samples), limit=cpus * 100 if cpus else None,
                                     duration=duration, fmt=lambda v: f"{v:.0f}%",
                                     limit_label=f"limit {cpus * 100:g}% (--cpus {cpus:g})" if cpus else "")),
        ("Processes", chart("pids", R.series(samples, "pids_current"), limit=pids_limit, duration=duration,
                            fmt=lambda v: f"{v:.0f}",
                            limit_label=f"limit {pids_limit} (--pids-limit)" if pids_limit else "")),
    ]
    c = data.get("container") or {}
    body = [f"<h1>minicontainer run report: {escape(c.get('name', ''))}</h1>",
            f"<pre>{escape(R.summary(data))}</pre>"]
    for heading, svg in charts:
        no_limit = "" if 'class="limit"' in svg else " <small>(no limit)</small>"
        body.append(f"<h2>{escape(heading)}{no_limit}</h2>\n{svg}")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>minicontainer report {escape(c.get('id', '')[:12])}</title>"
            "<style>body{font-family:sans-serif;margin:1em 2em;background:#fff;color:#222}"
            "pre{background:#f4f4f4;padding:.6em;white-space:pre-wrap}h2{font-size:1.1em;margin:1em 0 .2em}</style>"
            "</head><body>\n" + "\n".join(body) + "\n</body></html>\n")
