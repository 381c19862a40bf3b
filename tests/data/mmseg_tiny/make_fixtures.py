#!/usr/bin/env python
"""Makes the fixtures of tests/data/mmseg_tiny with mmsegmentation 1.2.2 itself.

NOT run by CI (it needs mmseg, mmengine and mmcv-lite; see README.md for the environment).

    python make_fixtures.py --work /tmp/mmseg_work --out tests/data/mmseg_tiny

Steps:
  1. the tiny SAN config: mmseg's own ``configs/san/san-vit-b16_coco-stuff164k-640x640.py`` with
     only the sizes changed;
  2. a seeded, fully initialised state dict for it (every tensor set from one torch.Generator);
  3. a real mmengine Runner (2 training iterations on a 4-image synthetic dataset, starting from
     the seeded weights) whose CheckpointHook writes the checkpoint; mmseg's publish step
     (``tools/misc/publish_model.py``: drop ``optimizer``, re-save) is applied by hand;
  4. test images, ``mmseg.apis.init_model`` + ``inference_model`` per vocabulary and image,
     the decode head's raw outputs and the data preprocessor's output for one image, and
     mmseg's ms+flip TTA (``SegTTAModel`` + ``tta_pipeline``) for one image;
  5. keys.tsv, the inference config, outputs_meta.json (shapes, margins, and how far the outputs
     move when every weight is multiplied by 1 + 1e-7 N(0, 1)).
"""
import argparse
import copy
import json
import math
import os
import os.path as osp
import shutil
import sys
import types

import numpy as np
import torch
import torch.nn.functional as F

TRAIN_CLASSES = ("sky", "grass", "road", "car")  # the 4-class training vocabulary
VOCABS = [["sky", "grass", "road"], ["sky", "grass", "road", "red car", "tree"]]
IMAGE_SIZES = [(97, 131), (160, 120), (64, 64)]  # (H, W)
DEBUG_IMAGE = 1  # the image whose intermediates are saved (padding is exercised: 853x640 -> 864x640)
DEBUG_VOCAB = 1
TTA_IMAGE, TTA_VOCAB = 0, 1
SEED = 0
# multipliers applied after the seeded draws (see seeded_state_dict); names are substrings
SCALES = {
    "text_encoder.token_embedding.weight": 50.0,  # std 1: class names give less alike embeddings
    "image_encoder.cls_token": 0.1,  # a smaller common part in the recognition-head queries
    "rec_with_attnbias.layers.0.attentions.0.attn.out_proj.weight": 10.0,  # queries differ more
    "mask_decoder.pix_mlp.layers.2.": 0.3,  # mask logits nearer 0 (weight and bias)
}


# ------------------------------------------------------------------ environment

def install_mmcv_ops_standin():
    """mmcv-lite has no ``mmcv.ops``; ``import mmseg.models`` imports names from it. SAN needs only
    ``point_sample`` (training loss): a plain-PyTorch one, the rest raise when called."""
    ops = types.ModuleType("mmcv.ops")

    def point_sample(input, points, align_corners=False, **kwargs):
        add_dim = points.dim() == 3
        if add_dim:
            points = points.unsqueeze(2)
        out = F.grid_sample(input, 2.0 * points - 1.0, align_corners=align_corners, **kwargs)
        return out.squeeze(3) if add_dim else out

    def missing(name):
        if name.startswith("__"):
            raise AttributeError(name)

        def unavailable(*args, **kwargs):
            raise NotImplementedError(f"mmcv.ops.{name} is not available in mmcv-lite")

        unavailable.__name__ = name
        return unavailable

    ops.point_sample = point_sample
    ops.__getattr__ = missing
    sys.modules["mmcv.ops"] = ops
    import mmcv
    mmcv.ops = ops


# ------------------------------------------------------------------ config

def b16_config_path():
    import mmseg
    return osp.join(osp.dirname(mmseg.__file__), ".mim", "configs", "san",
                    "san-vit-b16_coco-stuff164k-640x640.py")


