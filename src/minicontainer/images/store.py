"""The image store: named, read-only root filesystems under MINICONTAINER_HOME.

Layout (see paths.py)::

    images/<id>/rootfs/      the unpacked root filesystem (never modified by a run)
    images/<id>/meta.json    {"id", "created", "source", "size"}
    refs/<name>              a file holding the image id a name points to
    tmp/                     work directories; a finished image is renamed
                             from here into images/, so a crash or an error
                             never leaves a half-made image behind

Several names may point to one id (importing the same content twice shares it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from minicontainer import paths
from minicontainer.errors import ImageError, UsageError

# Like docker's repository names, without registries: a letter or digit, then
# letters, digits and ``_.-``; an optional ``:tag``.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(:[A-Za-z0-9_.-]{1,64})?$")


def validate_image_name(name: str) -> str:
    if not _NAME_RE.match(name or ""):
        raise UsageError(
            f"invalid image name {name!r}",
            "use letters, digits and _.- (at most 64), optionally :tag",
        )
    return name


@dataclass(frozen=True)
class Image:
    name: str
    id: str
    rootfs: Path
    meta: dict


class ImageStore:
    def __init__(self, home: Path | None = None):
        self.home = Path(home) if home is not None else paths.home()
        self.images_dir = self.home / "images"
        self.refs_dir = self.home / "refs"
        self.tmp_dir = self.home / "tmp"

    # -- setup -------------------------------------------------------------
    def ensure(self) -> None:
        paths.ensure_private_dir(self.home)
        for d in (self.images_dir, self.refs_dir, self.tmp_dir):
            d.mkdir(exist_ok=True)
            os.chmod(d, 0o700)

    # -- lookup ------------------------------------------------------------
    def exists(self, name: str) -> bool:
        return (self.refs_dir / name).is_file()

    def get(self, name: str) -> Image:
        validate_image_name(name)
        ref = self.refs_dir / name
        try:
            image_id = ref.read_text().strip()
        except FileNotFoundError:
            raise ImageError(
                f"no such image: {name}",
                "list images with 'minicontainer image ls', or import one with 'minicontainer image import'",
                exit_code=125,
            ) from None
        d = self.images_dir / image_id
        try:
            meta = json.loads((d / "meta.json").read_text())
        except (OSError, ValueError):
            raise ImageError(
                f"image {name} is damaged: {d}/meta.json is missing or unreadable",
                f"remove it with 'minicontainer image rm {name}' and import it again",
                exit_code=125,
            ) from None
        return Image(name=name, id=image_id, rootfs=d / "rootfs", meta=meta)

    def list(self) -> list[Image]:
        out = []
        if not self.refs_dir.is_dir():
            return out
        for ref in sorted(self.refs_dir.iterdir()):
            try:
                out.append(self.get(ref.name))
            except ImageError:
                continue
        return out

    # -- creation ----------------------------------------------------------
    def create(
        self,
        name: str,
        populate: Callable[[Path], str | None],
        source: str,
        *,
        force: bool = False,
    ) -> Image:
        """Make image ``name`` atomically.

        ``populate(rootfs)`` fills an empty directory and may return a
        content id (e.g. the sha256 of a tar stream); if it returns None a
        random id is used. Any exception removes the work directory, so no
        half-made image is ever visible.
        """
        validate_image_name(name)
        self.ensure()
        if self.exists(name) and not force:
            raise ImageError(f"image {name} already exists", f"remove it first with 'minicontainer image rm {name}'")
        work = Path(tempfile.mkdtemp(prefix="new-", dir=self.tmp_dir))
        try:
            rootfs = work / "rootfs"
            rootfs.mkdir()
            os.chmod(rootfs, 0o755)
            image_id = populate(rootfs) or os.urandom(32).hex()
            final = self.images_dir / image_id
            if final.exists():
                # Same content already stored: share it (the id is its digest).
                shutil.rmtree(work, ignore_errors=True)
            else:
                meta = {"id": image_id, "created": time.time(), "source": source, "size": _du(rootfs)}
                (work / "meta.json").write_text(json.dumps(meta, indent=2))
                os.rename(work, final)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
        self._write_ref(name, image_id)
        return self.get(name)

    def _write_ref(self, name: str, image_id: str) -> None:
        tmp = self.refs_dir / f".{name}.tmp"
        tmp.write_text(image_id + "\n")
        os.replace(tmp, self.refs_dir / name)

    # -- removal -----------------------------------------------------------
    def remove(self, name: str) -> None:
        image = self.get(name)
        (self.refs_dir / name).unlink()
        still_used = any(r.read_text().strip() == image.id for r in self.refs_dir.iterdir() if r.is_file())
        if not still_used:
            shutil.rmtree(self.images_dir / image.id, ignore_errors=True)


def _du(path: Path) -> int:
    """Bytes used by the files under ``path`` (hard links counted once)."""
    seen = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(path):
        for n in filenames + dirnames:
            try:
                st = os.lstat(os.path.join(dirpath, n))
            except OSError:
                continue
            if (st.st_dev, st.st_ino) in seen:
                continue
            seen.add((st.st_dev, st.st_ino))
            total += st.st_blocks * 512
    return total
