import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The project's specification lives beside the checkout (../shared) in our CI; a plain clone of
# san_d2 may not have it, and the tests that read it then skip.
SHARED = Path(os.environ.get("SAN_D2_SHARED", REPO_ROOT.parent / "shared"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "spec").is_dir():
        pytest.skip(f"specification folder {SHARED}/spec not found (set SAN_D2_SHARED)")
    return SHARED
