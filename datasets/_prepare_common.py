"""Code shared by the dataset preparation scripts in this folder.

Each script stays a standalone command (``python datasets/prepare_x.py``) and imports this module
from its own folder. It needs only numpy, Pillow and tqdm; scipy is imported only by the
Pascal-Context ``.mat`` reader.
"""
from __future__ import annotations

import argparse
import json
import os
import pickle
import shutil
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # the run finished, but a count check failed or nothing was converted
EXIT_BAD_INPUT = 2  # a missing or malformed input; argparse exits with 2 on usage errors too
EXIT_INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
INTERRUPTED_MESSAGE = "interrupted; re-run to resume"

# What reading a damaged or wrong file raises (a bad pickle raises UnpicklingError or EOFError).
_READ_ERRORS = (OSError, ValueError, EOFError, pickle.UnpicklingError)


class PrepareError(RuntimeError):
    """A missing or malformed input; the message says which and what to download."""


# ----------------------------------------------------------------------------- command line

def default_datasets_root() -> Path:
    """$DETECTRON2_DATASETS, else ``datasets`` in the working directory."""
    return Path(os.environ.get("DETECTRON2_DATASETS", "datasets"))


def _no_options(parser: argparse.ArgumentParser) -> None:
    """Adds nothing: the script has only the common options."""


def build_parser(description: str,
                 add_options: Callable[[argparse.ArgumentParser], None]) -> argparse.ArgumentParser:
    """The parser with ``--datasets-root`` and ``--overwrite``, then the script's own options."""
    parser = argparse.ArgumentParser(
        description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--datasets-root", metavar="DIR", type=Path, default=default_datasets_root(),
        help="folder holding the raw downloads and receiving the outputs "
             "(default: $DETECTRON2_DATASETS, else ./datasets; here: %(default)s)")
    parser.add_argument(
        "--overwrite", action="store_true",
        help="rewrite outputs that already exist (default: skip them, so that a re-run resumes)")
    add_options(parser)
    return parser


def script_main(description: str, run: Callable[[argparse.Namespace], int],
                add_options: Callable[[argparse.ArgumentParser], None] = _no_options,
                ) -> Callable[[Sequence[str] | None], int]:
    """Makes a script's ``main(argv=None)``, which parses the command line and calls ``run``.

    ``run`` returns EXIT_OK or EXIT_CHECK_FAILED. A PrepareError it raises becomes one
    ``error: ...`` line on stderr and EXIT_BAD_INPUT. Ctrl-C becomes one line and
    EXIT_INTERRUPTED, without a traceback: the outputs written so far are complete (see
    ``_write_atomically``) and the next run skips them.
    """
    def main(argv: Sequence[str] | None = None) -> int:
        args = build_parser(description, add_options).parse_args(argv)
        try:
            return run(args)
        except PrepareError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_BAD_INPUT
        except KeyboardInterrupt:
            print(INTERRUPTED_MESSAGE, file=sys.stderr)
            return EXIT_INTERRUPTED

    return main


# ----------------------------------------------------------------------------- inputs

def require(path: Path, remedy: str, kind: str = "file") -> None:
    """Fails naming ``path`` and the ``remedy`` (what to download) when it is not a ``kind``."""
    exists = path.is_file() if kind == "file" else path.is_dir()
    if not exists:
        raise PrepareError(f"missing {kind} {path}: {remedy}")


def require_all(paths: Iterable[Path], problem: str, remedy: str) -> None:
    """Fails with the count and a few examples of ``paths`` that are not files."""
    missing = [path for path in paths if not path.is_file()]
    if missing:
        examples = ", ".join(str(path) for path in missing[:3])
        raise PrepareError(f"{len(missing)} {problem}, e.g. {examples}: {remedy}")


