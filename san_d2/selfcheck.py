"""Installation self-check: the project's main job until the quick start lands.

Runs, on CPU or GPU, what every later command relies on: the environment report, every config in
``configs/`` loaded with SAN's keys and the device fall-back, detectron2's semantic-segmentation
pipeline (dataset registration, test-time resize, ``SemSegEvaluator``, ``Visualizer``) on a
generated scene, with the evaluator's mIoU checked against a direct numpy computation, and the
tiny SAN of ``configs/tiny/san_tiny.yaml`` (random weights: it checks the machinery, its masks
mean nothing) segmenting that scene with a typed vocabulary.

Usage: ``python -m san_d2.selfcheck [--output DIR] [--config-dir DIR]``
"""
import argparse
import importlib.metadata
import logging
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data import transforms as T
from detectron2.data.datasets import load_sem_seg
from detectron2.evaluation import SemSegEvaluator
from detectron2.utils.logger import setup_logger
from detectron2.utils.visualizer import Visualizer
from PIL import Image
from tabulate import tabulate

from detectron2.modeling import build_model

from .config import get_san_cfg
from .data.synthetic import IGNORE_LABEL, SYNTHETIC_CLASSES, make_scene
from .utils import fall_back_to_cpu_without_cuda

logger = logging.getLogger("san_d2.selfcheck")

SCENE_CLASSES = list(SYNTHETIC_CLASSES)
REPO_CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def environment_rows() -> List[Tuple[str, str]]:
    """Versions of the packages san_d2 depends on, and the detectron2 build in use."""
    rows = [("python", sys.version.split()[0])]
    for dist in ["torch", "torchvision", "numpy", "pillow", "opencv-python", "detectron2",
                 "fvcore", "open_clip_torch", "timm", "scipy"]:
        try:
            rows.append((dist, importlib.metadata.version(dist)))
        except importlib.metadata.PackageNotFoundError:
            rows.append((dist, "not installed"))
    try:
        build = importlib.metadata.distribution("detectron2").read_text("san_d2_build.json")
    except importlib.metadata.PackageNotFoundError:
        build = None
    rows.append(("detectron2 build", "san_d2 pure-Python build" if build else "user's own"))
    rows.append(("CUDA available", str(torch.cuda.is_available())))
    return rows


def check_configs(config_dir: Path) -> List[Tuple[str, str, str, str]]:
    """Loads every YAML in ``config_dir``; returns (file, device, meta-arch, CLIP model) rows."""
    files = sorted(config_dir.rglob("*.yaml"))
    if not files:
        raise FileNotFoundError(f"No config files under {config_dir}; pass --config-dir.")
    rows = []
    for path in files:
        cfg = get_san_cfg(str(path))
        device = fall_back_to_cpu_without_cuda(cfg)
        rows.append((str(path.relative_to(config_dir)), device, cfg.MODEL.META_ARCHITECTURE,
                     cfg.MODEL.SAN.CLIP_MODEL_NAME))
    return rows


def reference_miou(pred: np.ndarray, gt: np.ndarray, num_classes: int) -> float:
    """mIoU x 100 over classes present in the ground truth or the prediction, ignoring 255."""
    valid = gt != IGNORE_LABEL
    ious = []
    for c in range(num_classes):
        p, g = (pred == c) & valid, (gt == c) & valid
        if p.any() or g.any():
            ious.append((p & g).sum() / (p | g).sum())
    return 100.0 * float(np.mean(ious))


