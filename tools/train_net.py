#!/usr/bin/env python
"""Train or evaluate SAN with detectron2's trainer.

    san-train --config-file san_clip_vit_res4_coco.yaml [--num-gpus N]
    san-train --config-file ... --eval-only MODEL.WEIGHTS path/to/model.pth
    san-train --config-file ... --resume
    san-train ... --num-machines 2 --machine-rank 0|1 --dist-url tcp://HOST0:PORT

(``python train_net.py`` in a checkout is the same command.) Without CUDA the run falls back
to the CPU and says so in the log; ``--num-gpus N`` then starts N processes (gloo backend).
See docs/training.md.
"""
import logging
import sys
from datetime import timedelta

import san_d2  # noqa: F401  (first: it quiets detectron2 0.6's import-time warnings)

import torch
from detectron2.engine import default_argument_parser, default_setup
from detectron2.utils import comm
from detectron2.utils.logger import setup_logger

from san_d2 import SANCheckpointer, Trainer, fall_back_to_cpu_without_cuda, get_san_cfg
from san_d2.engine.launch import DistributedRunError, describe_process, launch, plan_launch
from san_d2.data.datasets import register_dataset_file
from san_d2.evaluation import verify_san_results
from san_d2.model_zoo import resolve_config_file
from san_d2.utils.cli import (EXIT_ERROR, add_debug_argument, make_output_dir, positive_int,
                              run_reporting_errors)


def setup(args):
    """The frozen config of a run, with san_d2's log in ``OUTPUT_DIR/log.txt``."""
    args.config_file = resolve_config_file(args.config_file)  # default_setup reads the file
    cfg = get_san_cfg(args.config_file, args.opts)
    for definition in cfg.DATASETS.DEFINITIONS:  # in every process of a distributed run
        register_dataset_file(definition)
    make_output_dir(cfg.OUTPUT_DIR)
    setup_logger(cfg.OUTPUT_DIR, distributed_rank=comm.get_rank(), name="san_d2", abbrev_name="san")
    logging.getLogger("san_d2").info(describe_process())
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


def parse_args(argv=None):
    parser = default_argument_parser()
    add_debug_argument(parser)
    parser.add_argument("--dist-timeout", type=positive_int, default=1800, metavar="SECONDS",
                        help="how long a process waits for the others (rendezvous and each "
                             "collective) before it stops (default: %(default)s)")
    for action in parser._actions:
        if action.dest == "num_gpus":
            action.help = "GPUs (processes) per machine; without CUDA, CPU processes per machine"
    args = parser.parse_args(argv)
    if args.num_machines == 1 and args.dist_url == parser.get_default("dist_url"):
        args.dist_url = "auto"  # a free port: two runs on one machine do not collide
    return parser, args


def _run(parser, args) -> int:
    cfg = get_san_cfg(resolve_config_file(args.config_file), args.opts)  # bad keys: error here
    use_cuda = cfg.MODEL.DEVICE.startswith("cuda") and torch.cuda.is_available()
    try:
        plan = plan_launch(processes_per_machine=args.num_gpus, num_machines=args.num_machines,
                           machine_rank=args.machine_rank, dist_url=args.dist_url,
                           use_cuda=use_cuda)
    except ValueError as error:
        parser.error(str(error))
    args.dist_url = plan.dist_url  # "auto" resolved: the processes log the address they use
    if plan.world_size > 1:
        setup_logger(name="san_d2.engine.launch", abbrev_name="san")
    try:
        launch(main, plan, args=(args,), timeout=timedelta(seconds=args.dist_timeout))
    except DistributedRunError as error:
        if args.debug:
            print(error.details, file=sys.stderr)
        print(f"error: {error}", file=sys.stderr)
        return error.exit_code or EXIT_ERROR
    return 0


def cli(argv=None) -> int:
    parser, args = parse_args(argv)
    return run_reporting_errors(lambda: _run(parser, args), args.debug)


if __name__ == "__main__":
    sys.exit(cli())
