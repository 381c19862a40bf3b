"""Code shared by the dataset preparation scripts in this folder.

The scripts stay standalone commands (``python datasets/prepare_x.py``) and import this module
from their own folder. It needs only numpy, Pillow and tqdm; scipy is imported only by the
Pascal-Context ``.mat`` reader.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
from PIL import Image
from tqdm import tqdm


class PrepareError(RuntimeError):
    """A missing or malformed input; the message says which and what to download."""


# ----------------------------------------------------------------------------- command line

def default_datasets_root() -> Path:
    """Returns $DETECTRON2_DATASETS, else ``datasets`` (relative to the working directory)."""
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def new_parser(description: str) -> argparse.ArgumentParser:
    """Creates a parser that prints ``description`` with its line breaks kept.

    Args:
        description: The --help text above the options.

    Returns:
        The parser.
    """
    return argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter
    )


def add_datasets_root_option(parser: argparse.ArgumentParser) -> None:
    """Adds ``--datasets-root``, defaulting to $DETECTRON2_DATASETS or ./datasets.

    Args:
        parser: The parser to extend.
    """
    parser.add_argument("--datasets-root", type=Path, default=default_datasets_root(),
                        help="datasets root (default: $DETECTRON2_DATASETS or ./datasets)")


def parse_root_and_overwrite(argv, description: str, holding: str) -> argparse.Namespace:
    """Parses ``[datasets_root] [--overwrite]``, the command line of the PNG-to-PNG scripts.

    Args:
        argv: Arguments without the program name, or None for sys.argv[1:].
        description: The --help text.
        holding: What the datasets root holds, e.g. ``coco/``, for the help text.

    Returns:
        The namespace with ``datasets_root`` and ``overwrite``.
    """
    parser = new_parser(description)
    parser.add_argument(
        "datasets_root", nargs="?", type=Path, default=default_datasets_root(),
        help=f"datasets root holding {holding} (default: $DETECTRON2_DATASETS, else 'datasets')",
    )
    parser.add_argument(
        "--overwrite", action="store_true",
        help="rewrite outputs that already exist (default: skip them, so reruns resume)",
    )
    return parser.parse_args(argv)


def run_reporting_errors(run: Callable[[], int], error_code: int) -> int:
    """Runs ``run`` and turns a PrepareError into an ``error: ...`` line on stderr.

    Args:
        run: The work; returns the exit code.
        error_code: The exit code when an input is missing or malformed.

    Returns:
        The exit code of ``run``, or ``error_code``.
    """
    try:
        return run()
    except PrepareError as error:
        print(f"error: {error}", file=sys.stderr)
        return error_code


# ----------------------------------------------------------------------------- missing inputs

def require(path: Path, what: str, kind: str = "file") -> None:
    """Fails with a message naming ``path`` and what to download when it is missing.

    Args:
        path: The expected input.
        what: How to obtain it.
        kind: ``"file"`` or ``"folder"``.

    Raises:
        PrepareError: The path does not exist as that kind.
    """
    ok = path.is_file() if kind == "file" else path.is_dir()
    if not ok:
        raise PrepareError(f"missing {kind} {path}: {what}")


def require_all(paths: Iterable[Path], what: str) -> None:
    """Fails listing up to ten of ``paths`` that are not files.

    Args:
        paths: The expected input files.
        what: The rest of the message after the count, e.g. ``"listed files are missing"``.

    Raises:
        PrepareError: Some file is missing.
    """
    missing = [path for path in paths if not path.is_file()]
    if missing:
        shown = "\n  ".join(str(path) for path in missing[:10])
        raise PrepareError(f"{len(missing)} {what}, e.g.:\n  {shown}")


def list_pngs(folder: Path, hint: str) -> list:
    """Lists the PNGs of a folder, failing clearly when there are none.

    Args:
        folder: The folder of raw labels.
        hint: What to download, for the error message.

    Returns:
        The sorted PNG paths.

    Raises:
        PrepareError: The folder is missing or holds no PNG.
    """
    if not folder.is_dir():
        raise PrepareError(f"missing folder {folder}: download {hint}")
    files = sorted(folder.glob("*.png"))
    if not files:
        raise PrepareError(f"no *.png in {folder}: download {hint}")
    return files


# ----------------------------------------------------------------------------- atomic writes

def _write_atomically(dst: Path, write: Callable[[Path], None]) -> None:
    """Writes ``dst`` through a temporary name, so an interrupted run leaves no partial file.

    A resumed run skips outputs that exist, so a truncated one must never appear under its
    final name.

    Args:
        dst: The final path.
        write: Writes the content to the path it is given.
    """
    temporary = dst.with_name(dst.name + ".part")
    try:
        write(temporary)
        os.replace(temporary, dst)
    finally:
        if temporary.exists():
            temporary.unlink()


def atomic_save(image: Image.Image, dst: Path, fmt: str) -> None:
    """Saves a PIL image atomically.

    Args:
        image: The image.
        dst: The final path.
        fmt: The PIL format name.
    """
    _write_atomically(dst, lambda path: image.save(path, format=fmt))


def atomic_copy(src: Path, dst: Path) -> None:
    """Copies a file byte for byte, atomically.

    Args:
        src: The source file.
        dst: The final path.
    """
    _write_atomically(dst, lambda path: shutil.copyfile(src, path))


# ----------------------------------------------------------------------------- PNG label maps

def lookup_train_ids(label: np.ndarray, train_id_of_raw: np.ndarray, ignore: int) -> np.ndarray:
    """Maps raw label values to train ids through a table.

    Args:
        label: Integer array of raw values.
        train_id_of_raw: The train id of each raw value 0..len - 1.
        ignore: The train id of values outside the table.

    Returns:
        An array of the same shape and of the table's dtype.

    Raises:
        ValueError: The label is not an integer array.
    """
    label = np.asarray(label)
    if not np.issubdtype(label.dtype, np.integer):
        raise ValueError(f"expected an integer label map, got dtype {label.dtype}")
    train_ids = np.full(label.shape, ignore, dtype=train_id_of_raw.dtype)
    in_table = (label >= 0) & (label < len(train_id_of_raw))
    train_ids[in_table] = train_id_of_raw[label[in_table]]
    return train_ids


def read_label(path: Path) -> np.ndarray:
    """Reads a single-channel (grayscale or palette) label PNG as an array of its stored values.

    Args:
        path: The PNG file.

    Returns:
        The 2-D array of pixel values, in the dtype the PNG stores (palette indices for a
        palette PNG, uint16/int32 for a 16-bit one).

    Raises:
        PrepareError: The file cannot be decoded or is not single-channel.
    """
    try:
        with Image.open(path) as image:
            label = np.array(image)
    except OSError as error:
        raise PrepareError(f"cannot read {path}: {error}") from error
    if label.ndim != 2:
        raise PrepareError(f"{path} is not a single-channel label map (shape {label.shape})")
    return label


def write_label(label: np.ndarray, path: Path) -> None:
    """Writes a uint8 label map as a mode-L PNG, atomically.

    Args:
        label: 2-D uint8 array.
        path: Destination PNG.
    """
    atomic_save(Image.fromarray(label), path, "PNG")


@dataclass
class SplitCounts:
    """What happened to the inputs of one split.

    Attributes:
        seen: Inputs examined.
        written: Output files written by this run.
        existing: Outputs already present and left alone (resumed run).
        empty: Inputs whose converted label is entirely ignore, not written.
    """

    seen: int = 0
    written: int = 0
    existing: int = 0
    empty: int = 0


def convert_split(pairs: list, convert: Callable[[np.ndarray], np.ndarray], overwrite: bool,
                  description: str, skip_all: int | None = None) -> SplitCounts:
    """Converts the raw label PNGs of one split, skipping outputs that exist.

    Args:
        pairs: (raw PNG, output PNG) paths.
        convert: Maps a raw label map to train ids; raises ValueError on a malformed one.
        overwrite: Rewrite outputs that already exist instead of skipping them.
        description: Label of the progress bar.
        skip_all: Outputs entirely equal to this value are not written (and, with
            ``overwrite``, a stale one is deleted); None writes every output.

    Returns:
        The counts of the split.

    Raises:
        PrepareError: A raw label cannot be read or converted.
    """
    counts = SplitCounts()
    for source, destination in tqdm(pairs, desc=description, unit="label"):
        counts.seen += 1
        if destination.exists() and not overwrite:
            counts.existing += 1
            continue
        try:
            train_ids = convert(read_label(source))
        except ValueError as error:
            raise PrepareError(f"{source}: {error}") from error
        if skip_all is not None and np.all(train_ids == skip_all):
            counts.empty += 1
            if destination.exists():  # stale output of an earlier run (only with --overwrite)
                destination.unlink()
            continue
        write_label(train_ids, destination)
        counts.written += 1
    return counts


def convert_splits(pairs: dict, convert: Callable[[np.ndarray], np.ndarray], overwrite: bool,
                   report: Callable[[str, SplitCounts], bool], skip_all: int | None = None) -> int:
    """Converts the splits one after the other and reports each.

    Args:
        pairs: {split: [(raw PNG, output PNG)]}; the output folders are created as needed.
        convert: As for ``convert_split``.
        overwrite: As for ``convert_split``.
        report: Prints the summary of a split from its name and counts; returns False when
            the split failed.
        skip_all: As for ``convert_split``.

    Returns:
        The exit code: 0, or 1 when a split failed.

    Raises:
        PrepareError: A raw label cannot be read or converted.
    """
    all_ok = True
    for split, split_pairs in pairs.items():
        for folder in {destination.parent for _, destination in split_pairs}:
            folder.mkdir(parents=True, exist_ok=True)
        counts = convert_split(split_pairs, convert, overwrite, split, skip_all)
        all_ok &= report(split, counts)
    return 0 if all_ok else 1


def print_counts(split: str, counts: SplitCounts, inputs: str, total: int) -> None:
    """Prints the one-line summary of a split and checks that its counts add up.

    Args:
        split: The split name.
        counts: What the conversion did.
        inputs: What the inputs are called, e.g. ``"raw labels"``.
        total: How many inputs the split has.
    """
    print(
        f"{split}: {counts.seen} {inputs} seen, {counts.written} written, "
        f"{counts.existing} skipped as existing, {counts.empty} skipped as all-ignore"
    )
    assert counts.seen == counts.written + counts.existing + counts.empty == total


def compare_with_images(image_dir: Path, labels: list, label: str, labels_word: str,
                        download: str = "") -> None:
    """Prints how the ``*.jpg`` of ``image_dir`` and the label files pair up by file stem.

    Args:
        image_dir: The existing folder of images of the split.
        labels: The raw label files of the split.
        label: One label, as named in the warnings, e.g. ``"raw label"``.
        labels_word: Several labels, e.g. ``"raw labels"``.
        download: Appended to the warning about labels without an image, e.g. ``"; download
            ..."``.
    """
    image_stems = {p.stem for p in image_dir.glob("*.jpg")}
    label_stems = {p.stem for p in labels}
    without_label = sorted(image_stems - label_stems)
    without_image = sorted(label_stems - image_stems)
    print(f"  {len(image_stems)} images in {image_dir}, {len(label_stems)} {labels_word}")
    if without_label:
        print(f"  warning: {len(without_label)} images have no {label}, "
              f"e.g. {', '.join(without_label[:5])}")
    if without_image:
        print(f"  warning: {len(without_image)} {labels_word} have no image, "
              f"e.g. {', '.join(without_image[:5])}{download}")


def converted_any(counts: SplitCounts, error: str) -> bool:
    """Tells whether a split has a converted label, printing ``error`` to stderr if not.

    Args:
        counts: What the conversion did.
        error: The message when nothing was converted.

    Returns:
        True when at least one label was written or already existed.
    """
    if counts.written + counts.existing == 0:
        print(f"  error: {error}", file=sys.stderr)
        return False
    return True


# ----------------------------------------------------------------------------- image + label pairs

def convert_items(items: list, convert_one: Callable[..., bool], description: str) -> tuple:
    """Runs ``convert_one`` on every item under a progress bar.

    Args:
        items: The inputs; each is passed to ``convert_one``.
        convert_one: Writes the outputs of one item; returns False when they existed and were
            kept.
        description: Label of the progress bar.

    Returns:
        (written, skipped).
    """
    written = skipped = 0
    for item in tqdm(items, desc=description, unit="img"):
        if convert_one(item):
            written += 1
        else:
            skipped += 1
    return written, skipped


def report_totals(written: int, skipped: int, nothing_converted: str) -> int:
    """Prints the totals of a run and fails when nothing was converted.

    Args:
        written: Inputs whose outputs this run wrote.
        skipped: Inputs whose outputs already existed.
        nothing_converted: The error message when there were no inputs.

    Returns:
        The exit code: 0, or 1 when nothing was converted.
    """
    print(f"inputs seen: {written + skipped}, written: {written}, "
          f"skipped (already existed): {skipped}")
    if written + skipped == 0:
        print(f"error: {nothing_converted}", file=sys.stderr)
        return 1
    return 0


# ----------------------------------------------------------------------------- Pascal Context

PCONTEXT_SPLITS = ("train", "val")
# The end of the --help text of both Pascal-Context scripts.
PCONTEXT_DOWNLOADS = """\
Raw files to download and where to unpack them (defaults shown; all are overridable):
  1. VOCtrainval_03-May-2010.tar (PASCAL VOC 2010, host.robots.ox.ac.uk): extract it into the
     datasets root so that <root>/VOCdevkit/VOC2010/JPEGImages/ exists (--voc-root).
  2. trainval_merged.json (PASCAL in Detail annotations, the codalab link used by the
     PASCAL-in-Detail API): put it next to JPEGImages, i.e. <root>/VOCdevkit/VOC2010/ (--json).
     It lists the train/val split; --train-list/--val-list text files can replace it.
  3. trainval.tar.gz from the Pascal-Context site (cs.stanford.edu/~roozbeh/pascal-context/):
     extract it into <root>/VOCdevkit/VOC2010/ so that trainval/<name>.mat exists (--mat-dir).
