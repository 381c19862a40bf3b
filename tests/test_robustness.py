"""What a careless or hostile user does: kills at random moments, colliding and overlapping
file names, odd pictures, wrong arguments, broken checkpoints, no network."""
import os
import random
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from san_d2 import CheckpointMismatchError, SANCheckpointer, SANPredictor
from san_d2.checkpoint import CheckpointError
from san_d2.model_zoo import list_configs
from san_d2.predictor import load_rgb_image
from san_d2.utils.cli import output_paths
from san_d2_tools.benchmark import main as benchmark_main
from san_d2_tools.demo import main as demo_main
from san_d2_tools.train_net import cli as train_net_cli

from .conftest import REPO_ROOT, TINY_CONFIG, build_tiny_san

VOCABULARY = "sky,grass,road,car"


def _picture(path, size=(40, 60), seed=0):
    rgb = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgb).save(path)
    return rgb


def _demo(tmp_path, inputs, output, *extra):
    return demo_main(["--config-file", str(TINY_CONFIG), "--input", *map(str, inputs),
                      "--vocabulary", VOCABULARY, "--output", str(output), *extra,
                      "--opts", "MODEL.DEVICE", "cpu"])


# -------------------------------------------------------------------- killed at random moments

def _kill_repeatedly(script: str, kills: int, window: float, cwd: Path):
    """Starts ``script`` in a fresh Python ``kills`` times and SIGKILLs it at a random moment
    within ``window`` seconds after it prints "ready" (its imports done)."""
    rng = random.Random(0)
    killed = 0
    for _ in range(kills):
        child = subprocess.Popen([sys.executable, "-c", script], cwd=cwd, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, window))
        if child.poll() is None:
            child.send_signal(signal.SIGKILL)
            killed += 1
        child.wait(timeout=60)
    return killed


@pytest.mark.slow
def test_killed_synthetic_generation_resumes_with_complete_files(tmp_path):
    root = tmp_path / "scenes"
    script = (f"from san_d2.data.synthetic import generate_synthetic_dataset\n"
              f"print('ready', flush=True)\n"
              f"generate_synthetic_dataset({str(root)!r}, num_train=150, num_val=0, size=96)\n")
    killed = _kill_repeatedly(script, kills=8, window=1.5, cwd=tmp_path)
    assert killed >= 6
    labels = sorted((root / "labels" / "train").glob("*.png"))
    for label in labels:  # every file under its final name is complete
        assert np.asarray(Image.open(label)).shape == (96, 96), label
        assert np.asarray(Image.open(root / "images" / "train" / f"{label.stem}.jpg")).shape == (96, 96, 3)
    from san_d2.data.synthetic import generate_synthetic_dataset

    generate_synthetic_dataset(str(root), num_train=150, num_val=0, size=96)
    assert not list(root.rglob("*.tmp"))  # the rerun rewrote what was cut, leftovers too
    fresh = tmp_path / "fresh"
    generate_synthetic_dataset(str(fresh), num_train=150, num_val=0, size=96)
    for label in sorted((fresh / "labels" / "train").glob("*.png")):
        assert np.array_equal(np.asarray(Image.open(label)),
                              np.asarray(Image.open(root / "labels" / "train" / label.name)))


@pytest.mark.slow
def test_killed_checkpoint_saves_leave_loadable_checkpoints(tmp_path):
    script = (f"import torch\n"
              f"from san_d2 import SANCheckpointer\n"
              f"model = torch.nn.Linear(512, 512)\n"
              f"checkpointer = SANCheckpointer(model, {str(tmp_path)!r})\n"
              f"print('ready', flush=True)\n"
              f"for i in range(10 ** 6):\n"
              f"    torch.nn.init.constant_(model.bias, float(i))\n"
              f"    checkpointer.save(f'model_{{i % 3}}', iteration=i)\n")
    killed = _kill_repeatedly(script, kills=8, window=1.0, cwd=tmp_path)
    assert killed == 8
    last = (tmp_path / "last_checkpoint").read_text()
    model = torch.nn.Linear(512, 512)
    checkpoint = SANCheckpointer(model, str(tmp_path)).resume_or_load("", resume=True)
    assert last.startswith("model_") and checkpoint["iteration"] >= 0
    assert torch.all(model.bias == float(checkpoint["iteration"]))
    for path in tmp_path.glob("*.pth"):  # no checkpoint is ever half-written
        torch.load(path, weights_only=True)


