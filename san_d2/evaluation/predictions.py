"""Reading back the predictions that detectron2's ``SemSegEvaluator`` saves."""
from collections import defaultdict
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import MetadataCatalog

__all__ = ["predictions_to_label_maps"]


def predictions_to_label_maps(predictions: List[Dict], dataset_name: str) -> Dict[str, np.ndarray]:
    """``sem_seg_predictions.json`` entries (one RLE mask per predicted class and image) ->
    {file_name: (H, W) int64 train-id map}; pixels no entry covers, and pixels marked unknown
    (category id -1), are -1."""
    metadata = MetadataCatalog.get(dataset_name)
    to_train_id = dict(metadata.get("stuff_dataset_id_to_contiguous_id", {}))
    by_file = defaultdict(list)
    for entry in predictions:
        by_file[entry["file_name"]].append(entry)
    maps = {}
    for file_name, entries in by_file.items():
        height, width = entries[0]["segmentation"]["size"]
        label_map = np.full((height, width), -1, dtype=np.int64)
        for entry in entries:
            rle = dict(entry["segmentation"], counts=entry["segmentation"]["counts"].encode())
            train_id = to_train_id.get(entry["category_id"], entry["category_id"])
            label_map[mask_util.decode(rle).astype(bool)] = train_id
        maps[file_name] = label_map
    return maps
