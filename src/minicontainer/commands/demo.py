"""``minicontainer demo [NAME] [--step] [--out DIR]`` — narrated demos (demos/).

Without a name (or with ``--list``) it lists them. A demo explains each step,
prints the command as you would type it, runs it, says what to notice and
checks that the output shows it; it exits 1 if a step did not.
"""

from __future__ import annotations

import click


def _complete(ctx, param, incomplete: str) -> list[str]:
    from minicontainer.demos import DEMOS  # a dict: no demo module is imported

    return [n for n in DEMOS if n.startswith(incomplete)]


@click.command(short_help="Run a narrated demo of what the kernel does.")
@click.argument("name", required=False, shell_complete=_complete)
@click.option("--list", "list_", is_flag=True, help="List the demos.")
@click.option("--step", is_flag=True, help="Wait for Enter before each step.")
@click.option("--out", "out_dir", metavar="DIR", type=click.Path(file_okay=False, exists=True),
              help="Where a demo writes files for you (report charts); default: the current directory.")
def demo(name, list_, step, out_dir):
    """Run the demo NAME, explaining each step as it goes.

    \b
    Examples:
      minicontainer demo --list
      minicontainer demo memory --step
    """
    from minicontainer import demos

    if list_ or not name:
        click.echo(demos.listing())
        return 0

    ok = demos.run_demo(demos.load(name), step=step, out_dir=out_dir, echo=click.echo, wait=input)
    return 0 if ok else 1
