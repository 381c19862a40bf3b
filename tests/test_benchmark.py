"""The benchmark command reports what it promises (tiny model, CPU)."""
import json

from san_d2.benchmark import main

from .conftest import TINY_CONFIG


def test_inference_benchmark_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--config-file", str(TINY_CONFIG), "--device", "cpu", "--size", "96",
                 "--vocab", "5", "--runs", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["runs"] == 2 and result["device"] == "cpu" and result["vocab"] == 5
    assert result["seconds_min"] <= result["seconds_per_image_median"] <= result["seconds_max"]
    assert result["images_per_second"] == 1.0 / result["seconds_per_image_median"]
    stages = result["stages_seconds"]
    assert set(stages) == {"CLIP features", "side adapter", "recognition head", "text classifier",
                           "pre/post-processing"}
    assert all(v >= 0 for k, v in stages.items() if k != "pre/post-processing")
    assert abs(sum(stages.values()) - result["seconds_per_image_median"]) < 1e-9
    assert result["peak_memory_gb"] > 0
    assert "images_per_second" in capsys.readouterr().out


def test_training_benchmark_json(tmp_path):
    out = tmp_path / "train.json"
    assert main(["--config-file", str(TINY_CONFIG), "--device", "cpu", "--train", "--batch-size",
                 "2", "--crop", "64", "--runs", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["batch_size"] == 2 and result["crop"] == 64
    assert result["seconds_per_iteration_median"] > 0 and result["peak_memory_gb"] > 0
