"""A real Hugging Face cache on disk, laid out by huggingface_hub's own naming.

Blobs are named by their sha256, snapshot entries are relative links into
blobs/, refs/<branch> holds the commit; ``scan_cache_dir`` reads it back.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from huggingface_hub.file_download import repo_folder_name


def add_snapshot(
    cache: Path,
    repo_id: str,
    commit: str,
    files: dict[str, bytes],
    ref: str | None = "main",
    repo_type: str = "model",
) -> Path:
    repo = cache / repo_folder_name(repo_id=repo_id, repo_type=repo_type)
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    snapshot = repo / "snapshots" / commit
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        entry = snapshot / name
        entry.parent.mkdir(parents=True, exist_ok=True)
        entry.symlink_to(os.path.relpath(blob, entry.parent))
    if ref is not None:
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / ref).write_text(commit)
    return snapshot
