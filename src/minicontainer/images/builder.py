"""``minicontainer build``: a Dockerfile becomes a layered image.

Each instruction changes the build's state, a stack of layers plus an image
config, and the instructions that change files make one new layer each:

- ``RUN`` runs its command in a container of the image so far (the runtime's
  own ``Runner``, with ``--network none``, the build's ENV, WORKDIR and USER,
  and the build's ``--memory``/``--pids-limit``), and the container's overlay
  *upper directory*, everything the command wrote, whiteouts for what it
  deleted included, is the new layer;
- ``COPY`` and ``ADD`` write the files they copy into a fresh directory, with
  the parents they need taken from the layers below (so ``COPY x /tmp/`` keeps
  /tmp's 1777); ADD of a local tar unpacks it with the import's rules;
- the other instructions change only the config (ENV, WORKDIR, CMD ...) and
  are recorded in its history as empty layers.

A new layer is unpacked into the store as ``image load`` does
(archive.unpack_layer: the same checks, its diff_id from its tar), and held
by a *lease* (store.lease) until the finished image names it.

The cache: every instruction extends a key, the sha256 of the key before it
and the instruction as it will run (with its variables expanded, and for
COPY/ADD a digest of the files it reads). A RUN, COPY or ADD whose key was
built before, and whose layer is still stored, is not run again but prints
``CACHED``, as BuildKit's plain progress does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import stat
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from minicontainer.errors import MiniError
from minicontainer.images.archive import _arch, unpack_layer
from minicontainer.images.dockerfile import DockerfileError, Instruction, expand, key_values, needs_expansion, parse, words
from minicontainer.images.safetree import SafeTree
from minicontainer.images.store import Image, ImageStore, NewLayer
from minicontainer.images.tarread import Limits, detect_compression, extract_tar

DEFAULT_SHELL = ("/bin/sh", "-c")
_CACHE = "build-cache.json"
_CACHE_ENTRIES = 1024


@dataclass
class Stage:
    """The state of one stage (FROM ... to the next FROM)."""

    name: str
    layers: list[str] = field(default_factory=list)  # diff_ids, bottom first
    config: dict = field(default_factory=dict)  # the image config's "config" object
    history: list[dict] = field(default_factory=list)
    args: dict[str, str] = field(default_factory=dict)  # ARGs in scope
    shell: tuple[str, ...] = DEFAULT_SHELL
    key: str = ""  # the cache key so far
    own: set[str] = field(default_factory=set)  # config keys this stage's instructions set

    def env(self) -> dict[str, str]:
        return dict(item.partition("=")[::2] for item in self.config.get("Env", []))

    def variables(self) -> dict[str, str]:
        return {**self.args, **self.env()}


class Builder:
    def __init__(self, store: ImageStore, context: str, dockerfile: str, *, filename: str = "Dockerfile",
                 build_args: dict[str, str] | None = None, target: str | None = None, no_cache: bool = False,
                 resources=None, out: TextIO | None = None, progress: str = "plain"):
        self.store = store
        self.context = os.path.abspath(context)
        self.filename = filename
        self.instructions = parse(dockerfile, filename)
        self.build_args = dict(build_args or {})
        self.target = target
        self.no_cache = no_cache
        self.resources = resources
        self.out = out if out is not None else sys.stdout
        from minicontainer.images.buildprogress import make_progress

        self.progress = make_progress(progress, self.out)  # --progress plain|tty|auto
        self.ignore = _ignore_rules(self.context)
        self.stages: list[Stage] = []
        self._step = 0

    # -- the build --------------------------------------------------------------------------
    def build(self, tag: str) -> Image:
        todo = self._instructions_to_run()
        try:
            return self._build(tag, todo)
        finally:
            self.progress.close()

    def _build(self, tag: str, todo: list[Instruction]) -> Image:
        total = len(todo)
        with self.store.lease() as hold:
            self._hold = hold
            global_args = self.global_args = {}
            stage = None
            for ins in todo:
                self._step += 1
                self.progress.start(self._step, total, ins.text)
                try:
                    if ins.keyword == "FROM":
                        stage = self._from(ins, global_args)
                    elif stage is None:  # ARG before the first FROM
                        for k, v in key_values(ins.args, "ARG"):
                            global_args[k] = self.build_args.get(k, expand(v or "", global_args))
                    else:
                        self._instruction(stage, ins)
                except DockerfileError as e:
                    if not e.message.startswith(f"{self.filename}:"):
                        e.message = f"{self.filename}:{ins.line}: {e.message}"
                    raise
                except MiniError as e:  # an image that is missing, a RUN that cannot start ...
                    raise DockerfileError(f"{self.filename}:{ins.line}: {ins.keyword}: {e.message}", e.hint) from None
                self.progress.step_end(self._step)
            return self._commit(stage, tag)

    def _instructions_to_run(self) -> list[Instruction]:
        """Up to the end of the --target stage (all of them without one)."""
        if self.target is None:
            return self.instructions
        out = []
        for i, ins in enumerate(self.instructions):
            out.append(ins)
            if ins.keyword == "FROM" and _stage_name(ins) == self.target:
                following = [j for j in self.instructions[i + 1:] if j.keyword == "FROM"]
                end = self.instructions.index(following[0]) if following else len(self.instructions)
                return out + self.instructions[i + 1:end]
        raise DockerfileError(f"{self.filename}: no stage named {self.target!r}", "name one with FROM IMAGE AS NAME")

    # -- FROM ----------------------------------------------------------------------------------
    def _from(self, ins: Instruction, global_args: dict[str, str]) -> Stage:
        parts = words(expand(ins.args, global_args))
        if len(parts) not in (1, 3) or (len(parts) == 3 and parts[1].upper() != "AS"):
            raise DockerfileError("FROM wants IMAGE or IMAGE AS NAME")
        ref = parts[0]
        stage = Stage(name=parts[2] if len(parts) == 3 else str(len(self.stages)))
        earlier = self._stage(ref, required=False)
        if earlier is not None:
            stage.layers, stage.config = list(earlier.layers), json.loads(json.dumps(earlier.config))
            stage.history, stage.key = list(earlier.history), earlier.key
        elif ref == "scratch":
            stage.key = _digest("scratch")
        else:
            with self.store.lock():  # so no image rm deletes its layers before our lease holds them
                image = self.store.get(ref)
                if image.layered:
                    doc = image.config()
                    stage.layers = list(image.meta["layers"])
                    stage.config = dict(doc.get("config") or {})
                    stage.history = list(doc.get("history") or [])
                    self._hold(stage.layers)
            if not image.layered:
                stage.layers = [self._flat_layer(image)]
                stage.config = dict(image.config().get("config") or {})  # FROM mini: its Cmd
                stage.history = [{"created_by": f"minicontainer: {image.meta.get('source', 'import')}"}]
            stage.key = _digest("from", image.id)
        self.stages.append(stage)
        return stage

    def _flat_layer(self, image: Image) -> str:
        """A flat image as a layer (packed once, then remembered by its id)."""
        from minicontainer.layers import write_layer_tar

        cache = self._cache()
        diff_id = cache.get(f"flat:{image.id}")
        with self.store.lock():
            if diff_id and self.store.has_layer(diff_id):
                self._hold([diff_id])
                return diff_id
        work = self.store.new_work()
        try:
            tar = work / "layer.tar"
            with open(tar, "wb") as f:
                write_layer_tar(str(image.rootfs), f)
            diff_id = self._install_tar(tar, work / "layer")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._remember(f"flat:{image.id}", diff_id)
        return diff_id

    def _stage(self, ref: str, *, required: bool = True) -> Stage | None:
        for i, s in enumerate(self.stages):
            if ref in (s.name, str(i)):
                return s
        if required:
            raise DockerfileError(f"no earlier stage {ref!r}", "COPY --from names a stage defined above (FROM ... AS NAME)")
        return None

    # -- the other instructions -------------------------------------------------------------------
    def _instruction(self, stage: Stage, ins: Instruction) -> None:
        args = expand(ins.args, stage.variables()) if needs_expansion(ins.keyword) else ins.args
        cfg = stage.config
        k = ins.keyword
        if k == "RUN":
            return self._run(stage, ins)
        if k in ("COPY", "ADD"):
            return self._copy(stage, ins, args)
        if k == "ENV":
            env = stage.env()
            for key, value in key_values(args, "ENV"):
                if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
                    raise DockerfileError(f"ENV name {key!r} is not a valid variable name")
                env[key] = value
            cfg["Env"] = [f"{a}={b}" for a, b in env.items()]
        elif k == "ARG":
            for key, value in key_values(args, "ARG"):
                # a global ARG (before the first FROM) is seen by a stage that declares it again
                default = value if value is not None else self.global_args.get(key, "")
                stage.args[key] = self.build_args.get(key, default)
        elif k == "WORKDIR":
            cfg["WorkingDir"] = os.path.normpath(os.path.join(cfg.get("WorkingDir") or "/", args))
        elif k == "USER":
            cfg["User"] = args.strip()
        elif k in ("CMD", "ENTRYPOINT"):
            value = list(ins.exec_form) if ins.exec_form is not None else ([*stage.shell, ins.args] if ins.args else [])
            cfg["Cmd" if k == "CMD" else "Entrypoint"] = value
            stage.own.add(k)
            if k == "ENTRYPOINT" and "CMD" not in stage.own:
                cfg.pop("Cmd", None)  # docker: an ENTRYPOINT drops the Cmd of the base image
        elif k == "EXPOSE":
            for port in words(args):
                if not re.fullmatch(r"\d{1,5}(-\d{1,5})?(/(tcp|udp|sctp))?", port):
                    raise DockerfileError(f"EXPOSE {port!r} is not PORT[/PROTOCOL]")
                cfg.setdefault("ExposedPorts", {})[port if "/" in port else port + "/tcp"] = {}
        elif k == "LABEL":
            cfg.setdefault("Labels", {}).update(dict(key_values(args, "LABEL")))
        elif k == "VOLUME":
            for v in (ins.exec_form if ins.exec_form is not None else words(args)):
                cfg.setdefault("Volumes", {})[v] = {}
        elif k == "STOPSIGNAL":
            cfg["StopSignal"] = args.strip()
        elif k == "SHELL":
            if not ins.exec_form:
                raise DockerfileError("SHELL wants a JSON array, e.g. [\"/bin/bash\", \"-c\"]")
            stage.shell = ins.exec_form
        stage.key = _digest(stage.key, ins.keyword, args, json.dumps(ins.exec_form))
        if k not in ("ARG",):
            stage.history.append({"created": _now(), "created_by": f"{ins.text}", "empty_layer": True})

    # -- RUN -------------------------------------------------------------------------------------
    def _run(self, stage: Stage, ins: Instruction) -> None:
        argv = list(ins.exec_form) if ins.exec_form is not None else [*stage.shell, ins.args]
        network = ins.flag("network") or "none"
        if network not in ("none", "host", "default"):
            raise DockerfileError(f"RUN --network={network}: only none (the default) and host")
        env = {**{k: v for k, v in stage.args.items()}, **stage.env()}  # ARGs are RUN's environment too
        key = _digest(stage.key, "RUN", json.dumps(argv), json.dumps(sorted(env.items())), network,
                      stage.config.get("WorkingDir") or "", stage.config.get("User") or "")
        if not self._cached(stage, key, ins):
            if not stage.layers:
                raise DockerfileError("RUN needs a base image with a shell (FROM scratch has nothing to run)")
            diff_id = self._run_container(stage, argv, env, network, ins)
            self._add_layer(stage, key, diff_id, ins)

    def _run_container(self, stage: Stage, argv: list[str], env: dict[str, str], network: str, ins) -> str:
        from minicontainer import paths
        from minicontainer.container.rootfs import ResolvedImage, storage_mode
        from minicontainer.container.runtime import Runner

        if storage_mode(paths.home() / "containers") != "overlay":
            raise DockerfileError("RUN needs overlayfs: its layer is the container's upper directory",
                                  "build where overlayfs works (not MINICONTAINER_STORAGE=copy, not on an overlay root)")
        from minicontainer.container.spec import build_spec
        from minicontainer.security.config import parse_security

        stack = [str(self.store.layer_dir(d)) for d in dict.fromkeys(reversed(stage.layers))]
        image = ResolvedImage(f"build step {self._step}", f"build:{self._step}", stack[0], lower_stack=tuple(stack[1:]))
        spec = build_spec(image.name, argv, env=[f"{k}={v}" for k, v in env.items()],
                          workdir=stage.config.get("WorkingDir") or None, remove=True,
                          network="host" if network == "host" else None, resources=self.resources,
                          security=parse_security(user=stage.config.get("User") or None))
        work = self.store.new_work()
        try:
            started = time.monotonic()
            self.progress.running(self._step)
            code = Runner(spec, image=image,
                          before_remove=lambda layer: os.rename(Path(layer) / "upper", work / "upper")).run()
            if code != 0:
                raise DockerfileError(f"{self.filename}:{ins.line}: {ins.text} failed with exit code {code}",
                                      "nothing was built; fix the command and build again")
            self.progress.done(self._step, time.monotonic() - started)
            return self._pack(work / "upper", work)
        finally:
            from minicontainer.images.store import remove_tree

            remove_tree(work)

    def _pack(self, tree: Path, work: Path) -> str:
        """A directory with overlay whiteouts -> a layer in the store: packed as
        a layer tar (layers.write_layer_tar), unpacked with the load's checks."""
        from minicontainer.layers import write_layer_tar

        tar = work / "layer.tar"
        with open(tar, "wb") as f:
            write_layer_tar(str(tree), f)
        return self._install_tar(tar, work / "layer")

    def _install_tar(self, tar: Path, layer_work: Path) -> str:
        layer_work.mkdir()
        with open(tar, "rb") as f:
            diff_id = unpack_layer(f, layer_work, None, None, Limits(), "the new layer")
        with self.store.lock():
            self.store.install_layer(layer_work, diff_id)
            self._hold([diff_id])
        return diff_id

    # -- COPY and ADD ------------------------------------------------------------------------------
    def _copy(self, stage: Stage, ins: Instruction, args: str) -> None:
        items = list(ins.exec_form) if ins.exec_form is not None else words(args)
        if len(items) < 2:
            raise DockerfileError(f"{ins.keyword} wants SOURCE... DEST")
        sources, dest = items[:-1], items[-1]
        if ins.keyword == "ADD" and any(re.match(r"^[a-z]+://", s) for s in sources):
            raise DockerfileError("ADD of a URL: there is no network here",
                                  "download the file first and ADD (or COPY) it from the context")
        owner = _owner(ins.flag("chown"))
        mode = int(ins.flag("chmod"), 8) if ins.flag("chmod") else None
        workdir = stage.config.get("WorkingDir") or "/"
        dest_abs = os.path.normpath(os.path.join(workdir, dest))
        into_dir = dest.endswith("/") or len(sources) > 1 or dest in (".", "./")
        origin = self._stage(ins.flag("from")) if ins.flag("from") else None
        src = _StackSource(self.store, origin.layers) if origin is not None else _ContextSource(self.context, self.ignore)
        picked = [p for s in sources for p in src.glob(s)]
        if not picked:
            raise DockerfileError(f"{ins.keyword}: no source files match {' '.join(sources)}")
        below = _StackSource(self.store, stage.layers)
        dest_parts = tuple(p for p in dest_abs.split("/") if p)
        existing = below.lstat(dest_parts)
        if existing is not None and stat.S_ISDIR(existing.st_mode):
            into_dir = True  # docker: a file copied to an existing directory goes into it
        key = _digest(stage.key, ins.keyword, args, json.dumps(ins.flags), src.digest(picked))
        if self._cached(stage, key, ins):
            return
        work = self.store.new_work()
        try:
            diff = work / "diff"
            diff.mkdir(mode=0o755)
            with SafeTree(diff) as tree:
                for i in range(1, len(dest_parts) + (1 if into_dir or len(picked) > 1 else 0)):
                    parent = dest_parts[:i]
                    st = below.lstat(parent)
                    if st is not None and not stat.S_ISDIR(st.st_mode):
                        raise DockerfileError(f"{ins.keyword}: /{'/'.join(parent)} is not a directory in the image "
                                              "(a symlink or a file)", "copy to the real path")
                    if st is None:
                        tree.make_dir(parent, 0o755, 0, 0, None, "/".join(parent))
                    else:
                        tree.make_dir(parent, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns,
                                      "/".join(parent))
                for path in picked:
                    st = src.lstat(path)
                    name = path[-1] if path else ""
                    if stat.S_ISDIR(st.st_mode):
                        target = dest_parts  # a directory's contents go into DEST
                        tree.make_dir(target, mode if mode is not None else stat.S_IMODE(st.st_mode),
                                      *(owner or (0, 0)), st.st_mtime_ns, "/".join(target))
                        src.copy_dir(path, tree, target, owner, mode)
                    elif ins.keyword == "ADD" and src.is_tar(path):
                        tree.make_dir(dest_parts, 0o755, 0, 0, None, dest)
                        tree.finish()
                        _extract_into(src, path, diff, dest_parts)
                    else:
                        target = dest_parts + (name,) if into_dir else dest_parts
                        src.copy_one(path, st, tree, target, owner, mode)
                tree.finish()
            from minicontainer.layers import write_layer_tar

            tar = work / "layer.tar"
            with open(tar, "wb") as f:
                write_layer_tar(str(diff), f)
            diff_id = self._install_tar(tar, work / "layer")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._add_layer(stage, key, diff_id, ins)

    # -- layers, the cache and the end ---------------------------------------------------------------
    def _cached(self, stage: Stage, key: str, ins: Instruction) -> bool:
        if self.no_cache:
            return False
        diff_id = self._cache().get(key)
        with self.store.lock():
            if not diff_id or not self.store.has_layer(diff_id):
                return False
            self._hold([diff_id])
        self.progress.cached(self._step)
        self._extend(stage, key, diff_id, ins)
        return True

    def _add_layer(self, stage: Stage, key: str, diff_id: str, ins: Instruction) -> None:
        self._remember(key, diff_id)
        self._extend(stage, key, diff_id, ins)

    def _extend(self, stage: Stage, key: str, diff_id: str, ins: Instruction) -> None:
        stage.layers.append(diff_id)
        stage.key = key
        stage.history.append({"created": _now(), "created_by": ins.text})

    def _cache(self) -> dict:
        try:
            data = json.loads((self.store.home / _CACHE).read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _remember(self, key: str, diff_id: str) -> None:
        with self.store.lock():
            data = self._cache()
            data.pop(key, None)
            data[key] = diff_id
            while len(data) > _CACHE_ENTRIES:
                data.pop(next(iter(data)))
            tmp = self.store.home / f".{_CACHE}.{os.getpid()}"
            tmp.write_text(json.dumps(data))
            os.replace(tmp, self.store.home / _CACHE)

    def _commit(self, stage: Stage | None, tag: str) -> Image:
        if stage is None:
            raise DockerfileError(f"{self.filename}: no FROM", "start with e.g. 'FROM mini'")
        doc = {"architecture": _arch(), "os": "linux", "created": _now(), "config": stage.config,
               "rootfs": {"type": "layers", "diff_ids": stage.layers}, "history": stage.history}
        config = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
        image_id = hashlib.sha256(config).hexdigest()
        image = self.store.create_layered(tag, image_id, config, [NewLayer(d, None) for d in stage.layers],
                                          {"source": f"build:{self.context}"}, force=True)
        self.progress.wrote(self._step + 1, image_id, tag)
        return image


# -- sources of COPY ---------------------------------------------------------------------------------


class _ContextSource:
    """Files of the build context (a directory of the user's), .dockerignore applied;
    symlinks are copied as symlinks, never followed."""

    def __init__(self, root: str, ignore: Callable[[str], bool]):
        self.root = root
        self.ignored = ignore

    def glob(self, pattern: str) -> list[tuple[str, ...]]:
        clean = os.path.normpath(pattern.lstrip("/"))
        if clean == ".." or clean.startswith("../"):
            raise DockerfileError(f"{pattern!r} is outside the build context")
        if clean == ".":
            return [()]
        import glob as globmod

        hits = sorted(globmod.glob(clean, root_dir=self.root)) if globmod.has_magic(clean) else [clean]
        out = [tuple(h.split("/")) for h in hits if not self.ignored(h)]
        for p in out:
            if self.lstat(p) is None:
                raise DockerfileError(f"{'/'.join(p)} is not in the build context")
        return out

    def _path(self, parts: tuple[str, ...]) -> str:
        return os.path.join(self.root, *parts)

    def lstat(self, parts):
        try:
            return os.lstat(self._path(parts))
        except FileNotFoundError:
            return None

    def digest(self, picked) -> str:
        h = hashlib.sha256()
        for parts in picked:
            for rel, st in self._walk(parts):
                h.update(f"{rel}\0{st.st_mode}\0{st.st_size}\0{st.st_mtime_ns}\0".encode())
                if stat.S_ISREG(st.st_mode):
                    with open(self._path(rel), "rb") as f:
                        h.update(hashlib.file_digest(f, "sha256").digest())
                elif stat.S_ISLNK(st.st_mode):
                    h.update(os.readlink(self._path(rel)).encode())
        return h.hexdigest()

    def _walk(self, parts):
        st = self.lstat(parts)
        if st is None:
            return
        yield parts, st
        if stat.S_ISDIR(st.st_mode):
            for name in sorted(os.listdir(self._path(parts))):
                child = parts + (name,)
                if not self.ignored("/".join(child)):
                    yield from self._walk(child)

    def is_tar(self, parts) -> bool:
        with open(self._path(parts), "rb") as f:
            head = f.read(512)
        if detect_compression(head) != "none":
            return True
        return len(head) == 512 and head[257:262] == b"ustar"

    def open(self, parts):
        return open(self._path(parts), "rb", buffering=0)

    def readlink(self, parts) -> str:
        return os.readlink(self._path(parts))

    def listdir(self, parts) -> list[str]:
        return [n for n in sorted(os.listdir(self._path(parts))) if not self.ignored("/".join(parts + (n,)))]

    def copy_one(self, parts, st, tree: SafeTree, target, owner, mode) -> None:
        uid, gid = owner or (0, 0)
        label = "/".join(target)
        if stat.S_ISLNK(st.st_mode):
            tree.make_symlink(target, self.readlink(parts), uid, gid, st.st_mtime_ns, label)
        elif stat.S_ISREG(st.st_mode):
            fd = os.open(self._path(parts), os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                tree.write_file(target, mode if mode is not None else stat.S_IMODE(st.st_mode), uid, gid,
                                st.st_mtime_ns, label, lambda out: _copy_fd(fd, out))
            finally:
                os.close(fd)
        # sockets, FIFOs, devices of a context: left out, as docker does

    def copy_dir(self, parts, tree: SafeTree, target, owner, mode) -> None:
        for name in self.listdir(parts):
            child = parts + (name,)
            st = self.lstat(child)
            if st is None:
                continue
            if stat.S_ISDIR(st.st_mode):
                tree.make_dir(target + (name,), mode if mode is not None else stat.S_IMODE(st.st_mode),
                              *(owner or (0, 0)), st.st_mtime_ns, "/".join(target + (name,)))
                self.copy_dir(child, tree, target + (name,), owner, mode)
            else:
                self.copy_one(child, st, tree, target + (name,), owner, mode)


class _StackSource(_ContextSource):
    """The merged files of a stack of layers (COPY --from, and the
    destination's parents): a name comes from the highest layer that has
    it, a whiteout deletes it, an opaque directory hides the layers below.
    The layers are the store's (root-only, never written), and every
    component is checked to be a real directory before the next is looked
    up, so no symlink inside a layer is followed."""

    def __init__(self, store: ImageStore, layers: list[str]):
        super().__init__("/", lambda rel: False)
        self.dirs = [str(store.layer_dir(d)) for d in dict.fromkeys(reversed(layers))]

    def glob(self, pattern: str) -> list[tuple[str, ...]]:
        parts = tuple(p for p in os.path.normpath("/" + pattern).split("/") if p)
        if self.lstat(parts) is None:
            raise DockerfileError(f"{pattern} is not in that stage's files")
        return [parts]

    def _find(self, parts) -> tuple[str, os.stat_result] | None:
        from minicontainer.layers import is_whiteout

        for layer in self.dirs:
            path, hidden = layer, False
            for i, name in enumerate(parts):
                path = os.path.join(path, name)
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    break  # not in this layer: look below
                if is_whiteout(st):
                    return None
                if i < len(parts) - 1:
                    if not stat.S_ISDIR(st.st_mode):
                        return None  # a file or symlink here hides the path
                    hidden = hidden or _opaque(path)
                else:
                    return layer, st
            else:
                return layer, os.lstat(layer)  # the root itself
            if hidden:
                return None
        return None

    def _path(self, parts) -> str:
        found = self._find(parts)
        if found is None:
            raise FileNotFoundError("/".join(parts))
        return os.path.join(found[0], *parts)

    def lstat(self, parts):
        found = self._find(parts)
        return found[1] if found else None

    def listdir(self, parts) -> list[str]:
        from minicontainer.layers import is_whiteout

        names: dict[str, bool] = {}  # name -> visible
        for layer in self.dirs:
            path = os.path.join(layer, *parts)
            try:
                st = os.lstat(path)
            except FileNotFoundError:
                continue
            if not stat.S_ISDIR(st.st_mode):
                break
            for n in os.listdir(path):
                if n not in names:
                    names[n] = not is_whiteout(os.lstat(os.path.join(path, n)))
            if _opaque(path):
                break
        return sorted(n for n, visible in names.items() if visible)

    def digest(self, picked) -> str:
        return _digest(*[os.path.join(*p) if p else "/" for p in picked], *self.dirs)  # layers never change

    def copy_one(self, parts, st, tree, target, owner, mode) -> None:
        if owner is None:
            owner = (st.st_uid, st.st_gid)  # a stage's files keep their owners
        super().copy_one(parts, st, tree, target, owner, mode)


def _opaque(path: str) -> bool:
    try:
        return os.getxattr(path, "trusted.overlay.opaque", follow_symlinks=False) == b"y"
    except OSError:
        return False


def _extract_into(src, parts, diff: Path, dest_parts) -> None:
    with src.open(parts) as f:
        extract_tar(f, diff.joinpath(*dest_parts))


def _copy_fd(src: int, dst: int) -> None:
    while data := os.read(src, 1 << 20):
        while data:
            data = data[os.write(dst, data):]


def _owner(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    m = re.fullmatch(r"(\d+)(?::(\d+))?", text)
    if not m:
        raise DockerfileError(f"--chown={text}: give numeric UID[:GID]", "names need the image's /etc/passwd; use ids")
    uid = int(m.group(1))
    return uid, int(m.group(2)) if m.group(2) else uid


def _ignore_rules(context: str) -> Callable[[str], bool]:
    """.dockerignore: one pattern a line (``*``, ``?``, ``**``), ``!`` re-includes,
    the last match wins; a pattern matching a directory excludes its contents."""
    try:
        lines = Path(context, ".dockerignore").read_text().splitlines()
    except OSError:
        return lambda rel: False
    rules = []
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        keep = line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip().lstrip("/"))
        rules.append((_pattern(pattern), keep))

    def ignored(rel: str) -> bool:
        parts = rel.split("/")
        result = False
        for regex, keep in rules:
            if any(regex.match("/".join(parts[:i])) for i in range(1, len(parts) + 1)):
                result = not keep
        return result

    return ignored


def _pattern(glob: str) -> re.Pattern:
    """A .dockerignore pattern (Go's filepath.Match, plus ``**``) as a regex."""
    out, i = "", 0
    while i < len(glob):
        if glob.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3  # any number of directories, none included
        elif glob.startswith("**", i):
            out, i = out + ".*", i + 2
        elif glob[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif glob[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(glob[i]), i + 1
    return re.compile(out + r"\Z")


def _stage_name(ins: Instruction) -> str | None:
    parts = ins.args.split()
    return parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None


def _digest(*items: str) -> str:
    return hashlib.sha256("\0".join(items).encode()).hexdigest()


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


__all__ = ["Builder", "DockerfileError", "MiniError"]
