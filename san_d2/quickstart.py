"""The offline quick start: generate data, train the tiny SAN on CPU, evaluate, draw.

    python -m san_d2.quickstart [--output output/quickstart] [--fresh] [--opts KEY VALUE ...]

1. writes san_d2's synthetic scenes (300 train, 60 val) to ``$DETECTRON2_DATASETS/san_synthetic``;
2. trains ``configs/quickstart/san_tiny_synthetic.yaml`` (a few minutes on two CPU cores;
   a finished run is reused unless ``--fresh``);
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
from typing import Sequence

import numpy as np
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.utils.env import seed_all_rng
from detectron2.utils.logger import setup_logger
from PIL import Image

from .config import get_san_cfg
from .data.synthetic import generate_synthetic_dataset
from .engine import Trainer
from .predictor import SANPredictor
from .utils import fall_back_to_cpu_without_cuda
from .visualize_predictions import main as visualize_predictions

logger = logging.getLogger("san_d2.quickstart")

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "quickstart" / "san_tiny_synthetic.yaml"


def chance_miou(dataset_name: str) -> float:
    """Expected mIoU (x100) of guessing every pixel's class uniformly at random."""
    metadata = MetadataCatalog.get(dataset_name)
    num_classes = len(metadata.stuff_classes)
    counts = np.zeros(num_classes, dtype=np.int64)
    for record in DatasetCatalog.get(dataset_name):
        label = np.asarray(Image.open(record["sem_seg_file_name"])).ravel()
        label = label[label != metadata.ignore_label]
        counts += np.bincount(label, minlength=num_classes)[:num_classes]
    total = counts.sum()
    present = counts > 0
    true_positive = counts / num_classes
    ious = true_positive / (counts + total / num_classes - true_positive)
    return 100.0 * float(ious[present].mean())


def run(output: str, fresh: bool, opts: Sequence[str]) -> float:
    dataset_root = os.path.join(os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets")),
                                "san_synthetic")
    logger.info(f"Synthetic scenes in {dataset_root}")
    generate_synthetic_dataset(dataset_root)
    cfg = get_san_cfg(str(CONFIG), ["OUTPUT_DIR", output, *opts])
    fall_back_to_cpu_without_cuda(cfg)
    cfg.freeze()
    seed_all_rng(None if cfg.SEED < 0 else cfg.SEED)

    start = time.perf_counter()
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=not fresh)
    reused = trainer.start_iter >= cfg.SOLVER.MAX_ITER
    if reused:
        logger.info(f"Reusing the finished training in {output} (pass --fresh to retrain).")
    else:
        trainer.train()
    training = "reused" if reused else f"{time.perf_counter() - start:.0f} s of training"

    val = cfg.DATASETS.TEST[0]
    results = Trainer.test(cfg, trainer.model)[val]["sem_seg"]
    chance = chance_miou(val)
    visualize_predictions([
        "--predictions", os.path.join(output, "inference", val, "sem_seg_predictions.json"),
        "--dataset", val, "--output", os.path.join(output, "ground_truth_vs_prediction"),
        "--max-images", "8"])
    demo_vocabulary_pass(cfg, val, os.path.join(output, "demo"))
    logger.info(f"Quick start: held-out mIoU {results['mIoU']:.1f} (chance {chance:.1f}), "
                f"{cfg.SOLVER.MAX_ITER} iterations ({training}); "
                f"results in {output}/eval_results.json, drawings in {output}/.")
    return results["mIoU"]


def demo_vocabulary_pass(cfg, dataset_name: str, output: str, count: int = 4) -> None:
    """Segments a few held-out scenes through SANPredictor with the class names as vocabulary."""
    from .demo import draw, summarize

    predictor = SANPredictor(cfg, weights=os.path.join(cfg.OUTPUT_DIR, "model_final.pth"))
    vocabulary = list(MetadataCatalog.get(dataset_name).stuff_classes)
    os.makedirs(output, exist_ok=True)
    for record in DatasetCatalog.get(dataset_name)[:count]:
        result = predictor.predict(record["file_name"], vocabulary)
        image = np.asarray(Image.open(record["file_name"]).convert("RGB"))
        path = os.path.join(output, Path(record["file_name"]).stem + ".png")
        Image.fromarray(draw(image, result.class_map, vocabulary, len(vocabulary))).save(path)
        logger.info(f"{Path(record['file_name']).name}: "
                    f"{summarize(result.pixel_shares(), vocabulary, len(vocabulary))}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", default="output/quickstart")
    parser.add_argument("--fresh", action="store_true", help="train again from scratch")
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides, e.g. SOLVER.MAX_ITER 200")
    args = parser.parse_args(argv)
    os.makedirs(args.output, exist_ok=True)
    setup_logger(output=args.output, name="san_d2")
    setup_logger(output=args.output, name="detectron2", abbrev_name="d2")
    run(args.output, args.fresh, args.opts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
