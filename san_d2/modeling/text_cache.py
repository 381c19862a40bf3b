"""Text embeddings persisted on disk, so that a new process skips the text encoder for a
vocabulary it has seen."""
import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from ..utils.io import atomic_write

logger = logging.getLogger(__name__)

__all__ = ["TextEmbeddingStore", "resolve_text_cache_dir"]


def resolve_text_cache_dir(setting: str) -> Optional[Path]:
    """MODEL.SAN.TEXT_EMBEDDING_CACHE -> folder of persisted text embeddings, or None (off).

    "auto" is ``$XDG_CACHE_HOME/san_d2/text_embeddings`` (``~/.cache`` without the variable);
    "" turns persistence off; anything else is a folder (``~`` and variables expanded).
    """
    if not setting:
        return None
    if setting == "auto":
        root = os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache")
        setting = os.path.join(root, "san_d2", "text_embeddings")
    return Path(os.path.expandvars(os.path.expanduser(setting)))


class TextEmbeddingStore:
    """A folder of ``<sha256 of the key>.pt`` files, each holding the (K, E) embeddings of one
    vocabulary with the names and templates they were made from.

    The key names everything the embeddings depend on (the text weights' hash, the tokenizer,
    the templates and the names). A file that cannot be read, or holds something else, is
    ignored with a warning; a folder that cannot be written only warns. Files are written
    atomically, so concurrent processes never read a half-written one.
    """

    def __init__(self, folder: os.PathLike):
        self.folder = Path(folder)

    def _path(self, key: Dict) -> Path:
        digest = hashlib.sha256(json.dumps(key).encode()).hexdigest()
        return self.folder / f"{digest}.pt"

    def load(self, key: Dict, names: Sequence[str], templates: Sequence[str],
             embed_dim: int) -> Optional[torch.Tensor]:
        """The stored (K, E) embeddings for ``key``, or None."""
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            record = torch.load(path, map_location="cpu", weights_only=True)
            embeddings = record["embeddings"]
            valid = (tuple(record["names"]) == tuple(names)
                     and tuple(record["templates"]) == tuple(templates)
                     and embeddings.shape == (len(names), embed_dim))
        except Exception as e:  # an unreadable file is recomputed, not fatal
            logger.warning(f"Ignoring unreadable text-embedding cache file {path}: {e}")
            return None
        if not valid:
            logger.warning(f"Ignoring text-embedding cache file {path}: it holds another "
                           "vocabulary or template set.")
            return None
        logger.info(f"Loaded the text embeddings of a {len(names)}-class vocabulary from {path}.")
        return embeddings

    def save(self, key: Dict, names: Sequence[str], templates: Sequence[str],
             embeddings: torch.Tensor) -> None:
        path = self._path(key)
        record = {"names": list(names), "templates": list(templates),
                  "embeddings": embeddings.cpu()}
        try:
            with atomic_write(path) as f:
                torch.save(record, f)
        except OSError as e:
            logger.warning(f"Could not save text embeddings to {path} ({e}); set "
                           "MODEL.SAN.TEXT_EMBEDDING_CACHE to a writable folder, or '' to "
                           "turn persistence off.")