def test_a_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    model = torch.nn.Linear(2, 2)
    checkpointer = SANCheckpointer(model, str(tmp_path))
    checkpointer.save("model_final", iteration=1)
    before = (tmp_path / "model_final.pth").read_bytes()

    def disk_full(obj, f):
        f.write(b"partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        checkpointer.save("model_final", iteration=2)
    assert (tmp_path / "model_final.pth").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last_checkpoint", "model_final.pth"]


# -------------------------------------------------------------------- demo output names

def test_results_never_share_a_file_and_mirror_the_input_folders(tmp_path):
    inputs = [tmp_path / "in" / "a" / "x.jpg", tmp_path / "in" / "a" / "x.png",
              tmp_path / "in" / "b" / "x.png", tmp_path / "in" / "b" / "y.jpg"]
    outputs = output_paths(inputs, tmp_path / "out")
    assert [outputs[p].relative_to(tmp_path / "out").as_posix() for p in inputs] == [
        "a/x.jpg.png", "a/x.png.png", "b/x.png", "b/y.png"]


def test_demo_writes_one_result_per_input(tmp_path):
    inputs = [tmp_path / "a" / "x.jpg", tmp_path / "a" / "x.png", tmp_path / "b" / "x.png"]
    for i, path in enumerate(inputs):
        _picture(path, seed=i)
    assert _demo(tmp_path, inputs, tmp_path / "out") == 0
    written = sorted(p.relative_to(tmp_path / "out").as_posix()
                     for p in (tmp_path / "out").rglob("*.png"))
    assert written == ["a/x.jpg.png", "a/x.png.png", "b/x.png"]


@pytest.mark.parametrize("output", ["photos", "photos/a"])
def test_demo_never_writes_among_its_inputs(tmp_path, capsys, output):
    _picture(tmp_path / "photos" / "chelsea.png")
    _picture(tmp_path / "photos" / "a" / "coffee.png")
    before = {p: p.read_bytes() for p in (tmp_path / "photos").rglob("*.png")}
    with pytest.raises(SystemExit) as exit_info:
        _demo(tmp_path, [tmp_path / "photos", tmp_path / "photos" / "a" / "coffee.png"],
              tmp_path / output)
    assert exit_info.value.code == 2 and "among the input pictures" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (tmp_path / "photos").rglob("*.png")} == before


# -------------------------------------------------------------------- odd pictures

def test_sixteen_bit_grey_pictures_keep_their_contrast(tmp_path):
    values = (np.arange(32 * 48).reshape(32, 48) * 42).astype(np.uint16)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    assert Image.open(tmp_path / "grey16.png").mode == "I;16"
    rgb = load_rgb_image(str(tmp_path / "grey16.png"))
    expected = np.rint(values / 257.0).astype(np.uint8)
    assert rgb.dtype == np.uint8 and np.array_equal(rgb, np.repeat(expected[..., None], 3, 2))
    assert np.array_equal(load_rgb_image(values), rgb)


def test_empty_pictures_are_refused():
    with pytest.raises(ValueError, match=r"has no pixels \(0x0\)"):
        load_rgb_image(np.zeros((0, 0, 3), np.uint8))
    predictor = SANPredictor(str(TINY_CONFIG), opts=["MODEL.DEVICE", "cpu"])
    with pytest.raises(ValueError, match=r"has no pixels \(5x0\)"):
        predictor.predict(np.zeros((0, 5, 3), np.uint8), ["sky"])


def test_a_picture_too_large_to_open_is_skipped_not_fatal(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 500)  # > 2x this raises DecompressionBombError
    _picture(tmp_path / "in" / "huge.png", size=(40, 60))
    with monkeypatch.context() as patch:
        patch.setattr(Image, "MAX_IMAGE_PIXELS", None)
        _picture(tmp_path / "in" / "small.png", size=(20, 20))
    with caplog.at_level("ERROR", logger="san_d2"):
        assert _demo(tmp_path, [tmp_path / "in"], tmp_path / "out") == 1
    assert "huge.png is too large to open safely" in caplog.text
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["small.png"]


# -------------------------------------------------------------------- arguments

