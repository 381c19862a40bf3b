"""detectron2's DefaultTrainer trains and evaluates a tiny segmenter on CPU."""
import numpy as np
import torch
from detectron2.data import DatasetCatalog, MetadataCatalog
from detectron2.data.datasets import load_sem_seg
from detectron2.engine import DefaultTrainer
from detectron2.evaluation import SemSegEvaluator
from detectron2.modeling import META_ARCH_REGISTRY
from PIL import Image
from torch import nn
from torch.nn import functional as F

from san_d2 import get_san_cfg

CLASSES = ["dark", "bright"]


@META_ARCH_REGISTRY.register()
class _TinySegmenter(nn.Module):
    """Two 3x3 convolutions: enough to learn brightness classes."""

    def __init__(self, cfg):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 2, 3, padding=1))

    def forward(self, batched_inputs):
        images = torch.stack([x["image"].float() / 255.0 for x in batched_inputs])
        logits = self.net(images)
        if self.training:
            targets = torch.stack([x["sem_seg"] for x in batched_inputs])
            return {"loss_ce": F.cross_entropy(logits, targets, ignore_index=255)}
        return [
            {"sem_seg": F.interpolate(l[None], size=(x["height"], x["width"]), mode="bilinear")[0]}
            for l, x in zip(logits, batched_inputs)
        ]


def _write_dataset(root, count=6, size=32, seed=0):
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(count):
        label = (rng.random((size, size)) > 0.5).astype(np.uint8)
        image = np.repeat((40 + 170 * label)[..., None], 3, axis=2).astype(np.uint8)
        Image.fromarray(image).save(root / "images" / f"{i:03d}.png")
        Image.fromarray(label).save(root / "labels" / f"{i:03d}.png")


class _Trainer(DefaultTrainer):
    @classmethod
    def build_evaluator(cls, cfg, dataset_name, output_folder=None):
        return SemSegEvaluator(dataset_name, distributed=False, output_dir=output_folder)


def test_default_trainer_trains_and_evaluates_on_cpu(tmp_path):
    _write_dataset(tmp_path / "data")
    name = "san_d2_test_tiny"
    if name in DatasetCatalog.list():
        DatasetCatalog.remove(name)
        MetadataCatalog.remove(name)
    root = tmp_path / "data"
    DatasetCatalog.register(
        name, lambda: load_sem_seg(str(root / "labels"), str(root / "images"), "png", "png")
    )
    MetadataCatalog.get(name).set(stuff_classes=CLASSES, ignore_label=255, evaluator_type="sem_seg")

    cfg = get_san_cfg(opts=[
        "MODEL.META_ARCHITECTURE", "_TinySegmenter", "MODEL.DEVICE", "cpu", "MODEL.WEIGHTS", "",
        "DATASETS.TRAIN", f"('{name}',)", "DATASETS.TEST", f"('{name}',)",
        "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "0.05",
        "SOLVER.MAX_ITER", "40", "SOLVER.CHECKPOINT_PERIOD", "1000", "SOLVER.WARMUP_ITERS", "0",
        "TEST.EVAL_PERIOD", "0",
        "INPUT.MIN_SIZE_TRAIN", "(32,)", "INPUT.MAX_SIZE_TRAIN", "64", "INPUT.MIN_SIZE_TEST", "32",
        "INPUT.MAX_SIZE_TEST", "64", "INPUT.FORMAT", "RGB", "OUTPUT_DIR", str(tmp_path / "out"),
    ])
    trainer = _Trainer(cfg)
    trainer.resume_or_load(resume=False)
    trainer.train()
    assert (tmp_path / "out" / "model_final.pth").is_file()

    results = _Trainer.test(cfg, trainer.model)["sem_seg"]
    assert 0.0 <= results["mIoU"] <= 100.0
    # Brightness separates the classes perfectly; 40 SGD steps learn it well above chance (~33).
    assert results["mIoU"] > 80.0, results
