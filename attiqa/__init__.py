"""ATTIQA: attribute-aware no-reference image quality assessment.

The package shows the method's stages as sub-packages:

* :mod:`attiqa.teachers`: who gives unlabeled images their five attribute scores (CLIP with
  antonym prompts, the analytic measures) and how the prompts are chosen;
* :mod:`attiqa.data`: IQA datasets, image folders, transforms, synthetic distortions, splits,
  label files;
* :mod:`attiqa.modeling`: backbones, the five attribute heads, the MOS head, checkpoints;
* :mod:`attiqa.training`: losses, pseudo-labelling, ranking pretraining, fine-tuning, the
  offline starter model;
* :mod:`attiqa.eval`: correlations, the evaluation protocols, preference accuracy;
* :mod:`attiqa.api`: the metric (``create_metric``), which imports no training code;
* :mod:`attiqa.cli`: one module per ``python -m attiqa`` subcommand;
* :mod:`attiqa.utils`: colour transfer, files (cache, atomic writes, locks), devices.
"""

from attiqa.attributes import ATTRIBUTES

__all__ = ["ATTRIBUTES", "create_metric"]


def __getattr__(name: str):
    """Lazy re-exports (``attiqa.create_metric``) so ``import attiqa`` stays light."""
    if name == "create_metric":
        from attiqa.api import create_metric

        return create_metric
    raise AttributeError(f"module 'attiqa' has no attribute {name!r}")
