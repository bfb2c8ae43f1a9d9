"""What the starter is built from and with: :class:`StarterConfig`, the photo lists, the version."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attiqa.utils.files import cache_root

__all__ = ["STARTER_VERSION", "STARTER_DESCRIPTION", "BUILD_PHOTOS", "HOLDOUT_PHOTOS", "StarterConfig", "starter_path"]


STARTER_VERSION = 1


STARTER_DESCRIPTION = ("starter model, not the paper's weights: EfficientNet-Lite0 (ImageNet) trained on packaged "
                       "sample photos to follow the analytic teacher's attribute rankings and to rank synthetic "
                       "distortion levels (MOS in (0, 1))")


BUILD_PHOTOS = ("skimage:astronaut", "skimage:chelsea", "skimage:coffee", "skimage:hubble_deep_field",
                "skimage:immunohistochemistry", "skimage:retina", "skimage:motorcycle", "sklearn:china")


HOLDOUT_PHOTOS = ("skimage:rocket", "sklearn:flower")


@dataclass
class StarterConfig:
    """How the starter is built (defaults: ~5-8 minutes on a 2-core CPU).

    Attributes:
        backbone: backbone name for :func:`attiqa.modeling.heads.build_model`.
        pretrained: start from the packaged ImageNet weights.
        head_hidden: hidden width of the attribute heads.
        mos_hidden: hidden width of the MOS MLP.
        crop: side of the training crops (pixels).
        photo_max_side: photos are downscaled to this longer side first.
        photos: photos used for building (``"skimage:NAME"`` / ``"sklearn:NAME"``).
        holdout: photos kept out of building and used for the report.
        rank_steps: steps of a ranking-only pretraining stage before the joint stage (0 = none;
            the joint stage trains the attribute ranking as well).
        rank_batch_size: images per ranking step.
        rank_lr: learning rate of the ranking stage.
        trainable_backbone_fraction: share of the backbone's parameter tensors (the last ones)
            trained in the ranking stage; 0 freezes it, 1 trains all.
        joint_steps: steps of the joint stage, where the trainable backbone part, the attribute
            heads and the MOS head learn together: attribute ranking against the teacher plus
            MOS ranking by distortion level within each group of versions of one crop.
        joint_groups: base crops per joint step.
        joint_versions: versions (the clean crop + distortions at random levels) per base crop.
        joint_lr: learning rate of the joint stage.
        mos_weight: weight of the MOS loss against the attribute-ranking loss.
        group_isp_strength: strength of the random ISP variation of each group's clean crop
            (:func:`isp_variation`; 1 = exposure ±1.5 EV, so dark and bright renderings both occur).
        mos_samples: distorted crops whose frozen head features re-fit the MOS head after the
            joint stage (0 = keep the jointly trained head).
        mos_group: versions (different distortions/levels) per base crop in that re-fit.
        mos_steps: optimisation steps of the re-fit (on cached features).
        mos_lr: learning rate of the re-fit.
        mos_feature_noise: Gaussian noise added to the cached features in the re-fit, in units of
            each feature's standard deviation (regularises against memorising the few crops).
        report_levels: distortion levels of the hold-out report.
        seed: random seed.
    """

    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    head_hidden: int = 256
    mos_hidden: int = 256
    crop: int = 224
    photo_max_side: int = 512
    photos: tuple[str, ...] = BUILD_PHOTOS
    holdout: tuple[str, ...] = HOLDOUT_PHOTOS
    rank_steps: int = 60
    rank_batch_size: int = 16
    rank_lr: float = 3e-4
    trainable_backbone_fraction: float = 0.5
    joint_steps: int = 240
    joint_groups: int = 4
    joint_versions: int = 4
    joint_lr: float = 3e-4
    mos_weight: float = 1.0
    group_isp_strength: float = 1.0
    mos_samples: int = 0
    mos_group: int = 8
    mos_steps: int = 1500
    mos_lr: float = 1e-3
    mos_feature_noise: float = 1.0
    report_levels: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    seed: int = 0

    @classmethod
    def tiny(cls) -> "StarterConfig":
        """A random-weight model on 32 px crops that builds in a few seconds (tests)."""
        return cls(pretrained=False, head_hidden=16, mos_hidden=16, crop=32, photo_max_side=64,
                   photos=BUILD_PHOTOS[:2], rank_steps=2, rank_batch_size=4, trainable_backbone_fraction=1.0,
                   joint_steps=2, joint_groups=2, joint_versions=3, mos_samples=16, mos_group=4, mos_steps=10,
                   report_levels=(0.0, 0.5, 1.0))


def starter_path() -> Path:
    """Where the cached starter lives: ``<cache>/attiqa/starter-v1.pt``."""
    return cache_root() / "attiqa" / f"starter-v{STARTER_VERSION}.pt"
