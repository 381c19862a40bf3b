#!/usr/bin/env python
"""Install detectron2 v0.6 as a pure-Python distribution that works on today's stack.

detectron2 has no release on PyPI. The sdist ``pb1-detectron2==0.6`` carries detectron2's Python
sources byte-identical to its git tag v0.6 (the version SAN was built on), but not the C++ sources,
so installing it fails while compiling ``detectron2._C``. SAN needs none of the compiled operators.

This script, run with the Python of the environment to install into:

1. does nothing when an importable detectron2 is already there (for example a build from source);
2. otherwise fetches the sdist with pip (or takes ``--sdist FILE``) and verifies its SHA-256;
3. lays out the package as detectron2's own setup does (``detectron2.projects.point_rend``,
   ``.deeplab``, ``.panoptic_deeplab``, the model-zoo configs);
4. applies the fixes upstream detectron2 made later for numpy >= 1.24, Pillow >= 10 and
   setuptools >= 81, and adds a pure-Python ``detectron2/_C.py`` whose operators raise a clear
   error naming themselves;
5. builds a wheel named ``detectron2`` 0.6 and installs it with pip, so that ``pip list`` shows it
   and ``pip uninstall detectron2`` removes it.

It imports nothing from ``san_d2`` (which needs detectron2) and only the standard library itself.
"""
from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Tuple

SDIST_NAME = "pb1-detectron2"
SDIST_VERSION = "0.6"
SDIST_FILE = f"{SDIST_NAME}-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "5d2e9e51e523ec72f6a31cca04b0a515492e9514b773a3d134cedc0677170b29"
DIST_NAME = "detectron2"
DIST_VERSION = "0.6"
# Bump when the patch set changes: an older san_d2 build of detectron2 is then rebuilt.
BUILD_ID = 1
BUILD_INFO_FILE = "san_d2_build.json"

# Where detectron2's setup.py puts its bundled projects: package name -> folder under projects/.
PROJECTS = {
    "point_rend": "PointRend",
    "deeplab": "DeepLab",
    "panoptic_deeplab": "Panoptic-DeepLab",
}

# detectron2 v0.6's install_requires, minus what only caffe2 export used (future, pydot) and
# minus black==21.4b2 (it breaks with click >= 8.1; only LazyConfig.save formats with black,
# so it becomes the "lazyconfig" extra). fvcore/iopath keep v0.6's bounds: their APIs moved later.
REQUIREMENTS = [
    "Pillow>=7.1",
    "matplotlib",
    "pycocotools>=2.0.2",
    "termcolor>=1.1",
    "yacs>=0.1.8",
    "tabulate",
    "cloudpickle",
    "tqdm>4.29.0",
    "tensorboard",
    "fvcore>=0.1.5,<0.1.6",
    "iopath>=0.1.7,<0.1.10",
    "omegaconf>=2.1",
    "hydra-core>=1.1",
]
EXTRAS = {"lazyconfig": ["black"]}

# Modules whose import proves the installation usable for SAN.
REQUIRED_MODULES = [
    "detectron2",
    "detectron2.layers",
    "detectron2.data.transforms",
    "detectron2.engine",
    "detectron2.evaluation",
    "detectron2.utils.visualizer",
    "detectron2.projects.deeplab",
    "detectron2.projects.point_rend",
    "detectron2.utils.analysis",
]
# What must be importable before detectron2 can be installed, with the way to get it.
PREREQUISITES = {
    "torch": "pip install torch==2.14.1 torchvision==0.29.1",
    "cv2": "pip install opencv-python (or `pip install -e .` in the san_d2 checkout)",
}

