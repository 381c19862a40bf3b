#!/usr/bin/env python
"""Train or evaluate SAN with detectron2's trainer.

    python train_net.py --config-file configs/san_clip_vit_res4_coco.yaml [--num-gpus N]
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS path/to/model.pth
    python train_net.py --config-file ... --resume

Without CUDA the run falls back to the CPU and says so in the log.
"""
import sys

import torch
from detectron2.engine import default_argument_parser, default_setup, launch

from san_d2 import SANCheckpointer, Trainer, fall_back_to_cpu_without_cuda, get_san_cfg


def setup(args):
    cfg = get_san_cfg(args.config_file, args.opts)
    default_setup(cfg, args)
    fall_back_to_cpu_without_cuda(cfg)
    cfg.freeze()
    return cfg


def main(args):
    cfg = setup(args)
    if args.eval_only:
        model = Trainer.build_model(cfg)
        SANCheckpointer(model, save_dir=cfg.OUTPUT_DIR).resume_or_load(
            cfg.MODEL.WEIGHTS, resume=args.resume
        )
        results = Trainer.test(cfg, model)
        if cfg.TEST.AUG.ENABLED:
            results.update(Trainer.test_with_TTA(cfg, model))
        return results
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    if args.num_gpus > max(torch.cuda.device_count(), 1):
        sys.exit(f"--num-gpus {args.num_gpus}: this machine has {torch.cuda.device_count()} "
                 "CUDA device(s).")
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