def run_pipeline(output: Path, work: Path) -> Dict[str, float]:
    """Registers a generated dataset, evaluates a shifted prediction and draws both maps."""
    (work / "images").mkdir()
    (work / "labels").mkdir()
    image, label = make_scene(128, np.random.default_rng(0))
    Image.fromarray(image).save(work / "images" / "scene.jpg")
    Image.fromarray(label).save(work / "labels" / "scene.png")

    name = "san_d2_selfcheck"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    DatasetCatalog.register(
        name, lambda: load_sem_seg(str(work / "labels"), str(work / "images"), "png", "jpg"))
    MetadataCatalog.get(name).set(stuff_classes=SCENE_CLASSES, ignore_label=IGNORE_LABEL,
                                  evaluator_type="sem_seg")

    # The test-time resize of the SAN configs, and back, as a model's output would be.
    resize = T.ResizeShortestEdge(640, 2560).get_transform(image)
    resized = resize.apply_segmentation(label)
    prediction = np.array(Image.fromarray(resized).resize(label.shape[::-1], Image.NEAREST))
    prediction = np.roll(prediction, 3, axis=1)  # an imperfect prediction with a known mIoU
    prediction[prediction == IGNORE_LABEL] = 0
    scores = torch.nn.functional.one_hot(torch.from_numpy(prediction).long(), len(SCENE_CLASSES))

    evaluator = SemSegEvaluator(name, distributed=False, output_dir=str(output))
    evaluator.reset()
    record = DatasetCatalog.get(name)[0]
    evaluator.process([record], [{"sem_seg": scores.permute(2, 0, 1).float()}])
    results = evaluator.evaluate()["sem_seg"]
    expected = reference_miou(prediction, label, len(SCENE_CLASSES))
    if abs(results["mIoU"] - expected) > 1e-6:
        raise RuntimeError(f"SemSegEvaluator gave mIoU {results['mIoU']}, expected {expected}.")

    metadata = MetadataCatalog.get(name)
    for tag, seg in [("ground_truth", label), ("prediction", prediction)]:
        drawn = Visualizer(image, metadata).draw_sem_seg(seg, alpha=0.5).get_image()
        Image.fromarray(drawn).save(output / f"{tag}.png")
    return {"mIoU": results["mIoU"], "reference mIoU": expected, "pACC": results["pACC"]}


def segment_with_tiny_san(config_dir: Path, output: Path) -> Dict[str, float]:
    """Builds the tiny SAN from its config and segments the generated scene with it."""
    cfg = get_san_cfg(str(config_dir / "tiny" / "san_tiny.yaml"))
    fall_back_to_cpu_without_cuda(cfg)
    model = build_model(cfg).eval()
    image, _ = make_scene(128, np.random.default_rng(0))
    with torch.inference_mode():
        scores = model([{"image": torch.from_numpy(image).permute(2, 0, 1).contiguous(),
                         "vocabulary": SCENE_CLASSES}])[0]["sem_seg"]
    if scores.shape != (len(SCENE_CLASSES), 128, 128) or not torch.isfinite(scores).all():
        raise RuntimeError(f"SAN returned {tuple(scores.shape)} scores with non-finite values.")
    classes = scores.argmax(0).cpu()
    metadata = MetadataCatalog.get("san_d2_selfcheck")
    drawn = Visualizer(image, metadata).draw_sem_seg(classes, alpha=0.5).get_image()
    Image.fromarray(drawn).save(output / "tiny_san_random_weights.png")
    share = torch.bincount(classes.flatten(), minlength=len(SCENE_CLASSES)) / classes.numel()
    return {f"{name} share": float(v) for name, v in zip(SCENE_CLASSES, share)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("output/selfcheck"))
    parser.add_argument("--config-dir", type=Path, default=REPO_CONFIGS)
    args = parser.parse_args(argv)
    setup_logger(name="san_d2")
    setup_logger(name="detectron2", abbrev_name="d2")
    args.output.mkdir(parents=True, exist_ok=True)

    logger.info("Environment:\n" + tabulate(environment_rows(), tablefmt="simple"))
    logger.info("Configs:\n" + tabulate(check_configs(args.config_dir),
                                        headers=["config", "device", "meta-arch", "CLIP"]))
    with tempfile.TemporaryDirectory() as work:
        metrics = run_pipeline(args.output, Path(work))
        logger.info("Pipeline on a generated scene: " +
                    ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()))
    shares = segment_with_tiny_san(args.config_dir, args.output)
    logger.info("Tiny SAN (random weights) segmented the scene: " +
                ", ".join(f"{k} {v:.2f}" for k, v in shares.items()))
    logger.info(f"Self-check passed; drawings in {args.output}/.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
