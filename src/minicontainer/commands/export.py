"""``minicontainer export CONTAINER FILE|-`` and ``minicontainer diff CONTAINER``.

Both read the container's layers directly (layers.py), running or exited:
``diff`` lists what its upper layer changed (A/C/D, like docker diff);
``export`` writes the merged tree as a tar that ``minicontainer image
import`` (or ``docker import``, or ``tar -x``) reads back.
"""

from __future__ import annotations

import os
import stat
import sys

import click

from minicontainer.commands.completion import complete_containers
from minicontainer.errors import ImageError, UsageError, wrap_oserror


def _layers_of(ref: str):
    from minicontainer import layers
    from minicontainer.container.runtime import require_root
    from minicontainer.container.state import StateStore

    require_root("reading a container's files")
    state = StateStore().get(ref)
    return state, layers.container_layers(state.layer_dir, _image_rootfs(state.image_id))


def _image_rootfs(image_id: str) -> str | None:
    """Where the image a container was started from is (None: unknown or gone)."""
    if image_id.startswith("dir:"):
        path = image_id[len("dir:") :]
    elif image_id:
        from minicontainer.images.store import ImageStore

        path = str(ImageStore().images_dir / image_id / "rootfs")
    else:
        return None
    return path if os.path.isdir(path) else None


@click.command(short_help="List what a container changed (A/C/D).")
@click.argument("container", shell_complete=complete_containers)
def diff(container):
    """List the files CONTAINER added (A), changed (C) or deleted (D)
    compared with its image, read from its copy-on-write layer."""
    from minicontainer import layers

    _, lay = _layers_of(container)
    for change in layers.diff(lay):
        click.echo(str(change))
    return 0


@click.command(short_help="Write a container's filesystem as a tar.")
@click.argument("container", shell_complete=complete_containers)
@click.argument("output", metavar="FILE|-")
def export(container, output):
    """Write CONTAINER's whole filesystem (its image with its changes) as a
    tar archive to FILE, or to stdout with '-'. Mounted volumes, /proc,
    /sys, /dev and /tmp are not part of it."""
    from minicontainer import layers

    state, lay = _layers_of(container)
    ids = _range_of(state)
    if output == "-":
        if sys.stdout.isatty():
            raise UsageError("refusing to write a tar archive to a terminal", "redirect stdout, or give a FILE")
        sys.stdout.flush()
        out = os.fdopen(os.dup(sys.stdout.fileno()), "wb", buffering=0)
        with out:
            _write(layers, lay, out, "stdout", ids)
        return 0
    layers.check_output_outside(output, lay, state.layer_dir)
    _export_to_file(layers, lay, output, ids)
    return 0


def _range_of(state):
    """(uid base, gid base, count) of a container made with root's --userns, else None."""
    from minicontainer.container.config import load_spec
    from minicontainer.container.state import StateStore
    from minicontainer.errors import MiniError

    try:
        name = load_spec(StateStore().containers / state.id).userns_remap
    except MiniError:
        return None  # no spec (an older container): made without
    if not name:
        return None
    from minicontainer.container.userns import remap_mapping

    try:
        m = remap_mapping(name)
        return m.uids[0].outside, m.gids[0].outside, m.uids[0].count
    except MiniError:  # the range was taken away since: its root owns the layer directory
        st = os.stat(state.layer_dir)
        return st.st_uid, st.st_gid, 65536


def _export_to_file(layers, lay, output: str, ids=None) -> None:
    """A regular file is written under a temporary name and renamed into
    place when complete, so a failed export leaves no truncated archive
    (and never clobbers an older one). Anything else (/dev/null, a FIFO)
    is written directly."""
    try:
        st = os.stat(output)
    except FileNotFoundError:
        st = None
    except OSError as e:
        raise _output_error(e, output) from None
    if st is not None and not stat.S_ISREG(st.st_mode):
        if stat.S_ISDIR(st.st_mode):
            raise ImageError(f"cannot write the export to {output}: it is a directory", "give a file name")
        try:
            with open(output, "wb", buffering=0) as out:
                _write(layers, lay, out, output, ids)
        except OSError as e:
            raise _output_error(e, output) from None
        return
    directory, name = os.path.split(os.path.abspath(output))
    tmp = os.path.join(directory, f".{name}.tmp-{os.getpid()}")
    try:
        # 0600: the archive holds whatever the container had, secrets included.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise _output_error(e, output) from None
    try:
        with os.fdopen(fd, "wb", buffering=0) as out:
            _write(layers, lay, out, output, ids)
            os.fsync(out.fileno())
        os.replace(tmp, output)
    except BaseException as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(e, OSError):
            raise _output_error(e, output) from None
        raise


def _write(layers, lay, out, label: str, ids=None) -> None:
    try:
        stats = layers.write_tar(lay, out, ids=ids)
    except BrokenPipeError:
        raise ImageError("the reader of the export went away (broken pipe)") from None
    except OSError as e:
        if e.filename is None:  # a write error, not a file of the container
            raise _output_error(e, label) from None
        raise
    if stats.skipped:
        click.echo(
            f"minicontainer: {stats.skipped} file(s) skipped (sockets, or replaced while being read)",
            err=True,
        )


def _output_error(e: OSError, output: str):
    return wrap_oserror("writing the export to", e, output, hint="choose a writable path, or '-' for stdout")
