#!/usr/bin/env python
"""Convert SAN checkpoints between detectron2's format (the paper's releases) and
mmsegmentation's (its model zoo's SAN files), both ways, bit for bit.

    san-convert-checkpoint --from mmseg --to detectron2 san-vit-b16_20230906-fd0a7684.pth san_b16.pth
    san-convert-checkpoint --from detectron2 --to mmseg san_vit_b_16.pth san-vit-b16_mmseg.pth

(No conversion is needed to use an mmseg file: MODEL.WEIGHTS reads it as it is.)
"""
import argparse
import sys

import san_d2  # noqa: F401  (first: it quiets detectron2 0.6's import-time warnings)
from san_d2.checkpoint.convert import FORMATS, checkpoint_format, convert_checkpoint
from san_d2.utils.cli import add_debug_argument, positive_int, run_reporting_errors


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--from", dest="source_format", choices=FORMATS, required=True,
                        help="format of the input file")
    parser.add_argument("--to", choices=FORMATS, required=True, help="format to write")
    parser.add_argument("input", help="checkpoint to convert")
    parser.add_argument("output", help="file to write")
    parser.add_argument("--num-classes", type=positive_int, default=171,
                        help="training vocabulary size, for the loss buffer a detectron2 file has")
    parser.add_argument("--no-object-weight", type=float, default=0.1,
                        help="MODEL.SAN.NO_OBJECT_WEIGHT, for the same buffer")
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.source_format == args.to:
        parser.error("--from and --to name the same format.")

    def run() -> int:
        found = checkpoint_format(args.input)
        if found != args.source_format:
            raise ValueError(f"{args.input} is a {found} checkpoint, not {args.source_format}.")
        counts = convert_checkpoint(args.input, args.output, args.to, num_classes=args.num_classes,
                                    no_object_weight=args.no_object_weight)
        print(f"{args.input} ({args.source_format}, {counts['read']} tensors) -> {args.output} "
              f"({args.to}, {counts['written']} tensors)")
        return 0

    return run_reporting_errors(run, args.debug)


if __name__ == "__main__":
    sys.exit(main())
