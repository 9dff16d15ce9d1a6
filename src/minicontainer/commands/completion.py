"""``minicontainer completion bash|zsh|fish`` — tab completion, click's own.

The script it prints makes the shell call minicontainer back with
``_MINICONTAINER_COMPLETE=<shell>_complete`` set; click answers with the
commands and options, and these functions add the names that exist now:
containers (from the state store) and images (from the image store).
Names only: reading them must never fail or print an error into a prompt.

    minicontainer completion bash > /etc/bash_completion.d/minicontainer
    minicontainer completion zsh > "${fpath[1]}/_minicontainer"
    minicontainer completion fish > ~/.config/fish/completions/minicontainer.fish
"""

from __future__ import annotations

import click

SHELLS = ("bash", "zsh", "fish")


def _matching(names, incomplete: str) -> list[str]:
    return sorted({n for n in names if n and n.startswith(incomplete)})


def complete_containers(ctx, param, incomplete: str) -> list[str]:
    """Container names and short ids."""
    try:
        from minicontainer.container.state import StateStore

        states = StateStore().list()
    except Exception:  # noqa: BLE001 - no store, no permission: nothing to offer
        return []
    return _matching([s.name for s in states] + [s.short_id for s in states], incomplete)


def complete_images(ctx, param, incomplete: str) -> list[str]:
    """Image names (``mini`` even before it is built)."""
    try:
        from minicontainer.images.store import ImageStore

        names = [i.name for i in ImageStore().list()]
    except Exception:  # noqa: BLE001 - as above
        names = []
    return _matching(names + ["mini"], incomplete)


def complete_networks(ctx, param, incomplete: str) -> list[str]:
    """Network names (``bridge``, ``none`` and ``host`` for ``run --network`` too)."""
    try:
        from minicontainer.network.store import NetworkStore

        names = NetworkStore().names()
    except Exception:  # noqa: BLE001 - as above
        names = []
    extra = ["bridge", "none", "host"] if param is not None and param.name == "network" else []
    return _matching(names + extra, incomplete)


@click.command(short_help="Print a shell's tab-completion script.")
@click.argument("shell", type=click.Choice(SHELLS))
def completion(shell):
    """Print the tab-completion script for SHELL (bash, zsh or fish).

    \b
    bash: minicontainer completion bash > /etc/bash_completion.d/minicontainer
          (or: eval "$(minicontainer completion bash)" in ~/.bashrc)
    zsh:  minicontainer completion zsh > "${fpath[1]}/_minicontainer"
    fish: minicontainer completion fish > ~/.config/fish/completions/minicontainer.fish
    """
    from click.shell_completion import get_completion_class

    from minicontainer.cli import cli

    cls = get_completion_class(shell)
    click.echo(cls(cli, {}, "minicontainer", "_MINICONTAINER_COMPLETE").source())
    return 0
