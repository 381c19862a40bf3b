"""The tiny mmseg checkpoint of tests/data/mmseg_tiny, rebuilt from its compact form.

``san_tiny_mmseg.npz`` holds every record of the torch zip file that mmseg saved, except the
storage of CLIP's token embedding, of which it holds the rows the fixtures' prompts use (see
``compact_checkpoint.py`` there). The rebuilt file is mmseg's container byte for byte but for
the unused rows, which are zero: the same mmengine checkpoint to every loader.
"""
import zipfile
from pathlib import Path

import numpy as np

TOKEN_EMBEDDING_SHAPE = (49408, 32)  # text_encoder.token_embedding.weight of the tiny model


def rebuild_mmseg_checkpoint(compact: Path, destination: Path) -> Path:
    """Writes the checkpoint that ``compact`` describes to ``destination``."""
    parts = np.load(compact)
    table = np.zeros(TOKEN_EMBEDDING_SHAPE, np.float32)
    table[parts["token_ids"]] = parts["token_rows"]
    table_name = str(parts["table_name"])
    with zipfile.ZipFile(destination, "w", compression=zipfile.ZIP_STORED) as archive:
        for i, name in enumerate(parts["record_names"]):
            data = table.tobytes() if name == table_name else parts[f"record_{i}"].tobytes()
            archive.writestr(str(name), data)
    return destination
