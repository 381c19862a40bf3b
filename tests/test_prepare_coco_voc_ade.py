"""The COCO-Stuff, VOC and ADE20K-150 preparation scripts in datasets/, on tiny raw fixtures.

The expected train ids are computed here from the benchmarks' label rules, written out below
independently of the scripts.
"""
import importlib.util
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]

EVERY_BYTE = np.arange(256, dtype=np.uint8).reshape(16, 16)


def _load_script(name):
    spec = importlib.util.spec_from_file_location(name, REPO_ROOT / "datasets" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def coco():
    return _load_script("prepare_coco_stuff_sem_seg")


@pytest.fixture(scope="module")
def voc():
    return _load_script("prepare_voc_sem_seg")


@pytest.fixture(scope="module")
def ade():
    return _load_script("prepare_ade20k_sem_seg")


def _save_png(array, path, palette=False):
    path.parent.mkdir(parents=True, exist_ok=True)
    if palette:  # the official VOC labels are palette PNGs; their indices are the values
        image = Image.frombytes("P", array.shape[::-1], np.ascontiguousarray(array).tobytes())
        image.putpalette(np.random.default_rng(0).integers(0, 256, 768).tolist())
    else:
        image = Image.fromarray(array)
    image.save(path)


def _read_png(path):
    with Image.open(path) as image:
        assert image.mode == "L"
        return np.array(image)


def _snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*.png"))}


SUMMARY = re.compile(r"^(\S+): (\d+) .* seen, (\d+) written, (\d+) skipped as existing"
                     r"(?:, (\d+) skipped as all-ignore)?$", re.MULTILINE)


def _summaries(out):
    """{split: (seen, written, existing, all-ignore)} from the summary lines of a run."""
    return {m[1]: tuple(int(n or 0) for n in m.groups()[1:]) for m in SUMMARY.finditer(out)}


# Rules, written independently of the scripts ---------------------------------------------------

# COCO's 80 thing classes have ids 1..90 without these ten; its 91 stuff classes have 92..182.
RETIRED_COCO_THING_IDS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}
COCO_IDS = [i for i in range(1, 91) if i not in RETIRED_COCO_THING_IDS] + list(range(92, 183))


def _coco_expected(raw):
    """stuffthingmaps hold COCO id - 1; the 171 classes get their rank in ascending id order."""
    assert len(COCO_IDS) == 171
    rank = {coco_id - 1: i for i, coco_id in enumerate(COCO_IDS)}
    return np.vectorize(lambda v: rank.get(int(v), 255), otypes=[np.uint8])(raw)


def _voc_expected(raw):
    return np.vectorize(lambda v: v - 1 if 1 <= v <= 20 else 255, otypes=[np.uint8])(raw)


def _ade_expected(raw):
    return np.vectorize(lambda v: (int(v) - 1) % 256, otypes=[np.uint8])(raw)


# Fixtures in the publishers' raw formats ----------------------------------------------------------

def _coco_fixture(root):
    """stuffthingmaps: raw = COCO id - 1, 255 unlabeled. Returns {split: {name: raw or None}}."""
    rng = np.random.default_rng(1)
    raw = {
        "train2017": {
            "000000000009": EVERY_BYTE,
            "000000000025": np.full((5, 7), 255, np.uint8),  # unlabeled everywhere
            # only values COCO never uses (plus unlabeled): converts to all-ignore
            "000000000030": np.array([[11, 25, 90], [82, 255, 200]], np.uint8),
        },
        "val2017": {
            "000000000139": rng.choice([0, 10, 12, 91, 181, 182, 255], (9, 11)).astype(np.uint8),
        },
    }
    for split, labels in raw.items():
        for name, array in labels.items():
            _save_png(array, root / "coco" / "stuffthingmaps" / split / f"{name}.png")
    for split in raw:  # images: one without a label, to be reported
        (root / "coco" / split).mkdir(parents=True)
        for name in [*raw[split], "000000999999"]:
            (root / "coco" / split / f"{name}.jpg").write_bytes(b"")
    return {split: {name: (None if name in ("000000000025", "000000000030") else array)
                    for name, array in labels.items()} for split, labels in raw.items()}


def _voc_fixture(root):
    voc_dir = root / "VOC2012"
    rng = np.random.default_rng(2)
    raw = {
        "train": {
            "2007_000032": (EVERY_BYTE, True),
            "2008_000002": (rng.choice([0, 1, 15, 20, 21, 255], (8, 6)).astype(np.uint8), False),
            "2008_000003": (np.zeros((4, 4), np.uint8), False),  # background only
            "2008_000004": (np.array([[0, 255], [21, 254]], np.uint8), True),  # nothing to learn
        },
        "val": {"2007_000033": (rng.choice([0, 5, 255], (6, 8)).astype(np.uint8), True)},
    }
    for split, labels in raw.items():
        for image_id, (array, palette) in labels.items():
            _save_png(array, voc_dir / "SegmentationClassAug" / f"{image_id}.png", palette)
        (voc_dir / f"{split}.txt").write_text("".join(f"{i}\n" for i in labels))
    # an unlisted label is not converted
    _save_png(EVERY_BYTE, voc_dir / "SegmentationClassAug" / "2011_000001.png")
    return {split: {i: (None if i in ("2008_000003", "2008_000004") else array)
                    for i, (array, _) in labels.items()} for split, labels in raw.items()}


