#!/usr/bin/env python
"""Segment pictures with a typed vocabulary and draw the result with detectron2's Visualizer.

    san-demo --config-file san_clip_vit_res4_coco.yaml --input a.jpg photos/ "shots/*.png" \\
        --vocabulary "cat,dog,grass" --output out/ --opts MODEL.WEIGHTS san_vit_b_16.pth
    san-demo --config-file ... --video-input clip.mp4 --vocabulary ... --output out.mp4
    san-demo --config-file ... --webcam --vocabulary ...

The vocabulary is typed (commas separate classes; with semicolons or line breaks, those
separate classes and commas separate a class's synonyms: "pickup truck, truck; sky") or read
from a file (--vocabulary-file: one class per line, or JSON).

Results keep their inputs' paths below the inputs' common folder (``photos/a/x.jpg`` ->
``out/a/x.png``; ``x.jpg`` and ``x.png`` of one folder -> ``x.jpg.png``, ``x.png.png``), and are
never written into a folder that holds inputs.
"""
import argparse
import functools
import logging
import sys
from pathlib import Path
from typing import List, Tuple

import san_d2  # noqa: F401  (first: it quiets detectron2 0.6's import-time warnings)

import numpy as np
from detectron2.utils.logger import setup_logger
from tqdm import tqdm

from san_d2.data.vocabulary import (VOCABULARY_EXPANSIONS, expand_vocabulary,
                                    load_vocabulary_file, parse_vocabulary)
from san_d2.modeling.vocabulary import class_names
from san_d2.predictor import SANPredictor, load_rgb_image
from san_d2.utils.cli import (add_debug_argument, argument_type, collect_images, output_paths,
                              positive_int, run_reporting_errors)
from san_d2.utils.video import (check_live_view, frame_count, read_frames, show_stream,
                                video_fps, write_video)
from san_d2.utils.visualization import (class_colors, draw_proposals, draw_segmentation,
                                        legend_strip, save_image)

logger = logging.getLogger("san_d2.demo")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--config-file", required=True, help="config path or shipped name")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", help="images, folders or globs")
    source.add_argument("--video-input", help="a video file to segment frame by frame")
    source.add_argument("--webcam", action="store_true", help="segment the camera's stream live")
    vocabulary = parser.add_mutually_exclusive_group(required=True)
    vocabulary.add_argument("--vocabulary", type=argument_type(parse_vocabulary),
                            help="class names separated by commas (see above for synonyms)")
    vocabulary.add_argument("--vocabulary-file", type=argument_type(load_vocabulary_file),
                            help="a file of class names: one per line (commas: synonyms) or JSON")
    parser.add_argument("--output", help="folder for the drawings; for a video, an .mp4 file or "
                                          "a folder (required but with --webcam)")
    parser.add_argument("--legend", action="store_true",
                        help="add a legend (classes with their colours and pixel shares)")
    parser.add_argument("--expand-vocabulary", choices=sorted(VOCABULARY_EXPANSIONS),
                        default="none",
                        help="add COCO-Stuff's classes (all, or the stuff ones) so that pixels "
                             "of none of your classes need not take one of them")
    parser.add_argument("--unknown-threshold", type=float, default=None,
                        help="label pixels whose best class score is below this 'unknown' "
                             "(default: MODEL.SAN.UNKNOWN_THRESHOLD)")
    parser.add_argument("--unknown-if-background", action="store_true",
                        help="label pixels 'unknown' where the proposals' 'no object' mass is "
                             "at least the best class score")
    parser.add_argument("--proposals", type=positive_int, default=None, metavar="K",
                        help="also draw the K most confident mask proposals (<name>.proposals.png)")
    parser.add_argument("--batch-size", type=positive_int, default=1,
                        help="images per model call")
    add_debug_argument(parser)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, e.g. MODEL.WEIGHTS path/to/model.pth")
    return parser


def _read(paths) -> Tuple[List[Path], List[np.ndarray], int]:
    """The readable pictures among ``paths`` (unreadable ones are reported and skipped)."""
    readable, images = [], []
    for path in paths:
        try:
            images.append(load_rgb_image(path))
            readable.append(path)
        except (ValueError, OSError) as e:
            logger.error(f"Skipped: {e}")
    return readable, images, len(paths) - len(readable)