def test_duplicate_class_names_are_a_usage_error_before_anything_is_built(tmp_path, capsys):
    _picture(tmp_path / "in" / "a.png")
    start = time.perf_counter()
    with pytest.raises(SystemExit) as exit_info:
        demo_main(["--config-file", str(TINY_CONFIG), "--input", str(tmp_path / "in"),
                   "--vocabulary", "sky,sky", "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Duplicate class name 'sky'" in err
    assert "Traceback" not in err and time.perf_counter() - start < 2.0


@pytest.mark.parametrize("flag, value, message", [
    ("--runs", "0", "must be at least 1"), ("--size", "0", "must be at least 32"),
    ("--vocab", "0", "must be at least 1"), ("--vocab", "100000", "at most 966"),
    ("--threads", "x", "not a whole number"), ("--batch-size", "-2", "must be at least 1"),
])
def test_benchmark_arguments_are_checked_by_argparse(capsys, flag, value, message):
    with pytest.raises(SystemExit) as exit_info:
        benchmark_main(["--config-file", str(TINY_CONFIG), flag, value])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        benchmark_main(["--help"])
    out = capsys.readouterr().out
    assert "(default: 640)" in out and "(default: 171)" in out and "(default: 5)" in out


def test_expected_errors_are_one_line_and_tracebacks_need_debug(tmp_path, capsys):
    args = ["--config-file", str(TINY_CONFIG), "--device", "cpu", "--size", "64", "--runs", "1",
            "--opts", "MODEL.SAN.NO_SUCH_KEY", "1"]
    assert benchmark_main(args) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(
        "error: Non-existent key: MODEL.SAN.NO_SUCH_KEY (in the overrides")
    with pytest.raises(KeyError):
        benchmark_main(["--debug", *args])


def test_output_dir_under_a_file_is_one_clear_line(tmp_path, capsys):
    (tmp_path / "results").write_text("a file, not a folder")
    code = train_net_cli(["--config-file", str(TINY_CONFIG), "--eval-only",
                          "OUTPUT_DIR", str(tmp_path / "results" / "run1")])
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert f"error: Cannot use {tmp_path / 'results' / 'run1'} as an output folder: " \
           f"{tmp_path / 'results'} is a file." in err


# -------------------------------------------------------------------- checkpoints

def test_unreadable_checkpoints_say_what_the_file_is(tmp_path):
    model, _ = build_tiny_san()
    checkpointer = SANCheckpointer(model)
    with pytest.raises(FileNotFoundError, match="No checkpoint file .*missing.pth"):
        checkpointer.load(str(tmp_path / "missing.pth"))
    (tmp_path / "empty.pth").write_bytes(b"")
    with pytest.raises(CheckpointError, match=r"empty \(0 bytes\)"):
        checkpointer.load(str(tmp_path / "empty.pth"))
    (tmp_path / "notes.pth").write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match="is not a PyTorch checkpoint .*b'these are not"):
        checkpointer.load(str(tmp_path / "notes.pth"))
    torch.save({"model": {"a": {"b": np.zeros(3)}}}, tmp_path / "nested.pth")
    with pytest.raises(CheckpointError, match=r"'a' is a dict\); expected a state dict of tensors"):
        checkpointer.load(str(tmp_path / "nested.pth"))
    torch.save({"model": model.state_dict()}, tmp_path / "whole.pth")
    data = (tmp_path / "whole.pth").read_bytes()
    (tmp_path / "truncated.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or damaged"):
        checkpointer.load(str(tmp_path / "truncated.pth"))


def test_pickled_code_is_not_run(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'ran'}",))

    torch.save({"model": {}, "extra": Payload()}, tmp_path / "evil.pth")
    model, _ = build_tiny_san()
    with pytest.raises(CheckpointError, match=r"objects \(posix.system\) that san_d2 does not"):
        SANCheckpointer(model).load(str(tmp_path / "evil.pth"))
    assert not (tmp_path / "ran").exists()


def test_inference_ignores_the_loss_buffer_of_another_vocabulary_size(tmp_path):
    trained, _ = build_tiny_san("MODEL.SAN.NUM_CLASSES", "6", seed=3)
    torch.save({"model": trained.state_dict()}, tmp_path / "six_classes.pth")
    predictor = SANPredictor(str(TINY_CONFIG), str(tmp_path / "six_classes.pth"),
                             opts=["MODEL.DEVICE", "cpu"])  # NUM_CLASSES 4
    assert torch.equal(predictor.model.side_adapter_network.query_embed,
                       trained.side_adapter_network.query_embed)
    other, _ = build_tiny_san("MODEL.SIDE_ADAPTER.NUM_QUERIES", "8")
    torch.save({"model": other.state_dict()}, tmp_path / "eight_queries.pth")
    with pytest.raises(CheckpointMismatchError, match="query_embed"):
        SANPredictor(str(TINY_CONFIG), str(tmp_path / "eight_queries.pth"),
                     opts=["MODEL.DEVICE", "cpu"])


# -------------------------------------------------------------------- configs, log, drawings

@pytest.mark.parametrize("name", [n for n in list_configs() if "Base" not in n])
def test_tta_scales_fit_the_configs_data(name):
    from san_d2 import get_san_cfg

    cfg = get_san_cfg(name)
    scales = np.array(cfg.TEST.AUG.MIN_SIZES) / cfg.INPUT.MIN_SIZE_TEST
    assert 0.5 <= scales.min() and scales.max() <= 2.0, (name, list(cfg.TEST.AUG.MIN_SIZES))


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO_ROOT, timeout=300)