The datasets root is $DETECTRON2_DATASETS, else ./datasets (--datasets-root).
"""


@dataclass(frozen=True)
class PContextTarget:
    """The output of one Pascal-Context benchmark.

    Attributes:
        name: Output folder under the datasets root, also the progress-bar label.
        convert: Maps a LabelMap to train ids; raises ValueError on a malformed one.
        label_suffix: File suffix of the labels, e.g. ``".png"``.
        label_format: PIL format of the labels, e.g. ``"PNG"``.
    """

    name: str
    convert: Callable[[np.ndarray], np.ndarray]
    label_suffix: str
    label_format: str


def check_label_map(label_map: np.ndarray, num_classes: int) -> np.ndarray:
    """Checks that a Pascal-Context LabelMap is 2-D integer with values in 0..num_classes.

    Args:
        label_map: The array to check.
        num_classes: The largest valid value.

    Returns:
        The array as a numpy array.

    Raises:
        ValueError: The array is not 2-D integer or holds values out of range.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(
            f"expected a 2-D integer LabelMap, got {label_map.dtype} {label_map.shape}")
    if label_map.size and (label_map.min() < 0 or label_map.max() > num_classes):
        raise ValueError(
            f"LabelMap values must lie in 0..{num_classes}, got "
            f"{label_map.min()}..{label_map.max()}")
    return label_map


