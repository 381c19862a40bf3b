"""tools/install_detectron2.py: its fixes, its wheel, and its no-op on an importable detectron2."""
import base64
import hashlib
import importlib.util
import os
import subprocess
import sys
import zipfile

import pytest

from .conftest import REPO_ROOT, USER_CACHE_HOME

INSTALLER_PATH = REPO_ROOT / "tools" / "install_detectron2.py"


@pytest.fixture(scope="module")
def installer():
    spec = importlib.util.spec_from_file_location("install_detectron2", INSTALLER_PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cached_sdist(installer):
    with pytest.MonkeyPatch.context() as patch:  # where `make setup` cached it
        if USER_CACHE_HOME is None:
            patch.delenv("XDG_CACHE_HOME")
        else:
            patch.setenv("XDG_CACHE_HOME", USER_CACHE_HOME)
        path = installer.default_cache_dir() / installer.SDIST_FILE
    if not path.is_file():
        pytest.skip(f"{path} not cached (it is after `make setup` installed detectron2)")
    return path


def test_numpy_alias_pattern(installer):
    source = (
        "a = np.array(x, dtype=np.int)\nb = x.astype(np.float)\nc = np.bool\nd = np.str\n"
        "e = np.int32, np.float64, np.bool_, np.str_, np.integer, np.floating\n"
    )
    fixed = installer.NUMPY_ALIAS.sub(r"\1", source)
    assert fixed == (
        "a = np.array(x, dtype=int)\nb = x.astype(float)\nc = bool\nd = str\n"
        "e = np.int32, np.float64, np.bool_, np.str_, np.integer, np.floating\n"
    )


def test_hash_mismatch_is_refused(installer, tmp_path):
    bogus = tmp_path / installer.SDIST_FILE
    bogus.write_bytes(b"not detectron2")
    with pytest.raises(installer.InstallError, match="SHA-256"):
        installer.obtain_sdist(tmp_path, bogus)


def test_missing_local_sdist_is_reported(installer, tmp_path):
    with pytest.raises(installer.InstallError, match="no such file"):
        installer.obtain_sdist(tmp_path, tmp_path / "missing.tar.gz")


def test_built_wheel_is_complete_and_consistent(installer, cached_sdist, tmp_path):
    wheel = installer.build_patched_wheel(cached_sdist, tmp_path)
    assert wheel.name == "detectron2-0.6-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for required in [
            "detectron2/_C.py",
            "detectron2/projects/deeplab/__init__.py",
            "detectron2/projects/point_rend/__init__.py",
            "detectron2/projects/panoptic_deeplab/__init__.py",
            "detectron2/model_zoo/configs/Base-RCNN-FPN.yaml",
            "detectron2-0.6.dist-info/LICENSE",
        ]:
            assert required in names, required
        assert not any("/csrc/" in n for n in names)
        metadata = zf.read("detectron2-0.6.dist-info/METADATA").decode()
        assert "Name: detectron2\n" in metadata and "Version: 0.6\n" in metadata
        # Every RECORD entry matches the archived bytes, as pip verifies.
        for line in zf.read("detectron2-0.6.dist-info/RECORD").decode().splitlines():
            name, digest, size = line.rsplit(",", 2)
            if not digest:
                continue
            data = zf.read(name)
            expected = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
            assert digest == "sha256=" + expected.decode() and int(size) == len(data), name
        transform = zf.read("detectron2/data/transforms/transform.py").decode()
        assert "Image.LINEAR" not in transform and "interp=Image.BILINEAR" in transform
        assert "pkg_resources" not in zf.read("detectron2/model_zoo/model_zoo.py").decode()


def test_does_nothing_when_detectron2_is_importable():
    result = subprocess.run(
        [sys.executable, str(INSTALLER_PATH)], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr
    assert "already" in result.stdout and "installing" not in result.stdout.lower()


def test_foreign_detectron2_is_left_alone_but_its_gaps_are_reported(tmp_path):
    fake = tmp_path / "detectron2"
    fake.mkdir()
    (fake / "__init__.py").write_text('__version__ = "0.6"\n')
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(INSTALLER_PATH)], capture_output=True, text=True, timeout=300, env=env
    )
    assert result.returncode == 1
    assert "not installed by this script" in result.stderr
    assert "detectron2.projects.deeplab" in result.stderr
    assert "pip uninstall detectron2" in result.stderr
    assert (fake / "__init__.py").read_text() == '__version__ = "0.6"\n'
