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


def test_second_run_loads_the_vocabulary_without_encoding(tmp_path):
    def run(name):
        out = tmp_path / name
        assert main(["--config-file", str(TINY_CONFIG), "--device", "cpu", "--size", "64",
                     "--vocab", "5", "--runs", "1", "--json", str(out), "--opts",
                     "MODEL.SAN.TEXT_EMBEDDING_CACHE", str(tmp_path / "text")]) == 0
        return json.loads(out.read_text())

    assert run("first.json")["first_call_prompts_encoded"] == 5 * 14  # vild: 14 templates
    assert run("second.json")["first_call_prompts_encoded"] == 0


def test_fast_mode_reports_its_deviation_from_fp32(tmp_path):
    out = tmp_path / "bf16.json"
    assert main(["--config-file", str(TINY_CONFIG), "--device", "cpu", "--size", "64",
                 "--vocab", "5", "--runs", "1", "--dtype", "bf16", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["dtype"] == "bf16"
    assert 0 < result["max_abs_diff_vs_fp32"] < 1
    assert 0 <= result["argmax_agreement_vs_fp32"] <= 1


def test_training_benchmark_json(tmp_path):
    out = tmp_path / "train.json"
    assert main(["--config-file", str(TINY_CONFIG), "--device", "cpu", "--train", "--batch-size",
                 "2", "--crop", "64", "--runs", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["batch_size"] == 2 and result["crop"] == 64
    assert result["seconds_per_iteration_median"] > 0 and result["peak_memory_gb"] > 0