# numpy removed these aliases of Python builtins in 1.24; they were the builtins themselves.
NUMPY_ALIAS = re.compile(r"\bnp\.(int|float|bool|str)\b(?!\w)")
NUMPY_ALIAS_FILES = {
    "detectron2/evaluation/sem_seg_evaluation.py",
    "detectron2/evaluation/pascal_voc_evaluation.py",
    "detectron2/structures/masks.py",
    "detectron2/data/build.py",
    "detectron2/data/datasets/pascal_voc.py",
    "detectron2/utils/visualizer.py",
    "detectron2/utils/video_visualizer.py",
}
# (file, old text, new text, why): exact replacements, each must match exactly once.
TEXT_PATCHES = [
    (
        "detectron2/data/transforms/transform.py",
        "interp=Image.LINEAR",
        "interp=Image.BILINEAR",
        "Pillow 10 removed Image.LINEAR, an alias of Image.BILINEAR (evaluated at import)",
    ),
    (
        "detectron2/model_zoo/model_zoo.py",
        "import pkg_resources\n",
        "",
        "setuptools 81 removed pkg_resources",
    ),
    (
        "detectron2/model_zoo/model_zoo.py",
        'cfg_file = pkg_resources.resource_filename(\n        "detectron2.model_zoo", '
        'os.path.join("configs", config_path)\n    )',
        'cfg_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs", config_path)',
        "setuptools 81 removed pkg_resources; the configs ship inside the package",
    ),
    (
        "detectron2/export/__init__.py",
        "from .api import *\n",
        "try:  # caffe2 left PyTorch in 2.0: its export API is optional\n"
        "    import caffe2  # noqa: F401\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        "    from .api import *\n",
        "PyTorch 2 has no caffe2; import the caffe2 exporter only when caffe2 exists",
    ),
    (
        "detectron2/evaluation/sem_seg_evaluation.py",
        "pred = np.array(output, dtype=int)",
        "pred = np.array(output.numpy(), dtype=int)",
        "numpy 2 deprecates np.array() of a torch tensor (its __array__ lacks `copy`)",
    ),
]

STAND_IN_C = '''\
"""Pure-Python stand-in for detectron2's compiled extension ``detectron2._C``.

Written by san_d2's installer (tools/install_detectron2.py). This detectron2 was installed without
its C++/CUDA operators; SAN uses none of them. Using one raises UnavailableOperatorError naming it.
"""

_NOT_COMPILED = "none (pure-Python detectron2 installed by san_d2; no compiled extension)"


class UnavailableOperatorError(RuntimeError):
    """Raised when code calls a compiled detectron2 operator that this build does not have."""


def get_compiler_version():
    return _NOT_COMPILED


def get_cuda_version():
    return _NOT_COMPILED


def has_cuda():
    return False


def __getattr__(name):
    if name.startswith("__"):
        raise AttributeError(name)

    def unavailable(*args, **kwargs):
        raise UnavailableOperatorError(
            f"detectron2 operator '{name}' is unavailable: this detectron2 is the pure-Python "
            "build installed by san_d2, without the compiled extension detectron2._C. SAN does "
            "not need it. To use this operator, run `pip uninstall detectron2` and build "
            "detectron2 from source (see detectron2's INSTALL.md)."
        )

    unavailable.__name__ = unavailable.__qualname__ = name
    return unavailable
'''


class InstallError(RuntimeError):
    """A step failed; the message says what to do."""


def log(message: str) -> None:
    print(f"[install_detectron2] {message}", flush=True)


# ----------------------------------------------------------------------------------------------
# What is installed already
# ----------------------------------------------------------------------------------------------
_PROBE = r"""
import importlib, json, sys
report = {"found": False, "errors": {}}
try:
    import detectron2
except ImportError as e:
    report["import_error"] = repr(e)
else:
    report.update(found=True, version=getattr(detectron2, "__version__", "?"),
                  location=str(getattr(detectron2, "__file__", "?")))
    report["build"] = None
    try:  # the build record counts only if it belongs to the detectron2 that was imported
        import os
        from importlib import metadata
        dist = metadata.distribution("detectron2")
        if os.path.samefile(dist.locate_file("detectron2/__init__.py"), detectron2.__file__):
            report["build"] = json.loads(dist.read_text(%r) or "null")
    except Exception:
        pass
    for name in %r:
        try:
            importlib.import_module(name)
        except Exception as e:
            report["errors"][name] = f"{type(e).__name__}: {e}"
print(json.dumps(report))
"""


