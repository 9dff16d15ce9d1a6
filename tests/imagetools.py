"""Layered image archives made by hand, for the unit and root tiers.

``layer(...)`` makes a layer tar from (name, kind, data/linkname) members;
``docker_archive`` and ``oci_layout`` put layers and a config together the
way ``docker save`` and an OCI image layout do (the formats are described
in minicontainer/images/archive.py), so a test controls every byte,
including hostile ones and wrong digests.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import tarfile
from pathlib import Path


def member(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", *, mode: int | None = None,
           linkname: str = "") -> tuple[tarfile.TarInfo, bytes]:
    ti = tarfile.TarInfo(name)
    ti.type = kind
    ti.mode = mode if mode is not None else (0o755 if kind == tarfile.DIRTYPE else 0o644)
    ti.size = len(data) if kind == tarfile.REGTYPE else 0
    ti.linkname = linkname
    ti.mtime = 1_700_000_000
    return ti, data


def D(name: str, mode: int = 0o755):
    return member(name, tarfile.DIRTYPE, mode=mode)


def F(name: str, data: bytes = b"x", mode: int = 0o644):
    return member(name, tarfile.REGTYPE, data, mode=mode)


def L(name: str, target: str):
    return member(name, tarfile.SYMTYPE, linkname=target)


def H(name: str, target: str):
    return member(name, tarfile.LNKTYPE, linkname=target)


def layer(*members) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for ti, data in members:
            tf.addfile(ti, io.BytesIO(data) if ti.type == tarfile.REGTYPE else None)
    return buf.getvalue()


def dir_layer(root) -> bytes:
    """A directory as a layer tar (the built-in mini's root: a base with a shell)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        tf.add(root, ".")
    return buf.getvalue()


# The whiteout case: MIDDLE has /etc/gone and /data/old/f; TOP deletes the
# first (.wh.gone) and makes /data/old opaque (.wh..wh..opq) with a new g.
MIDDLE = layer(D("data"), D("data/old"), F("data/old/f", b"old\n"), D("data/keep"), F("data/keep/k", b"k\n"),
               D("etc"), F("etc/gone", b"bye\n"))
TOP = layer(D("etc"), F("etc/.wh.gone"), D("data"), D("data/old"), F("data/old/.wh..wh..opq"),
            F("data/old/g", b"new\n"))


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def config(layers: list[bytes], **run_config) -> bytes:
    doc = {
        "architecture": "amd64", "os": "linux", "config": run_config,
        "rootfs": {"type": "layers", "diff_ids": [sha(x) for x in layers]},
        "history": [{"created_by": f"layer {i}"} for i in range(len(layers))],
    }
    return json.dumps(doc).encode()


def _add(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    ti = tarfile.TarInfo(name)
    ti.size = len(data)
    tf.addfile(ti, io.BytesIO(data))


def docker_archive(path: Path, layers: list[bytes], tag: str = "layered:1", *, cfg: bytes | None = None,
                   **run_config) -> Path:
    """A ``docker save`` tar: <hex>/layer.tar, <config hex>.json, manifest.json."""
    cfg = cfg if cfg is not None else config(layers, **run_config)
    with tarfile.open(path, "w") as tf:
        names = []
        for data in layers:
            name = f"{sha(data)[7:]}/layer.tar"
            if name not in names:
                _add(tf, name, data)
            names.append(name)
        _add(tf, f"{sha(cfg)[7:]}.json", cfg)
        _add(tf, "manifest.json", json.dumps([{"Config": f"{sha(cfg)[7:]}.json", "RepoTags": [tag],
                                               "Layers": names}]).encode())
    return path


def compress(data: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(data)
    if how == "zstd":
        return subprocess.run(["zstd", "-q", "-c"], input=data, stdout=subprocess.PIPE, check=True).stdout
    return data


def oci_layout(root: Path, layers: list[bytes], ref: str = "layered:1", *, compression: str = "gzip",
               **run_config) -> Path:
    """An OCI image layout directory (image-layout.md) with ``compression`` layers."""
    blobs = root / "blobs" / "sha256"
    blobs.mkdir(parents=True)

    def blob(data: bytes) -> str:
        (blobs / sha(data)[7:]).write_bytes(data)
        return sha(data)

    cfg = config(layers, **run_config)
    kind = "application/vnd.oci.image.layer.v1.tar" + ({"gzip": "+gzip", "zstd": "+zstd"}.get(compression, ""))
    descs = []
    for data in layers:
        packed = compress(data, compression)
        descs.append({"mediaType": kind, "digest": blob(packed), "size": len(packed)})
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": blob(cfg), "size": len(cfg)},
        "layers": descs,
    }).encode()
    index = {"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": blob(manifest), "size": len(manifest),
        "annotations": {"org.opencontainers.image.ref.name": ref},
    }]}
    (root / "index.json").write_text(json.dumps(index))
    (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
    return root


def tar_dir(root: Path, out: Path) -> Path:
    """An OCI layout directory as a tar (an oci-archive)."""
    with tarfile.open(out, "w") as tf:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                tf.add(p, str(p.relative_to(root)))
    return out
