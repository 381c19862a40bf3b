"""SAN's Trainer: optimiser recipe, clipping, resume, evaluation over datasets, TTA, AMP on CPU."""
import json

import pytest
import torch
from detectron2.engine import HookBase, hooks
from torch import nn

from san_d2 import SANCheckpointer, Trainer, get_san_cfg
from san_d2.data.synthetic import generate_synthetic_dataset, register_synthetic_dataset
from san_d2.engine import build_optimizer, records_with_dataset_name
from san_d2.modeling.test_time_augmentation import SemanticSegmentorWithTTA

from .conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(str(root), num_train=6, num_val=3, size=64)
    train, val = register_synthetic_dataset(str(root), prefix="trainer_test_synthetic")
    return train, val


def _cfg(tmp_path, synthetic, *opts):
    train, val = synthetic
    return get_san_cfg(str(TINY_CONFIG), [
        "MODEL.DEVICE", "cpu", "MODEL.SAN.NUM_CLASSES", "6", "DATASETS.TRAIN", f"('{train}',)",
        "DATASETS.TEST", f"('{val}', '{train}')", "DATALOADER.NUM_WORKERS", "0",
        "SOLVER.IMS_PER_BATCH", "2", "SOLVER.BASE_LR", "1e-4", "SOLVER.MAX_ITER", "4",
        "SOLVER.CHECKPOINT_PERIOD", "2", "SOLVER.LR_SCHEDULER_NAME", "WarmupPolyLR",
        "SOLVER.WARMUP_ITERS", "0", "SOLVER.BACKBONE_MULTIPLIER", "0.1",
        "SOLVER.CLIP_MULTIPLIER", "0.5", "SOLVER.WEIGHT_DECAY", "1e-4",
        "SOLVER.WEIGHT_DECAY_NORM", "0.0", "SOLVER.WEIGHT_DECAY_EMBED", "0.0",
        "SOLVER.CLIP_GRADIENTS.ENABLED", "True", "SOLVER.CLIP_GRADIENTS.CLIP_TYPE", "full_model",
        "SOLVER.CLIP_GRADIENTS.CLIP_VALUE", "0.01", "TEST.EVAL_PERIOD", "0",
        "INPUT.MIN_SIZE_TRAIN", "(64,)", "INPUT.MAX_SIZE_TRAIN", "128", "INPUT.MIN_SIZE_TEST", "64",
        "INPUT.MAX_SIZE_TEST", "128", "INPUT.CROP.ENABLED", "True", "INPUT.CROP.TYPE", "absolute",
        "INPUT.CROP.SIZE", "(64, 64)", "INPUT.SIZE_DIVISIBILITY", "64", "INPUT.COLOR_AUG_SSD", "True",
        "OUTPUT_DIR", str(tmp_path), *opts])


def test_parameter_groups(tmp_path, synthetic):
    cfg = _cfg(tmp_path, synthetic)
    model = Trainer.build_model(cfg)
    optimizer = build_optimizer(cfg, model)
    by_name = {g["name"]: g for g in optimizer.param_groups}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert set(by_name) == trainable
    side = by_name["side_adapter_network.vit_model.blocks.0.attn.qkv.weight"]
    assert side["lr"] == pytest.approx(1e-5) and side["weight_decay"] == 1e-4
    assert by_name["side_adapter_network.vit_model.blocks.0.norm1.weight"]["weight_decay"] == 0.0
    # The fusion layers' channel LayerNorm is no torch norm layer, as in the paper's code.
    assert by_name["side_adapter_network.fusion_layers.layer_0.input_proj.0.weight"]["weight_decay"] == 1e-4
    assert by_name["side_adapter_network.query_embed"]["weight_decay"] == 0.0
    pos = by_name["clip_visual_extractor.positional_embedding"]
    assert pos["lr"] == pytest.approx(5e-5) and pos["weight_decay"] == 0.0
    assert by_name["ov_classifier.bg_embed"]["lr"] == pytest.approx(1e-4)
    assert type(optimizer).__name__ == "AdamWWithFullModelClipping"


