#!/usr/bin/env python
"""Train or evaluate SAN with detectron2's trainer.

    san-train --config-file san_clip_vit_res4_coco.yaml [--num-gpus N]
    san-train --config-file ... --eval-only MODEL.WEIGHTS path/to/model.pth
    san-train --config-file ... --resume

(``python train_net.py`` in a checkout is the same command.) Without CUDA the run falls back
to the CPU and says so in the log.
"""
import sys

import san_d2  # noqa: F401  (first: it quiets detectron2 0.6's import-time warnings)

import torch
from detectron2.engine import default_argument_parser, default_setup, launch
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from san_d2 import SANCheckpointer, Trainer, fall_back_to_cpu_without_cuda, get_san_cfg
from san_d2.evaluation import verify_san_results
from san_d2.model_zoo import resolve_config_file
from san_d2.utils.cli import add_debug_argument, make_output_dir, run_reporting_errors


def setup(args):
    """The frozen config of a run, with san_d2's log in ``OUTPUT_DIR/log.txt``."""
    args.config_file = resolve_config_file(args.config_file)  # default_setup reads the file
    cfg = get_san_cfg(args.config_file, args.opts)
    make_output_dir(cfg.OUTPUT_DIR)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="san_d2", abbrev_name="san")
    # Before default_setup, which writes OUTPUT_DIR/config.yaml: it records the device used.
    fall_back_to_cpu_without_cuda(cfg)
    default_setup(cfg, args)
    cfg.freeze()
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        SANCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume)
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            results.update(Trainer.test_with_TTA(cfg, model))
        if comm.is_main_process():
            verify_san_results(cfg, results)
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


def cli(argv=None) -> int:
    parser = default_argument_parser()
    add_debug_argument(parser)
    args = parser.parse_args(argv)
    if args.num_gpus > max(torch.cuda.device_count(), 1):
        parser.error(f"--num-gpus {args.num_gpus}: this machine has {torch.cuda.device_count()} "
                     "CUDA device(s).")
    return run_reporting_errors(lambda: launch(
        main, args.num_gpus, num_machines=args.num_machines, machine_rank=args.machine_rank,
        dist_url=args.dist_url, args=(args,)) or 0, args.debug)


if __name__ == "__main__":
    sys.exit(cli())
