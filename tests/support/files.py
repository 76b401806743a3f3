"""Small files to publish: what a version holds, with digests, written into a test's folder."""

from __future__ import annotations

from pathlib import Path

from tasks.core.digests import file_sha256
from tasks.storage.base import PublishFile


def publish_files(folder: Path, content: bytes = b"graph") -> list[PublishFile]:
    folder.mkdir(parents=True, exist_ok=True)
    items = {"saved_model.pb": b"sm-" + content, "variables/variables.index": b"idx",
             "variables/variables.data-00000-of-00001": b"data-" + content, "frozen_graph.pb": content}
    files = []
    for name, data in items.items():
        path = folder / name.replace("/", "_")
        path.write_bytes(data)
        files.append(PublishFile(source=path, name=name, sha256=file_sha256(path), size=len(data)))
    return files