def probe_detectron2(python: str = sys.executable) -> Dict:
    """Imports detectron2 in a fresh interpreter and reports what it finds (JSON dict)."""
    code = _PROBE % (BUILD_INFO_FILE, REQUIRED_MODULES)
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, check=False)
    try:
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        raise InstallError(f"Could not probe detectron2 with {python}:\n{out.stderr}") from None


# ----------------------------------------------------------------------------------------------
# Fetching and verifying the sdist
# ----------------------------------------------------------------------------------------------
def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_sha256(path: Path, expected: str = SDIST_SHA256) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise InstallError(
            f"{path} has SHA-256 {actual}, expected {expected}. It is not the detectron2 v0.6 "
            "sdist this installer knows; delete it and run again."
        )


def download_sdist(dest_dir: Path) -> Path:
    """Fetches the sdist with this environment's pip.

    pip prepares the sdist's metadata by running its setup.py, which imports torch: hence
    ``--no-build-isolation`` (torch is a prerequisite).
    """
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
           "--no-build-isolation", "--dest", str(dest_dir), f"{SDIST_NAME}=={SDIST_VERSION}"]
    log("downloading " + SDIST_FILE + " with pip")
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    path = dest_dir / SDIST_FILE
    if result.returncode != 0 or not path.is_file():
        raise InstallError(
            f"`{' '.join(cmd)}` failed:\n{result.stdout[-2000:]}{result.stderr[-2000:]}\n"
            f"Without network access, download {SDIST_FILE} (sha256 {SDIST_SHA256}) from PyPI "
            "elsewhere and pass it with --sdist FILE."
        )
    return path


def obtain_sdist(cache_dir: Path, sdist: Optional[Path]) -> Path:
    """Returns a verified sdist: the given file, the cached copy, or a fresh download."""
    if sdist is not None:
        if not sdist.is_file():
            raise InstallError(f"--sdist {sdist}: no such file.")
        verify_sha256(sdist)
        return sdist
    cached = cache_dir / SDIST_FILE
    if cached.is_file() and sha256_of(cached) == SDIST_SHA256:
        log(f"using cached {cached}")
        return cached
    cache_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        fetched = download_sdist(Path(tmp))
        verify_sha256(fetched)
        shutil.move(str(fetched), cached)
    return cached


