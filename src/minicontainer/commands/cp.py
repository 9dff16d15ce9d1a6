"""``minicontainer cp [-a] [-L] [-q] CONTAINER:PATH HOSTPATH`` (or the other way) — like docker cp.

Thin: which side is the container, then container/copy.py, which walks
the container's side without ever following one of its symlinks.
"""

from __future__ import annotations

import click

from minicontainer.errors import UsageError


def split_endpoint(arg: str) -> tuple[str | None, str]:
    """docker's rule: ``NAME:PATH`` names a container unless the argument
    starts like a local path (``/`` or ``.``), which may then hold a colon."""
    if arg.startswith(("/", ".")) or ":" not in arg:
        return None, arg
    name, _, path = arg.partition(":")
    return name, path or "/"


@click.command(short_help="Copy files between a container and the host.")
@click.argument("source")
@click.argument("dest")
@click.option("-a", "--archive", is_flag=True, help="Keep the owners (uid/gid) of what is copied.")
@click.option("-L", "--follow-link", is_flag=True, help="Follow a symlink given as a host SOURCE.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print what was copied.")
def cp(source, dest, archive, follow_link, quiet):
    """Copy a file or directory out of a container (CONTAINER:PATH HOSTPATH)
    or into one (HOSTPATH CONTAINER:PATH), running or exited.

    Like docker cp: a destination directory receives SOURCE inside it; a
    SOURCE ending in /. gives only its contents; symlinks are copied as
    symlinks. Unlike a plain cp, no symlink inside the container is ever
    followed, on the way or at the end: such a path is refused. Files copied
    in belong to root (with -a, to the owners they had); files copied out
    belong to you, and lose setuid/setgid bits.

    \b
    Examples:
      minicontainer cp web:/etc/hostname ./hostname
      minicontainer cp ./site web:/srv/
      minicontainer cp web:/var/log/. ./logs
    """
    from minicontainer.container import copy
    from minicontainer.container.state import StateStore
    from minicontainer.units import format_size

    src_name, src_path = split_endpoint(source)
    dst_name, dst_path = split_endpoint(dest)
    if (src_name is None) == (dst_name is None):
        raise UsageError("cp copies between a container and the host: exactly one side must be CONTAINER:PATH",
                         "e.g. minicontainer cp web:/etc/hostname . or minicontainer cp file web:/tmp/")
    if (src_path if src_name is None else dst_path) == "-":
        raise UsageError("cp with - (a tar stream) is not supported",
                         "copy to a path; for a tar of the whole container use minicontainer export")
    opts = copy.Options(archive=archive, follow_link=follow_link)
    store = StateStore()
    if src_name is not None:
        st = store.get(src_name)
        done = copy.with_root(st, lambda root: copy.copy_out(root, src_path, dst_path, opts, source), writing=False)
        where = dst_path
    else:
        st = store.get(dst_name)
        done = copy.with_root(st, lambda root: copy.copy_in(root, src_path, dst_path, opts, dest), writing=True)
        where = dest
    if not quiet:
        click.echo(f"Successfully copied {format_size(done)} to {where}", err=True)
    return 0
