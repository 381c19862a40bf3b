#!/usr/bin/env python3
"""Convert COCO-Stuff-164k label maps to the 171-class detectron2 format used by san_d2.

Standalone: needs only numpy, Pillow and tqdm. Run with --help for the downloads.
"""
import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

SPLITS = ("train2017", "val2017")
IGNORE_LABEL = 255
# Raw values are COCO category ids minus 1. COCO never used the ids 12, 26, 29, 30, 45, 66, 68,
# 69, 71, 83 and 91, so their raw values never occur; the other 171 values up to 181 are classes.
UNUSED_RAW_VALUES = (11, 25, 28, 29, 44, 65, 67, 68, 70, 82, 90)
USED_RAW_VALUES = tuple(v for v in range(182) if v not in UNUSED_RAW_VALUES)
NUM_CLASSES = len(USED_RAW_VALUES)  # 171

_TRAIN_ID_OF_RAW = np.full(256, IGNORE_LABEL, dtype=np.uint8)
_TRAIN_ID_OF_RAW[list(USED_RAW_VALUES)] = np.arange(NUM_CLASSES, dtype=np.uint8)

IMAGES_HINT = "{split}.zip from http://images.cocodataset.org/zips/ (unzip it into {coco})"
LABELS_HINT = (
    "stuffthingmaps_trainval2017.zip from the COCO-Stuff site "
    "(http://calvin.inf.ed.ac.uk/wp-content/uploads/data/cocostuffdataset/"
    "stuffthingmaps_trainval2017.zip, linked from https://github.com/nightrome/cocostuff; "
    "unzip it into {labels})"
)

DESCRIPTION = """\
Convert COCO-Stuff-164k label maps to the 171-class detectron2 format used by san_d2.

Downloads, unpacked under DATASETS_ROOT/coco/:
  train2017.zip, val2017.zip        http://images.cocodataset.org/zips/
                                    -> coco/train2017/*.jpg, coco/val2017/*.jpg
  stuffthingmaps_trainval2017.zip   COCO-Stuff site (https://github.com/nightrome/cocostuff)
                                    -> coco/stuffthingmaps/{train2017,val2017}/*.png

Reads coco/stuffthingmaps/{train2017,val2017}/*.png (value = COCO category id - 1, 255 =
unlabeled) and writes coco/stuffthingmaps_detectron2/{train2017,val2017}/*.png: uint8 train ids
0..170 in ascending COCO id order, 255 = ignore. Labels that would be entirely 255 are not
written. Only the label zip is needed for the conversion; the image folders, when present, are
used to report images without a label.
"""


class PreparationError(Exception):
    """An input is missing or malformed; the message says which and what to download."""


@dataclass
class SplitCounts:
    """What happened to the inputs of one split.

    Attributes:
        seen: Raw label files examined.
        written: Output files written by this run.
        existing: Outputs already present and left alone (resumed run).
        empty: Inputs whose converted label is entirely ignore, not written.
    """

    seen: int = 0
    written: int = 0
    existing: int = 0
    empty: int = 0


def convert_label(label: np.ndarray) -> np.ndarray:
    """Maps a raw COCO-Stuff label map to train ids.

    Args:
        label: Integer array of raw values (COCO category id - 1, 255 = unlabeled).

    Returns:
        A uint8 array of the same shape: the 171 used raw values become their rank 0..170, every
        other value becomes 255.
    """
    label = np.asarray(label)
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"expected an integer label map, got dtype {label.dtype}")
    train_ids = np.full(label.shape, IGNORE_LABEL, dtype=np.uint8)
    in_table = (label >= 0) & (label < len(_TRAIN_ID_OF_RAW))
    train_ids[in_table] = _TRAIN_ID_OF_RAW[label[in_table]]
    return train_ids


def read_label(path: Path) -> np.ndarray:
    """Reads a single-channel label PNG as an array of its stored values.

    Args:
        path: The PNG file.

    Returns:
        The 2-D array of pixel values.

    Raises:
        PreparationError: The file cannot be decoded or is not single-channel.
    """
    try:
        with Image.open(path) as image:
            label = np.array(image)
    except OSError as error:
        raise PreparationError(f"cannot read {path}: {error}") from error
    if label.ndim != 2:
        raise PreparationError(f"{path} is not a single-channel label map (shape {label.shape})")
    return label