def _ade_fixture(root):
    ade_dir = root / "ADEChallengeData2016"
    rng = np.random.default_rng(3)
    raw = {
        "training": {
            "ADE_train_00000001": EVERY_BYTE,
            "ADE_train_00000002": np.zeros((5, 3), np.uint8),  # all "other": still written
        },
        "validation": {"ADE_val_00000001": rng.integers(0, 151, (7, 9)).astype(np.uint8)},
    }
    for split, labels in raw.items():
        for name, array in labels.items():
            _save_png(array, ade_dir / "annotations" / split / f"{name}.png")
            (ade_dir / "images" / split).mkdir(parents=True, exist_ok=True)
            (ade_dir / "images" / split / f"{name}.jpg").write_bytes(b"")
    return raw


CASES = {
    # fixture builder, expected rule, output folder, raw folder, archive names (for --help)
    "coco": (_coco_fixture, _coco_expected, "coco/stuffthingmaps_detectron2",
             "coco/stuffthingmaps", ["train2017.zip", "val2017.zip",
                                     "stuffthingmaps_trainval2017.zip"]),
    "voc": (_voc_fixture, _voc_expected, "VOC2012/annotations_detectron2",
            "VOC2012/SegmentationClassAug", ["VOCtrainval_11-May-2012.tar",
                                             "SegmentationClassAug.zip", "trainaug.txt",
                                             "train.txt"]),
    "ade": (_ade_fixture, _ade_expected, "ADEChallengeData2016/annotations_detectron2",
            "ADEChallengeData2016/annotations", ["ADEChallengeData2016.zip"]),
}


@pytest.fixture(params=sorted(CASES))
def case(request, tmp_path):
    """(script module, datasets root with the raw fixture, expected outputs, case tuple)."""
    build, rule, out_rel, raw_rel, archives = CASES[request.param]
    script = request.getfixturevalue(request.param)
    raw = build(tmp_path)
    expected = {split: {name: (None if array is None else rule(array))
                        for name, array in labels.items()} for split, labels in raw.items()}
    return script, tmp_path, expected, (out_rel, raw_rel, archives)


# Tests common to the three scripts -------------------------------------------------------------

def _root(path):
    return ["--datasets-root", str(path)]


def test_converts_pixel_by_pixel_and_skips_all_ignore(case, capsys):
    script, root, expected, (out_rel, _, _) = case
    assert script.main(_root(root)) == 0
    out_dir = root / out_rel
    for split, labels in expected.items():
        written = {p.stem for p in (out_dir / split).glob("*.png")}
        assert written == {name for name, label in labels.items() if label is not None}
        for name in written:
            np.testing.assert_array_equal(_read_png(out_dir / split / f"{name}.png"), labels[name])
    assert [p.suffix for p in out_dir.rglob("*") if p.is_file()] == [".png"] * sum(
        label is not None for labels in expected.values() for label in labels.values())
    summaries = _summaries(capsys.readouterr().out)
    for split, labels in expected.items():
        n_empty = sum(label is None for label in labels.values())
        assert summaries[split] == (len(labels), len(labels) - n_empty, 0, n_empty)


def test_rerun_resumes_and_overwrite_rewrites(case, capsys):
    script, root, expected, (out_rel, _, _) = case
    assert script.main(_root(root)) == 0
    out_dir = root / out_rel
    before = _snapshot(out_dir)
    first_split = next(iter(expected))
    kept = next(name for name, label in expected[first_split].items() if label is not None)
    marked = out_dir / first_split / f"{kept}.png"
    Image.fromarray(np.full((2, 2), 7, np.uint8)).save(marked)  # stands for an earlier result
    capsys.readouterr()

    assert script.main(_root(root)) == 0
    summaries = _summaries(capsys.readouterr().out)
    for split, labels in expected.items():
        n_empty = sum(label is None for label in labels.values())
        assert summaries[split] == (len(labels), 0, len(labels) - n_empty, n_empty)
    after = _snapshot(out_dir)
    assert after.keys() == before.keys()
    assert all(after[n] == before[n] for n in after if n != marked.name)
    np.testing.assert_array_equal(_read_png(marked), np.full((2, 2), 7))  # not rewritten

    assert script.main([*_root(root), "--overwrite"]) == 0
    np.testing.assert_array_equal(_read_png(marked), expected[first_split][kept])
    assert _snapshot(out_dir).keys() == before.keys()


def test_help_names_the_raw_downloads(case, capsys):
    script, _, _, (_, _, archives) = case
    with pytest.raises(SystemExit) as exit_info:
        script.main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for archive in archives:
        assert archive in text
    assert "--datasets-root" in text and "--overwrite" in text and "DETECTRON2_DATASETS" in text


