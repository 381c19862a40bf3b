"""The web app in a real browser: headless Chromium uploads a real photograph (scikit-image's
"chelsea", from its wheel on PyPI), types a vocabulary and reads the answer back, which must be
the predictor's for the same input.

Needs Debian's chromium (`.ci/run` installs it) and the Python packages gradio and playwright
(the test extra). Without a browser the test is skipped, except where SAN_D2_REQUIRE_BROWSER=1
(CI) makes that a failure. Screenshots go to output/test-artifacts/.
"""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from san_d2 import SANPredictor
from san_d2.utils.app_support import answer
from san_d2.utils.images import load_rgb_image

from .conftest import REPO_ROOT, TINY_CONFIG, USER_CACHE_HOME, build_tiny_san

ARTIFACTS = REPO_ROOT / "output" / "test-artifacts"
VOCABULARY = "cat, grass, wall, sofa"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync"]

pytestmark = pytest.mark.slow


def _chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path:
        return path
    message = "Chromium is not installed (Debian: apt-get install chromium)"
    if os.environ.get("SAN_D2_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    pytest.skip(message)


def _photograph() -> Path:
    """scikit-image's sample photograph of a cat, extracted from its wheel (cached)."""
    cache = Path(USER_CACHE_HOME or Path.home() / ".cache") / "san_d2" / "test-photos"
    photo = cache / "chelsea.png"
    if photo.is_file():
        return photo
    wheels = cache / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                    "--disable-pip-version-check", "-q", "-d", str(wheels), "scikit-image"],
                   check=True, timeout=600)
    (wheel,) = wheels.glob("scikit_image-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        photo.write_bytes(archive.read("skimage/data/chelsea.png"))
    shutil.rmtree(wheels)
    return photo


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, server: subprocess.Popen, log: Path, seconds: float = 240) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            pytest.fail(f"the app exited with {server.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5):
                return
        except OSError:
            time.sleep(1)
    pytest.fail(f"the app did not answer within {seconds} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    chromium = _chromium()
    work = tmp_path_factory.mktemp("app")
    model, _ = build_tiny_san(seed=21)
    weights = work / "tiny.pth"
    torch.save({"model": model.state_dict()}, weights)
    port = _free_port()
    log = work / "app.log"
    opts = ["MODEL.DEVICE", "cpu", "MODEL.SAN.TEXT_EMBEDDING_CACHE", str(work / "text")]
    with open(log, "w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "san_d2_tools.app", "--model", f"tiny={TINY_CONFIG}:{weights}",
             "--port", str(port), "--examples", "", "--opts", *opts],
            stdout=out, stderr=subprocess.STDOUT, cwd=work)
    url = f"http://127.0.0.1:{port}/"
    try:
        _wait_for(url, server, log)
        yield {"url": url, "chromium": chromium, "weights": str(weights), "opts": opts}
    finally:
        server.terminate()
        server.wait(timeout=30)


def _segment(page, photo: Path, vocabulary: str) -> None:
    page.locator("input[type=file]").first.set_input_files(str(photo))
    page.locator("#vocabulary textarea").fill(vocabulary)
    page.get_by_role("button", name="Segment").click()


def _table(page):
    """The rows of the classes table once the answer is in: [[class, share], ...]."""
    page.locator("#notice").get_by_text("Done.").wait_for(timeout=180_000)
    cells = [line.strip() for line in page.locator("#classes").inner_text().splitlines()]
    cells = [cell for cell in cells if cell][3:]  # after "Classes", "class", "share (%)"
    return [cells[i:i + 2] for i in range(0, len(cells), 2)]


def test_upload_type_segment_and_read_the_answer(app):
    from playwright.sync_api import sync_playwright

    photo = _photograph()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=app["chromium"], headless=True,
                                             args=CHROMIUM_FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app["url"])
        page.get_by_role("button", name="Segment").wait_for()
        page.screenshot(path=str(ARTIFACTS / "app_before.png"), full_page=True)
        _segment(page, photo, VOCABULARY)
        table = _table(page)
        page.screenshot(path=str(ARTIFACTS / "app_after.png"), full_page=True)
        images = page.locator("img").evaluate_all("els => els.filter(e => e.naturalWidth > 0).length")
        browser.close()

    predictor = SANPredictor(str(TINY_CONFIG), app["weights"], opts=app["opts"])
    expected = answer(predictor, load_rgb_image(photo), VOCABULARY)
    assert [row[0] for row in table] == [name for name, _ in expected.table]
    assert [float(row[1]) for row in table] == pytest.approx([s for _, s in expected.table], abs=0.01)
    assert images >= 3  # the uploaded photograph, the overlay and the label map


def test_errors_are_shown_in_the_page_and_two_visitors_both_get_answers(app):
    from playwright.sync_api import sync_playwright

    photo = _photograph()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=app["chromium"], headless=True,
                                             args=CHROMIUM_FLAGS)
        page = browser.new_page()
        page.goto(app["url"])
        _segment(page, photo, " , ")
        page.get_by_text("The vocabulary is empty").first.wait_for(timeout=60_000)
        assert "Traceback" not in page.content()

        first, second = browser.new_page(), browser.new_page()
        for visitor in (first, second):
            visitor.goto(app["url"])
        _segment(first, photo, "cat, grass")
        _segment(second, photo, "dog, floor, wall")
        assert [row[0] for row in _table(first)] and [row[0] for row in _table(second)]
        names = {row[0] for row in _table(second)}
        assert names <= {"dog", "floor", "wall"}
        browser.close()
