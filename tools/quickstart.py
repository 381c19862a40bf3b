#!/usr/bin/env python
"""The offline quick start: generate data, train the tiny SAN on CPU, evaluate, draw.

    san-quickstart [--output output/quickstart] [--fresh] [--opts KEY VALUE ...]

1. writes san_d2's synthetic scenes (300 train, 60 val) to ``$DETECTRON2_DATASETS/san_synthetic``;
2. trains the shipped config ``quickstart/san_tiny_synthetic.yaml`` (under a minute on two
   CPU cores; a finished run is reused unless ``--fresh``);
3. evaluates on the held-out scenes (summary table, ``eval_results.json``) and compares the
   mIoU with the chance level of uniform guessing;
4. draws ground truth next to prediction for some held-out scenes, and segments them again
   through ``SANPredictor`` with the class names typed as a vocabulary.
"""
import argparse
import logging
import os
import sys
import time
from pathlib import Path

import san_d2  # noqa: F401  (first: it quiets detectron2 0.6's import-time warnings)

from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger

from san_d2 import Trainer, fall_back_to_cpu_without_cuda, get_san_cfg
from san_d2.data.synthetic import generate_synthetic_dataset
from san_d2.evaluation import chance_miou
from san_d2.predictor import SANPredictor, load_rgb_image
from san_d2.utils.cli import add_debug_argument, make_output_dir, run_reporting_errors
from san_d2.utils.visualization import draw_saved_predictions, draw_segmentation, save_image

logger = logging.getLogger("san_d2.quickstart")

CONFIG = "quickstart/san_tiny_synthetic.yaml"


def train_and_evaluate(cfg, fresh: bool):
    """Trains the config's model (or finds it trained in OUTPUT_DIR) and evaluates it.

    Returns:
        The results of ``Trainer.test`` and what happened, for the log.
    """
    start = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=not fresh)
    if trainer.start_iter >= cfg.SOLVER.MAX_ITER:
        logger.info(f"Reusing the finished training in {cfg.OUTPUT_DIR} (pass --fresh to retrain).")
        return Trainer.test(cfg, trainer.model), "reused"
    trainer.train()  # detectron2's evaluation hook evaluates once after the last iteration
    return trainer._last_eval_results, f"{time.perf_counter() - start:.0f} s of training"


def segment_with_typed_vocabulary(cfg, dataset_name: str, output: str, count: int = 4) -> None:
    """Segments a few held-out scenes through SANPredictor with the class names as vocabulary."""
    predictor = SANPredictor(cfg, weights=os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    vocabulary = list(MetadataCatalog.get(dataset_name).stuff_classes)
    for record in DatasetCatalog.get(dataset_name)[:count]:
        image = load_rgb_image(record["file_name"])
        result = predictor.predict(image, vocabulary, scores=False)
        path = os.path.join(output, Path(record["file_name"]).stem + ".png")
        save_image(draw_segmentation(image, result.class_map, vocabulary, legend=True), path)
        logger.info(f"{Path(record['file_name']).name}: {result.describe()}")


def run(output: str, fresh: bool, opts) -> float:
    dataset_root = os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")),
                                "san_synthetic")
    logger.info(f"Synthetic scenes in {dataset_root}")
    generate_synthetic_dataset(dataset_root)
    cfg = get_san_cfg(CONFIG, ["OUTPUT_DIR", output, *opts])
    fall_back_to_cpu_without_cuda(cfg)
    cfg.freeze()
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)

    results, training = train_and_evaluate(cfg, fresh)
    val = cfg.DATASETS.TEST[0]
    miou = results[val]["sem_seg"]["mIoU"]
    draw_saved_predictions(os.path.join(output, "inference", val, "sem_seg_predictions.json"),
                           val, os.path.join(output, "ground_truth_vs_prediction"), max_images=8)
    segment_with_typed_vocabulary(cfg, val, os.path.join(output, "demo"))
    logger.info(f"Quick start: held-out mIoU {miou:.1f} (chance {chance_miou(val):.1f}), "
                f"{cfg.SOLVER.MAX_ITER} iterations ({training}); "
                f"results in {output}/eval_results.json, drawings in {output}/.")
    return miou


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/quickstart", help="output folder")
    parser.add_argument("--fresh", action="store_true", help="train again from scratch")
    add_debug_argument(parser)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, e.g. SOLVER.MAX_ITER 200")
    args = parser.parse_args(argv)
    try:
        make_output_dir(args.output)
    except ValueError as e:
        parser.error(str(e))
    setup_logger(output=args.output, name="san_d2")
    setup_logger(output=args.output, name="detectron2", abbrev_name="d2")

    def work() -> int:
        run(args.output, args.fresh, args.opts)
        return 0

    return run_reporting_errors(work, args.debug)


if __name__ == "__main__":
    sys.exit(main())
