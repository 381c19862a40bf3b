"""ONNX export and the torch-free runtime: the export's checks and manifest, the runtime's parts
against san_d2's (tokenizer, image reading, resizes, post-processing), parity of whole
predictions with SANPredictor, a run where torch cannot be imported, and the errors.

The tests that need an exported model share one export of the tiny SAN (about a minute on two
cores) and are marked slow.
"""
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import textwrap

import numpy as np
import onnx
import pytest
import torch
from PIL import Image

from san_d2_runtime import ClipTokenizer, ExportFolderError, SANRuntime, check_vocabulary, read_rgb
from san_d2_runtime.images import resize
from san_d2_runtime.manifest import FORMAT_VERSION, MANIFEST_FILE
from san_d2_runtime.postprocessing import semantic_scores as runtime_scores

from .conftest import REPO_ROOT, TINY_CONFIG, build_tiny_san

TOL = 1e-4
# Small test-time sizes keep the predictions fast; the export does not depend on them.
TEST_SIZES = ["INPUT.MIN_SIZE_TEST", "96", "INPUT.MAX_SIZE_TEST", "192"]
PREDICTOR_OPTS = ["MODEL.DEVICE", "cpu", "MODEL.SAN.TEXT_EMBEDDING_CACHE", "", *TEST_SIZES]
VOCABULARIES = (["sky", "grass", "red car"],
                ["sea", "sand", "a white square", "tree", "road", "person", "Ångström"])


def _open_clip_tokenizer():
    import open_clip

    return open_clip.get_tokenizer("ViT-B-16")


def _bpe_file():
    from open_clip.tokenizer import default_bpe

    return default_bpe()


# Parts of the runtime against san_d2 and open_clip (no export needed) ----------------------------
TOKENIZER_CASES = [
    "", "   ", "a photo of a cat.", "It's a dog's life", "don'T can'T 'RE", "x" * 5 + "'s",
    "The Eiffel-Tower (Paris)", "punct!!! ??? ... ---", "under_score", "mixed123abc", "١٢٣ ½ Ⅻ",
    "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ", "ﬁsh ﬂower ﬆ", "ǅ ĳ", "“curly” ‘quotes’ ʼx", "café", "cafe\u0301",
    "straße", "İstanbul", "Ångström ÅNGSTRÖM", "ΑΒΓ αβγ", "日本語のテキスト", "中文 类别", "한국어",
    "كلمة عربية", "emoji 🐱‍👤 🇫🇷", "&amp;amp; &EACUTE;t&eacute; &lt;b&gt;", "<b>bold &amp;</b>",
    "line <\nnext &amp;", "&#x41;&#65;&#bad; &NTILDE; &nTILDE;", "x<end_of_text>y",
    "<start_of_text>", "tab\tnew\nline\r\nret\u2028sep", "\x1b[31mred\x1b[0m", "ctrl\x00\x07\x7f",
    "c1 \x80\x85\x93x\x94", "zero\u200bwidth \ufeffbom", "\u0345 iota", "a\u0300b",
    "\ud83d\ude00 pair, lone \ud800", "a" * 300, " ".join(["word"] * 100),
]


def test_tokenizer_gives_open_clips_ids():
    ours, theirs = ClipTokenizer(_bpe_file()), _open_clip_tokenizer()
    tokens = ours(TOKENIZER_CASES)
    assert tokens.dtype == np.int64 and tokens.shape == (len(TOKENIZER_CASES), 77)
    np.testing.assert_array_equal(tokens, theirs(TOKENIZER_CASES).numpy())
    assert tokens[-1, -1] == ours.end_id  # long texts are cut, the last id end-of-text


def test_tokenizer_on_random_text_differs_only_where_ftfy_repairs_mojibake():
    import ftfy

    ours, theirs = ClipTokenizer(_bpe_file()), _open_clip_tokenizer()
    rng = random.Random(0)
    ranges = [(0x20, 0x7F), (0xA0, 0x250), (0x370, 0x400), (0x4E00, 0x4E40), (0x1F600, 0x1F640),
              (0xFF01, 0xFF60), (0x2000, 0x2070)]
    alphabet = [chr(c) for low, high in ranges for c in range(low, high)]
    texts = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(600)]
    mine, reference = ours(texts), theirs(texts).numpy()
    differing = [t for t, a, b in zip(texts, mine, reference) if not np.array_equal(a, b)]
    # Random Latin-1 letters can look like UTF-8 read as Latin-1, which ftfy "repairs".
    assert all(ftfy.fix_text(t) != ftfy.fix_text(t, fix_encoding=False) for t in differing)
    assert len(differing) < len(texts) * 0.05