def list_pngs(folder: Path, download: str) -> list[Path]:
    """The sorted ``*.png`` of ``folder``; fails saying what to download when there are none."""
    require(folder, f"download {download}", kind="folder")
    files = sorted(folder.glob("*.png"))
    if not files:
        raise PrepareError(f"no *.png in {folder}: download {download}")
    return files


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turns an error raised while reading or checking ``path`` into a PrepareError naming it."""
    try:
        yield
    except _READ_ERRORS as error:
        raise PrepareError(f"{path}: {error}") from error


# ----------------------------------------------------------------------------- atomic writes

def _write_atomically(dst: Path, write: Callable[[Path], None]) -> None:
    """Writes ``dst`` through a temporary name, creating its folder.

    A resumed run skips outputs that exist, so an interrupted write must never leave a
    truncated file under the final name.
    """
    dst.parent.mkdir(parents=True, exist_ok=True)
    temporary = dst.with_name(dst.name + ".part")
    try:
        write(temporary)
        os.replace(temporary, dst)
    finally:
        if temporary.exists():
            temporary.unlink()


def atomic_save(image: Image.Image, dst: Path, fmt: str) -> None:
    """Saves a PIL image in the PIL format ``fmt``, atomically."""
    _write_atomically(dst, lambda path: image.save(path, format=fmt))


def atomic_copy(src: Path, dst: Path) -> None:
    """Copies a file byte for byte, atomically."""
    _write_atomically(dst, lambda path: shutil.copyfile(src, path))


# ----------------------------------------------------------------------------- splits

@dataclass(frozen=True)
class Conversion:
    """How a script turns one job (one input of a split) into its output files.

    Attributes:
        outputs: The files a job writes; a job whose files all exist is skipped unless
            --overwrite is given.
        convert: Writes the outputs of a job; returns False when it wrote nothing because the
            label is entirely ignore.
        inputs: What the jobs are called in the summary, e.g. ``"raw labels"``.
    """

    outputs: Callable[[Any], Sequence[Path]]
    convert: Callable[[Any], bool]
    inputs: str


@dataclass
class SplitCounts:
    """What happened to the jobs of one split."""

    seen: int = 0
    written: int = 0
    existing: int = 0  # outputs kept from an earlier run
    empty: int = 0  # labels entirely ignore, not written


def _outputs_exist(conversion: Conversion, job: Any) -> bool:
    """Tells whether every output of ``job`` is on disk."""
    return all(path.is_file() for path in conversion.outputs(job))


def convert_split(jobs: Sequence, conversion: Conversion, overwrite: bool,
                  split: str) -> SplitCounts:
    """Converts the jobs of one split under a progress bar, skipping finished ones."""
    counts = SplitCounts()
    # The bar is closed (its line ended) also on Ctrl-C, so that the message starts a line.
    with tqdm(jobs, desc=split, unit="file") as progress:
        for job in progress:
            counts.seen += 1
            if not overwrite and _outputs_exist(conversion, job):
                counts.existing += 1
            elif conversion.convert(job):
                counts.written += 1
            else:
                counts.empty += 1
    return counts


def print_summary(split: str, counts: SplitCounts, inputs: str) -> None:
    """Prints what the run did to one split, on one line."""
    empty = f", {counts.empty} skipped as all-ignore" if counts.empty else ""
    print(f"{split}: {counts.seen} {inputs} seen, {counts.written} written, "
          f"{counts.existing} skipped as existing{empty}")


def counts_add_up(split: str, jobs: Sequence, conversion: Conversion,
                  counts: SplitCounts) -> bool:
    """Checks the counts against the jobs and the outputs on disk; prints an error if off."""
    converted = counts.written + counts.existing
    on_disk = sum(_outputs_exist(conversion, job) for job in jobs)
    if counts.seen == len(jobs) == converted + counts.empty and on_disk == converted:
        return True
    print(f"error: {split}: {len(jobs)} {conversion.inputs}, {counts.seen} seen, "
          f"{counts.written} written + {counts.existing} existing + {counts.empty} all-ignore, "
          f"{on_disk} with all their outputs on disk", file=sys.stderr)
    return False


def converted_any(split: str, counts: SplitCounts, inputs: str) -> bool:
    """Checks that the split has at least one output; prints an error if not."""
    if counts.written + counts.existing:
        return True
    reason = f"all {counts.seen} {inputs} are entirely ignore" if counts.seen else f"no {inputs}"
    print(f"error: {split}: nothing converted ({reason})", file=sys.stderr)
    return False


def _skip_check(split: str) -> None:
    """Checks nothing more about a split."""


def convert_splits(jobs: dict[str, Sequence], conversion: Conversion, overwrite: bool,
                   check_split: Callable[[str], None] = _skip_check) -> int:
    """Converts the splits one after the other, then prints and checks each one's counts.

    Args:
        jobs: {split: jobs}.
        conversion: What a job writes and how.
        overwrite: Rewrite outputs that already exist.
        check_split: Prints further warnings about a split (e.g. images without a label).

    Returns:
        EXIT_OK, or EXIT_CHECK_FAILED when a split's counts are off or it has no output.
    """
    succeeded = True
    for split, split_jobs in jobs.items():
        counts = convert_split(split_jobs, conversion, overwrite, split)
        print_summary(split, counts, conversion.inputs)
        succeeded &= counts_add_up(split, split_jobs, conversion, counts)
        check_split(split)
        succeeded &= converted_any(split, counts, conversion.inputs)
    return EXIT_OK if succeeded else EXIT_CHECK_FAILED


# ----------------------------------------------------------------------------- PNG label maps

LabelPairs = dict[str, list[tuple[Path, Path]]]  # {split: [(raw PNG, output PNG)]}


def lookup_train_ids(label: np.ndarray, train_id_of_raw: np.ndarray, ignore: int) -> np.ndarray:
    """Maps raw values to ``train_id_of_raw[value]``, and values outside the table to ``ignore``.

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
    """The stored values of a single-channel label PNG (palette indices for a palette PNG).

    Raises:
        ValueError: The image is not single-channel.
    """
    with Image.open(path) as image:
        label = np.array(image)
    if label.ndim != 2:
        raise ValueError(f"not a single-channel label map (shape {label.shape})")
    return label


