"""ATTIQA: attribute-aware no-reference image quality assessment."""

ATTRIBUTES: tuple[str, ...] = ("sharpness", "contrast", "brightness", "colorfulness", "noisiness")


def __getattr__(name: str):
    """Lazy re-exports (``attiqa.create_metric``) so ``import attiqa`` stays light."""
    if name == "create_metric":
        from attiqa.api import create_metric

        return create_metric
    raise AttributeError(f"module 'attiqa' has no attribute {name!r}")