def _san_load_rgb(image):
    from san_d2.predictor import load_rgb_image

    return load_rgb_image(image)


def test_image_reading_matches_san_d2(tmp_path):
    rng = np.random.default_rng(0)
    rotated = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees
    Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(rotated, exif=exif)
    wide = tmp_path / "wide.png"
    Image.fromarray(rng.integers(0, 65536, (9, 7), dtype=np.uint16)).save(wide)
    inputs = [rotated, str(wide), Image.open(wide),
              rng.integers(0, 256, (5, 6), dtype=np.uint8),
              rng.integers(0, 256, (5, 6, 4), dtype=np.uint8),
              rng.integers(0, 65536, (5, 6, 3), dtype=np.uint16)]
    for image in inputs:
        np.testing.assert_array_equal(read_rgb(image), _san_load_rgb(image))
    assert read_rgb(rotated).shape == (30, 20, 3)


@pytest.mark.parametrize("rule", ["detectron2", "mmseg"])
def test_resize_rules_match_san_d2(rule):
    from san_d2 import get_san_cfg
    from san_d2.data.transforms import build_test_resize

    cfg = get_san_cfg(str(TINY_CONFIG), ["INPUT.TEST_RESIZE", rule, *TEST_SIZES])
    augmentation = build_test_resize(cfg)
    manifest_rule = {"rule": rule, "min_size_test": 96, "max_size_test": 192}
    rng = np.random.default_rng(0)
    for height, width in [(75, 201), (96, 96), (480, 640), (1000, 301), (33, 40)]:
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        expected = augmentation.get_transform(rgb).apply_image(rgb)
        np.testing.assert_array_equal(resize(rgb, manifest_rule), expected)


@pytest.mark.parametrize("before", [True, False])
def test_post_processing_matches_the_models_in_both_orders(before):
    from detectron2.modeling.postprocessing import sem_seg_postprocess

    from san_d2.modeling.postprocessing import semantic_scores

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(16, 5, generator=generator) * 5
    masks = torch.randn(16, 6, 18, generator=generator) * 8
    padded, image, output = (96, 288), (96, 257), (75, 201)
    probs = logits.softmax(-1)[:, :-1]
    if before:
        expected = semantic_scores(probs, masks, padded, image, output)
    else:
        expected = sem_seg_postprocess(semantic_scores(probs, masks, padded, padded, padded),
                                       image, *output)
    ours = runtime_scores(logits.numpy(), masks.numpy(), padded_size=padded, image_size=image,
                          output_size=output, before=before)
    assert ours.shape == (4, *output) and ours.dtype == np.float32
    assert np.abs(ours - expected.numpy()).max() < 1e-5


@pytest.mark.parametrize("out_size", [(3, 4), (5, 7), (8, 8), (1, 2), (10, 20)])
def test_exportable_adaptive_max_pool_gives_the_same_maxima(out_size, monkeypatch):
    from san_d2.modeling.layers import adaptive_max_pool2d

    x = torch.randn(2, 3, 8, 14)
    expected = torch.nn.functional.adaptive_max_pool2d(x, out_size)
    monkeypatch.setattr(torch.compiler, "is_exporting", lambda: True)
    assert torch.equal(adaptive_max_pool2d(x, out_size), expected)


def test_vocabulary_errors():
    for bad in ([], "sky", ["sky", " "], ["sky", "sky "], [["a", "b"], "b"], [[]]):
        with pytest.raises(ValueError):
            check_vocabulary(bad)
    assert check_vocabulary([" sky ", ["car", "automobile"]]) == ("sky", ("car", "automobile"))


