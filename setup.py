"""san_d2: SAN for open-vocabulary semantic segmentation, as a detectron2 project.

detectron2 itself is not on PyPI and is not listed below: `make setup` (or
`python tools/install_detectron2.py`) installs it, and a detectron2 built from source works too.
"""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

INSTALL_REQUIRES = [
    # Lower bounds only: requirements/torch.txt pins the tested build. 2.3 is the first with
    # torch.nn.attention.sdpa_kernel (the benchmark's FLOP count), after 2.1 brought
    # scaled_dot_product_attention's float masks on CPU and torch.load(weights_only=...).
    "torch>=2.3",
    "torchvision>=0.18",
    "numpy",
    "Pillow>=9.1",
    # Upper bounds where san_d2 builds on a library's internals: open_clip's transformer blocks
    # (3.x runs batch-first) and timm's VisionTransformer constructor arguments (1.x).
    "open_clip_torch>=3.0,<4",
    "timm>=1.0,<2",
    # detectron2 v0.6 depends on fvcore 0.1.5's Checkpointer and config API.
    "fvcore>=0.1.5,<0.1.6",
    "pycocotools>=2.0.2",
    "opencv-python>=4.5",
    "scipy>=1.7",
    "tqdm",
]

# The applications (tools/) are installed as the package san_d2_tools, beside the library, as
# detectron2 installs its projects' folders under detectron2.projects.
CONSOLE_SCRIPTS = [
    "san-train = san_d2_tools.train_net:cli",
    "san-quickstart = san_d2_tools.quickstart:main",
    "san-demo = san_d2_tools.demo:main",
    "san-benchmark = san_d2_tools.benchmark:main",
    "san-visualize-predictions = san_d2_tools.visualize_predictions:main",
    "san-convert-checkpoint = san_d2_tools.convert_checkpoint:main",
    "san-export-onnx = san_d2_tools.export_onnx:main",
    "san-app = san_d2_tools.app:main",
]

# The web app (san-app), and what its browser test drives the page with.
APP_REQUIRES = ["gradio>=5"]
BROWSER_TEST_REQUIRES = ["playwright>=1.40"]

# ONNX export (san-export-onnx) and the torch-free runtime (san_d2_runtime). The runtime's own
# needs are numpy, Pillow and onnxruntime; OpenCV only for exports with mmseg's test resize
# (opencv-python, as above, so that the two OpenCV wheels never land in one environment).
RUNTIME_REQUIRES = ["onnxruntime>=1.17", "numpy", "Pillow>=9.1", "opencv-python>=4.5"]
EXPORT_REQUIRES = ["onnx>=1.16", "onnxscript>=0.2", "onnxruntime>=1.17"]

setup(
    name="san_d2",
    version="0.1.0",
    description="SAN (Side Adapter Network) for open-vocabulary semantic segmentation "
    "as a detectron2 project",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.9",
    # san_d2_runtime is a top-level package, not san_d2.runtime: importing it must not run
    # san_d2/__init__.py, which imports torch and detectron2.
    packages=find_packages(include=["san_d2", "san_d2.*"]) + ["san_d2_runtime", "san_d2_tools"],
    package_dir={"san_d2_tools": "tools"},
    package_data={
        "san_d2.data.reference": ["*.json", "labelsets/*.json"],
        "san_d2.model_zoo": ["configs/*.yaml", "configs/*/*.yaml"],
        "san_d2.modeling.clip_configs": ["*.json"],
    },
    install_requires=INSTALL_REQUIRES,
    extras_require={
        # The tests exercise the export and the runtime, so CI installs what they need.
        "test": ["pytest>=7", *EXPORT_REQUIRES, *APP_REQUIRES, *BROWSER_TEST_REQUIRES],
        "export": EXPORT_REQUIRES,
        "runtime": RUNTIME_REQUIRES,
        "app": APP_REQUIRES,
    },
    entry_points={"console_scripts": CONSOLE_SCRIPTS},
)
