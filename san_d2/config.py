"""SAN's configuration keys and the one way to build a config for them."""
import os
from typing import Optional, Sequence

from detectron2.config import CfgNode as CN
from detectron2.config import get_cfg
from detectron2.projects.deeplab import add_deeplab_config

from .model_zoo import resolve_config_file, shipped_config_ending

__all__ = ["add_san_config", "get_san_cfg"]


def add_san_config(cfg: CN) -> None:
    """Adds SAN's keys, with the defaults of the paper's code, to a detectron2 config.

    Call it after ``add_deeplab_config`` (which provides ``WarmupPolyLR``'s keys) and before
    merging a SAN YAML. The published configs (``configs/san_clip_vit_*.yaml``) load unchanged.
    """
    # Data.
    cfg.INPUT.DATASET_MAPPER_NAME = "mask_former_semantic"  # training mapper
    cfg.INPUT.COLOR_AUG_SSD = False  # SSD-style photometric augmentation in training
    cfg.INPUT.CROP.SINGLE_CATEGORY_MAX_AREA = 1.0  # re-draw crops dominated by one class (<1)
    cfg.INPUT.SIZE_DIVISIBILITY = -1  # training mapper pads images and labels to this size
    # Training padding of images to SIZE_DIVISIBILITY: False = value 128 before normalisation
    # (the paper's code), True = 0 after normalisation (mmsegmentation's recipe).
    cfg.INPUT.PAD_AFTER_NORMALIZATION = False
    # Test-time resize: "detectron2" (PIL bilinear, ResizeShortestEdge) or "mmseg" (OpenCV
    # bilinear on uint8 with mmcv's size rounding, as mmsegmentation's test pipeline).
    cfg.INPUT.TEST_RESIZE = "detectron2"
    # Class names given to the text encoder for the evaluation datasets: "paper" (the
    # registered names) or "mmseg" (mmsegmentation's: PC-59 "table", VOC "tvmonitor").
    cfg.DATASETS.CLASS_NAMES = "paper"
    # Dataset description JSON files (your own datasets) that san-train registers first.
    cfg.DATASETS.DEFINITIONS = []
    # Test-time augmentation recipe: "detectron2" (short sides TEST.AUG.MIN_SIZES, scores
    # averaged) or "mmseg" (TEST.AUG.RATIOS of the original size, class softmaxes averaged).
    cfg.TEST.AUG.RECIPE = "detectron2"
    cfg.TEST.AUG.RATIOS = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75]  # the "mmseg" recipe's scales

    # Optimisation.
    cfg.SOLVER.WEIGHT_DECAY_EMBED = 0.0  # weight decay of embedding-like parameters
    cfg.SOLVER.WEIGHT_DECAY_EMBED_GROUP = [  # name fragments that get WEIGHT_DECAY_EMBED
        "absolute_pos_embed",
        "positional_embedding",
        "pos_embed",
        "query_embed",
        "relative_position_bias_table",
    ]
    cfg.SOLVER.OPTIMIZER = "ADAMW"  # "ADAMW" or "SGD"
    cfg.SOLVER.BACKBONE_MULTIPLIER = 1.0  # LR multiplier of side_adapter_network parameters
    cfg.SOLVER.CLIP_MULTIPLIER = 1.0  # LR multiplier of parameters under modules named *clip*
    cfg.SOLVER.TEST_IMS_PER_BATCH = 1  # inference batch size

    cfg.MODEL.SAN = CN()
    # Loss and matching.
    cfg.MODEL.SAN.NO_OBJECT_WEIGHT = 0.1  # cross-entropy weight of the "no object" class
    cfg.MODEL.SAN.CLASS_WEIGHT = 2.0  # weight of the classification loss and matching cost
    cfg.MODEL.SAN.DICE_WEIGHT = 5.0  # weight of the dice loss and matching cost
    cfg.MODEL.SAN.MASK_WEIGHT = 5.0  # weight of the sigmoid BCE mask loss and matching cost
    cfg.MODEL.SAN.TRAIN_NUM_POINTS = 112 * 112  # points sampled per mask for the mask losses
    cfg.MODEL.SAN.NUM_CLASSES = 171  # size of the training vocabulary
    cfg.MODEL.SAN.OVERSAMPLE_RATIO = 3.0  # candidate points per sampled point
    cfg.MODEL.SAN.IMPORTANCE_SAMPLE_RATIO = 0.75  # share of points chosen by uncertainty
    # CLIP.
    cfg.MODEL.SAN.CLIP_MODEL_NAME = "ViT-B/16"  # open_clip model name/alias or config JSON path
    cfg.MODEL.SAN.CLIP_PRETRAINED_NAME = "openai"  # open_clip tag, local weights file or ""
    cfg.MODEL.SAN.CLIP_TEMPLATE_SET = "vild"  # prompt template set ("vild" or "imagenet")
    # Folder of persisted text embeddings, keyed by text weights, templates and vocabulary:
    # "auto" = $XDG_CACHE_HOME/san_d2/text_embeddings (or ~/.cache/...), "" = memory only.
    cfg.MODEL.SAN.TEXT_EMBEDDING_CACHE = "auto"
    cfg.MODEL.SAN.FEATURE_LAST_LAYER_IDX = 9  # CLIP blocks in the feature extractor
    cfg.MODEL.SAN.CLIP_FROZEN_EXCLUDE = ["positional_embedding"]  # trainable extractor params
    cfg.MODEL.SAN.CLIP_DEEPER_FROZEN_EXCLUDE = []  # trainable recognition-head params
    # Recognition with attention bias.
    cfg.MODEL.SAN.REC_CROSS_ATTN = False  # sos tokens cross-attend instead of masked self-attn
    cfg.MODEL.SAN.REC_DOWNSAMPLE_METHOD = "max"  # attention bias to CLIP grid: max/avg/bilinear..
    cfg.MODEL.SAN.SOS_TOKEN_FORMAT = "cls_token"  # "cls_token", "learnable_token", "pos_embedding"
    # Input handling.
    cfg.MODEL.SAN.SIZE_DIVISIBILITY = 32  # the model pads its batch to a multiple of this
    cfg.MODEL.SAN.ASYMETRIC_INPUT = True  # CLIP sees the image resized by CLIP_RESOLUTION
    cfg.MODEL.SAN.CLIP_RESOLUTION = 0.5  # scale factor of CLIP's input (0.5 B/16, 0.7 L/14)
    cfg.MODEL.SAN.SEM_SEG_POSTPROCESS_BEFORE_INFERENCE = True  # resize masks before combining
    # Precision of the networks at inference: "fp32" (exact), or "bf16"/"fp16" autocast
    # (faster; post-processing and text embeddings stay float32). Training uses SOLVER.AMP.
    cfg.MODEL.SAN.INFERENCE_DTYPE = "fp32"
    cfg.MODEL.SAN.COMPILE = False  # torch.compile CLIP and the side adapter (slow first call)
    # "Unknown" pixels (label -1; evaluated as wrong): best class score below this (0: off) ...
    cfg.MODEL.SAN.UNKNOWN_THRESHOLD = 0.0
    # ... or the "no object" mass of the proposals covering a pixel at least its best score.
    cfg.MODEL.SAN.UNKNOWN_IF_BACKGROUND = False
    cfg.MODEL.SAN.SLIDING_WINDOW = CN()
    cfg.MODEL.SAN.SLIDING_WINDOW.SIZE = 0  # images larger than this run in windows (0: off)
    cfg.MODEL.SAN.SLIDING_WINDOW.STRIDE = 0  # between windows (0: two thirds of SIZE)

    cfg.MODEL.SIDE_ADAPTER = CN()
    cfg.MODEL.SIDE_ADAPTER.NAME = "RegionwiseSideAdapterNetwork"  # SIDE_ADAPTER registry name
    cfg.MODEL.SIDE_ADAPTER.VIT_NAME = "vit_w240n6d8_patch16"  # timm model of the side network
    cfg.MODEL.SIDE_ADAPTER.PRETRAINED = False  # load timm pre-trained weights for it
    cfg.MODEL.SIDE_ADAPTER.IMAGE_SIZE = 640  # image size the side ViT's pos-embed is built for
    cfg.MODEL.SIDE_ADAPTER.DROP_PATH_RATE = 0.0  # stochastic depth of the side ViT
    cfg.MODEL.SIDE_ADAPTER.NUM_QUERIES = 100  # mask proposals per image
    cfg.MODEL.SIDE_ADAPTER.FUSION_TYPE = "add"  # how CLIP features enter the side network
    cfg.MODEL.SIDE_ADAPTER.FUSION_MAP = ["0->0", "3->1", "6->2", "9->3"]  # "clip->side" stages
    cfg.MODEL.SIDE_ADAPTER.DEEP_SUPERVISION_IDXS = [7, 8]  # side blocks whose outputs are decoded
    cfg.MODEL.SIDE_ADAPTER.ATTN_BIAS = CN()
    cfg.MODEL.SIDE_ADAPTER.ATTN_BIAS.NUM_HEADS = 12  # heads of the bias (= CLIP's heads)
    cfg.MODEL.SIDE_ADAPTER.ATTN_BIAS.NUM_LAYERS = 1  # recognition layers that get a bias
    cfg.MODEL.SIDE_ADAPTER.ATTN_BIAS.EMBED_CHANNELS = 256  # per-head bias embedding width
    cfg.MODEL.SIDE_ADAPTER.ATTN_BIAS.MLP_CHANNELS = 256  # hidden width of the decoder MLPs
    cfg.MODEL.SIDE_ADAPTER.ATTN_BIAS.MLP_NUM_LAYERS = 3  # layers of each decoder MLP
    cfg.MODEL.SIDE_ADAPTER.ATTN_BIAS.RESCALE_ATTN_BIAS = True  # learned affine on the bias

    # Accepted so that the published configs load; san_d2 does not log to Weights & Biases.
    cfg.WANDB = CN()
    cfg.WANDB.PROJECT = "san"  # W&B project name (accepted, unused)
    cfg.WANDB.NAME = None  # W&B run name (accepted, unused)
    # Accepted so that the published configs load: attention always goes through
    # torch's scaled_dot_product_attention, which picks flash kernels by itself.
    cfg.MODEL.FLASH = False


