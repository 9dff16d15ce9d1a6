"""``minicontainer rename OLD NEW`` — a container's name is a symlink in the state store.

``names/<name> -> <id>`` (state.py): making the link is what claims a name,
so the new name is refused when another container has it, even one being
created at the same moment. The hostname stays what it was (as in docker:
the running container does not notice).
"""

from __future__ import annotations

import click


@click.command(short_help="Rename a container.")
@click.argument("container")
@click.argument("new_name")
def rename(container, new_name):
    """Give CONTAINER (a name, id or unique id prefix) the name NEW_NAME.
    Running or not; its hostname does not change.

    \b
    Example:
      minicontainer rename web web-old
    """
    from minicontainer.container.spec import validate_name
    from minicontainer.container.state import StateStore

    validate_name(new_name)
    store = StateStore()
    st = store.get(container)
    if st.name == new_name:
        return 0  # nothing to do, as docker does not complain either
    store.rename(st, new_name)
    return 0