def convert_label_file(pair: tuple[Path, Path], convert: Callable[[np.ndarray], np.ndarray],
                       skip_all: int | None) -> bool:
    """Writes the train ids of one raw label PNG as a mode-L PNG.

    Returns False, writing nothing, when every train id equals ``skip_all`` (None: never).
    """
    source, destination = pair
    with reading(source):
        train_ids = convert(read_label(source))
    if skip_all is not None and np.all(train_ids == skip_all):
        destination.unlink(missing_ok=True)  # a stale output of an earlier run (--overwrite)
        return False
    atomic_save(Image.fromarray(train_ids), destination, "PNG")
    return True


def convert_label_files(pairs: LabelPairs, convert: Callable[[np.ndarray], np.ndarray],
                        overwrite: bool, inputs: str, skip_all: int | None = None,
                        check_split: Callable[[str], None] = _skip_check) -> int:
    """``convert_splits`` for scripts that turn each raw label PNG into one output PNG."""
    conversion = Conversion(outputs=lambda pair: (pair[1],), inputs=inputs,
                            convert=partial(convert_label_file, convert=convert,
                                            skip_all=skip_all))
    return convert_splits(pairs, conversion, overwrite, check_split)


def same_name_pairs(raw_dir: Path, output_dir: Path, splits: Sequence[str],
                    download: str) -> LabelPairs:
    """Pairs every ``raw_dir/<split>/*.png`` with ``output_dir/<split>/`` + the same name."""
    return {split: [(path, output_dir / split / path.name)
                    for path in list_pngs(raw_dir / split, download)] for split in splits}


def image_folder_exists(image_dir: Path, remedy: str) -> bool:
    """Tells whether ``image_dir`` exists; prints a note with the ``remedy`` if not."""
    if image_dir.is_dir():
        return True
    print(f"  note: {image_dir} not found, images not checked; {remedy} before training or "
          "evaluating")
    return False


def warn_unmatched(problem: str, names: Iterable[str]) -> None:
    """Prints a warning with the count and a few examples of ``names``, if there are any."""
    names = sorted(names)
    if names:
        print(f"  warning: {len(names)} {problem}, e.g. {', '.join(names[:5])}")


def compare_with_images(image_dir: Path, pairs: Sequence[tuple[Path, Path]], remedy: str) -> None:
    """Prints how the ``*.jpg`` of ``image_dir`` and the raw labels of ``pairs`` pair up by name."""
    if not image_folder_exists(image_dir, remedy):
        return
    image_names = {path.stem for path in image_dir.glob("*.jpg")}
    label_names = {source.stem for source, _ in pairs}
    print(f"  {len(image_names)} images in {image_dir}, {len(label_names)} labels")
    warn_unmatched("images have no label", image_names - label_names)
    warn_unmatched(f"labels have no image ({remedy})", label_names - image_names)


