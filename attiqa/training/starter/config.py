"""What the starter is built from and with: :class:`StarterConfig`, the photo lists, the version."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from attiqa.utils.files import cache_root

__all__ = ["STARTER_VERSION", "STARTER_DESCRIPTION", "BUILD_PHOTOS", "HOLDOUT_PHOTOS", "PHOTO_LICENSES",
           "StarterConfig", "starter_path"]

STARTER_VERSION = 6
"""Bumped whenever the recipe or the arithmetic it runs on changes, so a cached starter of an older
recipe is never reused (6: MKL pinned to its ``COMPATIBLE`` branch, which AMD processors run too)."""

STARTER_DESCRIPTION = ("starter model, not the paper's weights: EfficientNet-Lite0 (ImageNet) whose attribute heads "
                       "follow the analytic teacher and whose MOS (in (0, 1)) ranks renderings of packaged photos by "
                       "their perceptual distance from the photo (no-reference at use)")

BUILD_PHOTOS = ("skimage:astronaut", "skimage:chelsea", "skimage:motorcycle_left", "skimage:motorcycle_right",
                "sklearn:china", "matplotlib:grace_hopper")
"""Natural photographs the starter trains on (scientific images such as hubble, ihc, retina are left out)."""

HOLDOUT_PHOTOS = ("skimage:rocket", "sklearn:flower", "skimage:coffee")
"""The test scenes of the sample RAW set (``isp.sample_data.TEST_SCENES``): never trained on, only reported."""

PHOTO_LICENSES = {
    "skimage:astronaut": "NASA photograph (Eileen Collins), public domain (scikit-image data)",
    "skimage:chelsea": "CC0, Stefan van der Walt (scikit-image data)",
    "skimage:motorcycle_left": "Middlebury 2014 stereo benchmark, Scharstein et al. (scikit-image stereo_motorcycle)",
    "skimage:motorcycle_right": "Middlebury 2014 stereo benchmark, Scharstein et al. (scikit-image stereo_motorcycle)",
    "skimage:rocket": "SpaceX photograph released into the public domain (scikit-image data)",
    "skimage:coffee": "CC0, Rachel Michetti (scikit-image data)",
    "sklearn:china": "CC BY 2.0, danielbuechele on Flickr (scikit-learn sample image)",
    "sklearn:flower": "CC BY 2.0, vultilion on Flickr (scikit-learn sample image)",
    "matplotlib:grace_hopper": "U.S. Navy photograph, public domain (matplotlib sample data, matplotlib PR #1599)",
}
"""Where each photo comes from and under which terms (from the packages' own notes)."""


@dataclass
class StarterConfig:
    """How the starter is built (defaults: a few minutes on one CPU core).

    Attributes:
        backbone: backbone name for :func:`attiqa.modeling.heads.build_model`.
        pretrained: start from the packaged ImageNet weights.
        head_hidden: hidden width of the attribute heads.
        mos_hidden: hidden width of the MOS MLP.
        crop: side of the training and report crops (pixels).
        photo_max_side: photos are downscaled to this longer side first.
        photos: photos used for building (``"SOURCE:NAME"``, see :mod:`attiqa.training.starter.photos`).
        holdout: photos kept out of building and used for the report.
        rank_steps: steps of the ranking-only stage of the attribute heads before the joint stage.
        rank_batch_size: images per ranking step.
        rank_lr: learning rate of the ranking stage.
        trainable_backbone_fraction: share of the backbone's parameter tensors (the last ones)
            trained; 0 freezes it, 1 trains all.
        joint_steps: steps of the joint stage (attribute ranking + MOS on pushed renderings).
        joint_groups: photo crops per joint step.
        joint_versions: renderings per crop: the photo's own and ``joint_versions - 1`` pushes.
        ladder: groups hold each of their directions at two magnitudes (see
            :meth:`~attiqa.training.starter.data.PushGroups.ladder_plan`); False: v2's groups.
        flips: mirror half of the training crops.
        mos_rank_loss: ``"hinge"`` on the MOS (margin ``mos_margin``) or ``"logistic"`` on its logits.
        mos_mse_weight: weight of the squared error to the pseudo-MOS within the MOS loss.
        colour_stats: the MOS head also sees global colour and tone statistics
            (:func:`attiqa.modeling.quality.colour_statistics`).
        joint_lr: peak learning rate of the joint stage (cosine decay).
        mos_weight: weight of the MOS loss against the attribute-ranking loss (whose values are
            about ten times larger).
        mos_head_lr_factor: learning rate of the fresh MOS head relative to ``joint_lr``.
        mos_margin: hinge margin between renderings of one crop whose targets differ by more.
        min_magnitude: smallest push magnitude drawn in training (largest is 1).
        threads: torch intra-op threads during the build (restored after), the same count on
            every machine. On the pinned kernels this recipe's weights do not depend on it (measured
            bitwise equal at 1 and 2 threads, the small recipe also at 4; the tiny test recipe
            is not); 2 uses both cores of the 2-core machine the main job is sized for.
        report_magnitudes: push magnitudes of the hold-out report.
        report_crops: crops per held-out photo in the report.
        seed: random seed.
    """

    backbone: str = "efficientnet_lite0"
    pretrained: bool = True
    head_hidden: int = 256
    mos_hidden: int = 256
    crop: int = 128
    photo_max_side: int = 320
    photos: tuple[str, ...] = BUILD_PHOTOS
    holdout: tuple[str, ...] = HOLDOUT_PHOTOS
    rank_steps: int = 30
    rank_batch_size: int = 16
    rank_lr: float = 3e-4
    trainable_backbone_fraction: float = 0.4
    joint_steps: int = 260
    joint_groups: int = 3
    joint_versions: int = 8
    joint_lr: float = 5e-4
    mos_weight: float = 4.0
    mos_head_lr_factor: float = 6.0
    mos_margin: float = 0.03
    min_magnitude: float = 0.05
    ladder: bool = True
    flips: bool = True
    mos_rank_loss: str = "hinge"
    mos_mse_weight: float = 1.0
    colour_stats: bool = True
    threads: int = 2
    report_magnitudes: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
    report_crops: int = 2
    seed: int = 0

    @classmethod
    def tiny(cls) -> "StarterConfig":
        """A random-weight model on 32 px crops that builds in a few seconds (plumbing tests)."""
        return cls(pretrained=False, head_hidden=16, mos_hidden=16, crop=32, photo_max_side=64,
                   photos=BUILD_PHOTOS[:2], rank_steps=2, rank_batch_size=4, trainable_backbone_fraction=1.0,
                   joint_steps=2, joint_groups=2, joint_versions=3, threads=1, report_magnitudes=(0.0, 0.5, 1.0),
                   report_crops=1)

    @classmethod
    def small(cls) -> "StarterConfig":
        """The real recipe, cut to well under a minute on one core (tests that it learns)."""
        return cls(head_hidden=64, mos_hidden=64, crop=96, photo_max_side=192, rank_steps=0,
                   trainable_backbone_fraction=0.3, joint_steps=100, joint_groups=2, joint_versions=8,
                   joint_lr=1e-3, threads=1, report_magnitudes=(0.0, 0.5, 1.0), report_crops=1)


def starter_path() -> Path:
    """Where the cached starter lives: ``<cache>/attiqa/starter-v<STARTER_VERSION>.pt``."""
    return cache_root() / "attiqa" / f"starter-v{STARTER_VERSION}.pt"