def load_label_map(mat_path: Path) -> np.ndarray:
    """Reads the ``LabelMap`` field of a Pascal-Context ``.mat`` file.

    Args:
        mat_path: Path of ``trainval/<name>.mat``.

    Returns:
        The LabelMap array as stored (uint16 in the official files).

    Raises:
        PrepareError: The file has no ``LabelMap`` field.
    """
    import scipy.io  # here, so that the scripts that read no .mat file do not need scipy

    data = scipy.io.loadmat(str(mat_path))
    if "LabelMap" not in data:
        raise PrepareError(f"{mat_path} has no 'LabelMap' field (is it a Pascal-Context .mat?)")
    return data["LabelMap"]


def image_name_from_entry(entry: dict) -> str:
    """Returns the image name (``2008_000002``) of one ``images`` entry of the Detail JSON.

    Args:
        entry: Dict with ``file_name`` (preferred) or an integer ``image_id`` like 2008000002.

    Returns:
        The file stem.
    """
    if "file_name" in entry:
        return Path(str(entry["file_name"])).stem
    digits = str(int(entry["image_id"]))
    return f"{digits[:4]}_{digits[4:]}"


def splits_from_detail_json(json_path: Path) -> dict:
    """Reads the train/val image names from ``trainval_merged.json``.

    Args:
        json_path: The PASCAL-in-Detail annotation file.

    Returns:
        ``{"train": [...], "val": [...]}`` with sorted, de-duplicated image names; images of
        any other phase are left out.

    Raises:
        PrepareError: The file is not a Detail-style JSON with an ``images`` list.
    """
    with open(json_path, encoding="utf-8") as f:
        data = json.load(f)
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise PrepareError(f"{json_path} has no 'images' list; is it trainval_merged.json?")
    splits = {split: set() for split in PCONTEXT_SPLITS}
    for entry in images:
        phase = entry.get("phase")
        if phase in splits:
            splits[phase].add(image_name_from_entry(entry))
    return {split: sorted(names) for split, names in splits.items()}