# ----------------------------------------------------------------------------- Pascal Context

PCONTEXT_SPLITS = ("train", "val")
PCONTEXT_NUM_CLASSES = 459  # LabelMap: 0 = unlabeled, 1..459 = the classes of labels.txt
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
"""
VOC2010_DOWNLOAD = "download VOCtrainval_03-May-2010.tar and extract it into the datasets root"
MAT_DOWNLOAD = "download trainval.tar.gz from the Pascal-Context site and extract it"


@dataclass(frozen=True)
class PContextTarget:
    """The output of one Pascal-Context benchmark.

    Attributes:
        name: Output folder under the datasets root.
        convert: Maps a checked LabelMap (values 0..459) to train ids.
        label_suffix: File suffix of the labels, e.g. ``".png"``.
        label_format: PIL format of the labels, e.g. ``"PNG"``.
    """

    name: str
    convert: Callable[[np.ndarray], np.ndarray]
    label_suffix: str
    label_format: str


def check_label_map(label_map: np.ndarray) -> np.ndarray:
    """Returns the LabelMap as an array after checking it is 2-D integer with values 0..459.

    Raises:
        ValueError: It is not.
    """
    label_map = np.asarray(label_map)
    if label_map.ndim != 2 or not np.issubdtype(label_map.dtype, np.integer):
        raise ValueError(
            f"expected a 2-D integer LabelMap, got {label_map.dtype} {label_map.shape}")
    if label_map.size and (label_map.min() < 0 or label_map.max() > PCONTEXT_NUM_CLASSES):
        raise ValueError(
            f"LabelMap values must lie in 0..{PCONTEXT_NUM_CLASSES}, got "
            f"{label_map.min()}..{label_map.max()}")
    return label_map


def load_label_map(mat_path: Path) -> np.ndarray:
    """The ``LabelMap`` field of a Pascal-Context ``.mat`` file, as stored (uint16).

    Raises:
        ValueError: The file has no ``LabelMap`` field.
    """
    import scipy.io  # here, so that the scripts that read no .mat file do not need scipy

    data = scipy.io.loadmat(str(mat_path))
    if "LabelMap" not in data:
        raise ValueError("no 'LabelMap' field (is it a Pascal-Context .mat?)")
    return data["LabelMap"]


def image_name_from_entry(entry: dict) -> str:
    """The image name (``2008_000002``) from ``file_name``, else from an ``image_id`` 2008000002."""
    if "file_name" in entry:
        return Path(str(entry["file_name"])).stem
    digits = str(int(entry["image_id"]))
    return f"{digits[:4]}_{digits[4:]}"


def splits_from_detail_json(json_path: Path) -> dict[str, list[str]]:
    """The sorted train and val image names of ``trainval_merged.json``; other phases are left out.

    The file is a JSON object whose ``images`` list holds one dict per image with ``phase``
    (``"train"``/``"val"``, what the Detail API's ``getImgs`` filters on) and ``file_name``
    or ``image_id``.

    Raises:
        PrepareError: The file is not such a JSON object.
    """
    with reading(json_path), open(json_path, encoding="utf-8") as f:
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


def read_name_list(path: Path) -> list[str]:
    """The sorted image names of a text file, one a line (blank lines and extensions ignored)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return sorted({Path(line.strip()).stem for line in lines if line.strip()})


def add_pcontext_options(parser: argparse.ArgumentParser, output_name: str) -> None:
    """Adds the input and output options of the Pascal-Context scripts."""
    parser.add_argument("--voc-root", type=Path, metavar="DIR",
                        help="folder holding JPEGImages/ (default: <root>/VOCdevkit/VOC2010)")
    parser.add_argument("--json", type=Path, metavar="FILE",
                        help="trainval_merged.json (default: <voc-root>/trainval_merged.json)")
    parser.add_argument("--mat-dir", type=Path, metavar="DIR",
                        help="Pascal-Context trainval/ folder of .mat files "
                             "(default: <voc-root>/trainval)")
    parser.add_argument("--train-list", type=Path, metavar="FILE",
                        help="text file of train image names; with --val-list, replaces the JSON "
                             "(default: none)")
    parser.add_argument("--val-list", type=Path, metavar="FILE",
                        help="text file of val image names (default: none)")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help=f"output folder (default: <root>/{output_name})")