# ----------------------------------------------------------------------------------------------
# Laying out and patching the sources
# ----------------------------------------------------------------------------------------------
def extract_package(sdist: Path, staging: Path) -> Path:
    """Extracts ``detectron2/`` and the bundled projects into ``staging``; returns the LICENSE."""
    prefix = f"{SDIST_NAME}-{SDIST_VERSION}/"
    with tarfile.open(sdist, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile() or not member.name.startswith(prefix):
                continue
            relative = member.name[len(prefix):]
            target = _package_path(relative)
            if target is None:
                continue
            destination = staging / target
            destination.parent.mkdir(parents=True, exist_ok=True)
            with tar.extractfile(member) as src, open(destination, "wb") as dst:
                shutil.copyfileobj(src, dst)
    missing = [p for p in ["detectron2/__init__.py", "LICENSE"] +
               [f"detectron2/projects/{name}/__init__.py" for name in PROJECTS]
               if not (staging / p).is_file()]
    if missing:
        raise InstallError(f"{sdist} lacks {missing}: not the expected detectron2 sdist.")
    return staging / "LICENSE"


def _package_path(relative: str) -> Optional[str]:
    """Maps a path inside the sdist to its place in the installed tree (None: not installed)."""
    if relative == "LICENSE":
        return relative
    if relative.startswith("detectron2/") and "/csrc/" not in relative:
        return relative
    for package, folder in PROJECTS.items():
        source = f"projects/{folder}/{package}/"
        if relative.startswith(source):
            return f"detectron2/projects/{package}/" + relative[len(source):]
    return None


def patch_numpy_aliases(root: Path) -> Dict[str, int]:
    """Replaces ``np.int``/``np.float``/``np.bool``/``np.str`` with the builtins they aliased."""
    counts = {}
    for path in sorted((root / "detectron2").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        new_text, count = NUMPY_ALIAS.subn(r"\1", text)
        if count:
            path.write_text(new_text, encoding="utf-8")
            counts[path.relative_to(root).as_posix()] = count
    if set(counts) != NUMPY_ALIAS_FILES:
        raise InstallError(f"numpy alias fix touched {sorted(counts)}, expected "
                           f"{sorted(NUMPY_ALIAS_FILES)}: unexpected detectron2 sources.")
    return counts


def apply_text_patches(root: Path) -> List[str]:
    applied = []
    for relative, old, new, why in TEXT_PATCHES:
        path = root / relative
        text = path.read_text(encoding="utf-8")
        if text.count(old) != 1:
            raise InstallError(f"cannot apply fix to {relative} ({why}): expected text not found.")
        path.write_text(text.replace(old, new), encoding="utf-8")
        applied.append(f"{relative}: {why}")
    return applied


def write_stand_in_extension(root: Path) -> None:
    (root / "detectron2" / "_C.py").write_text(STAND_IN_C, encoding="utf-8")


# ----------------------------------------------------------------------------------------------
# Wheel
# ----------------------------------------------------------------------------------------------
def _metadata_text() -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {DIST_NAME}",
        f"Version: {DIST_VERSION}",
        "Summary: detectron2 v0.6 (pure Python, patched for numpy>=1.24, Pillow>=10, "
        "setuptools>=81) installed by san_d2",
        "Home-page: https://github.com/facebookresearch/detectron2",
        "Author: FAIR",
        "License: Apache-2.0",
        "Requires-Python: >=3.8",
    ]
    lines += [f"Requires-Dist: {req}" for req in REQUIREMENTS]
    for extra, reqs in EXTRAS.items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f"Requires-Dist: {req} ; extra == \"{extra}\"" for req in reqs]
    return "\n".join(lines) + "\n"


def _record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def build_wheel(root: Path, license_file: Path, build_info: Dict, out_dir: Path) -> Path:
    """Writes a py3-none-any wheel of ``root/detectron2`` into ``out_dir``."""
    dist_info = f"{DIST_NAME}-{DIST_VERSION}.dist-info"
    files: List[Tuple[str, bytes]] = []
    for path in sorted((root / "detectron2").rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files.append((path.relative_to(root).as_posix(), path.read_bytes()))
    files += [
        (f"{dist_info}/METADATA", _metadata_text().encode()),
        (f"{dist_info}/WHEEL", b"Wheel-Version: 1.0\nGenerator: san_d2 install_detectron2\n"
                               b"Root-Is-Purelib: true\nTag: py3-none-any\n"),
        (f"{dist_info}/top_level.txt", b"detectron2\n"),
        (f"{dist_info}/LICENSE", license_file.read_bytes()),
        (f"{dist_info}/{BUILD_INFO_FILE}", json.dumps(build_info, indent=2).encode()),
    ]
    record = [_record_line(name, data) for name, data in files] + [f"{dist_info}/RECORD,,"]
    files.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))

    wheel = out_dir / f"{DIST_NAME}-{DIST_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            zf.writestr(name, data)
    return wheel


