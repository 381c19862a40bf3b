"""The Pascal Context 59/459 and ADE20K-847 preparation scripts (datasets/prepare_*.py).

Every fixture is generated here in the raw formats (VOC JPEGs, Pascal-Context ``.mat`` files
with a uint16 ``LabelMap``, a trainval_merged-style JSON, ADE ``_seg.png`` files and an index
pickle); expected outputs are computed here from the benchmarks' rules, independently of the
scripts: PC-59 keeps the 59 benchmark classes, ranked by their id in the 459-class numbering;
PC-459 is LabelMap - 1; ADE-847 maps the raw ids of MaskFormer's table to their position in it.
"""
import hashlib
import importlib.util
import io
import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from san_d2.data import load_labelset

scipy_io = pytest.importorskip("scipy.io")
cv2 = pytest.importorskip("cv2")

REPO = Path(__file__).resolve().parents[1]
DATASETS_DIR = REPO / "datasets"


def _pc59_ids():
    """The ids (labels.txt numbering, 1-based) of the PC-59 classes, in PC-59 train-id order.

    Found by name in san_d2's 459-class list, whose entry k - 1 is class k; the benchmark calls
    class 397 "table" "diningtable".
    """
    names_459 = load_labelset("pcontext_459")
    return [names_459.index("table" if name == "diningtable" else name) + 1
            for name in load_labelset("pcontext_59")]


PC59_IDS = _pc59_ids()
# Checksums of the table of MaskFormer's datasets/prepare_ade20k_full_sem_seg.py: its 847 raw ids
# as decimals joined by ",", and its names joined by newlines.
ADE847_IDS_SHA256 = "bcfc1752c4119012ed706b14f893526e479b90d0a6c2fe32ecaa1ad61e87bd0b"
ADE847_NAMES_SHA256 = "ee311c5f3b780a16a58f40726927f6c41149860a5fca6c1116ea1dca129efd8b"


def load_script(name):
    """Import datasets/<name>.py by path (the scripts are not a package)."""
    path = DATASETS_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_prep_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def pc59():
    return load_script("prepare_pcontext_sem_seg_59cls")


@pytest.fixture(scope="module")
def pc459():
    return load_script("prepare_pcontext_sem_seg_459cls")


@pytest.fixture(scope="module")
def ade():
    return load_script("prepare_ade20k_full_sem_seg")


# ----------------------------------------------------------------------------- Pascal Context

PC_TRAIN = ["2008_000002", "2008_000003", "2009_000010"]
PC_VAL = ["2008_000008", "2010_000001"]
PC_TEST = ["2008_000099"]  # a phase that must be ignored


def random_label_map(rng, h, w):
    """A LabelMap with 0, every PC-59 id, non-PC-59 ids and the extreme 459."""
    values = np.array([0, 1, 3, 459, 100, 396, 398] + PC59_IDS, dtype=np.uint16)
    lm = rng.choice(values, size=(h, w)).astype(np.uint16)
    lm[0, :len(values)] = values[: min(w, len(values))]
    return lm


def write_jpeg(path, rng, w, h):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path, format="JPEG")


@pytest.fixture()
def pc_raw(tmp_path):
    """datasets/VOCdevkit/VOC2010 with JPEGImages, trainval/*.mat and trainval_merged.json."""
    rng = np.random.default_rng(0)
    root = tmp_path / "datasets"
    voc = root / "VOCdevkit" / "VOC2010"
    maps = {}
    images = []
    for i, name in enumerate(PC_TRAIN + PC_VAL + PC_TEST):
        h, w = 20 + i, 70 + 3 * i
        write_jpeg(voc / "JPEGImages" / f"{name}.jpg", rng, w, h)
        lm = random_label_map(rng, h, w)
        (voc / "trainval").mkdir(parents=True, exist_ok=True)
        scipy_io.savemat(str(voc / "trainval" / f"{name}.mat"), {"LabelMap": lm})
        maps[name] = lm
        phase = "train" if name in PC_TRAIN else "val" if name in PC_VAL else "test"
        images.append({"file_name": f"{name}.jpg", "image_id": int(name.replace("_", "")),
                       "phase": phase, "height": h, "width": w,
                       "date_captured": "31-May-2015 17:44:04"})
    # A JPEG that no split lists: must not be converted.
    write_jpeg(voc / "JPEGImages" / "2007_000027.jpg", rng, 30, 20)
    detail = {"info": {}, "images": images, "categories": [], "annos_segmentation": [],
              "annos_occlusion": [], "annos_boundary": [], "annos_joints": [], "parts": []}
    (voc / "trainval_merged.json").write_text(json.dumps(detail), encoding="utf-8")
    return {"root": root, "voc": voc, "maps": maps}