def tiny_config(vocabulary, pretrained=None):
    """mmseg's B/16 COCO-Stuff SAN config, sizes changed to the tiny model, for ``vocabulary``."""
    from mmengine import Config
    cfg = Config.fromfile(b16_config_path())
    k = len(vocabulary)
    m = cfg.model
    m.pretrained = pretrained
    ie = m.image_encoder  # CLIP ViT, first 3 of 4 blocks (the 4th is the recognition head)
    ie.embed_dims, ie.num_layers, ie.num_heads = 64, 3, 4
    ie.out_indices = (0, 1, 2)  # + out_origin: CLIP features 0 (after ln_pre), 1, 2, 3
    te = m.text_encoder
    te.dataset_name = None
    te.vocabulary = list(vocabulary)
    te.embed_dims, te.num_layers, te.num_heads, te.output_dims = 32, 2, 4, 32
    dh = m.decode_head
    dh.num_classes = k
    sc = dh.san_cfg
    sc.clip_channels, sc.embed_dims, sc.num_queries = 64, 64, 16
    sc.cfg_encoder.num_heads = 4  # 8 blocks, mlp_ratio 4: unchanged
    sc.cfg_decoder.num_heads, sc.cfg_decoder.embed_channels, sc.cfg_decoder.mlp_channels = 4, 32, 32
    mg = dh.maskgen_cfg
    mg.sos_token_num, mg.num_layers, mg.embed_dims, mg.num_heads, mg.out_dims = 16, 1, 64, 4, 32
    dh.train_cfg.num_points = 1024  # san_tiny.yaml TRAIN_NUM_POINTS
    dh.loss_decode[0].class_weight = [1.0] * k + [0.1]
    cfg.num_classes = k
    return cfg


def runner_overrides(cfg, work, seeded):
    """What the checkpoint-making run changes on top of ``tiny_config``: a synthetic 4-image
    dataset, 2 iterations, fp32 optimiser on CPU, no validation (the COCO files are not here)."""
    cfg = copy.deepcopy(cfg)
    cfg.work_dir = osp.join(work, "run")
    cfg.experiment_name = "san-vit-tiny_synthetic-4img"
    cfg.load_from = seeded  # every tensor from the seeded file (after mmseg's own init_weights)
    cfg.randomness = dict(seed=SEED, deterministic=False)
    cfg.train_dataloader = dict(
        batch_size=2, num_workers=0, persistent_workers=False,
        sampler=dict(type="InfiniteSampler", shuffle=True),
        dataset=dict(
            type="BaseSegDataset", data_root=osp.join(work, "train_data"),
            data_prefix=dict(img_path="img", seg_map_path="ann"),
            img_suffix=".png", seg_map_suffix=".png", reduce_zero_label=False,
            metainfo=dict(classes=TRAIN_CLASSES,
                          palette=[[70, 130, 180], [0, 180, 0], [128, 128, 128], [200, 0, 0]]),
            pipeline=cfg.train_pipeline))
    cfg.train_cfg = dict(type="IterBasedTrainLoop", max_iters=2, val_interval=1000)
    for key in ("val_dataloader", "val_cfg", "val_evaluator",
                "test_dataloader", "test_cfg", "test_evaluator"):
        cfg[key] = None
    cfg.optim_wrapper.type = "OptimWrapper"  # AmpOptimWrapper needs a GPU
    cfg.optim_wrapper.pop("loss_scale", None)
    cfg.default_hooks.checkpoint = dict(type="CheckpointHook", by_epoch=False, interval=2)
    cfg.default_hooks.logger.interval = 1
    return cfg


# ------------------------------------------------------------------ data

