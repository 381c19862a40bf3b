#!/usr/bin/env python3
"""Convert Pascal VOC 2012 label maps to the 20-class detectron2 format used by san_d2.

Downloads, placed in <root>/VOC2012/:
  VOCtrainval_11-May-2012.tar   http://host.robots.ox.ac.uk/pascal/VOC/voc2012/
                                move VOCdevkit/VOC2012 so that VOC2012/JPEGImages/ exists, and
                                copy VOC2012/ImageSets/Segmentation/val.txt to VOC2012/val.txt
  SegmentationClassAug.zip      SBD-augmented labels (DrSleep's zip,
                                https://www.dropbox.com/s/oeu149j8qtbs1x0/SegmentationClassAug.zip)
                                -> VOC2012/SegmentationClassAug/*.png
  trainaug.txt                  the trainaug id list (gist by sun11,
                                https://gist.githubusercontent.com/sun11/2dbda6b31acc7c6292d14a872d0c90b7/raw/5f5a5270089239ef2f6b65b1cc55208355b5acca/trainaug.txt)
                                saved as VOC2012/train.txt

For every id in VOC2012/train.txt and VOC2012/val.txt, reads VOC2012/SegmentationClassAug/<id>.png
and writes VOC2012/annotations_detectron2/{train,val}/<id>.png: uint8 train ids 0..19 (raw 1..20),
255 = ignore (raw 0 background, raw 255 boundary, anything else). Labels that would be entirely
255 are not written. The rule is that of MendelXu/SAN's datasets/prepare_voc_sem_seg.py.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import (  # noqa: E402
    PrepareError, convert_label_files, image_folder_exists, lookup_train_ids, require,
    require_all, script_main, warn_unmatched,
)

SPLITS = ("train", "val")
IGNORE_LABEL = 255
NUM_CLASSES = 20

# Raw 0 is background, which the 20-class benchmark ignores; raw 1..20 are the classes. Raw 255
# (object boundaries) and any unexpected value are ignored too.
_TRAIN_ID_OF_RAW = np.full(256, IGNORE_LABEL, dtype=np.uint8)
_TRAIN_ID_OF_RAW[1:NUM_CLASSES + 1] = np.arange(NUM_CLASSES, dtype=np.uint8)

VOC_HINT = (
    "VOCtrainval_11-May-2012.tar "
    "(http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar) and move its "
    "VOCdevkit/VOC2012 folder to {voc}"
)
AUG_HINT = (
    "SegmentationClassAug.zip (https://www.dropbox.com/s/oeu149j8qtbs1x0/SegmentationClassAug.zip,"
    " from https://github.com/DrSleep/tensorflow-deeplab-resnet) and unzip it into {voc}"
)
LIST_HINTS = {
    "train": (
        "the trainaug id list (https://gist.githubusercontent.com/sun11/"
        "2dbda6b31acc7c6292d14a872d0c90b7/raw/5f5a5270089239ef2f6b65b1cc55208355b5acca/"
        "trainaug.txt) and save it as {voc}/train.txt"
    ),
    "val": (
        "VOCtrainval_11-May-2012.tar and copy its ImageSets/Segmentation/val.txt to {voc}/val.txt"
    ),
}


def convert_label(label: np.ndarray) -> np.ndarray:
    """Maps raw values to train ids: 1..20 to 0..19, every other value to 255."""
    return lookup_train_ids(label, _TRAIN_ID_OF_RAW, IGNORE_LABEL)


def read_id_list(voc_dir: Path, split: str) -> list[str]:
    """The image ids of VOC2012/<split>.txt, in file order.

    Raises:
        PrepareError: The list is missing, empty or has a line that is not a bare id.
    """
    list_file = voc_dir / f"{split}.txt"
    download = f"download {LIST_HINTS[split].format(voc=voc_dir)}"
    require(list_file, download)
    ids = []
    for line_number, line in enumerate(list_file.read_text().splitlines(), start=1):
        image_id = line.strip()
        if not image_id:
            continue
        if "/" in image_id or " " in image_id or image_id.endswith((".png", ".jpg")):
            raise PrepareError(f"{list_file} line {line_number} is {line!r}, expected a bare "
                               f"image id such as 2007_000032: {download}")
        ids.append(image_id)
    if not ids:
        raise PrepareError(f"{list_file} lists no image id: {download}")
    return ids


def check_inputs(voc_dir: Path, datasets_root: Path) -> dict[str, list[str]]:
    """The ids of each split, after checking that the lists and every listed raw label exist."""
    advice = ""
    if datasets_root.name == "VOC2012":
        advice = " (pass the datasets root that contains VOC2012/, not VOC2012 itself)"
    require(voc_dir, f"download {VOC_HINT.format(voc=voc_dir)}{advice}", kind="folder")
    label_dir = voc_dir / "SegmentationClassAug"
    download = f"download {AUG_HINT.format(voc=voc_dir)}"
    require(label_dir, download, kind="folder")
    ids = {split: read_id_list(voc_dir, split) for split in SPLITS}
    for split in SPLITS:
        require_all((label_dir / f"{i}.png" for i in ids[split]),
                    f"labels listed in {voc_dir / split}.txt are missing", download)
    return ids


def check_images(split: str, ids: dict[str, list[str]], voc_dir: Path) -> None:
    """Reports the listed ids of ``split`` that have no image in VOC2012/JPEGImages/."""
    image_dir = voc_dir / "JPEGImages"
    if image_folder_exists(image_dir, f"download {VOC_HINT.format(voc=voc_dir)}"):
        warn_unmatched(f"listed ids have no image in {image_dir}",
                       (i for i in ids[split] if not (image_dir / f"{i}.jpg").is_file()))


def run(args: argparse.Namespace) -> int:
    """Converts the listed VOC2012/SegmentationClassAug labels into annotations_detectron2/."""
    voc_dir = args.datasets_root / "VOC2012"
    ids = check_inputs(voc_dir, args.datasets_root)
    label_dir = voc_dir / "SegmentationClassAug"
    output_dir = voc_dir / "annotations_detectron2"
    pairs = {split: [(label_dir / f"{i}.png", output_dir / split / f"{i}.png") for i in ids[split]]
             for split in SPLITS}
    return convert_label_files(pairs, convert_label, args.overwrite, "listed labels",
                               skip_all=IGNORE_LABEL,
                               check_split=lambda split: check_images(split, ids, voc_dir))


main = script_main(__doc__, run)

if __name__ == "__main__":
    sys.exit(main())