def expected_59(lm):
    ranks = {raw: k for k, raw in enumerate(sorted(PC59_IDS))}
    out = np.full(lm.shape, 255, dtype=np.uint8)
    for (y, x), v in np.ndenumerate(lm):
        out[y, x] = ranks.get(int(v), 255)
    return out


def expected_459(lm):
    out = np.empty(lm.shape, dtype=np.int64)
    for (y, x), v in np.ndenumerate(lm):
        out[y, x] = 65535 if v == 0 else int(v) - 1
    return out


def test_pc59_ids_are_the_benchmark_classes_in_train_id_order(pc59):
    assert len(set(PC59_IDS)) == 59
    # Ranking the ids in ascending order gives the benchmark's class order.
    assert PC59_IDS == sorted(PC59_IDS)
    assert sorted(pc59.PC59_IDS_459) == PC59_IDS


def test_convert_label_59_every_value(pc59):
    lm = np.arange(460, dtype=np.uint16).reshape(20, 23)
    out = pc59.convert_label_59(lm)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, expected_59(lm))
    assert out[0, 0] == 255 and out[0, 2] == 0 and out.ravel()[458] == 58


def test_convert_label_459_every_value(pc459):
    lm = np.arange(460, dtype=np.uint16).reshape(20, 23)
    out = pc459.convert_label_459(lm)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out.astype(np.int64), expected_459(lm))
    assert out[0, 0] == 65535 and out.ravel()[459] == 458


@pytest.mark.parametrize("script", ["pc59", "pc459"])
def test_pc_rejects_label_map_out_of_range(script, request, pc_raw, capsys):
    module = request.getfixturevalue(script)
    bad = pc_raw["voc"] / "trainval" / f"{PC_VAL[0]}.mat"
    label_map = pc_raw["maps"][PC_VAL[0]].copy()
    label_map[0, 0] = 460
    scipy_io.savemat(str(bad), {"LabelMap": label_map})
    assert module.main(["--datasets-root", str(pc_raw["root"])]) == 2
    error = capsys.readouterr().err
    last_line = error.splitlines()[-1]  # after the progress bar
    assert last_line.startswith(f"error: {bad}: ") and "0..459" in last_line


def test_pc59_main_from_detail_json(pc59, pc_raw, capsys):
    root = pc_raw["root"]
    assert pc59.main(["--datasets-root", str(root)]) == 0
    out = root / "pcontext"
    for split, names in (("train", PC_TRAIN), ("val", PC_VAL)):
        assert sorted(p.stem for p in (out / split / "image").iterdir()) == names
        assert sorted(p.stem for p in (out / split / "label").iterdir()) == names
        for name in names:
            src = pc_raw["voc"] / "JPEGImages" / f"{name}.jpg"
            assert (out / split / "image" / f"{name}.jpg").read_bytes() == src.read_bytes()
            with Image.open(out / split / "label" / f"{name}.png") as im:
                assert im.format == "PNG" and im.mode == "L"
                label = np.array(im)
            np.testing.assert_array_equal(label, expected_59(pc_raw["maps"][name]))
    assert not (out / "test").exists()
    summary = capsys.readouterr().out
    assert "train: 3 images seen, 3 written, 0 skipped as existing\n" in summary
    assert "val: 2 images seen, 2 written, 0 skipped as existing\n" in summary


