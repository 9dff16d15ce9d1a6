"""An image's config, the part of it that ``run`` honours. Pure.

The OCI image spec (config.md) and docker's image JSON share this shape::

    {"architecture": "amd64", "os": "linux",
     "config": {"Entrypoint": [...], "Cmd": [...], "Env": ["K=V", ...],
                "WorkingDir": "/app", "User": "1000:1000", "StopSignal": "SIGTERM",
                "Labels": {...}, "ExposedPorts": {"80/tcp": {}}, "Volumes": {"/data": {}}},
     "rootfs": {"type": "layers", "diff_ids": ["sha256:...", ...]},
     "history": [{"created": "...", "created_by": "/bin/sh -c ...", "empty_layer": true}, ...]}

:func:`parse_config` checks what a run would use (wrong types, a NUL in an
argument, a relative WorkingDir) when the image is loaded, so a bad config
is refused then, not at some later ``run``. container/spec.py applies it
(``ContainerSpec.argv``, ``environment``, ``cwd``).
"""

from __future__ import annotations

from minicontainer.records import dataclass  # dataclasses without exec (records.py, issue 15)

from minicontainer.errors import ImageError

_HINT = "the image config is invalid (OCI image spec, config.md); nothing was loaded"


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    workdir: str = ""
    user: str = ""
    stop_signal: str = ""
    labels: tuple[tuple[str, str], ...] = ()
    exposed_ports: tuple[str, ...] = ()  # "80/tcp": recorded for a later -P
    volumes: tuple[str, ...] = ()  # recorded for later anonymous volumes


def parse_config(doc: dict) -> ImageConfig:
    """The run-time part of an image config document (``{}``: a flat image)."""
    if not isinstance(doc, dict):
        raise ImageError("image config is not a JSON object", _HINT)
    cfg = doc.get("config") or {}
    if not isinstance(cfg, dict):
        raise ImageError("image config: 'config' is not an object", _HINT)
    workdir = _string(cfg, "WorkingDir")
    if workdir and not workdir.startswith("/"):
        raise ImageError(f"image config: WorkingDir {workdir!r} is not absolute", _HINT)
    env = []
    for item in _strings(cfg, "Env"):
        key, sep, value = item.partition("=")
        if not key or not sep:
            raise ImageError(f"image config: Env entry {item!r} is not KEY=VALUE", _HINT)
        env.append((key, value))
    return ImageConfig(
        entrypoint=_strings(cfg, "Entrypoint"),
        cmd=_strings(cfg, "Cmd"),
        env=tuple(env),
        workdir=workdir,
        user=_string(cfg, "User"),
        stop_signal=_string(cfg, "StopSignal"),
        labels=tuple(sorted(_mapping(cfg, "Labels", str).items())),
        exposed_ports=tuple(sorted(_mapping(cfg, "ExposedPorts", dict))),
        volumes=tuple(sorted(_mapping(cfg, "Volumes", dict))),
    )


def _string(cfg: dict, key: str) -> str:
    value = cfg.get(key) or ""
    if not isinstance(value, str) or "\0" in value:
        raise ImageError(f"image config: {key} is not a string", _HINT)
    return value


def _strings(cfg: dict, key: str) -> tuple[str, ...]:
    value = cfg.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) and "\0" not in v for v in value):
        raise ImageError(f"image config: {key} is not a list of strings", _HINT)
    return tuple(value)


def _mapping(cfg: dict, key: str, kind: type) -> dict:
    value = cfg.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, kind) for v in value.values()):
        raise ImageError(f"image config: {key} is not an object", _HINT)
    return value