def _draw_proposals(image, proposals, names, count: int, path: Path) -> None:
    ranked = proposals.ranked(count)
    masks = np.stack([proposals.masks[q].numpy() > 0.5 for q, _, _ in ranked])
    labels = [f"{names[k]} {p:.2f}" for _, k, p in ranked]
    save_image(draw_proposals(image, masks, labels), path.with_suffix(".proposals.png"))


def segment_all(predictor: SANPredictor, outputs, classes, num_user: int, args) -> int:
    """Segments and draws every input, ``args.batch_size`` at a time; returns how many could
    not be read."""
    names = class_names(classes)
    failures = 0
    items = list(outputs.items())
    with tqdm(total=len(items), desc="segmenting", unit="image") as progress:
        for start in range(0, len(items), args.batch_size):
            chunk = items[start:start + args.batch_size]
            paths, images, unreadable = _read([path for path, _ in chunk])
            failures += unreadable
            results = predictor.predict(images, classes, unknown_threshold=args.unknown_threshold,
                                        unknown_if_background=args.unknown_if_background or None,
                                        proposals=bool(args.proposals), scores=False
                                        ) if images else []
            for path, image, result in zip(paths, images, results):
                out_path = outputs[path]
                save_image(draw_segmentation(image, result.class_map, names, num_user,
                                             legend=args.legend), out_path)
                if args.proposals:
                    _draw_proposals(image, result.proposals, names, args.proposals, out_path)
                tqdm.write(f"{path}: {result.describe(num_user)} -> {out_path}")
            progress.update(len(chunk))
    return failures


def _video_output(video: str, output: str) -> Path:
    path = Path(output)
    if path.suffix.lower() != ".mp4":
        path = path / (Path(video).stem + ".mp4")
    if path.resolve() == Path(video).resolve():
        raise ValueError(f"--output {output} is the input video: choose another file.")
    return path


def _frame_drawer(predictor: SANPredictor, classes, num_user: int, args):
    """RGB frame -> its drawing (a legend of the whole vocabulary keeps frames one size)."""
    names = class_names(classes)
    colors = class_colors(names[:num_user])
    strip = functools.lru_cache(maxsize=1)(
        lambda width: legend_strip(width, names[:num_user], colors))  # built once per width

    def draw(frame: np.ndarray) -> np.ndarray:
        result = predictor.predict(frame, classes, unknown_threshold=args.unknown_threshold,
                                   unknown_if_background=args.unknown_if_background or None,
                                   scores=False)
        drawing = draw_segmentation(frame, result.class_map, names, num_user)
        if not args.legend:
            return drawing
        return np.concatenate([drawing, strip(drawing.shape[1])], axis=0)

    return draw


def segment_video(predictor: SANPredictor, classes, num_user: int, args, output: Path) -> None:
    draw = _frame_drawer(predictor, classes, num_user, args)
    frames = tqdm(read_frames(args.video_input), total=frame_count(args.video_input),
                  desc="segmenting", unit="frame")
    count = write_video(str(output), (draw(frame) for frame in frames),
                        video_fps(args.video_input))
    logger.info(f"{args.video_input}: {count} frames -> {output}")


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.webcam and not args.output:
        parser.error("--output is required (a folder, or an .mp4 file for --video-input).")
    try:
        classes, num_user = expand_vocabulary(args.vocabulary or args.vocabulary_file,
                                              args.expand_vocabulary)
        if args.input:
            outputs = output_paths(collect_images(args.input), args.output)
        elif args.video_input:
            if not Path(args.video_input).is_file():
                raise FileNotFoundError(f"--video-input {args.video_input}: no such file.")
            video_output = _video_output(args.video_input, args.output)
    except (ValueError, FileNotFoundError) as e:
        parser.error(str(e))
    setup_logger(name="san_d2")

    def run() -> int:
        if args.webcam:
            check_live_view(0)  # before the model is built
        predictor = SANPredictor(args.config_file, opts=args.opts)
        extra = len(classes) - num_user
        logger.info(f"Vocabulary: {num_user} classes"
                    + (f" + {extra} from {args.expand_vocabulary}" if extra else ""))
        if args.webcam:
            draw = _frame_drawer(predictor, classes, num_user, args)
            show_stream((draw(frame) for frame in read_frames(0)), "san-demo (Esc to quit)")
            return 0
        if args.video_input:
            segment_video(predictor, classes, num_user, args, video_output)
            return 0
        return 1 if segment_all(predictor, outputs, classes, num_user, args) else 0

    return run_reporting_errors(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