def write_label(label: np.ndarray, path: Path) -> None:
    """Writes a uint8 label map as a mode-L PNG, atomically.

    The PNG is written to a temporary name and then renamed, so an interrupted run never leaves
    a truncated file that a resumed run would take for a finished one.

    Args:
        label: 2-D uint8 array.
        path: Destination PNG.
    """
    temporary = path.with_name(path.name + ".tmp")
    try:
        Image.fromarray(label).save(temporary, format="PNG")
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def convert_split(pairs: list, overwrite: bool, description: str) -> SplitCounts:
    """Converts the raw labels of one split.

    Args:
        pairs: (raw PNG, output PNG) paths.
        overwrite: Rewrite outputs that already exist (and delete ones whose input is now
            entirely ignore) instead of skipping them.
        description: Label of the progress bar.

    Returns:
        The counts of the split.

    Raises:
        PreparationError: A raw label cannot be read or converted.
    """
    counts = SplitCounts()
    for source, destination in tqdm(pairs, desc=description, unit="label"):
        counts.seen += 1
        if destination.exists() and not overwrite:
            counts.existing += 1
            continue
        try:
            train_ids = convert_label(read_label(source))
        except ValueError as error:
            raise PreparationError(f"{source}: {error}") from error
        if np.all(train_ids == IGNORE_LABEL):
            counts.empty += 1
            if destination.exists():  # stale output of an earlier run (only with --overwrite)
                destination.unlink()
            continue
        write_label(train_ids, destination)
        counts.written += 1
    return counts


def list_raw_labels(coco_dir: Path, split: str) -> list:
    """Lists the raw label PNGs of a split, failing clearly when there are none.

    Args:
        coco_dir: DATASETS_ROOT/coco.
        split: "train2017" or "val2017".

    Returns:
        The sorted PNG paths.

    Raises:
        PreparationError: The folder is missing or holds no PNG.
    """
    folder = coco_dir / "stuffthingmaps" / split
    hint = LABELS_HINT.format(labels=coco_dir / "stuffthingmaps")
    if not folder.is_dir():
        raise PreparationError(f"missing folder {folder}: download {hint}")
    files = sorted(folder.glob("*.png"))
    if not files:
        raise PreparationError(f"no *.png in {folder}: download {hint}")
    return files


def report_split(split: str, counts: SplitCounts, raw_labels: list, coco_dir: Path) -> bool:
    """Prints the summary of one split and checks its counts.

    Args:
        split: The split name.
        counts: What the conversion did.
        raw_labels: The raw label files of the split.
        coco_dir: DATASETS_ROOT/coco, where the images of the split are looked for.

    Returns:
        True when the split has at least one converted label.
    """
    print(
        f"{split}: {counts.seen} raw labels seen, {counts.written} written, "
        f"{counts.existing} skipped as existing, {counts.empty} skipped as all-ignore"
    )
    assert counts.seen == counts.written + counts.existing + counts.empty == len(raw_labels)

    image_dir = coco_dir / split
    if image_dir.is_dir():
        image_stems = {p.stem for p in image_dir.glob("*.jpg")}
        label_stems = {p.stem for p in raw_labels}
        without_label = sorted(image_stems - label_stems)
        without_image = sorted(label_stems - image_stems)
        print(f"  {len(image_stems)} images in {image_dir}, {len(label_stems)} raw labels")
        if without_label:
            print(f"  warning: {len(without_label)} images have no raw label, "
                  f"e.g. {', '.join(without_label[:5])}")
        if without_image:
            print(f"  warning: {len(without_image)} raw labels have no image, "
                  f"e.g. {', '.join(without_image[:5])}; download "
                  f"{IMAGES_HINT.format(split=split, coco=coco_dir)}")
    else:
        print(f"  note: {image_dir} not found, images not checked; download "
              f"{IMAGES_HINT.format(split=split, coco=coco_dir)} before training or evaluating")

    if counts.written + counts.existing == 0:
        print(f"  error: no label of {split} was converted "
              f"(all {counts.seen} raw labels are entirely unlabeled)", file=sys.stderr)
        return False
    return True


def parse_args(argv):
    """Parses the command line.

    Args:
        argv: Arguments without the program name, or None for sys.argv[1:].

    Returns:
        The parsed namespace.
    """
    parser = argparse.ArgumentParser(
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "datasets_root", nargs="?", type=Path,
        default=Path(os.environ.get("DETECTRON2_DATASETS", "datasets")),
        help="datasets root holding coco/ (default: $DETECTRON2_DATASETS, else 'datasets')",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="rewrite outputs that already exist (default: skip them, so reruns resume)",
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    """Converts both splits and prints the count check.

    Args:
        argv: Arguments without the program name, or None for sys.argv[1:].

    Returns:
        0 on success, 1 when an input is missing or malformed or a split converted nothing.
    """
    args = parse_args(argv)
    coco_dir = args.datasets_root / "coco"
    try:
        raw_labels = {split: list_raw_labels(coco_dir, split) for split in SPLITS}
        all_ok = True
        for split in SPLITS:
            output_dir = coco_dir / "stuffthingmaps_detectron2" / split
            output_dir.mkdir(parents=True, exist_ok=True)
            pairs = [(path, output_dir / path.name) for path in raw_labels[split]]
            counts = convert_split(pairs, args.overwrite, split)
            all_ok &= report_split(split, counts, raw_labels[split], coco_dir)
    except PreparationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
