"""san_d2's command-line applications, thin entry points over the library.

Installed as the package ``san_d2_tools`` with console scripts (``san-train``,
``san-quickstart``, ``san-demo``, ``san-benchmark``, ``san-visualize-predictions``, ``san-app``,
``san-convert-checkpoint``, ``san-export-onnx``);
``python -m san_d2_tools.<name>`` and, in a checkout, ``python tools/<name>.py`` run the same.
``install_detectron2.py`` is the stand-alone installer that runs before san_d2 is installed.
"""
