import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
# The project's specification lives beside the checkout (../shared) in our CI; a plain clone of
# san_d2 may not have it, and the tests that read it then skip.
SHARED = Path(os.environ.get("SAN_D2_SHARED", REPO_ROOT.parent / "shared"))


# The user's cache root, before the tests point XDG_CACHE_HOME elsewhere (None: ~/.cache).
USER_CACHE_HOME = os.environ.get("XDG_CACHE_HOME")


@pytest.fixture(scope="session", autouse=True)
def private_cache_home(tmp_path_factory):
    """Persisted text embeddings ("auto" cache) go to a temporary folder, not ~/.cache."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(tmp_path_factory.mktemp("cache_home")))
        yield


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not (SHARED / "spec").is_dir():
        pytest.skip(f"specification folder {SHARED}/spec not found (set SAN_D2_SHARED)")
    return SHARED


TINY_CONFIG = REPO_ROOT / "configs" / "tiny" / "san_tiny.yaml"


def build_tiny_san(*opts, seed: int = 0):
    """The tiny SAN of configs/tiny/san_tiny.yaml on CPU with random weights."""
    import torch
    from detectron2.modeling import build_model

    from san_d2 import get_san_cfg

    torch.manual_seed(seed)
    cfg = get_san_cfg(str(TINY_CONFIG), ["MODEL.DEVICE", "cpu", *opts])
    return build_model(cfg), cfg
