"""``minicontainer build [OPTIONS] CONTEXT`` — a Dockerfile becomes an image (docker's flags).

The work is images/builder.py's; this only reads the flags and the
Dockerfile. RUN steps are containers: root (or rootless mode) as for ``run``.
"""

from __future__ import annotations

import os

import click

from minicontainer.errors import UsageError


@click.command(short_help="Build an image from a Dockerfile.")
@click.argument("context", type=click.Path(file_okay=False))
@click.option("-t", "--tag", required=True, metavar="NAME[:TAG]", help="Name the image.")
@click.option("-f", "--file", "dockerfile", default=None, metavar="FILE", help="The Dockerfile (default CONTEXT/Dockerfile).")
@click.option("--build-arg", multiple=True, metavar="K=V", help="Set a build-time variable (an ARG).")
@click.option("--target", default=None, metavar="STAGE", help="Build up to this stage (FROM ... AS STAGE).")
@click.option("--no-cache", is_flag=True, help="Run every step again instead of using the layer cache.")
@click.option("--progress", type=click.Choice(["plain", "tty", "auto"]), default="auto", show_default=True,
              help="plain: BuildKit's lines (#3 [3/5] RUN ..., #3 CACHED, #3 DONE 1.2s); tty: a status line "
                   "redrawn in place above finished steps; auto: tty on a terminal.")
@click.option("-m", "--memory", default=None, help="Memory limit of each RUN step (e.g. 256m).")
@click.option("--pids-limit", default=None, help="Process limit of each RUN step.")
def build(context, tag, dockerfile, build_arg, target, no_cache, progress, memory, pids_limit):
    """Build image NAME from the Dockerfile in CONTEXT.

    \b
    FROM (an image of the store, or scratch), RUN (in a container of the
    image so far, --network none; its upper directory becomes the layer),
    COPY/ADD (from CONTEXT, .dockerignore applied, --chown, --from=STAGE; ADD
    unpacks a local tar), ENV, ARG, WORKDIR, USER, CMD, ENTRYPOINT, EXPOSE,
    LABEL, VOLUME, STOPSIGNAL, SHELL, several stages.
    """
    from minicontainer.images.builder import Builder
    from minicontainer.images.store import ImageStore, validate_image_name

    validate_image_name(tag)
    args = {}
    for item in build_arg:
        key, sep, value = item.partition("=")
        if not key:
            raise UsageError(f"invalid --build-arg {item!r}", "use --build-arg KEY=VALUE")
        args[key] = value if sep else os.environ.get(key, "")
    path = dockerfile or os.path.join(context, "Dockerfile")
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}", "give the Dockerfile with -f FILE") from None
    resources = None
    if memory or pids_limit:
        from minicontainer.cgroups.resources import parse_resources

        resources = parse_resources(**{k: v for k, v in (("memory", memory), ("pids_limit", pids_limit)) if v})
    builder = Builder(ImageStore(), context, text, filename=os.path.basename(path), build_args=args,
                      target=target, no_cache=no_cache, resources=resources, progress=progress)
    builder.build(tag)
