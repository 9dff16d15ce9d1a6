"""``minicontainer report FILE.json [--html OUT.html]`` — read what ``run --report`` recorded.

Prints a summary (peak memory against its limit, CPU against --cpus, the
most processes against --pids-limit, why it ended, whether cleanup worked);
with ``--html`` it also writes a page of charts (report_html.py) that opens
in any browser, offline.
"""

from __future__ import annotations

import click


@click.command(short_help="Summarize a run report; chart it as HTML.")
@click.argument("file", metavar="FILE.json")
@click.option("--html", "html_out", metavar="OUT.html", help="Write a self-contained page of charts here.")
def report(file, html_out):
    """Summarize FILE.json, written by `run --report FILE.json`.

    \b
    Example:
      minicontainer run --rm -m 80m --report oom.json mini sh -c 'tail /dev/zero'
      minicontainer report oom.json --html oom.html
    """
    from minicontainer import report as R

    data = R.load(file)
    click.echo(R.summary(data))
    if html_out:
        from minicontainer.report_html import render

        target = R.check_target(html_out)
        with open(target, "w") as f:
            f.write(render(data))
        click.echo(f"charts: {html_out}")
    return 0