def test_pc59_main_from_list_files(pc59, pc_raw, tmp_path):
    root = pc_raw["root"]
    (pc_raw["voc"] / "trainval_merged.json").unlink()
    train_list = tmp_path / "train.txt"
    val_list = tmp_path / "val.txt"
    train_list.write_text("2008_000002\n2009_000010.jpg\n\n", encoding="utf-8")
    val_list.write_text("2010_000001\n", encoding="utf-8")
    argv = ["--datasets-root", str(root), "--train-list", str(train_list),
            "--val-list", str(val_list), "--output", str(tmp_path / "pc59")]
    assert pc59.main(argv) == 0
    assert sorted(p.name for p in (tmp_path / "pc59/train/label").iterdir()) == [
        "2008_000002.png", "2009_000010.png"]
    assert [p.name for p in (tmp_path / "pc59/val/label").iterdir()] == ["2010_000001.png"]


def test_pc459_main_tiff_uint16(pc459, pc_raw, capsys):
    root = pc_raw["root"]
    assert pc459.main(["--datasets-root", str(root)]) == 0
    out = root / "pcontext_full"
    for split, names in (("train", PC_TRAIN), ("val", PC_VAL)):
        assert sorted(p.name for p in (out / split / "label").iterdir()) == [
            f"{n}.tif" for n in names]
        for name in names:
            src = pc_raw["voc"] / "JPEGImages" / f"{name}.jpg"
            assert (out / split / "image" / f"{name}.jpg").read_bytes() == src.read_bytes()
            with Image.open(out / split / "label" / f"{name}.tif") as im:
                assert im.format == "TIFF" and im.mode == "I;16"
                label = np.array(im)
            assert label.dtype == np.uint16
            expected = expected_459(pc_raw["maps"][name])
            np.testing.assert_array_equal(label.astype(np.int64), expected)
            assert (label == 65535).any()  # unlabeled pixels read back as the ignore value
            # The evaluator's read: np.array(Image.open(f), dtype=int) keeps 65535.
            with Image.open(out / split / "label" / f"{name}.tif") as im:
                assert np.array_equal(np.array(im, dtype=int), expected)
    assert "val: 2 images seen, 2 written" in capsys.readouterr().out


@pytest.mark.parametrize("script", ["pc59", "pc459"])
def test_pc_resumable(script, request, pc_raw, capsys):
    module = request.getfixturevalue(script)
    root = pc_raw["root"]
    sub, ext = ("pcontext", "png") if script == "pc59" else ("pcontext_full", "tif")
    assert module.main(["--datasets-root", str(root)]) == 0
    label = root / sub / "train" / "label" / f"{PC_TRAIN[0]}.{ext}"
    good = label.read_bytes()
    label.write_bytes(b"stale")
    (root / sub / "val" / "image" / f"{PC_VAL[0]}.jpg").unlink()  # half-done image: redone
    capsys.readouterr()
    assert module.main(["--datasets-root", str(root)]) == 0
    summary = capsys.readouterr().out
    assert "train: 3 images seen, 0 written, 3 skipped as existing\n" in summary
    assert "val: 2 images seen, 1 written, 1 skipped as existing\n" in summary
    assert label.read_bytes() == b"stale"
    assert (root / sub / "val" / "image" / f"{PC_VAL[0]}.jpg").is_file()
    assert module.main(["--datasets-root", str(root), "--overwrite"]) == 0
    summary = capsys.readouterr().out
    assert "train: 3 images seen, 3 written, 0 skipped as existing\n" in summary
    assert "val: 2 images seen, 2 written, 0 skipped as existing\n" in summary
    assert label.read_bytes() == good


