"""What san_d2's commands share: argument types, input and output files, error reporting.

Every command validates its arguments with argparse before it builds anything, never writes
among its inputs, and reports an expected error (a missing file, a bad config key, a
checkpoint that does not fit, ...) as one ``error: ...`` line on stderr with a non-zero exit;
``--debug`` shows the traceback instead.
"""
import argparse
import glob
import logging
import os
import sys
from pathlib import Path
from typing import Callable, Dict, List, Sequence

__all__ = ["positive_int", "argument_type", "add_debug_argument", "run_reporting_errors", "EXPECTED_ERRORS",
           "EXIT_ERROR", "EXIT_INTERRUPTED", "IMAGE_EXTENSIONS", "collect_images",
           "output_paths", "make_output_dir"]

logger = logging.getLogger(__name__)

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130  # 128 + SIGINT, as shells report Ctrl-C

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")


def _expected_errors():
    from ..checkpoint import CheckpointError
    from ..modeling.clip_loader import CLIPWeightsError
    from .video import VideoError

    # KeyError: detectron2's "Non-existent config key"; OSError: files, folders, disk.
    return (ValueError, KeyError, OSError, CheckpointError, CLIPWeightsError, VideoError)


EXPECTED_ERRORS = _expected_errors()


def positive_int(text: str) -> int:
    """argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def argument_type(parse: Callable[[str], object]) -> Callable[[str], object]:
    """An argparse ``type`` from a parser that raises ValueError: argparse then shows the
    parser's own message (it replaces a plain ValueError's by "invalid value")."""

    def checked(text: str):
        try:
            return parse(text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    checked.__name__ = parse.__name__
    return checked


def add_debug_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true",
                        help="show the full traceback of an error instead of one line")


def _message(error: BaseException) -> str:
    text = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    return str(text) or type(error).__name__


def run_reporting_errors(run: Callable[[], int], debug: bool = False) -> int:
    """Runs ``run``; an expected error becomes one line on stderr and exit code 1, Ctrl-C exit
    code 130 (with ``debug``, both raise as usual)."""
    try:
        return run()
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except EXPECTED_ERRORS as error:
        if debug:
            raise
        print(f"error: {_message(error)}", file=sys.stderr)
        return EXIT_ERROR


def collect_images(inputs: Sequence[str]) -> List[Path]:
    """Files, folders (the images directly in them) and glob patterns -> image paths, each
    once, in the order given.

    Raises:
        FileNotFoundError: an input matches nothing, or no image is found at all.
    """
    paths: List[Path] = []
    for item in inputs:
        if os.path.isdir(item):
            paths += sorted(p for p in Path(item).iterdir()
                            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
        elif os.path.isfile(item):
            paths.append(Path(item))
        else:
            matches = sorted(glob.glob(os.path.expanduser(item)))
            if not matches:
                raise FileNotFoundError(f"--input {item}: no such file, folder or matching files.")
            paths += [Path(m) for m in matches if os.path.isfile(m)]
    if not paths:
        raise FileNotFoundError(f"--input {' '.join(inputs)}: no images found.")
    unique = {p.resolve(): p for p in reversed(paths)}  # the first mention wins
    return [p for p in paths if unique[p.resolve()] is p]


def output_paths(inputs: Sequence[Path], output_dir: os.PathLike,
                 suffix: str = ".png") -> Dict[Path, Path]:
    """Where each input's result goes, without two results on one file.

    An input keeps its path below the inputs' common folder, with ``suffix`` for its
    extension (``a/x.jpg`` -> ``<output_dir>/a/x.png``); inputs that would still share a name
    (``x.jpg`` and ``x.png`` in one folder) keep their extension too (``x.jpg.png``).

    Raises:
        ValueError: a result would land in a folder that holds inputs (overwriting one, or
            read as an input by the next run).
    """
    output_dir = Path(output_dir)
    resolved = [p.resolve() for p in inputs]
    folders = {p.parent for p in resolved}
    root = Path(os.path.commonpath([str(f) for f in folders]))
    relative = [p.relative_to(root) for p in resolved]
    plain = [r.with_suffix(suffix) for r in relative]
    counts: Dict[Path, int] = {}
    for name in plain:
        counts[name] = counts.get(name, 0) + 1
    outputs = {source: output_dir / (name if counts[name] == 1 else r.with_name(r.name + suffix))
               for source, r, name in zip(inputs, relative, plain)}
    among_inputs = sorted({str(out.parent) for out in outputs.values()
                           if out.parent.resolve() in folders})
    if among_inputs:
        raise ValueError(f"--output {output_dir} would put results in {among_inputs[0]}, among "
                         "the input pictures (where the next run would read them as inputs): "
                         "choose a folder outside the inputs' folders.")
    if len(set(outputs.values())) < len(outputs):
        raise ValueError("Two inputs would write the same result file; rename one of them.")
    return outputs


def make_output_dir(path: os.PathLike) -> Path:
    """Creates an output folder (and its parents).

    Raises:
        ValueError: it cannot be a folder (it, or a parent, is a file).
    """
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next((p for p in [path, *path.parents] if p.exists() and not p.is_dir()), path)
        raise ValueError(f"Cannot use {path} as an output folder: {blocker} is a file.") from None
    return path
