"""The command-line convention shared by the six preparation scripts in datasets/.

Options --datasets-root and --overwrite, defaults shown in --help, and the exit codes: 0 done,
1 a final check failed, 2 a missing or malformed input or a usage error, 130 Ctrl-C.
"""
import importlib.util
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

DATASETS_DIR = Path(__file__).resolve().parents[1] / "datasets"
SCRIPTS = ["prepare_coco_stuff_sem_seg", "prepare_voc_sem_seg", "prepare_ade20k_sem_seg",
           "prepare_pcontext_sem_seg_59cls", "prepare_pcontext_sem_seg_459cls",
           "prepare_ade20k_full_sem_seg"]
INTERRUPTED = "interrupted; re-run to resume"


def load(name):
    spec = importlib.util.spec_from_file_location(f"_cli_{name}", DATASETS_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def run_script(name, *args, **popen_kwargs):
    return subprocess.run([sys.executable, str(DATASETS_DIR / f"{name}.py"), *args],
                          capture_output=True, text=True, timeout=120, **popen_kwargs)


def help_text(name, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load(name).main(["--help"])
    assert exit_info.value.code == 0
    return capsys.readouterr().out


@pytest.mark.parametrize("name", SCRIPTS)
def test_help_shows_common_options_and_every_default(name, capsys):
    text = help_text(name, capsys)
    assert "--datasets-root DIR" in text and "--overwrite" in text
    assert "$DETECTRON2_DATASETS, else ./datasets" in " ".join(text.split())
    options = text.split("\noptions:\n", 1)[1]
    entries = re.split(r"\n(?=  -)", options.strip("\n"))
    assert len(entries) >= 3
    for entry in entries:
        if not entry.lstrip().startswith("-h"):
            assert "(default" in " ".join(entry.split()), entry


@pytest.mark.parametrize("name", SCRIPTS)
def test_positional_root_is_a_usage_error(name, tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        load(name).main([str(tmp_path)])
    assert exit_info.value.code == 2
    assert "unrecognized arguments" in capsys.readouterr().err


@pytest.mark.parametrize("name", SCRIPTS)
def test_missing_input_exits_2_with_one_error_line(name, tmp_path):
    result = run_script(name, "--datasets-root", str(tmp_path))
    assert result.returncode == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: missing folder {tmp_path}/")
    assert "download" in lines[0]
    assert not any(tmp_path.iterdir())  # nothing written


def test_failed_count_check_exits_1(tmp_path, capsys):
    common = load("_prepare_common")
    claims_to_write = common.Conversion(outputs=lambda job: (tmp_path / job,),
                                        convert=lambda job: True, inputs="jobs")
    assert common.convert_splits({"train": ["a", "b"]}, claims_to_write, overwrite=False) == 1
    assert ("error: train: 2 jobs, 2 seen, 2 written + 0 existing + 0 all-ignore, "
            "0 with all their outputs on disk") in capsys.readouterr().err


# ----------------------------------------------------------------------------- Ctrl-C

NUM_LABELS = 1000  # about two seconds of work: far more than the time the signal takes


def coco_fixture(root):
    """COCO-Stuff raw labels: NUM_LABELS copies of one label in train2017, one in val2017."""
    train_dir = root / "coco" / "stuffthingmaps" / "train2017"
    val_dir = root / "coco" / "stuffthingmaps" / "val2017"
    train_dir.mkdir(parents=True)
    val_dir.mkdir(parents=True)
    raw = np.random.default_rng(0).integers(0, 182, (128, 128)).astype(np.uint8)
    Image.fromarray(raw).save(val_dir / "000000000000.png")
    for i in range(NUM_LABELS):
        shutil.copyfile(val_dir / "000000000000.png", train_dir / f"{i:012d}.png")
    return raw


def start_interruptible(args):
    # A child inherits an ignored SIGINT (e.g. from a background job), and Python then never
    # raises KeyboardInterrupt: restore the default so that it installs its handler.
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for_first(folder, pattern, process, timeout=60):
    deadline = time.monotonic() + timeout
    while not (folder.is_dir() and any(folder.glob(pattern))):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no output appeared"
        time.sleep(0.005)


def is_progress_bar(line):
    return re.search(r"\d+/\d+ \[", line) is not None


@pytest.mark.skipif(sys.platform == "win32", reason="sends SIGINT")
def test_ctrl_c_exits_130_and_a_rerun_resumes(tmp_path):
    name = "prepare_coco_stuff_sem_seg"
    raw = coco_fixture(tmp_path)
    out_dir = tmp_path / "coco" / "stuffthingmaps_detectron2" / "train2017"
    process = start_interruptible([sys.executable, str(DATASETS_DIR / f"{name}.py"),
                                   "--datasets-root", str(tmp_path)])
    wait_for_first(out_dir, "*.png", process)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)

    assert process.returncode == 130
    assert "Traceback" not in stderr
    messages = [line for line in re.split(r"[\r\n]", stderr) if line and not is_progress_bar(line)]
    assert messages == [INTERRUPTED]
    finished = sorted(out_dir.iterdir())
    assert 0 < len(finished) < NUM_LABELS
    assert all(path.suffix == ".png" for path in finished)  # no temporary file left
    expected = load(name).convert_label(raw)
    for path in finished:  # every file under its final name is complete
        with Image.open(path) as image:
            np.testing.assert_array_equal(np.array(image), expected)

    rerun = run_script(name, "--datasets-root", str(tmp_path))
    assert rerun.returncode == 0, rerun.stderr
    assert (f"train2017: {NUM_LABELS} raw labels seen, {NUM_LABELS - len(finished)} written, "
            f"{len(finished)} skipped as existing") in rerun.stdout
    outputs = sorted(out_dir.iterdir())
    assert [path.name for path in outputs] == [f"{i:012d}.png" for i in range(NUM_LABELS)]
    reference = finished[0].read_bytes()
    assert all(path.read_bytes() == reference for path in outputs)
