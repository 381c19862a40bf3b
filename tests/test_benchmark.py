"""The benchmark command reports what it promises (tiny model, CPU)."""
import json
import time

import pytest
import torch

from san_d2_tools.benchmark import main

from .conftest import TINY_CONFIG


def test_inference_benchmark_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--config-file", str(TINY_CONFIG), "--device", "cpu", "--size", "96",
                 "--vocab", "5", "--runs", "2", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["runs"] == 2 and result["device"] == "cpu" and result["vocab"] == 5
    stages = result["stages_seconds"]
    assert set(stages) == {"CLIP features", "side adapter", "recognition head", "text classifier",
                           "pre/post-processing"}
    # Each network stage was timed (hooks fired), and they leave time for the rest.
    assert all(stages[k] > 0 for k in ("CLIP features", "side adapter", "recognition head"))
    assert stages["pre/post-processing"] > 0
    assert result["peak_memory_gb"] > 0.1  # a Python process with torch loaded
    # The tiny model is a small fraction of the FLOPs of a 640x640 B/16 call (144 GFLOP).
    assert 0 < result["gflops_per_image"] < 1 and result["floor_seconds_per_image"] > 0
    floor = result["floor_seconds_per_image"]
    assert result["floor_ratio"] == result["seconds_per_image_median"] / floor
    assert result["floor_ratio_fastest"] == result["seconds_min"] / floor <= result["floor_ratio"]
    out = capsys.readouterr().out
    assert "images_per_second" in out and "side adapter" in out


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


def test_labels_only_times_the_labels_path(tmp_path, capsys):
    out = tmp_path / "labels.json"
    assert main(["--config-file", str(TINY_CONFIG), "--device", "cpu", "--size", "64",
                 "--vocab", "5", "--runs", "1", "--labels-only", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["labels_only"] is True
    from san_d2.utils.benchmark import _benchmark_inputs

    assert _benchmark_inputs(64, 5, labels_only=True)[0]["labels_only"] is True
    with pytest.raises(SystemExit):
        main(["--config-file", str(TINY_CONFIG), "--train", "--labels-only"])
    assert "--labels-only is for inference" in capsys.readouterr().err


class _AttentionToy(torch.nn.Module):
    """A linear layer (addmm), a product (mm) and unmasked attention over 4 heads."""

    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(64, 96)
        self.register_buffer("out", torch.randn(96, 8))

    def forward(self, inputs):
        x = self.linear(inputs[0]["x"])  # (200, 96)
        heads = x.view(1, 200, 4, 24).transpose(1, 2)
        attended = torch.nn.functional.scaled_dot_product_attention(heads, heads, heads)
        return (attended.transpose(1, 2).reshape(200, 96).relu() @ self.out).sum()


def test_op_account_counts_each_kernel_by_its_shapes():
    from san_d2.utils.op_account import format_op_account, op_account

    account = op_account(_AttentionToy().eval(), [{"x": torch.randn(200, 64)}],
                         matmul_flops_per_second=1e11, calls=2)
    products = 2 * 200 * 64 * 96 + 2 * 200 * 96 * 8  # the linear layer, then the product
    assert account["products"]["gflop"] == pytest.approx(products / 1e9)
    # Q K^T and the weights times V: 2 x (4 heads x 200 queries x 200 keys x 24) each.
    assert account["attention"]["gflop"] == pytest.approx(4 * 4 * 200 * 200 * 24 / 1e9)
    assert account["floor_seconds"] == pytest.approx(
        (account["products"]["gflop"] + account["attention"]["gflop"]) * 1e9 / 1e11)
    ops = {row["op"]: row for row in account["largest"]}
    assert set(ops) == {"addmm", "mm", "_scaled_dot_product_flash_attention_for_cpu"}
    assert ops["addmm"]["calls"] == 1 and ops["addmm"]["shapes"] == "[[96], [200, 64], [64, 96]]"
    assert all(row["seconds"] > 0 and row["seconds_alone"] > 0 for row in ops.values())
    assert account["other_seconds"] > 0  # the view, transposes, relu and sum
    assert account["seconds_if_alone"] == pytest.approx(
        account["products"]["seconds_alone"] + account["attention"]["seconds_alone"]
        + account["other_seconds"])
    assert account["seconds_per_call"] == pytest.approx(
        account["products"]["seconds"] + account["attention"]["seconds"] + account["other_seconds"])
    assert "products" in format_op_account(account)


def test_op_account_from_the_command(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--config-file", str(TINY_CONFIG), "--device", "cpu", "--size", "96",
                 "--vocab", "5", "--runs", "1", "--op-account", "--json", str(out)]) == 0
    account = json.loads(out.read_text())["op_account"]
    assert account["products"]["gflop"] > 0 and account["attention"]["gflop"] > 0
    assert "largest ops" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--config-file", str(TINY_CONFIG), "--device", "cpu", "--dtype", "bf16",
              "--op-account"])
    assert "--op-account profiles float32 inference on the CPU" in capsys.readouterr().err


def test_batches_are_timed_per_image(tmp_path, monkeypatch):
    from san_d2 import get_san_cfg
    from san_d2.utils import benchmark

    cfg = get_san_cfg(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu"])
    model = benchmark.build_benchmark_model(cfg).eval()
    calls = []
    forward = model.forward

    def timed_forward(inputs):
        start = time.perf_counter()
        outputs = forward(inputs)
        calls.append((len(inputs), time.perf_counter() - start))
        return outputs

    monkeypatch.setattr(model, "forward", timed_forward)
    result = benchmark.benchmark_inference(model, size=64, vocab=5, runs=3, batch=3)
    assert [n for n, _ in calls] == [3] * 4 and result["batch_size"] == 3
    timed = sorted(seconds for _, seconds in calls[1:])  # the first call is timed apart
    assert result["seconds_per_image_median"] == pytest.approx(timed[1] / 3, rel=0.2)
    assert result["images_per_second"] == pytest.approx(1 / result["seconds_per_image_median"])
    images = [x["image"] for x in benchmark._benchmark_inputs(64, 5, batch=3)]
    assert torch.equal(images[0], benchmark._benchmark_inputs(64, 5)[0]["image"])
    assert not torch.equal(images[0], images[1])  # three different pictures


def test_against_cpu_compares_with_the_same_weights_on_the_cpu(tmp_path, capsys, monkeypatch):
    from san_d2 import get_san_cfg
    from san_d2.utils import benchmark

    cache = tmp_path / "text"
    cfg = get_san_cfg(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu",
                                         "MODEL.SAN.TEXT_EMBEDDING_CACHE", str(cache)])
    assert benchmark.cpu_deviation(cfg, weights="", size=64, vocab=5) == {
        "max_abs_diff_vs_cpu": 0.0, "argmax_agreement_vs_cpu": 1.0}
    assert not cache.exists()  # each side encoded its own prompts, none were persisted
    built = []
    build = benchmark.build_benchmark_model

    def build_first_with_other_weights(*args):
        model = build(*args)
        if not built:
            torch.nn.init.normal_(model.ov_classifier.bg_embed)
        built.append(model)
        return model

    monkeypatch.setattr(benchmark, "build_benchmark_model", build_first_with_other_weights)
    assert benchmark.cpu_deviation(cfg, weights="", size=64, vocab=5)["max_abs_diff_vs_cpu"] > 0
    assert len(built) == 2
    with pytest.raises(SystemExit):
        main(["--config-file", str(TINY_CONFIG), "--device", "cpu", "--against-cpu"])
    assert "--against-cpu compares inference on --device cuda" in capsys.readouterr().err