def build_patched_wheel(sdist: Path, out_dir: Path) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        staging = Path(tmp)
        license_file = extract_package(sdist, staging)
        numpy_fixes = patch_numpy_aliases(staging)
        text_fixes = apply_text_patches(staging)
        write_stand_in_extension(staging)
        build_info = {
            "builder": "san_d2 tools/install_detectron2.py",
            "build_id": BUILD_ID,
            "source": SDIST_FILE,
            "source_sha256": SDIST_SHA256,
            "numpy_alias_fixes": numpy_fixes,
            "fixes": text_fixes,
            "stand_in_extension": "detectron2/_C.py",
        }
        for name, count in numpy_fixes.items():
            log(f"fixed {count} numpy alias(es) in {name}")
        for line in text_fixes:
            log(f"fixed {line}")
        return build_wheel(staging, license_file, build_info, out_dir)


# ----------------------------------------------------------------------------------------------
# Main
# ----------------------------------------------------------------------------------------------
def pip_install(wheel: Path) -> None:
    base = [sys.executable, "-m", "pip", "install", "--disable-pip-version-check"]
    steps = [
        # Replace any previous build of ours, leaving other packages alone...
        base + ["--force-reinstall", "--no-deps", str(wheel)],
        # ...then let pip bring in the requirements that are missing.
        base + [str(wheel)],
    ]
    for cmd in steps:
        log("running " + " ".join(cmd[2:]))
        if subprocess.run(cmd, check=False).returncode != 0:
            raise InstallError(f"`{' '.join(cmd)}` failed (see pip's output above).")


def describe_problems(report: Dict) -> str:
    return "\n".join(f"  {module}: {error}" for module, error in report["errors"].items())


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "san_d2" / "detectron2"


def check_prerequisites() -> None:
    """detectron2 imports torch and cv2 everywhere but leaves installing them to the user."""
    missing = []
    for module, how in PREREQUISITES.items():
        try:
            __import__(module)
        except ImportError:
            missing.append(f"  {module}: {how}")
    if missing:
        raise InstallError("install these into this environment first:\n" + "\n".join(missing))


def install(cache_dir: Path, sdist: Optional[Path], force: bool) -> int:
    report = probe_detectron2()
    ours = report.get("found") and (report.get("build") or {}).get("build_id") is not None
    if report.get("found") and not force:
        if not ours:
            if report["errors"]:
                raise InstallError(
                    f"detectron2 {report['version']} at {report['location']} (not installed by "
                    f"this script) is importable, but parts SAN needs fail:\n"
                    f"{describe_problems(report)}\nRepair that installation, or remove it "
                    "(`pip uninstall detectron2`) and run this script again.")
            log(f"detectron2 {report['version']} is already importable from "
                f"{report['location']}; leaving it as it is.")
            return 0
        if report["build"]["build_id"] == BUILD_ID and not report["errors"]:
            log(f"detectron2 {report['version']} (san_d2 build {BUILD_ID}) is already installed.")
            return 0
        log("an older or broken san_d2 build of detectron2 is installed; rebuilding it.")

    check_prerequisites()
    sdist_path = obtain_sdist(cache_dir, sdist)
    with tempfile.TemporaryDirectory() as tmp:
        wheel = build_patched_wheel(sdist_path, Path(tmp))
        pip_install(wheel)

    report = probe_detectron2()
    if not report.get("found") or report["errors"]:
        raise InstallError("detectron2 was installed but does not import cleanly:\n"
                           + (describe_problems(report) or report.get("import_error", "")))
    log(f"installed detectron2 {report['version']} at {report['location']}")
    return 0


def parse_args(argv: Optional[Iterable[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sdist", type=Path, default=None,
                        help=f"use this local copy of {SDIST_FILE} instead of downloading it")
    parser.add_argument("--cache-dir", type=Path, default=default_cache_dir(),
                        help="where the verified sdist is kept (default: %(default)s)")
    parser.add_argument("--force", action="store_true",
                        help="(re)install even if an importable detectron2 is present")
    return parser.parse_args(argv)


def main(argv: Optional[Iterable[str]] = None) -> int:
    args = parse_args(argv)
    try:
        return install(args.cache_dir, args.sdist, args.force)
    except InstallError as e:
        print(f"[install_detectron2] ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
