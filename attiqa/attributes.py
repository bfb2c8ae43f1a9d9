"""The five quality attributes, in the order of every score vector and head."""

ATTRIBUTES: tuple[str, ...] = ("sharpness", "contrast", "brightness", "colorfulness", "noisiness")
