"""``minicontainer image ...``: import, import-dir, debootstrap, build-mini, load,
save, history, ls, inspect, rm. Thin: parse flags, call minicontainer.images, print.

Errors are raised, never printed here: cli.main() prints
``minicontainer: error: ...``. Every error of an image command exits 1, as
docker's image commands do, whatever class it is raised as elsewhere (an
invalid name is a UsageError, 125 for ``run``); bad flags stay 125. Normal output goes to stdout with click.echo;
progress and notices go to stderr so ``ls --format json`` stays parsable.
"""

from __future__ import annotations

import json
import sys

import click

from minicontainer.commands._each import ExitOneGroup
from minicontainer.commands._format import format_option, print_listing
from minicontainer.commands.completion import complete_images
from minicontainer.errors import MiniError
from minicontainer.units import format_size


def _store():
    from minicontainer.images.store import ImageStore

    return ImageStore()


def _ago(t: float | None) -> str:
    from minicontainer.units import ago

    return ago(t)


class _DebootstrapProgress:
    """debootstrap's log as one redrawn bar on a terminal (given as the
    importer's ``output``: it writes whole lines).

    debootstrap says what it does to each package, phase after phase:
    ``I: Retrieving adduser 3.134``, ``I: Extracting adduser...``,
    ``I: Unpacking adduser...``, ``I: Configuring adduser...``. It never says
    how many packages there are, so the bar counts the ones it retrieved and
    measures the later phases against that number. Warnings and errors
    (``W:``/``E:``) and anything that is no ``I:`` line are kept, printed
    above the bar."""

    PHASES = ("Retrieving", "Extracting", "Unpacking", "Configuring")

    def __init__(self, stream):
        self.stream = stream
        self.phase = -1
        self.counts = [0] * len(self.PHASES)
        self.current = "starting"
        self._drawn = False

    def write(self, line: str) -> None:
        text = line.rstrip("\n")
        if not text.startswith("I: "):
            if text.strip():
                self._clear()
                self.stream.write(text + "\n")
            self._draw()
            return
        words = text[3:].split()
        # "Unpacking required packages..." starts a phase; "Unpacking apt..." is a package
        if words and words[0] in self.PHASES and len(words) > 1 and not text.endswith("packages..."):
            i = self.PHASES.index(words[0])
            if i == 0 and words[1] in ("InRelease", "Release", "Release.gpg", "Packages"):
                self.current = text[3:]  # the index files, not packages
            else:
                self.phase = max(self.phase, i)
                self.counts[i] += 1
                self.current = f"{words[0].lower()} {words[1].rstrip('.')}"
        else:
            self.current = text[3:].rstrip(".")
        self._draw()

    def fraction(self) -> float | None:
        """How far, 0..1, once the packages are known (after retrieving)."""
        total = self.counts[0]
        if self.phase < 1 or not total:
            return None
        return min(1.0, (self.phase + min(self.counts[self.phase] / total, 1.0)) / len(self.PHASES))

    def text(self) -> str:
        frac = self.fraction()
        if frac is None:
            return f"{self.current}  ({self.counts[0]} packages so far)"
        bar = "#" * int(frac * 30)
        return f"[{bar:<30}] {frac:4.0%}  {self.current}"

    def _draw(self) -> None:
        self.stream.write(f"\r{self.text()[:120]}\033[K")
        self.stream.flush()
        self._drawn = True

    def _clear(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")

    def flush(self) -> None:
        self.stream.flush()

    def close(self) -> None:
        self._clear()
        self.stream.flush()


@click.group(cls=ExitOneGroup, short_help="Manage images.")
def image():
    """Manage images: import, import-dir, debootstrap, build-mini, load, save, history, ls, inspect, rm, prune.

    Images live under MINICONTAINER_HOME (default /var/lib/minicontainer,
    root-only). A container never writes to its image: it gets its own
    copy-on-write layer.
    """


@image.command("import", short_help="Import a tarball (plain, gzip, xz, bzip2; - for stdin).")
@click.argument("file")
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace an existing image of that name.")
def import_cmd(file, name, force):
    """Import FILE (a tar from 'docker export', 'podman export' or 'tar -c';
    compression detected from its content; - reads standard input) as NAME.

    \b
    Unsafe members (.. escapes, writes through symlinks, hard links out of
    the tree, whiteouts) refuse the whole archive; device nodes and FIFOs
    are skipped. The image id is the sha256 of the uncompressed stream.
    """
    from minicontainer.commands.image_import import import_tarball

    import_tarball(file, name, force)


@image.command("import-dir", short_help="Copy a directory tree into a new image.")
@click.argument("directory", type=click.Path(file_okay=False))
@click.argument("name")
@click.option("--force", is_flag=True, help="Replace an existing image of that name.")
def import_dir_cmd(directory, name, force):
    """Copy DIRECTORY into a new image NAME: modes, owners, symlinks and hard
    links kept, symlinks never followed, other mounted filesystems left out."""
    from minicontainer.commands.image_import import done, notices
    from minicontainer.images import importer

    outcome = importer.import_dir(_store(), directory, name, force=force)
    notices(outcome)
    done(outcome)


@image.command("debootstrap", short_help="Build a Debian/Ubuntu image with debootstrap.")
@click.argument("suite")
@click.argument("name")
@click.option("--variant", default="minbase", show_default=True, help="debootstrap --variant.")
@click.option("--mirror", default=None, help="Mirror URL (debootstrap's default if not given).")
@click.option("--force", is_flag=True, help="Replace an existing image of that name.")
def debootstrap_cmd(suite, name, variant, mirror, force):
    """Run debootstrap(8) for SUITE (e.g. bookworm) into the store as NAME."""
    from minicontainer.images import importer

    # a bar on a terminal; debootstrap's own lines in a pipe or a CI log
    output = _DebootstrapProgress(sys.stderr) if sys.stderr.isatty() else sys.stderr
    try:
        img = importer.debootstrap(_store(), suite, name, variant=variant, mirror=mirror, force=force, output=output)
    finally:
        if output is not sys.stderr:
            output.close()
    click.echo(f"{img.name} {img.short_id}")


@image.command("build-mini", short_help="Build the built-in image 'mini' from host binaries.")
@click.option("--force", is_flag=True, help="Rebuild it even if it exists.")
def build_mini_cmd(force):
    """Build 'mini': a static busybox if the host has one, else host tools
    with the shared libraries their ELF headers name."""
    from minicontainer.images.mini import build_mini

    img = build_mini(_store(), force=force)
    click.echo(f"{img.name} {img.short_id}")


@image.command("load", short_help="Load images from a 'docker save' tar or an OCI layout.")
@click.option("-i", "--input", "source", default="-", metavar="FILE|DIR",
              help="The archive: a tar (plain or compressed) or an OCI layout directory; default stdin.")
@click.option("-t", "--tag", default=None, metavar="NAME[:TAG]", help="Name the image (an archive of one image).")
def load_cmd(source, tag):
    """Load the images of a 'docker save' archive or an OCI image layout
    (directory or tar: 'podman save --format oci-archive', 'skopeo copy ...
    oci:DIR'), with plain, gzip or zstd layers.

    \b
    Each layer is unpacked once, under its diff_id, and shared by every image
    that has it; every digest is checked, whiteouts become overlayfs
    whiteouts, and an unsafe layer refuses the whole archive. Names come
    from the archive (docker.io/library/base:latest is loaded as base).
    """
    from minicontainer.images.archive import load

    for outcome in load(_store(), source, tag=tag):
        img = outcome.image
        shared = f", {outcome.shared_layers} shared" if outcome.shared_layers else ""
        click.echo(f"Loaded image: {img.name} {img.short_id} ({outcome.new_layers} new layer"
                   f"{'s' if outcome.new_layers != 1 else ''}{shared})")


@image.command("save", short_help="Write images as a 'docker save' tar or an OCI archive.")
@click.argument("names", nargs=-1, required=True)
@click.option("-o", "--output", default=None, metavar="FILE", help="Write to FILE instead of stdout.")
@click.option("--format", "fmt", type=click.Choice(["docker", "oci"]), default="docker", show_default=True,
              help="docker: 'docker load' reads it; oci: an OCI image layout as a tar ('podman load').")
def save_cmd(names, output, fmt):
    """Write image NAME(s), with their layers and config, as one archive."""
    import os

    from minicontainer.images.archive import save

    store = _store()
    for n in names:
        store.get(n)  # a typo fails before any file is made
    if output is None:
        if sys.stdout.isatty():
            raise MiniError("refusing to write an archive to a terminal", "use -o FILE, or redirect stdout")
        save(store, list(names), sys.stdout.buffer, fmt=fmt)
        return
    try:
        with open(output, "wb") as f:
            save(store, list(names), f, fmt=fmt)
    except BaseException:
        if os.path.isfile(output):
            os.unlink(output)  # no half-written archive
        raise


@image.command("history", short_help="Show the layers of an image.")
@click.argument("name")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", help="Output format.")
def history_cmd(name, fmt):
    """The layers of NAME, newest first: the instruction that made each, and its size."""
    from minicontainer.images.history import history

    rows = history(_store(), name)
    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("LAYER", "CREATED", "CREATED BY", "SIZE", "COMMENT")]
    for r in rows:
        created_by = r["created_by"] if len(r["created_by"]) <= 60 else r["created_by"][:57] + "..."
        table.append((r["layer"][7:19] if r["layer"] else "-", r["created"] or "-", created_by,
                      format_size(r["size"]), r["comment"]))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for r in table:
        click.echo("   ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())


def _row(img) -> dict:
    return {
        "name": img.name,
        "id": img.id,
        "size": img.meta.get("size", 0),
        "created": img.meta.get("created"),
        "source": img.meta.get("source", ""),
    }


def _fields(img) -> dict:
    """An image as ``ls`` shows it, keyed by docker's template names."""
    from minicontainer.container.logs import rfc3339

    r = _row(img)
    repo, _, tag = img.name.rpartition(":") if ":" in img.name.rsplit("/", 1)[-1] else (img.name, "", "")
    return {"Name": img.name, "Repository": repo, "Tag": tag or "latest", "ID": img.short_id, "FullID": img.id,
            "Size": format_size(int(r["size"] or 0)), "CreatedSince": _ago(r["created"]),
            "CreatedAt": rfc3339(r["created"]) if r["created"] else "", "Source": r["source"]}


IMAGE_COLUMNS = (("NAME", "Name"), ("ID", "ID"), ("SIZE", "Size"), ("CREATED", "CreatedSince"), ("SOURCE", "Source"))


@image.command("ls", short_help="List images.")
@format_option("{{.Name}} {{.Size}}")
@click.option("-q", "--quiet", is_flag=True, help="Only print ids.")
def ls_cmd(fmt, quiet):
    """List images: NAME, ID, SIZE, CREATED, SOURCE.

    \b
    Template fields: .Name .Repository .Tag .ID .FullID .Size .CreatedSince .CreatedAt .Source
    """
    images = _store().list()
    if quiet:
        for img in images:
            click.echo(img.short_id)
        return
    print_listing(fmt, images, fields=_fields, columns=IMAGE_COLUMNS, as_json=_row)


@image.command("inspect", short_help="Show an image's details as JSON.")
@click.argument("name", shell_complete=complete_images)
def inspect_cmd(name):
    """Print NAME's metadata, every name sharing it, and the containers using it."""
    click.echo(json.dumps(image_info(name), indent=2))


def image_info(name: str) -> dict:
    """What ``image inspect`` (and ``inspect`` of an image) shows."""
    from minicontainer.images.store import containers_using

    store = _store()
    img = store.get(name)
    return {
        "name": img.name,
        "id": img.id,
        "names": store.names_of(img.id),
        "rootfs": str(img.rootfs) if not img.layered else None,
        # the overlay's lowerdir stack, top first (a flat image is one layer)
        "lowers": [str(d) for d in img.stack],
        **{k: v for k, v in img.meta.items() if k not in ("id",)},
        "config": img.config().get("config", {}),
        "used_by": containers_using(img),
    }


@image.command("rm", short_help="Remove images (refused while a container uses one).")
@click.argument("names", nargs=-1, required=True, shell_complete=complete_images)
def rm_cmd(names):
    """Remove image NAME(s). The data goes when the last name sharing it goes."""
    from minicontainer.commands._each import for_each

    # like docker: go on with the others, fail at the end (with 1: ExitOneGroup)
    for_each(names, _store().remove)


@image.command("prune", short_help="Remove images that no name points to and no container uses.")
def prune_cmd():
    """Remove stored images that no name points to and no container uses.

    \b
    An image stays while a container runs on it, even after its name moved
    on ('import --force', 'build-mini --force'); prune frees it later.
    """
    removed = _store().prune()
    total = 0
    for img in removed:
        size = int(img.meta.get("size") or 0)
        total += size
        click.echo(f"deleted {img.short_id}  {format_size(size)}  {img.meta.get('source', '')}".rstrip())
    click.echo(f"reclaimed {format_size(total)} ({len(removed)} image{'s' if len(removed) != 1 else ''})")
