from .mask_former_semantic import MaskFormerSemanticDatasetMapper

# INPUT.DATASET_MAPPER_NAME -> training mapper.
TRAIN_MAPPERS = {"mask_former_semantic": MaskFormerSemanticDatasetMapper}


def build_train_mapper(cfg):
    """The training mapper named by ``cfg.INPUT.DATASET_MAPPER_NAME``."""
    name = cfg.INPUT.DATASET_MAPPER_NAME
    if name not in TRAIN_MAPPERS:
        raise ValueError(f"Unknown INPUT.DATASET_MAPPER_NAME {name!r}: use one of {sorted(TRAIN_MAPPERS)}.")
    return TRAIN_MAPPERS[name](cfg, is_train=True)


__all__ = ["MaskFormerSemanticDatasetMapper", "TRAIN_MAPPERS", "build_train_mapper"]
