#!/usr/bin/env python
"""A web page that segments an uploaded picture with the class names you type.

    san-app                                      # the quick start's model (run san-quickstart first)
    san-app --model b16=san_clip_vit_res4_coco.yaml:san_vit_b_16.pth --model tiny=tiny/san_tiny.yaml
    san-app --port 7860 --host 0.0.0.0 --examples photos/

Needs the app extra: ``pip install 'san_d2[app]'`` (gradio). Each --model is NAME=CONFIG or
NAME=CONFIG:WEIGHTS; the page offers a choice between them. Requests are queued: one
segmentation runs at a time, and every visitor gets an answer in turn.
"""
import argparse
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Tuple

import san_d2  # noqa: F401  (first: it quiets detectron2 0.6's import-time warnings)

from detectron2.utils.logger import setup_logger

from san_d2.data.vocabulary import VOCABULARY_EXPANSIONS
from san_d2.predictor import SANPredictor
from san_d2.utils.app_support import MAX_UPLOAD_SIDE, answer
from san_d2.utils.cli import IMAGE_EXTENSIONS, EXPECTED_ERRORS, add_debug_argument
from san_d2.utils.images import load_rgb_image
from san_d2.utils.io import atomic_write

logger = logging.getLogger("san_d2.app")

QUICKSTART_MODEL = "quickstart=quickstart/san_tiny_synthetic.yaml:output/quickstart/model_final.pth"
QUICKSTART_VOCABULARY = "sky, grass, sand, water, red disc, white square"


def parse_model(text: str) -> Tuple[str, str, str]:
    """"NAME=CONFIG[:WEIGHTS]" -> (name, config, weights or "")."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"{text!r}: give NAME=CONFIG or NAME=CONFIG:WEIGHTS")
    config, _, weights = rest.partition(":")
    return name, config, weights


class Models:
    """The predictors the server was started with, built when first asked for."""

    def __init__(self, models: List[Tuple[str, str, str]], opts: List[str]):
        self.specs = {name: (config, weights) for name, config, weights in models}
        self.opts = opts
        self._built: Dict[str, SANPredictor] = {}

    def get(self, name: str) -> SANPredictor:
        if name not in self._built:
            config, weights = self.specs[name]
            self._built[name] = SANPredictor(config, weights or None, opts=self.opts)
        return self._built[name]


def _examples(folder: str) -> List[str]:
    if not folder or not os.path.isdir(folder):
        return []
    return sorted(str(p) for p in Path(folder).iterdir()
                  if p.suffix.lower() in IMAGE_EXTENSIONS)[:8]


def build_page(models: Models, examples: List[str], default_vocabulary: str,
               max_side: int = MAX_UPLOAD_SIDE):
    import gradio as gr

    def segment(path, vocabulary, expansion, model_name, threshold):
        if not path:
            raise gr.Error("Upload a picture (or pick an example) first.")
        try:
            image = load_rgb_image(path)
            result = answer(models.get(model_name), image, vocabulary, expansion,
                            threshold or None, max_side=max_side)
        except EXPECTED_ERRORS as e:
            raise gr.Error(str(e.args[0] if isinstance(e, KeyError) else e)) from None
        except Exception:  # the log gets the traceback, the page a sentence
            logger.exception("Segmentation failed")
            raise gr.Error("Segmentation failed on the server; its log says why.") from None
        handle, label_file = tempfile.mkstemp(prefix="labels_", suffix=".png")
        os.close(handle)
        with atomic_write(label_file) as f:
            f.write(result.label_png)
        return (result.overlay, result.label_map, [list(row) for row in result.table],
                label_file, result.notice or "Done.")

    with gr.Blocks(title="SAN: open-vocabulary segmentation") as page:
        gr.Markdown("# SAN: segment a picture into the classes you name\n"
                    "Classes separated by commas (`cat, sofa, floor`); with semicolons or one "
                    "class per line, commas separate the synonyms of a class "
                    "(`pickup truck, truck; sky`).")
        with gr.Row():
            with gr.Column():
                picture = gr.Image(type="filepath", label="Picture", sources=["upload", "clipboard"])
                vocabulary = gr.Textbox(label="Vocabulary", value=default_vocabulary, lines=2,
                                        elem_id="vocabulary")
                with gr.Row():
                    expansion = gr.Dropdown(sorted(VOCABULARY_EXPANSIONS), value="none",
                                            label="Vocabulary expansion (drawn as 'other')")
                    model_name = gr.Dropdown(list(models.specs), value=next(iter(models.specs)),
                                             label="Model")
                threshold = gr.Number(value=0, label="Unknown below score (0: off)",
                                      minimum=0, maximum=1)
                run = gr.Button("Segment", variant="primary")
                if examples:
                    gr.Examples(examples, inputs=picture)
            with gr.Column():
                notice = gr.Markdown(elem_id="notice")
                overlay = gr.Image(label="Segmentation", type="numpy", format="png")
                label_map = gr.Image(label="Label map", type="numpy", format="png")
                table = gr.Dataframe(headers=["class", "share (%)"], label="Classes",
                                     interactive=False, elem_id="classes")
                download = gr.File(label="Label PNG (class indices)")
        run.click(segment, [picture, vocabulary, expansion, model_name, threshold],
                  [overlay, label_map, table, download, notice])
    return page


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", action="append", type=parse_model, default=None,
                        help=f"NAME=CONFIG[:WEIGHTS], repeatable (default: {QUICKSTART_MODEL})")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=7860, help="port to listen on")
    parser.add_argument("--examples", default="datasets/san_synthetic/images/val",
                        help="folder of example pictures offered on the page")
    parser.add_argument("--vocabulary", default=None, help="the vocabulary the page starts with")
    parser.add_argument("--max-side", type=int, default=MAX_UPLOAD_SIDE,
                        help="uploads with a longer side are resized to it")
    add_debug_argument(parser)
    parser.add_argument("--opts", nargs=argparse.REMAINDER, default=[],
                        help="config overrides for every model, e.g. MODEL.DEVICE cpu")
    args = parser.parse_args(argv)
    models = args.model or [parse_model(QUICKSTART_MODEL)]
    for name, config, weights in models:
        if weights and not os.path.isfile(weights):
            hint = " (train it with san-quickstart)" if name == "quickstart" else ""
            parser.error(f"--model {name}: no weights file {weights}{hint}.")
    try:
        import gradio  # noqa: F401
    except ImportError:
        parser.error("the web app needs gradio: pip install 'san_d2[app]'")
    setup_logger(name="san_d2")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    vocabulary = args.vocabulary or (QUICKSTART_VOCABULARY if args.model is None else "")
    page = build_page(Models(models, args.opts), _examples(args.examples), vocabulary,
                      args.max_side)
    page.queue(default_concurrency_limit=1).launch(server_name=args.host, server_port=args.port,
                                                   show_error=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