def resolve_splits(args: argparse.Namespace, voc_root: Path) -> dict[str, list[str]]:
    """The split lists, from --train-list/--val-list or else from the Detail JSON."""
    if (args.train_list is None) != (args.val_list is None):
        raise PrepareError("give both --train-list and --val-list, or neither (to use the JSON)")
    if args.train_list is not None:
        require(args.train_list, "give a text file of train image names (one per line)")
        require(args.val_list, "give a text file of val image names (one per line)")
        return {"train": read_name_list(args.train_list), "val": read_name_list(args.val_list)}
    json_path = args.json or voc_root / "trainval_merged.json"
    require(json_path, "download trainval_merged.json (PASCAL in Detail) and put it next to "
            "JPEGImages, or pass --train-list/--val-list")
    return splits_from_detail_json(json_path)


@dataclass(frozen=True)
class PContextImage:
    """One listed image: its inputs and where its outputs go."""

    jpeg: Path
    mat: Path
    image_out: Path
    label_out: Path


def list_pcontext_images(args: argparse.Namespace, target: PContextTarget
                         ) -> dict[str, list[PContextImage]]:
    """The images of each split, after checking that all their inputs exist."""
    voc_root = args.voc_root or args.datasets_root / "VOCdevkit" / "VOC2010"
    jpeg_dir = voc_root / "JPEGImages"
    require(jpeg_dir, f"{VOC2010_DOWNLOAD} (or pass --voc-root)", kind="folder")
    mat_dir = args.mat_dir or voc_root / "trainval"
    require(mat_dir, f"{MAT_DOWNLOAD} into {voc_root} (or pass --mat-dir)", kind="folder")
    out_root = args.output or args.datasets_root / target.name
    images = {split: [PContextImage(jpeg_dir / f"{name}.jpg", mat_dir / f"{name}.mat",
                                    out_root / split / "image" / f"{name}.jpg",
                                    out_root / split / "label" / f"{name}{target.label_suffix}")
                      for name in names]
              for split, names in resolve_splits(args, voc_root).items()}
    listed = [image for split_images in images.values() for image in split_images]
    require_all((image.jpeg for image in listed), f"listed images are missing from {jpeg_dir}",
                VOC2010_DOWNLOAD)
    require_all((image.mat for image in listed), f"listed labels are missing from {mat_dir}",
                MAT_DOWNLOAD)
    return images


def convert_pcontext_image(image: PContextImage, target: PContextTarget) -> bool:
    """Copies one image and writes its label; returns True (nothing is left out as all-ignore).

    Raises:
        PrepareError: The LabelMap is malformed or its size differs from the image's.
    """
    with reading(image.mat):
        label = target.convert(check_label_map(load_label_map(image.mat)))
    with reading(image.jpeg), Image.open(image.jpeg) as jpeg:
        width, height = jpeg.size
    if label.shape != (height, width):
        raise PrepareError(f"{image.mat}: LabelMap is {label.shape[1]}x{label.shape[0]} but "
                           f"{image.jpeg} is {width}x{height}")
    atomic_copy(image.jpeg, image.image_out)
    atomic_save(Image.fromarray(label), image.label_out, target.label_format)
    return True


def run_pcontext(args: argparse.Namespace, target: PContextTarget) -> int:
    """Converts every listed Pascal-Context image of both splits."""
    conversion = Conversion(outputs=lambda image: (image.image_out, image.label_out),
                            convert=partial(convert_pcontext_image, target=target),
                            inputs="images")
    return convert_splits(list_pcontext_images(args, target), conversion, args.overwrite)


def pcontext_main(description: str, target: PContextTarget
                  ) -> Callable[[Sequence[str] | None], int]:
    """The ``main`` of a Pascal-Context script; its --help ends with the downloads."""
    return script_main(f"{description}\n{PCONTEXT_DOWNLOADS}",
                       partial(run_pcontext, target=target),
                       partial(add_pcontext_options, output_name=target.name))