@pytest.mark.parametrize("script", ["pc59", "pc459"])
def test_pc_missing_inputs(script, request, pc_raw, tmp_path, capsys):
    module = request.getfixturevalue(script)
    root, voc = pc_raw["root"], pc_raw["voc"]

    def fails_naming(*parts):
        assert module.main(["--datasets-root", str(root)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert all(part in err for part in parts), err

    root = tmp_path / "nowhere"
    fails_naming(str(root / "VOCdevkit" / "VOC2010" / "JPEGImages"), "VOCtrainval_03-May-2010.tar")

    root = pc_raw["root"]
    missing_mat = voc / "trainval" / f"{PC_VAL[1]}.mat"
    missing_mat.unlink()
    fails_naming(str(missing_mat), "trainval.tar.gz")

    missing_jpeg = voc / "JPEGImages" / f"{PC_TRAIN[1]}.jpg"
    missing_jpeg.unlink()
    fails_naming(str(missing_jpeg), "VOCtrainval_03-May-2010.tar")

    (voc / "trainval_merged.json").unlink()
    fails_naming(str(voc / "trainval_merged.json"), "--train-list")

    shutil.rmtree(voc / "trainval")
    fails_naming(str(voc / "trainval"), "trainval.tar.gz")


def test_pc_nothing_to_convert_fails(pc59, pc_raw, tmp_path, capsys):
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    argv = ["--datasets-root", str(pc_raw["root"]), "--train-list", str(empty),
            "--val-list", str(empty)]
    assert pc59.main(argv) == 1
    error = capsys.readouterr().err
    assert "error: train: nothing converted (no images)" in error
    assert "error: val: nothing converted (no images)" in error


def test_pc_needs_both_list_files(pc59, pc_raw, tmp_path, capsys):
    names = tmp_path / "train.txt"
    names.write_text("2008_000002\n", encoding="utf-8")
    assert pc59.main(["--datasets-root", str(pc_raw["root"]), "--train-list", str(names)]) == 2
    assert "--val-list" in capsys.readouterr().err


def test_pc_help_names_downloads(pc59, pc459, capsys):
    for module in (pc59, pc459):
        with pytest.raises(SystemExit) as exc:
            module.main(["--help"])
        assert exc.value.code == 0
        text = capsys.readouterr().out
        for raw in ("VOCtrainval_03-May-2010.tar", "trainval_merged.json", "trainval.tar.gz",
                    "JPEGImages"):
            assert raw in text


# ----------------------------------------------------------------------------- ADE20K-847

def table_rows():
    return json.loads((DATASETS_DIR / "ade20k_847_classes.json").read_text(encoding="utf-8"))


def test_ade847_table_is_exact():
    rows = table_rows()
    assert len(rows) == 847
    names = [r[0] for r in rows]
    ids = [r[1] for r in rows]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 847
    assert hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest() == ADE847_IDS_SHA256
    assert hashlib.sha256("\n".join(names).encode()).hexdigest() == ADE847_NAMES_SHA256
    assert rows[0] == ["wall", 2978] and rows[1] == ["building, edifice", 312]
    assert rows[2] == ["sky", 2420]
    assert rows[846] == ["adding machine, totalizer, totaliser", 3148]


def test_ade847_table_matches_packaged_class_names():
    assert tuple(r[0] for r in table_rows()) == load_labelset("ade20k_847")


def test_ade_script_checks_table_hash(ade, tmp_path, capsys):
    rows = table_rows()
    rows[3], rows[4] = rows[4], rows[3]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(rows), encoding="utf-8")
    assert ade.main(["--datasets-root", str(tmp_path), "--class-table", str(bad)]) == 2
    assert "SHA-256" in capsys.readouterr().err
    assert len(ade.load_class_table()) == 847


def test_target_size_rule(ade):
    assert ade.target_size(1000, 600) == (853, 512)
    assert ade.target_size(600, 1000) == (512, 853)
    assert ade.target_size(400, 300) == (400, 300)
    assert ade.target_size(513, 513) == (512, 512)
    assert ade.target_size(1000, 512) == (1000, 512)  # h not > 512: unchanged
    assert ade.target_size(512, 1000) == (512, 1000)
    assert ade.target_size(2000, 1500) == (683, 512)  # round(682.67)


def test_ade_class_map_truncates(ade):
    seg = np.zeros((1, 4, 3), dtype=np.uint8)
    seg[0, :, 0] = [0, 9, 119, 255]  # R / 10 -> 0, 0, 11, 25
    seg[0, :, 1] = [5, 7, 162, 255]
    seg[0, :, 2] = 200  # B (instances) is ignored
    out = ade.ade_class_map(seg)
    assert out.dtype == np.int32
    assert out.tolist() == [[5, 7, 11 * 256 + 162, 25 * 256 + 255]]


def test_ade_split_and_paths(ade, tmp_path):
    assert ade.split_of("ADE_val_00000001.jpg") == "validation"
    assert ade.split_of("ADE_train_00000001.jpg") == "training"
    assert ade.split_of("ADE_frame_00000001.jpg") == "training"
    root = tmp_path / "elsewhere" / "ADE20K_2021_17_01"
    assert ade.input_path(root, "ADE20K_2021_17_01/images/ADE/training/a/b", "x.jpg") == \
        root / "images/ADE/training/a/b/x.jpg"
    assert ade.seg_path_for(Path("/d/ADE_train_1.jpg")) == Path("/d/ADE_train_1_seg.png")


# (filename, folder under the ADE root, width, height)
ADE_IMAGES = [
    ("ADE_train_00000001.jpg", "images/ADE/training/urban/street", 600, 1000),
    ("ADE_train_00000002.jpg", "images/ADE/training/home/kitchen", 1000, 600),
    ("ADE_val_00000001.jpg", "images/ADE/validation/urban/street", 400, 300),
    ("ADE_frame_00000007.jpg", "images/ADE/training/misc", 300, 520),
]
EXPECTED_SIZES = {(600, 1000): (512, 853), (1000, 600): (853, 512), (400, 300): (400, 300),
                  (300, 520): (300, 520)}
# Raw ids in the table (wall, building, sky, adding machine, ...) and ones that are not.
IN_TABLE = [2978, 312, 2420, 3148, 1831, 14, 6]
NOT_IN_TABLE = [0, 1, 5, 7, 3000 + 157]


def encode_seg(raw, rng):
    """ADE _seg.png encoding: R = (id // 256) * 10 + noise (0..9), G = id % 256, B = instances."""
    seg = np.empty(raw.shape + (3,), dtype=np.uint8)
    seg[..., 0] = (raw // 256) * 10 + rng.integers(0, 10, size=raw.shape)
    seg[..., 1] = raw % 256
    seg[..., 2] = rng.integers(0, 256, size=raw.shape)
    return seg


@pytest.fixture()
def ade_raw(tmp_path):
    rng = np.random.default_rng(1)
    rows = table_rows()
    assert all(i not in {r[1] for r in rows} for i in NOT_IN_TABLE)
    root = tmp_path / "datasets"
    ade_root = root / "ADE20K_2021_17_01"
    raws = {}
    folders, files = [], []
    for filename, folder, w, h in ADE_IMAGES:
        d = ade_root / folder
        d.mkdir(parents=True, exist_ok=True)
        # Blocks of constant class, so nearest-neighbour resizing keeps every class visible.
        ids = np.array(IN_TABLE + NOT_IN_TABLE)
        blocks = rng.choice(ids, size=(h // 20 + 1, w // 20 + 1))
        raw = np.kron(blocks, np.ones((20, 20), dtype=np.int64))[:h, :w]
        raws[filename] = raw
        Image.fromarray(encode_seg(raw, rng)).save(d / filename.replace(".jpg", "_seg.png"))
        write_jpeg(d / filename, rng, w, h)
        folders.append(f"ADE20K_2021_17_01/{folder}")
        files.append(filename)
    index = {"folder": folders, "filename": files, "objectnames": ["-"], "scene": ["x"] * 4}
    with open(ade_root / "index_ade20k.pkl", "wb") as f:
        pickle.dump(index, f)
    return {"root": root, "ade_root": ade_root, "raws": raws}


def test_ade_main_outputs(ade, ade_raw, capsys):
    root, ade_root = ade_raw["root"], ade_raw["ade_root"]
    assert ade.main(["--datasets-root", str(root)]) == 0
    to_train = {raw: k for k, (_, raw) in enumerate(table_rows())}
    for filename, folder, w, h in ADE_IMAGES:
        split = "validation" if "_val_" in filename else "training"
        new_w, new_h = EXPECTED_SIZES[(w, h)]
        out_img = ade_root / "images_detectron2" / split / filename
        out_lab = ade_root / "annotations_detectron2" / split / filename.replace(".jpg", ".tif")

        with Image.open(out_lab) as im:
            assert im.format == "TIFF" and im.mode == "I;16" and im.size == (new_w, new_h)
            label = np.array(im)
        assert label.dtype == np.uint16
        raw = ade_raw["raws"][filename].astype(np.int32)
        if (new_w, new_h) != (w, h):
            raw = cv2.resize(raw, (new_w, new_h), interpolation=cv2.INTER_NEAREST)
        expected = np.vectorize(lambda v: to_train.get(int(v), 65535))(raw)
        np.testing.assert_array_equal(label.astype(np.int64), expected)
        assert (label == 65535).any() and (label != 65535).any()

        src = np.asarray(Image.open(ade_root / folder / filename))
        if (new_w, new_h) != (w, h):
            src = cv2.resize(src, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        buf = io.BytesIO()
        Image.fromarray(src).save(buf, format="JPEG")  # PIL defaults (quality 75)
        assert out_img.read_bytes() == buf.getvalue()
    assert sorted(p.name for p in (ade_root / "images_detectron2" / "validation").iterdir()) == [
        "ADE_val_00000001.jpg"]
    assert len(list((ade_root / "annotations_detectron2" / "training").iterdir())) == 3
    summary = capsys.readouterr().out
    assert "training: 3 images seen, 3 written, 0 skipped as existing\n" in summary
    assert "validation: 1 images seen, 1 written, 0 skipped as existing\n" in summary


def test_ade_resumable(ade, ade_raw, capsys):
    root, ade_root = ade_raw["root"], ade_raw["ade_root"]
    assert ade.main(["--datasets-root", str(root)]) == 0
    lab = ade_root / "annotations_detectron2" / "training" / "ADE_train_00000002.tif"
    good = lab.read_bytes()
    lab.write_bytes(b"stale")
    capsys.readouterr()
    assert ade.main(["--datasets-root", str(root)]) == 0
    summary = capsys.readouterr().out
    assert "training: 3 images seen, 0 written, 3 skipped as existing\n" in summary
    assert "validation: 1 images seen, 0 written, 1 skipped as existing\n" in summary
    assert lab.read_bytes() == b"stale"
    assert ade.main(["--datasets-root", str(root), "--overwrite"]) == 0
    assert "training: 3 images seen, 3 written, 0 skipped" in capsys.readouterr().out
    assert lab.read_bytes() == good


def test_ade_missing_inputs(ade, ade_raw, tmp_path, capsys):
    def fails_naming(root, *parts):
        assert ade.main(["--datasets-root", str(root)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1
        assert all(part in err for part in parts), err

    fails_naming(tmp_path / "nowhere", str(tmp_path / "nowhere" / "ADE20K_2021_17_01"),
                 "ADE20K_2021_17_01.zip")

    ade_root = ade_raw["ade_root"]
    seg = ade_root / ADE_IMAGES[1][1] / "ADE_train_00000002_seg.png"
    seg.unlink()
    fails_naming(ade_raw["root"], str(seg), "ADE20K_2021_17_01.zip")

    index = ade_root / "index_ade20k.pkl"
    index.write_bytes(b"not a pickle")
    fails_naming(ade_raw["root"], str(index))

    index.unlink()
    fails_naming(ade_raw["root"], str(index), "ADE20K_2021_17_01.zip")


def test_ade_empty_index_fails(ade, tmp_path, capsys):
    ade_root = tmp_path / "ADE20K_2021_17_01"
    ade_root.mkdir()
    with open(ade_root / "index_ade20k.pkl", "wb") as f:
        pickle.dump({"folder": [], "filename": []}, f)
    assert ade.main(["--datasets-root", str(tmp_path)]) == 1
    assert "error: training: nothing converted (no images)" in capsys.readouterr().err


def test_ade_help_names_download(ade, capsys):
    with pytest.raises(SystemExit) as exc:
        ade.main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    assert "ADE20K_2021_17_01.zip" in text and "index_ade20k.pkl" in text
