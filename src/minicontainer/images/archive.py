"""``image load`` and ``image save``: layered images in docker's and OCI's archive formats.

Two formats hold the same thing, an image config plus an ordered list of
layer tars (each a set of changes to the layers below it):

- ``docker save`` (docker's "Image tarball format"): a tar with
  ``manifest.json`` = ``[{"Config": "<hex>.json", "RepoTags": ["name:tag"],
  "Layers": ["<hex>/layer.tar", ...]}]``; the layers are plain tars, and the
  config's ``rootfs.diff_ids`` are their sha256s;
- an OCI image layout (OCI image spec, image-layout.md), a directory or a
  tar of one (``podman save --format oci-archive``, ``skopeo copy ...
  oci:DIR``, and docker 25's ``docker save``): ``oci-layout``,
  ``index.json`` and content-addressed ``blobs/sha256/<hex>``; the index
  points to a manifest (manifest.md) that points to the config and to the
  layers, each by digest, the layers compressed or not (gzip, zstd).

Everything read is untrusted. Every digest is checked: a blob against the
digest that names it, a layer's uncompressed stream against the config's
diff_id and its raw bytes against the manifest. A layer is unpacked with
tarread.py's rules into a fresh work directory (its whiteouts made into
overlayfs whiteouts); the store installs it under its diff_id only when the
whole image has been read and checked, and a layer the store already has
is not read at all. Any error leaves nothing behind.

``save`` packs each layer directory again (layers.write_layer_tar, the
same bytes for the same tree), so the layers it writes are ours, not the
originals: an image loaded from docker gets new diff_ids, and so a new id,
in the archive it is saved to (``docker load`` and ``podman load`` take it).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import stat
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from minicontainer.errors import ImageError, wrap_oserror
from minicontainer.images.config import parse_config
from minicontainer.images.store import Image, ImageStore, NewLayer, remove_tree, validate_image_name
from minicontainer.images.tarread import Limits, extract_tar
from minicontainer.names import is_name

# Media types (OCI image spec media-types.md, and docker's registry v2 ones that docker save uses).
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
_INDEXES = (OCI_INDEX, DOCKER_LIST)
_MANIFESTS = (OCI_MANIFEST, DOCKER_MANIFEST)
_LAYERS = {
    OCI_LAYER, OCI_LAYER + "+gzip", OCI_LAYER + "+zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
    "application/vnd.docker.image.rootfs.diff.tar", "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
}
REF_NAME = "org.opencontainers.image.ref.name"  # annotations.md
CONTAINERD_NAME = "io.containerd.image.name"  # what docker and containerd put in an index

_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_JSON_LIMIT = 16 << 20  # a manifest or config; real ones are a few KiB
_MAX_MEMBERS = 100_000  # of the outer archive
_MAX_NESTING = 4  # an index of indexes of ...
_HINT = "the archive is unsafe or malformed; nothing was loaded"


# -- reading an archive: a tar or a directory -------------------------------------------------


class _Archive:
    """Named files of a docker save tar or an OCI layout (directory or tar)."""

    def open(self, name: str) -> BinaryIO:
        raise NotImplementedError

    def exists(self, name: str) -> bool:
        raise NotImplementedError

    def close(self) -> None:
        pass

    def read(self, name: str, limit: int = _JSON_LIMIT) -> bytes:
        with self.open(name) as f:
            data = f.read(limit + 1)
        if len(data) > limit:
            raise ImageError(f"{name} in the archive is larger than {limit} bytes", _HINT)
        return data

    def json(self, name: str, data: bytes | None = None):
        try:
            return json.loads(self.read(name) if data is None else data)
        except (ValueError, UnicodeDecodeError) as e:
            raise ImageError(f"{name} in the archive is not valid JSON: {e}", _HINT) from None

    def blob(self, digest: str, limit: int = _JSON_LIMIT) -> bytes:
        """A small blob, checked against its digest."""
        data = self.read(blob_path(digest), limit)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ImageError(f"blob {digest[:19]}... does not match its digest", _HINT)
        return data


def _inside(name: str) -> str:
    """A file name from a manifest, as a clean relative path (never '..' or absolute)."""
    if not isinstance(name, str) or not name or "\0" in name:
        raise ImageError(f"the archive names a bad file {name!r}", _HINT)
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or name.startswith("/"):
        raise ImageError(f"the archive names a file outside itself: {name!r}", _HINT)
    return "/".join(parts)


def blob_path(digest: str) -> str:
    if not isinstance(digest, str) or not _DIGEST.fullmatch(digest):
        raise ImageError(f"bad or unsupported digest {digest!r} (only sha256 is supported)", _HINT)
    return "blobs/sha256/" + digest.split(":", 1)[1]


class _DirArchive(_Archive):
    """An OCI layout directory. Files are opened without following a
    symlink in the last component, and must be regular (a FIFO must not hang us)."""

    def __init__(self, root: str):
        self.root = root

    def exists(self, name: str) -> bool:
        return os.path.isfile(os.path.join(self.root, _inside(name)))

    def open(self, name: str) -> BinaryIO:
        path = os.path.join(self.root, _inside(name))
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise ImageError(f"the OCI layout has no {name}", _HINT) from None
        except OSError as e:
            err = wrap_oserror("opening", e, path)
            raise ImageError(err.message, _HINT) from None
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise ImageError(f"{name} in the OCI layout is not a regular file", _HINT)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")


class _TarArchive(_Archive):
    """A docker save tar or an OCI archive, read in place (never extracted:
    only the named members' data is read)."""

    def __init__(self, f: BinaryIO):
        self._file = f
        try:
            self._tar = tarfile.open(fileobj=f, mode="r:*")
            self._members: dict[str, tarfile.TarInfo] = {}
            for i, m in enumerate(self._tar):
                if i >= _MAX_MEMBERS:
                    raise ImageError(f"the archive has more than {_MAX_MEMBERS} files", _HINT)
                self._members[_clean(m.name)] = m
        except (tarfile.TarError, EOFError, OSError) as e:
            f.close()
            raise ImageError(f"not an image archive: {e}", "give the output of 'docker save' or an OCI layout") from None
        self._tar.members = []  # our own index is enough

    def exists(self, name: str) -> bool:
        return _inside(name) in self._members

    def open(self, name: str) -> BinaryIO:
        m = self._members.get(_inside(name))
        if m is not None and (m.islnk() or m.issym()):
            # docker 25's save links a layer's old path to its blob: follow one link, inside the archive
            base = "" if m.islnk() else str(PurePosixPath(_inside(name)).parent)
            target = os.path.normpath(os.path.join(base, m.linkname)).lstrip("/")
            m = self._members.get(_inside(target)) if not target.startswith("..") else None
        if m is None or not m.isreg():
            raise ImageError(f"the archive has no file {name}", _HINT)
        return self._tar.extractfile(m)

    def close(self) -> None:
        self._tar.close()
        self._file.close()


def _clean(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


# -- what an archive holds --------------------------------------------------------------------


@dataclass
class _LayerRef:
    member: str  # its file in the archive
    diff_id: str  # the config's sha256 of the uncompressed tar
    digest: str | None = None  # the manifest's sha256 of the bytes as stored (None: docker's manifest has none)


@dataclass
class _ImageRef:
    config: bytes
    names: list[str]
    layers: list[_LayerRef] = field(default_factory=list)

    @property
    def id(self) -> str:
        return hashlib.sha256(self.config).hexdigest()


def _diff_ids(config: bytes, arc: _Archive, n_layers: int) -> list[str]:
    doc = arc.json("the config", config)
    parse_config(doc)  # a config a run would refuse is refused now
    rootfs = doc.get("rootfs") if isinstance(doc, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or not all(isinstance(d, str) and _DIGEST.fullmatch(d) for d in diff_ids):
        raise ImageError("the image config has no valid rootfs.diff_ids", _HINT)
    if len(diff_ids) != n_layers:
        raise ImageError(f"the image config lists {len(diff_ids)} layers, the manifest {n_layers}", _HINT)
    return diff_ids


def _read_docker(arc: _Archive) -> list[_ImageRef]:
    manifest = arc.json("manifest.json")
    if not isinstance(manifest, list) or not manifest:
        raise ImageError("manifest.json is not a list of images", _HINT)
    out = []
    for entry in manifest:
        if not isinstance(entry, dict) or not isinstance(entry.get("Layers"), list):
            raise ImageError("manifest.json has an entry without Config and Layers", _HINT)
        config_name = _inside(entry.get("Config"))
        config = arc.read(config_name)
        # docker names the config after its digest ("<hex>.json", or blobs/sha256/<hex>)
        m = re.fullmatch(r"(?:.*/)?([0-9a-f]{64})(?:\.json)?", config_name)
        if m and hashlib.sha256(config).hexdigest() != m.group(1):
            raise ImageError(f"{config_name} does not match the digest in its name", _HINT)
        members = [_inside(x) for x in entry["Layers"]]
        diff_ids = _diff_ids(config, arc, len(members))
        refs = []
        for member, diff_id in zip(members, diff_ids):
            named = re.fullmatch(r"blobs/sha256/([0-9a-f]{64})", member)
            refs.append(_LayerRef(member, diff_id, "sha256:" + named.group(1) if named else None))
        tags = entry.get("RepoTags") or []
        out.append(_ImageRef(config, [t for t in tags if isinstance(t, str)], refs))
    return out


def _read_oci(arc: _Archive) -> list[_ImageRef]:
    layout = arc.json("oci-layout")
    if not isinstance(layout, dict) or not str(layout.get("imageLayoutVersion", "")).startswith("1."):
        raise ImageError("oci-layout is not an image layout version 1.x", _HINT)
    out: list[_ImageRef] = []
    _walk_index(arc, arc.json("index.json"), [], out, 0)
    if not out:
        raise ImageError(f"the OCI layout's index has no image for {_platform()}", _HINT)
    return out


def _walk_index(arc: _Archive, index, names: list[str], out: list[_ImageRef], depth: int) -> None:
    if depth > _MAX_NESTING or not isinstance(index, dict) or not isinstance(index.get("manifests"), list):
        raise ImageError("an index in the OCI layout is malformed or nested too deep", _HINT)
    for desc in index["manifests"]:
        if not isinstance(desc, dict):
            raise ImageError("an index entry is not an object", _HINT)
        platform_ = desc.get("platform")
        if isinstance(platform_, dict) and (platform_.get("os"), platform_.get("architecture")) != ("linux", _arch()):
            continue  # an image for another platform (docker's attestation manifests say "unknown")
        annotations = desc.get("annotations") if isinstance(desc.get("annotations"), dict) else {}
        ref = annotations.get(CONTAINERD_NAME) or annotations.get(REF_NAME)
        here = names + ([ref] if isinstance(ref, str) else [])
        kind = desc.get("mediaType")
        data = arc.blob(desc.get("digest"))
        if kind in _INDEXES:
            _walk_index(arc, arc.json("an index", data), here, out, depth + 1)
        elif kind in _MANIFESTS:
            out.append(_image_of_manifest(arc, arc.json("a manifest", data), here))
        # other artefacts (signatures, attestations) are not images


def _image_of_manifest(arc: _Archive, manifest, names: list[str]) -> _ImageRef:
    if not isinstance(manifest, dict) or not isinstance(manifest.get("config"), dict) \
            or not isinstance(manifest.get("layers"), list):
        raise ImageError("an image manifest in the OCI layout is malformed", _HINT)
    config = arc.blob(manifest["config"].get("digest"))
    layers = manifest["layers"]
    diff_ids = _diff_ids(config, arc, len(layers))
    refs = []
    for desc, diff_id in zip(layers, diff_ids):
        if not isinstance(desc, dict) or desc.get("mediaType") not in _LAYERS:
            kind = desc.get("mediaType") if isinstance(desc, dict) else desc
            raise ImageError(f"unsupported layer type {kind!r}", "layers must be tar, tar+gzip or tar+zstd")
        refs.append(_LayerRef(blob_path(desc.get("digest")), diff_id, desc["digest"]))
    return _ImageRef(config, names, refs)


def _arch() -> str:
    machine = platform.machine()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "i686": "386"}.get(machine, machine)


def _platform() -> str:
    return f"linux/{_arch()}"


def local_name(ref: str) -> str | None:
    """Our name for an archive's reference: the last path component and the
    tag, ``:latest`` dropped (``docker.io/library/base:latest`` -> ``base``).
    None if that is not a valid image name here."""
    ref = ref.split("@", 1)[0]
    repo, _, tag = ref.rpartition(":") if ":" in ref.rsplit("/", 1)[-1] else (ref, "", "")
    name = repo.rsplit("/", 1)[-1] + (f":{tag}" if tag and tag != "latest" else "")
    return name if is_name(name, tag=True) else None


# -- load ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadOutcome:
    image: Image
    new_layers: int
    shared_layers: int  # already in the store: not read


def load(store: ImageStore, source: str, *, tag: str | None = None, stdin: BinaryIO | None = None,
         limits: Limits = Limits()) -> list[LoadOutcome]:
    """Load every image of the archive ``source`` (a tar file, an OCI layout
    directory, or ``-``: a tar on stdin), named as the archive names them
    (``tag`` overrides, for an archive of one image). Like docker load, a
    name that exists is moved to the loaded image."""
    if tag is not None:
        validate_image_name(tag)
    spool = None
    try:
        if source == "-":
            spool = _spool(store, stdin)
            arc: _Archive = _TarArchive(open(spool / "archive.tar", "rb"))
        elif os.path.isdir(source):
            arc = _DirArchive(source)
        else:
            try:
                arc = _TarArchive(open(source, "rb"))
            except FileNotFoundError:
                raise ImageError(f"no such file: {source}", "give a 'docker save' tar or an OCI layout") from None
        try:
            images = _read_oci(arc) if arc.exists("oci-layout") else _read_docker(arc)
            if tag is not None:
                if len(images) != 1:
                    raise ImageError(f"--tag names one image, the archive has {len(images)}", "load it without --tag")
                images[0].names = [tag]
            for im in images:
                im.names = _names(im)
            return [_install(store, arc, im, limits, source) for im in images]
        finally:
            arc.close()
    finally:
        if spool is not None:
            remove_tree(spool)


def _names(im: _ImageRef) -> list[str]:
    names = []
    for ref in im.names:
        name = local_name(ref)
        if name is None:
            raise ImageError(f"the archive's name {ref!r} is not a valid image name here",
                             "give one with --tag NAME (letters, digits, _.-, optionally :tag)")
        names.append(name)
    if not names:
        raise ImageError(f"image {im.id[:12]} in the archive has no name", "give one with --tag NAME")
    return list(dict.fromkeys(names))


def _spool(store: ImageStore, stdin: BinaryIO | None) -> Path:
    """stdin into a file of the store's tmp/: the archive is read out of order."""
    import shutil
    import sys

    raw = stdin if stdin is not None else sys.stdin.buffer
    if raw.isatty():
        raise ImageError("refusing to read an archive from a terminal", "use -i FILE, or pipe it in")
    work = store.new_work()
    try:
        with open(work / "archive.tar", "wb") as out:
            shutil.copyfileobj(raw, out, 1 << 20)
    except BaseException:
        remove_tree(work)
        raise
    return work


def _install(store: ImageStore, arc: _Archive, im: _ImageRef, limits: Limits, source: str) -> LoadOutcome:
    news: list[NewLayer] = []
    try:
        seen = set()
        for i, ref in enumerate(im.layers):
            if ref.diff_id in seen or store.has_layer(ref.diff_id):
                news.append(NewLayer(ref.diff_id, None))
                continue
            seen.add(ref.diff_id)
            work = store.new_work()
            news.append(NewLayer(ref.diff_id, work))
            with arc.open(ref.member) as f:
                unpack_layer(f, work, ref.diff_id, ref.digest, limits, f"layer {i + 1} ({ref.member})")
    except BaseException:
        for x in news:
            if x.work is not None:
                remove_tree(x.work)
        raise
    meta = {"source": f"load:{os.path.abspath(source) if source != '-' else 'stdin'}"}
    image = None
    for n, name in enumerate(im.names):
        # the first name installs the image (and its layers), the others point at it
        image = store.create_layered(name, im.id, im.config, news if n == 0 else
                                     [NewLayer(x.diff_id, None) for x in news], meta, force=True)
    fresh = sum(1 for x in news if x.work is not None)
    return LoadOutcome(image, fresh, len(news) - fresh)


def unpack_layer(raw: BinaryIO, work: Path, diff_id: str | None, digest: str | None, limits: Limits,
                 what: str) -> str:
    """Unpack one layer tar into ``work``/diff and write ``work``/meta.json;
    check its diff_id and raw digest when given. Returns the diff_id."""
    diff = work / "diff"
    diff.mkdir(mode=0o755)
    result = extract_tar(raw, diff, limits=limits, layer=True)
    if diff_id is not None and result.digest != diff_id:
        raise ImageError(f"{what} does not match the config's diff_id ({result.digest[:19]}... is not "
                         f"{diff_id[:19]}...)", _HINT)
    if digest is not None and result.raw_digest != digest:
        raise ImageError(f"{what} does not match the manifest's digest {digest[:19]}...", _HINT)
    meta = {"diff_id": result.digest, "digest": result.raw_digest, "compression": result.compression,
            "members": result.members, "whiteouts": result.whiteouts, "size": result.file_bytes}
    (work / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    return result.digest


# -- save ---------------------------------------------------------------------------------------


def image_config_doc(store: ImageStore, image: Image) -> dict:
    """The config of ``image``; a flat image gets one made up (its layer is its rootfs)."""
    if image.layered:
        return image.config()
    created = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(image.meta.get("created") or 0))
    return {
        "architecture": _arch(), "os": "linux", "created": created,
        "config": {"Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"], "Cmd": ["/bin/sh"],
                   **(image.config().get("config") or {})},  # what a flat image was made with (mini's Cmd)
        "rootfs": {"type": "layers", "diff_ids": []},
        "history": [{"created": created, "created_by": f"minicontainer: {image.meta.get('source', 'import')}"}],
    }


def layer_dirs(store: ImageStore, image: Image) -> list[Path]:
    """The image's layer directories, bottom first (the config's order)."""
    if not image.layered:
        return [image.rootfs]
    return [store.layer_dir(d) for d in image.meta["layers"]]


def save(store: ImageStore, names: list[str], out: BinaryIO, *, fmt: str = "docker") -> None:
    """Write the images ``names`` to ``out`` as a docker save tar or an OCI archive."""
    from minicontainer.layers import write_layer_tar

    if fmt not in ("docker", "oci"):
        raise ImageError(f"unknown format {fmt!r}", "use --format docker or --format oci")
    images = [store.get(n) for n in names]
    work = store.new_work()
    try:
        packed: dict[Path, tuple[str, Path]] = {}  # layer dir -> (diff_id, its tar in work)
        saved = []
        for image in images:
            doc = image_config_doc(store, image)
            diff_ids = []
            for d in layer_dirs(store, image):
                if d not in packed:
                    tar = work / f"layer-{len(packed)}.tar"
                    with open(tar, "wb") as f:
                        hashing = _HashingWriter(f)
                        write_layer_tar(str(d), hashing)
                    packed[d] = ("sha256:" + hashing.sha.hexdigest(), tar)
                diff_ids.append(packed[d][0])
            if doc.get("rootfs", {}).get("diff_ids") != diff_ids:
                doc["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
                config = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
            else:
                config = (image.rootfs.parent / "config.json").read_bytes()  # unchanged: the same id
            saved.append((image, config, diff_ids))
        blobs = {diff_id: tar for diff_id, tar in packed.values()}
        with tarfile.open(fileobj=out, mode="w|", format=tarfile.PAX_FORMAT) as arc:
            (_write_docker if fmt == "docker" else _write_oci)(arc, saved, blobs)
    finally:
        remove_tree(work)


class _HashingWriter:
    def __init__(self, f: BinaryIO):
        self.f = f
        self.sha = hashlib.sha256()

    def write(self, data) -> int:
        self.sha.update(data)
        return self.f.write(data)


def _repo_tag(name: str) -> str:
    return name if ":" in name else name + ":latest"


def _add_bytes(arc: tarfile.TarFile, name: str, data: bytes) -> None:
    import io

    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    arc.addfile(info, io.BytesIO(data))


def _add_file(arc: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = path.stat().st_size, 0o644, 0
    with open(path, "rb") as f:
        arc.addfile(info, f)


def _write_docker(arc: tarfile.TarFile, saved, blobs: dict[str, Path]) -> None:
    """docker's format: <hex>/layer.tar, <config hex>.json, manifest.json, repositories."""
    for diff_id, tar in blobs.items():
        _add_file(arc, f"{diff_id[7:]}/layer.tar", tar)
    manifest, repositories = [], {}
    for image, config, diff_ids in saved:
        config_hex = hashlib.sha256(config).hexdigest()
        _add_bytes(arc, f"{config_hex}.json", config)
        tag = _repo_tag(image.name)
        manifest.append({"Config": f"{config_hex}.json", "RepoTags": [tag],
                         "Layers": [f"{d[7:]}/layer.tar" for d in diff_ids]})
        repo, _, t = tag.rpartition(":")
        repositories.setdefault(repo, {})[t] = config_hex
    _add_bytes(arc, "manifest.json", json.dumps(manifest).encode())
    _add_bytes(arc, "repositories", json.dumps(repositories).encode())


def _write_oci(arc: tarfile.TarFile, saved, blobs: dict[str, Path]) -> None:
    """An OCI image layout (image-layout.md) as a tar: oci-layout, index.json, blobs/sha256/."""
    _add_bytes(arc, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    for diff_id, tar in blobs.items():
        _add_file(arc, blob_path(diff_id), tar)  # uncompressed: the digest is the diff_id
    index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": []}
    for image, config, diff_ids in saved:
        config_digest = "sha256:" + hashlib.sha256(config).hexdigest()
        _add_bytes(arc, blob_path(config_digest), config)
        manifest = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": OCI_CONFIG, "digest": config_digest, "size": len(config)},
            "layers": [{"mediaType": OCI_LAYER, "digest": d, "size": blobs[d].stat().st_size} for d in diff_ids],
        }, sort_keys=True).encode()
        digest = "sha256:" + hashlib.sha256(manifest).hexdigest()
        _add_bytes(arc, blob_path(digest), manifest)
        tag = _repo_tag(image.name)
        index["manifests"].append({
            "mediaType": OCI_MANIFEST, "digest": digest, "size": len(manifest),
            "annotations": {REF_NAME: tag, CONTAINERD_NAME: f"docker.io/library/{tag}"},
        })
    _add_bytes(arc, "index.json", json.dumps(index, sort_keys=True).encode())
