"""san_d2's import-time contract."""
import subprocess
import sys

from .conftest import REPO_ROOT


def _run(code):
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT, timeout=300
    )


def test_missing_detectron2_error_says_how_to_install():
    result = _run("import sys; sys.modules['detectron2'] = None; import san_d2")
    assert result.returncode != 0
    assert "san_d2 needs detectron2" in result.stderr
    assert "tools/install_detectron2.py" in result.stderr


def test_import_does_not_patch_numpy_or_pillow():
    result = _run(
        "import numpy as np, PIL.Image as I, san_d2\n"
        "print(hasattr(np, 'int'), hasattr(np, 'float'), hasattr(I, 'LINEAR'))"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-3:] == ["False", "False", "False"]