def test_missing_raw_folder_fails_naming_it(case, capsys):
    script, root, _, (out_rel, raw_rel, archives) = case
    missing = root / raw_rel
    for path in sorted(missing.rglob("*"), reverse=True):
        path.unlink() if path.is_file() else path.rmdir()
    missing.rmdir()
    assert script.main(_root(root)) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and error.count("\n") == 1
    assert str(missing) in error and any(archive in error for archive in archives)
    assert not (root / out_rel).exists()  # nothing converted before the check


def test_root_defaults_to_detectron2_datasets(case, monkeypatch, capsys):
    script, root, expected, (out_rel, _, _) = case
    monkeypatch.setenv("DETECTRON2_DATASETS", str(root))
    assert script.main([]) == 0
    assert len(list((root / out_rel).rglob("*.png"))) == sum(
        label is not None for labels in expected.values() for label in labels.values())


# Script-specific behaviour -------------------------------------------------------------------

def test_coco_label_table(coco):
    raw = np.array([[-1, 0, 11, 12], [181, 182, 255, 256]], dtype=np.int32)
    np.testing.assert_array_equal(coco.convert_label(raw),
                                  [[255, 0, 255, 11], [170, 255, 255, 255]])
    np.testing.assert_array_equal(coco.convert_label(EVERY_BYTE), _coco_expected(EVERY_BYTE))
    assert coco.convert_label(EVERY_BYTE).dtype == np.uint8


def test_coco_reports_images_without_label(coco, tmp_path, capsys):
    _coco_fixture(tmp_path)
    assert coco.main(_root(tmp_path)) == 0
    out = capsys.readouterr().out
    assert "1 images have no label, e.g. 000000999999" in out


def test_coco_fails_when_nothing_is_converted(coco, tmp_path, capsys):
    for split in ("train2017", "val2017"):
        _save_png(np.full((3, 3), 255, np.uint8),
                  tmp_path / "coco" / "stuffthingmaps" / split / "000000000001.png")
    assert coco.main(_root(tmp_path)) == 1
    error = capsys.readouterr().err
    assert "error: train2017: nothing converted (all 1 raw labels are entirely ignore)" in error
    assert "error: val2017: nothing converted" in error


def test_coco_empty_split_folder_fails(coco, tmp_path, capsys):
    _coco_fixture(tmp_path)
    val_dir = tmp_path / "coco" / "stuffthingmaps" / "val2017"
    for path in val_dir.iterdir():
        path.unlink()
    assert coco.main(_root(tmp_path)) == 2
    assert str(val_dir) in capsys.readouterr().err


def test_voc_label_table(voc):
    raw = np.array([[0, 1, 20, 21], [254, 255, 256, -3]], dtype=np.int64)
    np.testing.assert_array_equal(voc.convert_label(raw),
                                  [[255, 0, 19, 255], [255, 255, 255, 255]])
    np.testing.assert_array_equal(voc.convert_label(EVERY_BYTE), _voc_expected(EVERY_BYTE))


def test_voc_unlisted_labels_are_not_converted(voc, tmp_path):
    _voc_fixture(tmp_path)
    assert voc.main(_root(tmp_path)) == 0
    assert not list((tmp_path / "VOC2012" / "annotations_detectron2").rglob("2011_000001.png"))


@pytest.mark.parametrize("missing", ["train.txt", "val.txt", "listed label"])
def test_voc_missing_list_or_label_fails_naming_it(voc, tmp_path, capsys, missing):
    _voc_fixture(tmp_path)
    voc_dir = tmp_path / "VOC2012"
    if missing == "listed label":
        path = voc_dir / "SegmentationClassAug" / "2007_000033.png"
    else:
        path = voc_dir / missing
    path.unlink()
    assert voc.main(_root(tmp_path)) == 2
    error = capsys.readouterr().err
    assert str(path) in error
    assert ("trainaug" if missing == "train.txt" else
            "VOCtrainval_11-May-2012.tar" if missing == "val.txt" else
            "SegmentationClassAug.zip") in error


def test_voc_root_given_as_voc2012_gets_advice(voc, tmp_path, capsys):
    _voc_fixture(tmp_path)
    assert voc.main(_root(tmp_path / "VOC2012")) == 2
    assert "not VOC2012 itself" in capsys.readouterr().err


def test_ade_label_rule(ade):
    np.testing.assert_array_equal(ade.convert_label(EVERY_BYTE), _ade_expected(EVERY_BYTE))
    assert ade.convert_label(EVERY_BYTE).dtype == np.uint8
    with pytest.raises(ValueError, match="uint8"):
        ade.convert_label(EVERY_BYTE.astype(np.uint16))


def test_ade_rejects_16_bit_annotation(ade, tmp_path, capsys):
    _ade_fixture(tmp_path)
    bad = tmp_path / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000002.png"
    Image.fromarray(np.full((4, 4), 300, np.uint16)).save(bad)
    with Image.open(bad) as image:
        assert np.array(image).dtype != np.uint8  # the fixture really is 16-bit
    assert ade.main(_root(tmp_path)) == 2
    error = capsys.readouterr().err
    assert str(bad) in error and "uint8" in error
