"""The offline quick start really learns (integration test, about a minute on two cores)."""
import json
import os

import pytest

from san_d2.data.datasets.builtin import register_all_synthetic
from san_d2_tools.quickstart import main


@pytest.mark.slow
def test_quickstart_reaches_its_miou_bar(tmp_path, monkeypatch):
    default_root = os.path.expanduser(os.getenv("DETECTRON2_DATASETS", "datasets"))
    monkeypatch.setenv("DETECTRON2_DATASETS", str(tmp_path / "datasets"))
    register_all_synthetic(str(tmp_path / "datasets"))
    try:
        assert main(["--output", str(tmp_path / "out")]) == 0
    finally:
        register_all_synthetic(default_root)
    results = json.loads((tmp_path / "out" / "eval_results.json").read_text())
    miou = results["san_synthetic_val"]["mIoU"]
    assert miou > 70.0, results  # chance (uniform guessing) is about 8
    assert len(list((tmp_path / "out" / "demo").glob("*.png"))) == 4
    assert len(list((tmp_path / "out" / "ground_truth_vs_prediction").glob("*.png"))) == 8