def read_name_list(path: Path) -> list:
    """Reads a text file of image names, one per line (blank lines and extensions ignored).

    Args:
        path: The list file.

    Returns:
        Sorted, de-duplicated image names.
    """
    names = set()
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line:
            names.add(Path(line).stem)
    return sorted(names)


def build_pcontext_parser(description: str, output_name: str) -> argparse.ArgumentParser:
    """Builds the command-line parser of a Pascal-Context script.

    Args:
        description: The --help text.
        output_name: The default output folder under the datasets root.

    Returns:
        The parser.
    """
    p = new_parser(description)
    add_datasets_root_option(p)
    p.add_argument("--voc-root", type=Path, default=None,
                   help="folder holding JPEGImages/ (default: <root>/VOCdevkit/VOC2010)")
    p.add_argument("--json", type=Path, default=None,
                   help="trainval_merged.json (default: <voc-root>/trainval_merged.json)")
    p.add_argument("--mat-dir", type=Path, default=None,
                   help="Pascal-Context trainval/ folder of .mat files "
                   "(default: <voc-root>/trainval)")
    p.add_argument("--train-list", type=Path, default=None,
                   help="text file of train image names; with --val-list, replaces the JSON")
    p.add_argument("--val-list", type=Path, default=None, help="text file of val image names")
    p.add_argument("--output", type=Path, default=None,
                   help=f"output folder (default: <root>/{output_name})")
    p.add_argument("--overwrite", action="store_true", help="rewrite outputs that already exist")
    return p


