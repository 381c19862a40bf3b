#!/usr/bin/env python
"""Train or evaluate SAN with detectron2's trainer.

    python train_net.py --config-file configs/san_clip_vit_res4_coco.yaml [--num-gpus N]
    python train_net.py --config-file ... --eval-only MODEL.WEIGHTS path/to/model.pth
    python train_net.py --config-file ... --resume

Without CUDA the run falls back to the CPU and says so in the log.
"""
import weakref

from detectron2.engine import DefaultTrainer, default_argument_parser, default_setup, launch
from detectron2.evaluation import DatasetEvaluators, SemSegEvaluator

from san_d2 import SANCheckpointer, fall_back_to_cpu_without_cuda, get_san_cfg


class Trainer(DefaultTrainer):
    """detectron2's trainer with the semantic-segmentation evaluator."""

    def __init__(self, cfg):
        super().__init__(cfg)
        # Loads checkpoints that hold numpy values too (torch >= 2.6 unpickles weights only).
        self.checkpointer = SANCheckpointer(
            self._trainer.model, cfg.OUTPUT_DIR, trainer=weakref.proxy(self)
        )

    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return DatasetEvaluators(
            [SemSegEvaluator(dataset_name, distributed=True, output_dir=output_folder)]
        )


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
        return Trainer.test(cfg, model)
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=args.resume)
    return trainer.train()


if __name__ == "__main__":
    args = default_argument_parser().parse_args()
    launch(
        main,
        args.num_gpus,
        num_machines=args.num_machines,
        machine_rank=args.machine_rank,
        dist_url=args.dist_url,
        args=(args,),
    )