def test_full_model_clipping_caps_the_global_norm(tmp_path, synthetic):
    cfg = _cfg(tmp_path, synthetic, "SOLVER.BASE_LR", "0.0")
    model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    optimizer = build_optimizer(cfg, model)
    model(torch.randn(8, 4)).pow(2).sum().mul(100).backward()
    grads = [p.grad for p in model.parameters()]
    assert torch.linalg.vector_norm(torch.cat([g.flatten() for g in grads])) > 1.0
    optimizer.step()
    norm = torch.linalg.vector_norm(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert norm == pytest.approx(0.01, rel=1e-4)


def test_one_checkpointer_loads_and_saves(tmp_path, synthetic):
    trainer = Trainer(_cfg(tmp_path, synthetic))
    periodic = [h for h in trainer._hooks if isinstance(h, hooks.PeriodicCheckpointer)]
    assert len(periodic) == 1 and periodic[0].checkpointer is trainer.checkpointer
    assert isinstance(trainer.checkpointer, SANCheckpointer)


class _Interrupt(HookBase):
    """Stops training after the given iteration, like a killed job."""

    def __init__(self, after_iter):
        self.after_iter = after_iter

    def after_step(self):
        if self.trainer.iter == self.after_iter:
            raise KeyboardInterrupt


def test_train_resume_and_amp_on_cpu(tmp_path, synthetic):
    cfg = _cfg(tmp_path, synthetic, "SOLVER.AMP.ENABLED", "True")
    trainer = Trainer(cfg)  # AMP would assert CUDA in detectron2's AMPTrainer
    trainer.register_hooks([_Interrupt(after_iter=1)])
    trainer.resume_or_load(resume=False)
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert (tmp_path / "model_0000001.pth").is_file()
    assert not (tmp_path / "model_final.pth").exists()
    saved = torch.load(tmp_path / "model_0000001.pth", weights_only=False)["trainer"]

    resumed = Trainer(cfg)
    resumed.resume_or_load(resume=True)
    assert resumed.start_iter == 2
    restored = resumed.optimizer.state_dict()["state"]
    assert restored.keys() == saved["_trainer"]["optimizer"]["state"].keys() != set()
    for key, value in saved["_trainer"]["optimizer"]["state"].items():
        assert torch.equal(restored[key]["exp_avg"], value["exp_avg"])
    assert resumed.scheduler.last_epoch == 2
    assert resumed.optimizer.param_groups[0]["lr"] == pytest.approx(
        trainer.optimizer.param_groups[0]["initial_lr"] * (1 - 2 / 4) ** 0.9)
    resumed.train()
    assert resumed.iter == 4 and (tmp_path / "model_final.pth").is_file()


def test_eval_only_over_two_datasets_writes_table_and_json(tmp_path, synthetic):
    cfg = _cfg(tmp_path, synthetic)
    model = Trainer.build_model(cfg)
    results = Trainer.test(cfg, model)
    train, val = synthetic
    assert list(results) == [val, train]
    saved = json.loads((tmp_path / "eval_results.json").read_text())
    assert set(saved) == {val, train}
    for name in (val, train):
        assert 0.0 <= saved[name]["mIoU"] <= 100.0 and "IoU-red disc" in saved[name]
        assert (tmp_path / "inference" / name / "sem_seg_predictions.json").is_file()


def test_tta_is_the_average_of_the_passes_mapped_back(tmp_path, synthetic):
    cfg = _cfg(tmp_path, synthetic, "TEST.AUG.MIN_SIZES", "(48, 80)", "TEST.AUG.MAX_SIZE", "200",
               "TEST.AUG.FLIP", "True")
    model = Trainer.build_model(cfg).eval()
    record = records_with_dataset_name([synthetic[1]])[0]
    from san_d2.engine import InferenceMapper

    inputs = InferenceMapper(cfg, False)(record)
    tta = SemanticSegmentorWithTTA(cfg, model)([inputs])[0]["sem_seg"]

    from PIL import Image
    import numpy as np

    original = np.asarray(Image.open(record["file_name"]).convert("RGB"))
    h, w = original.shape[:2]
    passes = []
    for size in (48, 80):
        resized = np.asarray(Image.fromarray(original).resize((size, size), Image.BILINEAR))
        for flip in (False, True):
            image = resized[:, ::-1] if flip else resized
            image = torch.as_tensor(np.ascontiguousarray(image.transpose(2, 0, 1)))
            with torch.no_grad():
                out = model([{"image": image, "height": h, "width": w,
                              "meta": record["meta"]}])[0]["sem_seg"]
            passes.append(out.flip(-1) if flip else out)
    expected = torch.stack(passes).mean(0)
    assert tta.shape == (6, h, w)
    assert torch.allclose(tta, expected, atol=1e-5)


def test_non_finite_loss_stops_training_without_a_checkpoint(tmp_path, synthetic, monkeypatch):
    cfg = _cfg(tmp_path, synthetic, "SOLVER.MAX_ITER", "3")
    trainer = Trainer(cfg)
    trainer.resume_or_load(resume=False)
    model = trainer.model
    original_forward = model.forward

    def nan_forward(batched_inputs):
        losses = original_forward(batched_inputs)
        losses["loss_dice"] = losses["loss_dice"] * float("nan")
        return losses

    monkeypatch.setattr(model, "forward", nan_forward)
    with pytest.raises(FloatingPointError, match="iteration=0") as err:
        trainer.train()
    assert "loss_dice" in str(err.value)
    assert not (tmp_path / "model_final.pth").exists()