def resolve_splits(args: argparse.Namespace, voc_root: Path) -> dict:
    """Gets the split lists from --train-list/--val-list or from the Detail JSON.

    Args:
        args: Parsed arguments.
        voc_root: Folder holding JPEGImages.

    Returns:
        ``{"train": names, "val": names}``.

    Raises:
        PrepareError: An input is missing or only one list file is given.
    """
    if (args.train_list is None) != (args.val_list is None):
        raise PrepareError("give both --train-list and --val-list, or neither (to use the JSON)")
    if args.train_list is not None:
        require(args.train_list, "a text file of train image names (one per line)")
        require(args.val_list, "a text file of val image names (one per line)")
        return {"train": read_name_list(args.train_list), "val": read_name_list(args.val_list)}
    json_path = args.json or voc_root / "trainval_merged.json"
    require(json_path, "download trainval_merged.json (PASCAL in Detail) and put it next to "
            "JPEGImages, or pass --train-list/--val-list")
    return splits_from_detail_json(json_path)


def convert_pcontext_image(name: str, jpeg_dir: Path, mat_dir: Path, out_dir: Path,
                           overwrite: bool, target: PContextTarget) -> bool:
    """Copies one image and writes its label.

    Args:
        name: Image name, e.g. ``2008_000002``.
        jpeg_dir: VOC2010 ``JPEGImages`` folder.
        mat_dir: Pascal-Context ``trainval`` folder of ``.mat`` files.
        out_dir: ``<target.name>/<split>``.
        overwrite: Rewrite outputs that already exist.
        target: The label conversion and format.

    Returns:
        True if written, False if both outputs existed and were kept.

    Raises:
        PrepareError: The label is malformed or its size differs from the image's.
    """
    dst_img = out_dir / "image" / f"{name}.jpg"
    dst_lab = out_dir / "label" / f"{name}{target.label_suffix}"
    if not overwrite and dst_img.is_file() and dst_lab.is_file():
        return False
    src_img = jpeg_dir / f"{name}.jpg"
    mat_path = mat_dir / f"{name}.mat"
    try:
        label = target.convert(load_label_map(mat_path))
    except ValueError as e:
        raise PrepareError(f"{mat_path}: {e}") from e
    with Image.open(src_img) as im:
        size = im.size
    if label.shape != (size[1], size[0]):
        raise PrepareError(
            f"{mat_path}: LabelMap is {label.shape[1]}x{label.shape[0]} but {src_img} is "
            f"{size[0]}x{size[1]}")
    atomic_copy(src_img, dst_img)
    atomic_save(Image.fromarray(label), dst_lab, target.label_format)
    return True


