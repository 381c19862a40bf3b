"""Draw saved evaluation predictions next to the ground truth.

``SemSegEvaluator`` writes ``sem_seg_predictions.json`` (one RLE mask per predicted class and
image). This draws, for each image, the ground truth and the prediction side by side:

    python -m san_d2.visualize_predictions \\
        --predictions output/inference/ade20k_sem_seg_val/sem_seg_predictions.json \\
        --dataset ade20k_sem_seg_val --output output/vis [--max-images 20]
"""
import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Dict, List

import numpy as np
import pycocotools.mask as mask_util
from detectron2.data import DatasetCatalog, MetadataCatalog
from PIL import Image
from tqdm import tqdm

import san_d2  # noqa: F401  (registers the datasets)
from san_d2.utils.visualization import draw_label_map, drawing_metadata

__all__ = ["predictions_to_label_maps", "draw_side_by_side", "main"]


def predictions_to_label_maps(predictions: List[Dict], dataset_name: str) -> Dict[str, np.ndarray]:
    """{file_name: (H, W) train-id map} from the evaluator's JSON (unpredicted pixels: -1)."""
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


def draw_side_by_side(image: np.ndarray, ground_truth: np.ndarray, prediction: np.ndarray,
                      class_names) -> np.ndarray:
    """Ground truth (left) and prediction (right) over the image; ignored pixels undrawn."""
    metadata = drawing_metadata(class_names)
    return np.concatenate([draw_label_map(image, ground_truth, metadata),
                           draw_label_map(image, prediction, metadata)], axis=1)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--predictions", required=True, help="sem_seg_predictions.json")
    parser.add_argument("--dataset", required=True, help="registered dataset it was made on")
    parser.add_argument("--output", required=True)
    parser.add_argument("--max-images", type=int, default=None)
    args = parser.parse_args(argv)
    if not os.path.isfile(args.predictions):
        parser.error(f"--predictions {args.predictions}: no such file.")
    if args.dataset not in DatasetCatalog.list():
        parser.error(f"--dataset {args.dataset} is not registered.")
    with open(args.predictions) as f:
        label_maps = predictions_to_label_maps(json.load(f), args.dataset)
    records = {r["file_name"]: r for r in DatasetCatalog.get(args.dataset)}
    metadata = MetadataCatalog.get(args.dataset)
    os.makedirs(args.output, exist_ok=True)
    files = sorted(label_maps)[: args.max_images]
    for file_name in tqdm(files, desc="drawing", unit="image"):
        if file_name not in records:
            print(f"warning: {file_name} is not in {args.dataset}; skipped", file=sys.stderr)
            continue
        image = np.asarray(Image.open(file_name).convert("RGB"))
        gt = np.asarray(Image.open(records[file_name]["sem_seg_file_name"])).astype(np.int64)
        gt[gt == metadata.ignore_label] = -1
        drawing = draw_side_by_side(image, gt, label_maps[file_name], metadata.stuff_classes)
        Image.fromarray(drawing).save(Path(args.output) / (Path(file_name).stem + ".png"))
    print(f"{len(files)} drawings in {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
