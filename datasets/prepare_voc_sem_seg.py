#!/usr/bin/env python3
"""Convert Pascal VOC 2012 (SBD-augmented) label maps to the 20-class detectron2 format.

Standalone apart from _prepare_common.py next to it: needs only numpy, Pillow and tqdm. Run with
--help for the downloads.
"""
import sys
from pathlib import Path

import numpy as np

# The helper sits next to this script; put it on the path also when the script is loaded by path.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _prepare_common import (  # noqa: E402
    PrepareError, SplitCounts, convert_splits, converted_any, lookup_train_ids,
    parse_root_and_overwrite, print_counts, run_reporting_errors,
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

DESCRIPTION = """\
Convert Pascal VOC 2012 label maps to the 20-class detectron2 format used by san_d2.

Downloads, placed in DATASETS_ROOT/VOC2012/:
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
255 are not written.
"""


def convert_label(label: np.ndarray) -> np.ndarray:
    """Maps a raw SegmentationClassAug label map to train ids.

    Args:
        label: Integer array of raw values (0 background, 1..20 classes, 255 boundary).

    Returns:
        A uint8 array of the same shape: raw 1..20 become 0..19, every other value becomes 255.

    Raises:
        ValueError: The array is not integer.
    """
    return lookup_train_ids(label, _TRAIN_ID_OF_RAW, IGNORE_LABEL)


def read_id_list(voc_dir: Path, split: str) -> list:
    """Reads the image ids of a split from VOC2012/<split>.txt.

    Args:
        voc_dir: DATASETS_ROOT/VOC2012.
        split: "train" or "val".

    Returns:
        The ids in file order.

    Raises:
        PrepareError: The list is missing, empty or has a line that is not a bare id.
    """
    list_file = voc_dir / f"{split}.txt"
    hint = LIST_HINTS[split].format(voc=voc_dir)
    if not list_file.is_file():
        raise PrepareError(f"missing file {list_file}: download {hint}")
    ids = []
    for line_number, line in enumerate(list_file.read_text().splitlines(), start=1):
        image_id = line.strip()
        if not image_id:
            continue
        if "/" in image_id or " " in image_id or image_id.endswith((".png", ".jpg")):
            raise PrepareError(
                f"{list_file} line {line_number} is {line!r}, expected a bare image id such as "
                f"2007_000032: download {hint}"
            )
        ids.append(image_id)
    if not ids:
        raise PrepareError(f"{list_file} lists no image id: download {hint}")
    return ids


def check_inputs(voc_dir: Path, datasets_root: Path) -> dict:
    """Checks that the lists and every listed raw label exist.

    Args:
        voc_dir: DATASETS_ROOT/VOC2012.
        datasets_root: The root given on the command line, for the error message.

    Returns:
        {split: ids}.

    Raises:
        PrepareError: Something is missing; the message names it and what to download.
    """
    if not voc_dir.is_dir():
        advice = ""
        if datasets_root.name == "VOC2012":
            advice = " (pass the datasets root that contains VOC2012/, not VOC2012 itself)"
        raise PrepareError(
            f"missing folder {voc_dir}{advice}: download {VOC_HINT.format(voc=voc_dir)}"
        )
    label_dir = voc_dir / "SegmentationClassAug"
    if not label_dir.is_dir():
        raise PrepareError(
            f"missing folder {label_dir}: download {AUG_HINT.format(voc=voc_dir)}"
        )
    ids = {split: read_id_list(voc_dir, split) for split in SPLITS}
    for split in SPLITS:
        missing = [i for i in ids[split] if not (label_dir / f"{i}.png").is_file()]
        if missing:
            examples = ", ".join(str(label_dir / f"{i}.png") for i in missing[:3])
            raise PrepareError(
                f"{len(missing)} of the {len(ids[split])} labels listed in {voc_dir}/{split}.txt "
                f"are missing, e.g. {examples}: download {AUG_HINT.format(voc=voc_dir)}"
            )
    return ids


def report_split(split: str, counts: SplitCounts, ids: list, voc_dir: Path) -> bool:
    """Prints the summary of one split and checks its counts.

    Args:
        split: The split name.
        counts: What the conversion did.
        ids: The ids listed for the split.
        voc_dir: DATASETS_ROOT/VOC2012, where the images are looked for.

    Returns:
        True when the split has at least one converted label.
    """
    print_counts(split, counts, "listed ids", len(ids))

    image_dir = voc_dir / "JPEGImages"
    if image_dir.is_dir():
        without_image = [i for i in ids if not (image_dir / f"{i}.jpg").is_file()]
        if without_image:
            print(f"  warning: {len(without_image)} listed ids have no image in {image_dir}, "
                  f"e.g. {', '.join(without_image[:5])}")
    else:
        print(f"  note: {image_dir} not found, images not checked; download "
              f"{VOC_HINT.format(voc=voc_dir)} before training or evaluating")

    return converted_any(counts, f"no label of {split} was converted "
                         f"(all {counts.seen} listed labels are entirely ignore)")


def parse_args(argv):
    """Parses ``[datasets_root] [--overwrite]``.

    Args:
        argv: Arguments without the program name, or None for sys.argv[1:].

    Returns:
        The namespace: ``datasets_root`` (the folder holding VOC2012/) and
        ``overwrite``.
    """
    return parse_root_and_overwrite(argv, DESCRIPTION, "VOC2012/")


def run(args) -> int:
    """Converts the listed VOC2012/SegmentationClassAug labels into VOC2012/annotations_detectron2/.

    Prints the summary of each split.

    Args:
        args: The namespace of ``parse_args``.

    Returns:
        The exit code: 0, or 1 when a split converted nothing.

    Raises:
        PrepareError: An input is missing or malformed.
    """
    voc_dir = args.datasets_root / "VOC2012"
    ids = check_inputs(voc_dir, args.datasets_root)
    label_dir = voc_dir / "SegmentationClassAug"
    output_dir = voc_dir / "annotations_detectron2"
    pairs = {split: [(label_dir / f"{i}.png", output_dir / split / f"{i}.png") for i in ids[split]]
             for split in SPLITS}
    return convert_splits(
        pairs, convert_label, args.overwrite,
        lambda split, counts: report_split(split, counts, ids[split], voc_dir),
        skip_all=IGNORE_LABEL)


def main(argv=None) -> int:
    """Converts both splits and prints the count check.

    Args:
        argv: Arguments without the program name, or None for sys.argv[1:].

    Returns:
        0 on success, 1 when an input is missing or malformed or a split converted nothing.
    """
    args = parse_args(argv)
    return run_reporting_errors(lambda: run(args), error_code=1)


if __name__ == "__main__":
    sys.exit(main())
