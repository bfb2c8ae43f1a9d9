"""Modeling: backbones, the five attribute heads, the MOS head (quality model) and checkpoint files."""
