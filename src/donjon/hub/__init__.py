"""Model files from the Hugging Face cache: every snapshot, or one ``hf://ORG/NAME@REV``.

Resolution goes through ``huggingface_hub`` (the ``hf`` extra), imported only here
and only when a hub source is asked for. Snapshot links are followed only into
the cache's own blobs.
"""

from donjon.hub.cache import (
    HubFile,
    cache_files,
    cached_files,
    parse_spec,
    repo_files,
    repo_snapshot,
)

__all__ = ["HubFile", "cache_files", "cached_files", "parse_spec", "repo_files", "repo_snapshot"]