def test_unreadable_images(tmp_path):
    not_a_picture = tmp_path / "notes.png"
    not_a_picture.write_text("not a picture")
    with pytest.raises(ValueError, match="cannot be read"):
        read_rgb(not_a_picture)
    with pytest.raises(FileNotFoundError):
        read_rgb(tmp_path / "missing.png")
    with pytest.raises(ValueError, match="no pixels"):
        read_rgb(np.zeros((0, 4, 3), dtype=np.uint8))
    with pytest.raises(TypeError):
        read_rgb(42)


def test_export_folder_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="san-export-onnx"):
        SANRuntime(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match=MANIFEST_FILE):
        SANRuntime(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text(json.dumps(
        {"format": "san_d2-onnx-export", "format_version": FORMAT_VERSION + 1,
         "versions": {"san_d2": "9.9"}}))
    with pytest.raises(ExportFolderError, match=rf"version {FORMAT_VERSION + 1}.*san_d2 9\.9"):
        SANRuntime(tmp_path)
    (tmp_path / MANIFEST_FILE).write_text("{not json")
    with pytest.raises(ExportFolderError, match="not valid JSON"):
        SANRuntime(tmp_path)


def test_export_command_errors(tmp_path, capsys):
    from san_d2_tools.export_onnx import main

    assert main(["--config-file", "no_such_config.yaml", "--output", str(tmp_path / "x")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["--config-file", str(TINY_CONFIG), "--output", str(tmp_path / "y"),
                 "--opts", "TEST.AUG.ENABLED", "True"]) == 1
    assert "TEST.AUG.ENABLED" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()


# An exported tiny SAN ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    model, _ = build_tiny_san(seed=0)
    path = tmp_path_factory.mktemp("weights") / "tiny.pth"
    torch.save({"model": model.state_dict()}, path)
    return path


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    from san_d2_tools.export_onnx import main

    folder = tmp_path_factory.mktemp("export") / "tiny"
    assert main(["--config-file", str(TINY_CONFIG), "--weights", str(checkpoint),
                 "--output", str(folder), "--opts", *TEST_SIZES]) == 0
    return folder


@pytest.fixture(scope="module")
def predictor(checkpoint):
    from san_d2 import SANPredictor

    return SANPredictor(str(TINY_CONFIG), str(checkpoint), opts=PREDICTOR_OPTS)


@pytest.mark.slow
def test_export_writes_checked_graphs_and_a_complete_manifest(exported):
    manifest = json.loads((exported / MANIFEST_FILE).read_text())
    for name in manifest["files"].values():
        assert (exported / name).is_file()
    for graph in ("image_graph", "text_graph"):
        onnx.checker.check_model(str(exported / manifest["files"][graph]))
    assert manifest["format_version"] == FORMAT_VERSION
    pre = manifest["preprocessing"]
    assert pre["resize"] == {"rule": "detectron2", "min_size_test": 96, "max_size_test": 192}
    assert pre["size_divisibility"] == 32 and len(pre["pixel_mean"]) == 3
    assert len(manifest["text"]["templates"]) == 14 and manifest["text"]["context_length"] == 77
    assert manifest["postprocessing"]["sem_seg_postprocess_before_inference"] is True
    assert set(manifest["versions"]) >= {"san_d2", "torch", "onnx", "onnx_opset"}
    config = (exported / manifest["files"]["config"]).read_bytes()
    assert manifest["model"]["config_sha256"] == hashlib.sha256(config).hexdigest()
    assert manifest["model"]["config_file_sha256"] == hashlib.sha256(
        TINY_CONFIG.read_bytes()).hexdigest()
    diffs = manifest["export_check"]["max_abs_diff"]
    assert len(diffs) == 3 and max(diffs.values()) < TOL
    assert "MIT License" in (exported / manifest["files"]["bpe_vocab_license"]).read_text()


def _assert_same_prediction(ours, theirs):
    assert ours.vocabulary == theirs.vocabulary
    assert ours.scores.shape == tuple(theirs.scores.shape)
    assert np.abs(ours.scores - theirs.scores.numpy()).max() < TOL
    np.testing.assert_array_equal(ours.class_map, theirs.class_map)
    assert ours.describe() == theirs.describe()


@pytest.mark.slow
def test_runtime_predicts_as_the_torch_model(exported, predictor):
    """Three sizes (one non-square, not a multiple of 32 after the resize) and two
    vocabularies of different sizes on the same exported files."""
    runtime = SANRuntime(exported)
    rng = np.random.default_rng(0)
    for height, width in [(96, 128), (75, 201), (150, 150)]:
        rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
        for vocabulary in VOCABULARIES:
            ours = runtime.predict(rgb, vocabulary)
            assert ours.scores.shape == (len(vocabulary), height, width)
            _assert_same_prediction(ours, predictor.predict(rgb, vocabulary))
    # Each vocabulary was encoded once, then taken from the cache.
    assert runtime.num_prompts_encoded == 14 * sum(len(v) for v in VOCABULARIES)


@pytest.mark.slow
@pytest.mark.parametrize("before, rule", [(False, "mmseg")])
def test_runtime_follows_the_manifests_resize_and_post_processing(exported, checkpoint, tmp_path,
                                                                  before, rule):
    """The graphs do not depend on these two settings: the runtime applies them."""
    from san_d2 import SANPredictor

    folder = tmp_path / "export"
    shutil.copytree(exported, folder)
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    manifest["preprocessing"]["resize"]["rule"] = rule
    manifest["postprocessing"]["sem_seg_postprocess_before_inference"] = before
    (folder / MANIFEST_FILE).write_text(json.dumps(manifest))
    torch_model = SANPredictor(str(TINY_CONFIG), str(checkpoint), opts=[
        *PREDICTOR_OPTS, "INPUT.TEST_RESIZE", rule,
        "MODEL.SAN.SEM_SEG_POSTPROCESS_BEFORE_INFERENCE", before])
    rgb = np.random.default_rng(1).integers(0, 256, (75, 201, 3), dtype=np.uint8)
    vocabulary = VOCABULARIES[1]
    _assert_same_prediction(SANRuntime(folder).predict(rgb, vocabulary),
                            torch_model.predict(rgb, vocabulary))


@pytest.mark.slow
def test_runtime_errors(exported, tmp_path):
    runtime = SANRuntime(exported)
    with pytest.raises(ValueError, match="non-empty list"):
        runtime.predict(np.zeros((8, 8, 3), dtype=np.uint8), [])
    (tmp_path / "bad.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match="cannot be read"):
        runtime.predict(tmp_path / "bad.jpg", ["sky"])
    with pytest.raises(ValueError, match="optimisation level"):
        SANRuntime(exported, optimization="fastest")


_WITHOUT_TORCH = textwrap.dedent("""
    import sys

    BLOCKED = {"torch", "torchvision", "detectron2", "open_clip", "timm", "san_d2"}

    class Blocker:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"{name} is blocked in this test")
            return None

    sys.meta_path.insert(0, Blocker())
    import numpy as np
    from san_d2_runtime import SANRuntime

    export_dir, image, out = sys.argv[1:]
    result = SANRuntime(export_dir).predict(image, ["sky", "grass", "red car"])
    np.save(out, result.scores)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print(result.describe())
""")


@pytest.mark.slow
def test_runtime_runs_where_torch_cannot_be_imported(exported, tmp_path):
    image = tmp_path / "scene.png"
    Image.fromarray(np.random.default_rng(2).integers(0, 256, (75, 201, 3), dtype=np.uint8)
                    ).save(image)
    out = tmp_path / "scores.npy"
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(exported), str(image),
                           str(out)], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "%" in done.stdout
    in_process = SANRuntime(exported).predict(image, ["sky", "grass", "red car"])
    np.testing.assert_array_equal(np.load(out), in_process.scores)


@pytest.mark.slow
def test_benchmark_command_times_the_runtime(exported, tmp_path, capsys):
    from san_d2_tools.benchmark import main

    out = tmp_path / "ort.json"
    assert main(["--runtime", "onnxruntime", "--export-dir", str(exported), "--size", "64",
                 "--vocab", "5", "--runs", "2", "--threads", "1", "--ort-optimization", "basic",
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["runtime"] == "onnxruntime" and result["optimization"] == "basic"
    assert result["runs"] == 2 and result["first_call_prompts_encoded"] == 5 * 14
    assert set(result["stages_seconds"]) == {"text embeddings", "pre-processing", "image graph",
                                             "post-processing"}
    # Measured in a process without torch: far less than the ~0.5 GB torch alone brings.
    assert 0 < result["peak_memory_gb"] < 0.5
    assert "images_per_second" in capsys.readouterr().out