def make_image(h, w, rng):
    """RGB uint8: sky / road / grass bands, a red box, a darker disc, plus noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    img[:] = (90, 150, 220)  # sky
    img[yy > 0.4 * h] = (60, 160, 60)  # grass
    road = (yy > 0.6 * h) & (np.abs(xx - 0.5 * w - 0.3 * (yy - 0.6 * h)) < 0.2 * w)
    img[road] = (120, 120, 125)
    box = (yy > 0.5 * h) & (yy < 0.75 * h) & (xx > 0.1 * w) & (xx < 0.35 * w)
    img[box] = (200, 30, 30)
    disc = (yy - 0.2 * h) ** 2 + (xx - 0.75 * w) ** 2 < (0.12 * min(h, w)) ** 2
    img[disc] = (30, 90, 40)
    img += 0.25 * xx[..., None] / w * 40  # a gradient
    img += rng.normal(0.0, 10.0, img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def write_png(path, rgb):
    from PIL import Image
    Image.fromarray(rgb, "RGB").save(path)


def make_train_data(root, rng):
    os.makedirs(osp.join(root, "img"), exist_ok=True)
    os.makedirs(osp.join(root, "ann"), exist_ok=True)
    from PIL import Image
    for i in range(4):
        h, w = 240, 320
        rgb = make_image(h, w, rng)
        lab = np.zeros((h, w), np.uint8)
        lab[h * 2 // 5:] = 1
        lab[h * 3 // 5:, w // 3: 2 * w // 3] = 2
        lab[h // 2: h * 3 // 4, w // 10: w * 35 // 100] = 3
        lab[:4] = 255
        write_png(osp.join(root, "img", f"train_{i}.png"), rgb)
        Image.fromarray(lab, "L").save(osp.join(root, "ann", f"train_{i}.png"))


# ------------------------------------------------------------------ weights

def seeded_state_dict(model):
    """Every tensor of ``model.state_dict()`` from one generator (seed 0), in state-dict order:
    Linear / conv / MHA weights N(0, 1/fan_in), biases N(0, 0.02^2), LayerNorms 1 + N(0, 0.02^2) /
    N(0, 0.02^2), CLIP cls / pos embeddings N(0, 1/width), token embedding N(0, 0.02^2), text
    positional N(0, 0.01^2), text projection N(0, 1/width), bg_embed N(0, 1/32),
    side-adapter pos / query embeddings N(0, 0.02^2), bias_scaling (Linear(1, 1)) weight
    1 + N(0, 0.02^2), logit_scale = log(100); then the multipliers of ``SCALES`` (so that a random
    model gives masks that are not all ~0 after the sigmoid and queries that do not all vote for
    the same class)."""
    gen = torch.Generator().manual_seed(SEED)
    modules = dict(model.named_modules())
    out = {}
    for name, t in model.state_dict().items():
        parent = modules[name.rsplit(".", 1)[0]] if "." in name else model
        leaf = name.rsplit(".", 1)[-1]
        shape = t.shape
        randn = lambda std: torch.randn(shape, generator=gen) * std  # noqa: E731
        if name == "text_encoder.logit_scale":
            v = torch.full(shape, math.log(100.0))
        elif "Norm" in type(parent).__name__:
            v = (1.0 + randn(0.02)) if leaf == "weight" else randn(0.02)
        elif "bias_scaling" in name:
            v = (1.0 + randn(0.02)) if leaf == "weight" else randn(0.02)
        elif name == "text_encoder.token_embedding.weight":
            v = randn(0.02)
        elif name == "text_encoder.positional_embedding":
            v = randn(0.01)
        elif name in ("text_encoder.text_projection", "text_encoder.bg_embed"):
            v = randn(shape[0] ** -0.5 if leaf == "text_projection" else shape[-1] ** -0.5)
        elif name in ("image_encoder.cls_token", "image_encoder.pos_embed"):
            v = randn(shape[-1] ** -0.5)
        elif leaf in ("pos_embed", "query_embed", "query_pos_embed"):
            v = randn(0.02)
        elif t.dim() >= 2:
            v = randn(t[0].numel() ** -0.5)
        elif t.dim() == 1:
            v = randn(0.02)
        else:
            raise ValueError(f"no rule for {name} {tuple(shape)}")
        out[name] = v.to(torch.float32).contiguous()
    for pattern, factor in SCALES.items():
        hits = [k for k in out if pattern in k]
        assert hits, pattern
        for k in hits:
            out[k] = out[k] * factor
    assert all(torch.isfinite(v).all() for v in out.values())
    return out


# ------------------------------------------------------------------ main

def _plain(o):
    """numpy / torch scalars and sizes in outputs_meta.json."""
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, torch.Size):
        return list(o)
    return str(o)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", default="/tmp/mmseg_work")
    ap.add_argument("--out", default=osp.dirname(osp.abspath(__file__)))
    args = ap.parse_args()
    work, out = args.work, args.out
    os.makedirs(work, exist_ok=True)
    os.makedirs(out, exist_ok=True)

    install_mmcv_ops_standin()
    # mmengine 0.10.7 calls torch.load without weights_only; torch >= 2.6 defaults it to True,
    # which refuses mmengine's own checkpoints (HistoryBuffer in message_hub)
    os.environ["TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD"] = "1"
    import mmengine
    import mmseg
    from mmengine.dataset import Compose, pseudo_collate
    from mmengine.registry import init_default_scope
    from mmengine.runner import Runner
    from mmseg.apis import inference_model, init_model
    from mmseg.registry import MODELS
    init_default_scope("mmseg")

    rng = np.random.default_rng(SEED)
    # 1. images
    image_paths = []
    for i, (h, w) in enumerate(IMAGE_SIZES):
        p = osp.join(out, f"image_{i}.png")
        write_png(p, make_image(h, w, rng))
        image_paths.append(p)
    make_train_data(osp.join(work, "train_data"), rng)

    # 2. the seeded weights (plain state dict, mmseg names)
    torch.manual_seed(SEED)
    model = MODELS.build(tiny_config(TRAIN_CLASSES).model)
    seeded = seeded_state_dict(model)
    seeded_path = osp.join(work, "seeded_init.pth")
    torch.save(seeded, seeded_path)

    # 3. a Runner run writes the checkpoint; mmseg's publish step by hand
    shutil.rmtree(osp.join(work, "run"), ignore_errors=True)
    run_cfg = runner_overrides(tiny_config(TRAIN_CLASSES, pretrained=seeded_path), work, seeded_path)
    run_cfg.dump(osp.join(work, "runner_config.py"))
    runner = Runner.from_cfg(run_cfg)
    runner.train()
    ckpt_in = osp.join(work, "run", "iter_2.pth")
    ckpt = torch.load(ckpt_in, map_location="cpu", weights_only=False)
    print("checkpoint keys written by CheckpointHook:", list(ckpt))
    del ckpt["optimizer"]  # == mmseg tools/misc/publish_model.py
    ckpt_path = osp.join(out, "san_tiny_mmseg.pth")
    torch.save(ckpt, ckpt_path)
    sd = ckpt["state_dict"]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in sd.values())
    assert list(sd) == list(seeded), "state dict names / order differ from the built model"
    frozen_same = [k for k in sd if torch.equal(sd[k], seeded[k])]
    changed = [k for k in sd if k not in frozen_same]
    print(f"{len(sd)} tensors; {len(changed)} changed by the 2 training iterations")
    with open(osp.join(out, "keys.tsv"), "w") as f:
        f.write("mmseg key\tshape\tdtype\tchanged by the 2 training steps\n")
        for k, v in sd.items():
            f.write(f"{k}\t{list(v.shape)}\t{str(v.dtype).replace('torch.', '')}\t"
                    f"{'yes' if k in changed else 'no'}\n")

    # the config as mmseg sees it at inference, for the 5-class vocabulary
    tiny_config(VOCABS[1]).dump(osp.join(out, "san-vit-tiny_mmseg_config.py"))
    os.replace(osp.join(out, "san-vit-tiny_mmseg_config.py"),
               osp.join(out, "san-vit-tiny_mmseg_config.py.txt"))  # data, not code

    # 4. inference with mmseg's API
    meta = {"versions": {"mmseg": mmseg.__version__, "mmengine": mmengine.__version__,
                         "torch": torch.__version__, "numpy": np.__version__},
            "vocabularies": VOCABS, "images": {}}
    for v, vocab in enumerate(VOCABS):
        cfg = tiny_config(vocab)
        model = init_model(cfg, ckpt_path, device="cpu")
        loaded = model.state_dict()
        assert set(loaded) == set(sd) and all(torch.equal(loaded[k], sd[k]) for k in sd)
        model.dataset_meta = {"classes": tuple(vocab), "palette": [[i * 40] * 3 for i in range(len(vocab))]}

        captured = {}
        head = model.decode_head
        orig_forward = head.forward

        def head_forward(inputs, deep_supervision_idxs, _orig=orig_forward):
            mask_props, mask_logits = _orig(inputs, deep_supervision_idxs)
            captured["mask_logits"] = mask_props[-1].detach().clone()  # (1, Q, h, w)
            captured["class_logits"] = mask_logits[-1].detach().clone()  # (1, Q, K+1)
            return mask_props, mask_logits

        head.forward = head_forward
        hooks = [
            model.data_preprocessor.register_forward_hook(
                lambda mod, a, o: captured.__setitem__("input", o["inputs"].detach().clone())),
            model.text_encoder.register_forward_hook(
                lambda mod, a, o: captured.__setitem__("class_embeds", o.detach().clone())),
        ]
        for i, path in enumerate(image_paths):
            captured.clear()
            res = inference_model(model, path)
            logits = res.seg_logits.data.numpy().astype(np.float32)  # (K, H, W)
            pred = res.pred_sem_seg.data.numpy()[0]
            assert logits.shape == (len(vocab),) + IMAGE_SIZES[i]
            assert (pred == logits.argmax(0)).all()
            np.save(osp.join(out, f"out_vocab{v}_image{i}_seg_logits.npy"), logits)
            np.save(osp.join(out, f"out_vocab{v}_image{i}_pred.npy"), pred.astype(np.uint8))
            top2 = np.sort(logits, axis=0)[-2:]
            gap = top2[1] - top2[0]
            mi = res.metainfo
            meta["images"].setdefault(str(i), {
                "file": osp.basename(path), "ori_shape": list(mi["ori_shape"]),
                "img_shape": list(mi["img_shape"]), "pad_shape": list(mi["pad_shape"]),
                "img_padding_size (left, right, top, bottom)": list(mi["img_padding_size"]),
                "scale_factor": [float(s) for s in mi["scale_factor"]],
                "network_input_shape": list(captured["input"].shape),
                "mask_logits_shape": list(captured["mask_logits"].shape)})
            meta["images"][str(i)][f"vocab{v}_label_counts"] = np.bincount(
                pred.ravel(), minlength=len(vocab)).tolist()
            meta["images"][str(i)][f"vocab{v}_min_top2_gap"] = float(gap.min())
            meta["images"][str(i)][f"vocab{v}_frac_top2_gap_below_1e-4"] = float((gap < 1e-4).mean())
            if v == DEBUG_VOCAB and i == DEBUG_IMAGE:
                x = captured["input"].numpy().astype(np.float32)
                np.savez_compressed(osp.join(out, f"debug_vocab{v}_image{i}_input.npz"), input=x)
                np.save(osp.join(out, f"debug_vocab{v}_image{i}_mask_logits.npy"),
                        captured["mask_logits"].numpy())
                np.save(osp.join(out, f"debug_vocab{v}_image{i}_class_logits.npy"),
                        captured["class_logits"].numpy())
                np.save(osp.join(out, f"debug_vocab{v}_class_embeds.npy"),
                        captured["class_embeds"].numpy())
        for hk in hooks:
            hk.remove()
        head.forward = orig_forward

        # 5. mmseg ms+flip TTA for one image (vocab 1)
        if v == TTA_VOCAB:
            tta_pipeline = copy.deepcopy(cfg.tta_pipeline)
            tta_pipeline[1]["transforms"] = [
                t for t in tta_pipeline[1]["transforms"]
                if not any(s.get("type") == "LoadAnnotations" for s in t)]  # no ground truth here
            meta["tta_pipeline"] = str(tta_pipeline)
            data = pseudo_collate([Compose(tta_pipeline)(dict(img_path=image_paths[TTA_IMAGE]))])
            tta = MODELS.build(dict(type="SegTTAModel", module=model))
            tta.eval()
            with torch.no_grad():
                tta_pred = tta.test_step(copy.deepcopy(data))[0].pred_sem_seg.data.numpy()
                # SegTTAModel.merge_preds does not return its averaged softmax: recompute it from
                # the 12 passes exactly as merge_preds does (zeros, += softmax(dim=0), /= 12)
                n = len(data["inputs"])
                passes = [model.test_step({k: d[j] for k, d in data.items()})[0] for j in range(n)]
                acc = torch.zeros(passes[0].seg_logits.data.shape)
                for p in passes:
                    acc += p.seg_logits.data.softmax(dim=0)
                acc /= n
            tta_pred = tta_pred.reshape(acc.shape[1:])
            assert (acc.argmax(0).numpy() == tta_pred).all()
            meta["tta_passes"] = [{"img_shape": list(p.metainfo["img_shape"]),
                                   "pad_shape": list(p.metainfo["pad_shape"]),
                                   "flip": bool(p.metainfo["flip"])} for p in passes]
            np.save(osp.join(out, f"tta_vocab{v}_image{TTA_IMAGE}_seg_logits.npy"),
                    acc.numpy().astype(np.float32))
            np.save(osp.join(out, f"tta_vocab{v}_image{TTA_IMAGE}_pred.npy"), tta_pred.astype(np.uint8))

        # 6. how much the outputs move when every weight moves by ~1 float32 ulp (tolerances)
        gen = torch.Generator().manual_seed(1)
        model.load_state_dict({k: t * (1 + 1e-7 * torch.randn(t.shape, generator=gen))
                               for k, t in sd.items()})
        model.text_encoder.cache = {}
        for i, path in enumerate(image_paths):
            ref = np.load(osp.join(out, f"out_vocab{v}_image{i}_seg_logits.npy"))
            got = inference_model(model, path).seg_logits.data.numpy()
            meta["images"][str(i)][f"vocab{v}_max_abs_change_if_weights_times_1+1e-7N"] = float(
                np.abs(got - ref).max())
            meta["images"][str(i)][f"vocab{v}_label_changes_if_weights_times_1+1e-7N"] = int(
                (got.argmax(0) != ref.argmax(0)).sum())

    with open(osp.join(out, "outputs_meta.json"), "w") as f:
        json.dump(meta, f, indent=1, default=_plain)
    print(json.dumps(meta, indent=1, default=_plain))


if __name__ == "__main__":
    main()