def test_import_is_quiet_and_leaves_heavy_optional_modules_unloaded():
    result = _run("import sys, san_d2\n"
                  "print(sorted(m for m in ('open_clip', 'timm', 'scipy.optimize', 'matplotlib')"
                  " if m in sys.modules))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]" and result.stderr == ""


def test_building_the_tiny_model_is_quiet():
    result = _run("import san_d2, torch\nfrom detectron2.modeling import build_model\n"
                  f"build_model(san_d2.get_san_cfg({str(TINY_CONFIG)!r}, ['MODEL.DEVICE', 'cpu']))")
    assert result.returncode == 0, result.stderr
    assert "No pretrained weights loaded" not in result.stderr
    assert "has no VERSION" not in result.stderr + result.stdout


def _glyph_image(char: str) -> np.ndarray:
    from san_d2.utils.visualization import draw_segmentation

    return draw_segmentation(np.zeros((60, 60, 3), np.uint8), np.zeros((60, 60), np.int64), [char])


def test_class_names_in_other_scripts_are_drawn_with_their_glyphs(caplog):
    from san_d2.utils.fonts import _font_file_for

    if _font_file_for("天") is None:  # no font with CJK glyphs here: we say so
        with caplog.at_level("WARNING", logger="san_d2"):
            _glyph_image("天")
        assert "No installed font has glyphs for '天'" in caplog.text
        return
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns "Glyph ... missing from font(s)"
        sky, empty = _glyph_image("天"), _glyph_image("空")
    assert not np.array_equal(sky, empty)  # missing glyphs are all the same box


# -------------------------------------------------------------------- no network

def test_no_network_fails_at_once_and_says_how_to_use_a_local_file(monkeypatch):
    from huggingface_hub import constants

    import san_d2.modeling.clip_loader as clip_loader

    monkeypatch.setattr(clip_loader, "_cached_weights", lambda tag_cfg: None)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    start = time.perf_counter()
    with pytest.raises(clip_loader.CLIPWeightsError,
                       match="HF_HUB_OFFLINE is set.*set MODEL.SAN.CLIP_PRETRAINED_NAME to its path"):
        clip_loader.load_clip("ViT-B/16", "openai")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)

    def unreachable(*args, **kwargs):
        raise OSError("Network is unreachable")

    monkeypatch.setattr(clip_loader.socket, "create_connection", unreachable)
    with pytest.raises(clip_loader.CLIPWeightsError, match="huggingface.co is unreachable"):
        clip_loader.load_clip("ViT-B/16", "openai")
    assert time.perf_counter() - start < 5.0


def test_files_written_atomically_get_the_usual_permissions(tmp_path):
    from san_d2.utils.io import atomic_path, atomic_write

    umask = os.umask(0)
    os.umask(umask)
    with atomic_write(tmp_path / "a.json", "w") as f:
        f.write("{}")
    with atomic_path(tmp_path / "b.onnx") as temporary:
        Path(temporary).write_bytes(b"x")
    plain = tmp_path / "c.txt"
    plain.write_text("x")  # what open() gives: 0o666 less the umask
    for name in ("a.json", "b.onnx"):
        assert (tmp_path / name).stat().st_mode & 0o777 == plain.stat().st_mode & 0o777 \
            == 0o666 & ~umask
