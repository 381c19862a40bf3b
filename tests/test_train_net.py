"""train_net: the recorded config, the log, and --eval-only's verification of expected results."""
import pytest
import yaml
from detectron2.engine import default_argument_parser

from san_d2.data.synthetic import generate_synthetic_dataset, register_synthetic_dataset
from san_d2_tools.train_net import main, setup

from .conftest import TINY_CONFIG


@pytest.fixture(scope="module")
def synthetic_val(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_dataset(str(root), num_train=1, num_val=3, size=64)
    return register_synthetic_dataset(str(root), prefix="train_net_test")[1]


def _args(*argv):
    return default_argument_parser().parse_args(["--config-file", str(TINY_CONFIG), *argv])


def test_recorded_config_and_log_name_the_device_used(tmp_path, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    cfg = setup(_args("OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cuda"))
    assert cfg.MODEL.DEVICE == "cpu"
    recorded = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert recorded["MODEL"]["DEVICE"] == "cpu"
    assert "CUDA is not available: running on CPU instead" in (tmp_path / "log.txt").read_text()


def test_config_given_by_name_is_recorded(tmp_path):
    setup(default_argument_parser().parse_args(
        ["--config-file", "tiny/san_tiny.yaml", "OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu"]))
    assert "san-tiny-clip-vit-p16" in (tmp_path / "config.yaml").read_text()


@pytest.mark.parametrize("expected_miou, passes", [(-1.0, False), (50.0, True)])
def test_eval_only_verifies_expected_results(tmp_path, synthetic_val, expected_miou, passes):
    # Random weights: any mIoU in 0..100 lies within 50 of 50, none within 0.5 of -1.
    args = _args("--eval-only", "OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu",
                 "MODEL.SAN.NUM_CLASSES", "6", "DATASETS.TEST", f"('{synthetic_val}',)",
                 "DATALOADER.NUM_WORKERS", "0", "INPUT.MIN_SIZE_TEST", "64",
                 "TEST.EXPECTED_RESULTS",
                 f"[['{synthetic_val}', 'mIoU', {expected_miou}, {0.5 if not passes else 50.0}]]")
    if passes:
        assert 0 <= main(args)[synthetic_val]["sem_seg"]["mIoU"] <= 100
    else:
        with pytest.raises(SystemExit) as exit_info:
            main(args)
        assert exit_info.value.code == 1
    assert "Evaluation summary" in (tmp_path / "log.txt").read_text()


def test_training_log_has_the_recipe_and_the_warnings(tmp_path, synthetic_val):
    train = synthetic_val.replace("_val", "_train")
    main(_args("OUTPUT_DIR", str(tmp_path), "MODEL.DEVICE", "cpu", "MODEL.SAN.NUM_CLASSES", "6",
               "DATASETS.TRAIN", f"('{train}',)", "DATASETS.TEST", "()",
               "DATALOADER.NUM_WORKERS", "0", "SOLVER.IMS_PER_BATCH", "1", "SOLVER.MAX_ITER", "2",
               "SOLVER.AMP.ENABLED", "True", "INPUT.MIN_SIZE_TRAIN", "(64,)",
               "INPUT.CROP.ENABLED", "False", "INPUT.SIZE_DIVISIBILITY", "64"))
    log = (tmp_path / "log.txt").read_text()
    assert "Optimiser parameter groups" in log and "Trainable parameters:" in log
    assert "mixed precision needs CUDA, training in float32" in log
    assert "Model SAN: " in log and "RecWithAttnBiasHead(" not in log  # one line, not the tree
    assert (tmp_path / "model_final.pth").is_file()
