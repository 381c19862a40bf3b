#!/usr/bin/env python3
"""Convert Pascal VOC 2012 (SBD-augmented) label maps to the 20-class detectron2 format.

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


class PreparationError(Exception):
    """An input is missing or malformed; the message says which and what to download."""


@dataclass
class SplitCounts:
    """What happened to the inputs of one split.

    Attributes:
        seen: Listed ids examined.
        written: Output files written by this run.
        existing: Outputs already present and left alone (resumed run).
        empty: Inputs whose converted label is entirely ignore, not written.
    """

    seen: int = 0
    written: int = 0
    existing: int = 0
    empty: int = 0


def convert_label(label: np.ndarray) -> np.ndarray:
    """Maps a raw SegmentationClassAug label map to train ids.

    Args:
        label: Integer array of raw values (0 background, 1..20 classes, 255 boundary).

    Returns:
        A uint8 array of the same shape: raw 1..20 become 0..19, every other value becomes 255.
    """
    label = np.asarray(label)
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"expected an integer label map, got dtype {label.dtype}")
    train_ids = np.full(label.shape, IGNORE_LABEL, dtype=np.uint8)
    in_table = (label >= 0) & (label < len(_TRAIN_ID_OF_RAW))
    train_ids[in_table] = _TRAIN_ID_OF_RAW[label[in_table]]
    return train_ids


def read_label(path: Path) -> np.ndarray:
    """Reads a single-channel (grayscale or palette) label PNG as an array of its stored values.

    Args:
        path: The PNG file.

    Returns:
        The 2-D array of pixel values (palette indices for a palette PNG).

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


def read_id_list(voc_dir: Path, split: str) -> list:
    """Reads the image ids of a split from VOC2012/<split>.txt.

    Args:
        voc_dir: DATASETS_ROOT/VOC2012.
        split: "train" or "val".

    Returns:
        The ids in file order.

    Raises:
        PreparationError: The list is missing, empty or has a line that is not a bare id.
    """
    list_file = voc_dir / f"{split}.txt"
    hint = LIST_HINTS[split].format(voc=voc_dir)
    if not list_file.is_file():
        raise PreparationError(f"missing file {list_file}: download {hint}")
    ids = []
    for line_number, line in enumerate(list_file.read_text().splitlines(), start=1):
        image_id = line.strip()
        if not image_id:
            continue
        if "/" in image_id or " " in image_id or image_id.endswith((".png", ".jpg")):
            raise PreparationError(
                f"{list_file} line {line_number} is {line!r}, expected a bare image id such as "
                f"2007_000032: download {hint}"
            )
        ids.append(image_id)
    if not ids:
        raise PreparationError(f"{list_file} lists no image id: download {hint}")
    return ids


def check_inputs(voc_dir: Path, datasets_root: Path) -> dict:
    """Checks that the lists and every listed raw label exist.

    Args:
        voc_dir: DATASETS_ROOT/VOC2012.
        datasets_root: The root given on the command line, for the error message.

    Returns:
        {split: ids}.

    Raises:
        PreparationError: Something is missing; the message names it and what to download.
    """
    if not voc_dir.is_dir():
        advice = ""
        if datasets_root.name == "VOC2012":
            advice = " (pass the datasets root that contains VOC2012/, not VOC2012 itself)"
        raise PreparationError(
            f"missing folder {voc_dir}{advice}: download {VOC_HINT.format(voc=voc_dir)}"
        )
    label_dir = voc_dir / "SegmentationClassAug"
    if not label_dir.is_dir():
        raise PreparationError(
            f"missing folder {label_dir}: download {AUG_HINT.format(voc=voc_dir)}"
        )
    ids = {split: read_id_list(voc_dir, split) for split in SPLITS}
    for split in SPLITS:
        missing = [i for i in ids[split] if not (label_dir / f"{i}.png").is_file()]
        if missing:
            examples = ", ".join(str(label_dir / f"{i}.png") for i in missing[:3])
            raise PreparationError(
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
    print(
        f"{split}: {counts.seen} listed ids seen, {counts.written} written, "
        f"{counts.existing} skipped as existing, {counts.empty} skipped as all-ignore"
    )
    assert counts.seen == counts.written + counts.existing + counts.empty == len(ids)

    image_dir = voc_dir / "JPEGImages"
    if image_dir.is_dir():
        without_image = [i for i in ids if not (image_dir / f"{i}.jpg").is_file()]
        if without_image:
            print(f"  warning: {len(without_image)} listed ids have no image in {image_dir}, "
                  f"e.g. {', '.join(without_image[:5])}")
    else:
        print(f"  note: {image_dir} not found, images not checked; download "
              f"{VOC_HINT.format(voc=voc_dir)} before training or evaluating")

    if counts.written + counts.existing == 0:
        print(f"  error: no label of {split} was converted "
              f"(all {counts.seen} listed labels are entirely ignore)", file=sys.stderr)
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
        help="datasets root holding VOC2012/ (default: $DETECTRON2_DATASETS, else 'datasets')",
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
    voc_dir = args.datasets_root / "VOC2012"
    try:
        ids = check_inputs(voc_dir, args.datasets_root)
        all_ok = True
        for split in SPLITS:
            output_dir = voc_dir / "annotations_detectron2" / split
            output_dir.mkdir(parents=True, exist_ok=True)
            pairs = [
                (voc_dir / "SegmentationClassAug" / f"{i}.png", output_dir / f"{i}.png")
                for i in ids[split]
            ]
            counts = convert_split(pairs, args.overwrite, split)
            all_ok &= report_split(split, counts, ids[split], voc_dir)
    except PreparationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