class _SANCfgNode(CN):
    """detectron2's CfgNode whose ``_BASE_`` may also name a shipped config, so that a config
    of your own, in any folder, can inherit ``san_clip_vit_res4_coco.yaml``."""

    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False):
        if not os.path.isfile(filename):
            filename = shipped_config_ending(filename) or filename
        return super().load_yaml_with_base(filename, allow_unsafe=allow_unsafe)


def _resolving_shipped_bases(node: CN) -> CN:
    """Makes every node of a config a _SANCfgNode (the same data; yacs merges only nodes of
    one class, and a loaded file's nodes take the config's)."""
    object.__setattr__(node, "__class__", _SANCfgNode)
    for value in node.values():
        if isinstance(value, CN):
            _resolving_shipped_bases(value)
    return node


def get_san_cfg(config_file: Optional[str] = None, opts: Sequence[str] = ()) -> CN:
    """Returns detectron2's default config with DeepLab's and SAN's keys, merged with a file.

    Args:
        config_file: a YAML file (``_BASE_`` inheritance allowed) or the name of a shipped
            config (:mod:`san_d2.model_zoo`); None for the defaults.
        opts: ``KEY VALUE`` overrides, as on a command line.
    """
    cfg = get_cfg()
    add_deeplab_config(cfg)
    add_san_config(cfg)
    _resolving_shipped_bases(cfg)
    if config_file:
        cfg.merge_from_file(resolve_config_file(os.fspath(config_file)))
    if opts:
        try:
            cfg.merge_from_list(list(opts))
        except AssertionError as e:  # how yacs reports bad overrides
            message = str(e)
            raise (KeyError if message.startswith("Non-existent key") else ValueError)(
                f"{message} (in the overrides {list(opts)})") from None
    return cfg