def run_pcontext(args: argparse.Namespace, target: PContextTarget) -> int:
    """Converts every listed Pascal-Context image.

    Args:
        args: Parsed arguments of ``build_pcontext_parser``.
        target: The label conversion and format.

    Returns:
        The exit code: 0, or 1 when nothing was converted.

    Raises:
        PrepareError: An input is missing or malformed.
    """
    voc_root = args.voc_root or args.datasets_root / "VOCdevkit" / "VOC2010"
    jpeg_dir = voc_root / "JPEGImages"
    require(jpeg_dir, "download VOCtrainval_03-May-2010.tar and extract it so that "
            "VOCdevkit/VOC2010/JPEGImages exists (or pass --voc-root)", kind="folder")
    mat_dir = args.mat_dir or voc_root / "trainval"
    require(mat_dir, "download trainval.tar.gz from the Pascal-Context site and extract it so "
            "that trainval/<name>.mat exists (or pass --mat-dir)", kind="folder")
    splits = resolve_splits(args, voc_root)
    require_all((path for split in PCONTEXT_SPLITS for name in splits[split]
                 for path in (jpeg_dir / f"{name}.jpg", mat_dir / f"{name}.mat")),
                "listed input files are missing (VOCtrainval_03-May-2010.tar JPEGs / "
                "Pascal-Context trainval.tar.gz .mat files)")

    out_root = args.output or args.datasets_root / target.name
    written = skipped = 0
    for split in PCONTEXT_SPLITS:
        out_dir = out_root / split
        (out_dir / "image").mkdir(parents=True, exist_ok=True)
        (out_dir / "label").mkdir(parents=True, exist_ok=True)
        convert_one = partial(convert_pcontext_image, jpeg_dir=jpeg_dir, mat_dir=mat_dir,
                              out_dir=out_dir, overwrite=args.overwrite, target=target)
        split_written, split_skipped = convert_items(splits[split], convert_one,
                                                     f"{target.name} {split}")
        written += split_written
        skipped += split_skipped
        print(f"{split}: {len(splits[split])} images -> {out_dir}")
    return report_totals(written, skipped, "nothing was converted (empty split lists?)")


def pcontext_main(argv, description: str, target: PContextTarget) -> int:
    """The command-line entry point of a Pascal-Context script.

    Args:
        argv: Arguments without the program name, or None for sys.argv[1:].
        description: The --help text.
        target: The label conversion and format.

    Returns:
        0 on success, 1 if nothing was converted, 2 on a missing or malformed input.
    """
    args = build_pcontext_parser(description, target.name).parse_args(argv)
    return run_reporting_errors(lambda: run_pcontext(args, target), error_code=2)
