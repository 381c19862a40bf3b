"""Makes ``san_tiny_mmseg.npz`` from the ``san_tiny_mmseg.pth`` that make_fixtures.py writes.

Of the 9.97 MB checkpoint, 6.3 MB is CLIP's (49408, 32) token embedding, which the two training
steps do not change and of which the tests' prompts read a few hundred rows. The .npz keeps every
record of the torch zip file as it is, except that tensor's storage, of which it keeps the rows
the tests' prompts use; :func:`tests.mmseg_file.rebuild_mmseg_checkpoint` writes the file back,
the unused rows zero. Run from the repository root: ``python tests/data/mmseg_tiny/compact_checkpoint.py``.
"""
import json
import sys
import zipfile
from pathlib import Path

import numpy as np
import torch

FOLDER = Path(__file__).resolve().parent
sys.path.insert(0, str(FOLDER.parents[2]))
from tests.mmseg_file import TOKEN_EMBEDDING_SHAPE  # noqa: E402
from tests.test_mmseg_fixtures import OPTS  # noqa: E402


def used_token_ids(checkpoint: Path) -> np.ndarray:
    """The token ids the fixtures' vocabularies reach CLIP's token embedding with."""
    from san_d2 import SANPredictor
    from tests.conftest import TINY_CONFIG

    predictor = SANPredictor(str(TINY_CONFIG), str(checkpoint),
                             opts=[*OPTS, "MODEL.SAN.TEXT_EMBEDDING_CACHE", ""])
    seen = set()
    embedding = predictor.model.ov_classifier.token_embedding
    embedding.register_forward_pre_hook(lambda module, args: seen.update(args[0].flatten().tolist()))
    meta = json.loads((FOLDER / "outputs_meta.json").read_text())
    for vocabulary in meta["vocabularies"]:
        predictor.predict(np.zeros((64, 64, 3), np.uint8), vocabulary)
    return np.array(sorted(seen), dtype=np.int64)


def main() -> None:
    checkpoint = FOLDER / "san_tiny_mmseg.pth"
    row_bytes = TOKEN_EMBEDDING_SHAPE[1] * 4
    table_bytes = TOKEN_EMBEDDING_SHAPE[0] * row_bytes
    with zipfile.ZipFile(checkpoint) as archive:
        records = {info.filename: archive.read(info) for info in archive.infolist()}
    tables = [name for name, data in records.items() if len(data) == table_bytes]
    assert len(tables) == 1, tables
    table = np.frombuffer(records[tables[0]], np.float32).reshape(TOKEN_EMBEDDING_SHAPE)
    kept = {f"record_{i}": np.frombuffer(data, np.uint8)
            for i, (name, data) in enumerate(records.items()) if name != tables[0]}
    ids = used_token_ids(checkpoint)
    np.savez_compressed(FOLDER / "san_tiny_mmseg.npz", record_names=np.array(list(records)),
                        table_name=np.array(tables[0]), token_ids=ids, token_rows=table[ids],
                        **kept)
    print(f"{len(ids)} token rows kept of {TOKEN_EMBEDDING_SHAPE[0]}")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
