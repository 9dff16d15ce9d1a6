"""``image history``: an image's layers with the instruction that made each.

The config's ``history`` (OCI image spec, config.md) has one entry per
instruction, oldest first; those marked ``empty_layer`` (ENV, CMD, ...) made
no layer, every other one made the next layer of ``rootfs.diff_ids``. So
walking both lists side by side gives each layer its instruction.
"""

from __future__ import annotations

from minicontainer.images.store import ImageStore


def history(store: ImageStore, name: str) -> list[dict]:
    """Rows, newest first: layer (diff_id, or "" for an instruction without
    one), created, created_by, size (bytes of file data), comment."""
    image = store.get(name)
    if not image.layered:
        return [{"layer": image.id if ":" in image.id else "sha256:" + image.id,
                 "created": _when(image.meta.get("created")), "created_by": f"import {image.meta.get('source', '')}",
                 "size": int(image.meta.get("size") or 0), "comment": "a flat image: one layer"}]
    config = image.config()
    layers = list(image.meta.get("layers") or [])
    entries = config.get("history") if isinstance(config.get("history"), list) else []
    rows = []
    next_layer = 0
    for h in entries:
        h = h if isinstance(h, dict) else {}
        layer = ""
        if not h.get("empty_layer") and next_layer < len(layers):
            layer = layers[next_layer]
            next_layer += 1
        rows.append(_row(store, layer, h))
    for layer in layers[next_layer:]:  # layers the history does not describe
        rows.append(_row(store, layer, {}))
    return rows[::-1]


def _row(store: ImageStore, layer: str, h: dict) -> dict:
    return {
        "layer": layer,
        "created": str(h.get("created") or ""),
        "created_by": str(h.get("created_by") or ""),
        "size": int(store.layer_meta(layer).get("size") or 0) if layer else 0,
        "comment": str(h.get("comment") or ""),
    }


def _when(t) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t)) if t else ""
