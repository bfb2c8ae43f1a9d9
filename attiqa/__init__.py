"""ATTIQA: attribute-aware no-reference image quality assessment."""

ATTRIBUTES: tuple[str, ...] = ("sharpness", "contrast", "brightness", "colorfulness", "noisiness")
