#!/usr/bin/env python3
"""Convert ADE20K-150 (SceneParsing) label maps to the detectron2 format used by san_d2.

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

SPLITS = ("training", "validation")
IGNORE_LABEL = 255

ADE_HINT = (
    "ADEChallengeData2016.zip (http://data.csail.mit.edu/places/ADEchallenge/"
    "ADEChallengeData2016.zip, linked from http://sceneparsing.csail.mit.edu/) and unzip it into "
    "{root}"
)

DESCRIPTION = """\
Convert ADE20K-150 label maps to the detectron2 format used by san_d2.

Download, unzipped into DATASETS_ROOT/:
  ADEChallengeData2016.zip   http://sceneparsing.csail.mit.edu/
                             http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip
                             -> ADEChallengeData2016/images/{training,validation}/*.jpg
                                ADEChallengeData2016/annotations/{training,validation}/*.png

Reads ADEChallengeData2016/annotations/{training,validation}/*.png (uint8, 0 = other,
1..150 = classes) and writes ADEChallengeData2016/annotations_detectron2/{training,validation}/
with the same names: value - 1, so the classes become 0..149 and "other" becomes 255 (ignore).
Every label is written, including entirely ignored ones.
"""


class PreparationError(Exception):
    """An input is missing or malformed; the message says which and what to download."""


@dataclass
class SplitCounts:
    """What happened to the inputs of one split.

    Attributes:
        seen: Raw annotation files examined.
        written: Output files written by this run.
        existing: Outputs already present and left alone (resumed run).
        empty: Always 0: ADE20K labels are written even when entirely ignore, as in detectron2.
    """

    seen: int = 0
    written: int = 0
    existing: int = 0
    empty: int = 0


def convert_label(label: np.ndarray) -> np.ndarray:
    """Maps a raw ADE20K annotation to train ids.

    Args:
        label: uint8 array (0 = other, 1..150 = classes).

    Returns:
        label - 1 as uint8 with wraparound: 0 becomes 255, k becomes k - 1.

    Raises:
        ValueError: The array is not uint8.
    """
    label = np.asarray(label)
    if label.dtype != np.uint8:
        raise ValueError(f"ADE20K annotations must be uint8, got dtype {label.dtype}")
    return label - np.uint8(1)


def read_label(path: Path) -> np.ndarray:
    """Reads a single-channel label PNG as an array of its stored values.

    Args:
        path: The PNG file.

    Returns:
        The 2-D array of pixel values, in the dtype the PNG stores (uint8, or uint16/int32 for
        16-bit PNGs, which convert_label rejects).

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
    """Converts the raw annotations of one split.

    Args:
        pairs: (raw PNG, output PNG) paths.
        overwrite: Rewrite outputs that already exist instead of skipping them.
        description: Label of the progress bar.

    Returns:
        The counts of the split.

    Raises:
        PreparationError: An annotation cannot be read or is not uint8.
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
        write_label(train_ids, destination)
        counts.written += 1
    return counts


def list_annotations(ade_dir: Path, split: str, datasets_root: Path) -> list:
    """Lists the raw annotation PNGs of a split, failing clearly when there are none.

    Args:
        ade_dir: DATASETS_ROOT/ADEChallengeData2016.
        split: "training" or "validation".
        datasets_root: Where the zip is to be unpacked, for the error message.

    Returns:
        The sorted PNG paths.

    Raises:
        PreparationError: The folder is missing or holds no PNG.
    """
    folder = ade_dir / "annotations" / split
    hint = ADE_HINT.format(root=datasets_root)
    if not folder.is_dir():
        raise PreparationError(f"missing folder {folder}: download {hint}")
    files = sorted(folder.glob("*.png"))
    if not files:
        raise PreparationError(f"no *.png in {folder}: download {hint}")
    return files


def report_split(split: str, counts: SplitCounts, annotations: list, ade_dir: Path) -> bool:
    """Prints the summary of one split and checks its counts.

    Args:
        split: The split name.
        counts: What the conversion did.
        annotations: The raw annotation files of the split.
        ade_dir: DATASETS_ROOT/ADEChallengeData2016, where the images are looked for.

    Returns:
        True when the split has at least one converted label.
    """
    print(
        f"{split}: {counts.seen} annotations seen, {counts.written} written, "
        f"{counts.existing} skipped as existing, {counts.empty} skipped as all-ignore"
    )
    assert counts.seen == counts.written + counts.existing + counts.empty == len(annotations)

    image_dir = ade_dir / "images" / split
    if image_dir.is_dir():
        image_stems = {p.stem for p in image_dir.glob("*.jpg")}
        label_stems = {p.stem for p in annotations}
        without_label = sorted(image_stems - label_stems)
        without_image = sorted(label_stems - image_stems)
        print(f"  {len(image_stems)} images in {image_dir}, {len(label_stems)} annotations")
        if without_label:
            print(f"  warning: {len(without_label)} images have no annotation, "
                  f"e.g. {', '.join(without_label[:5])}")
        if without_image:
            print(f"  warning: {len(without_image)} annotations have no image, "
                  f"e.g. {', '.join(without_image[:5])}")
    else:
        print(f"  warning: {image_dir} not found, images not checked "
              "(ADEChallengeData2016.zip holds both; was it fully unzipped?)")

    if counts.written + counts.existing == 0:
        print(f"  error: no annotation of {split} was converted", file=sys.stderr)
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
        help="datasets root holding ADEChallengeData2016/ "
        "(default: $DETECTRON2_DATASETS, else 'datasets')",
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
    ade_dir = args.datasets_root / "ADEChallengeData2016"
    try:
        annotations = {
            split: list_annotations(ade_dir, split, args.datasets_root) for split in SPLITS
        }
        all_ok = True
        for split in SPLITS:
            output_dir = ade_dir / "annotations_detectron2" / split
            output_dir.mkdir(parents=True, exist_ok=True)
            pairs = [(path, output_dir / path.name) for path in annotations[split]]
            counts = convert_split(pairs, args.overwrite, split)
            all_ok &= report_split(split, counts, annotations[split], ade_dir)
    except PreparationError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
