"""Ablation rows of the results table: pretraining variants of the method.

``baseline`` is the method (attribute teacher, margin-ranking loss); ``good-bad-prompt`` gives all
five heads one "Good image"/"Bad image" score; ``l2-loss`` regresses the teacher scores with L2.
"""
from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["GOOD_BAD_PROMPTS", "pretrain_variant"]


GOOD_BAD_PROMPTS: dict[str, tuple[str, str]] = {
    a: ("Good image", "Bad image") for a in ("sharpness", "contrast", "brightness", "colorfulness", "noisiness")}
"""The single-prompt ablation: the same "Good image"/"Bad image" pair for every attribute."""



class _LabelledImages(torch.utils.data.Dataset):
    """Images with teacher labels for ranking pretraining: random ``crop`` crops of each image."""

    def __init__(self, images: list[torch.Tensor], labels: torch.Tensor, crop: int, seed: int = 0):
        self.images, self.labels, self.crop = images, labels, crop
        self.gen = torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        img = self.images[i]
        _, h, w = img.shape
        c = min(self.crop, h, w)
        y = int(torch.randint(0, h - c + 1, (1,), generator=self.gen))
        x = int(torch.randint(0, w - c + 1, (1,), generator=self.gen))
        return img[:, y:y + c, x:x + c], self.labels[i]



def pretrain_variant(image_dir, out_path, *, variant: str = "baseline", teacher: str = "analytic",
                     clip_model: str | None = None, backbone: str = "efficientnet_lite0", pretrained: bool = True,
                     steps: int = 500, batch_size: int = 16, lr: float = 1e-4, resize: int = 256, crop: int = 224,
                     device="cpu", progress: bool = True, seed: int = 0) -> Path:
    """Pretrains one row of the ablation table on the images of ``image_dir``.

    Variants: ``baseline`` (the method: attribute teacher, margin-ranking loss m = 0.1),
    ``good-bad-prompt`` (one "Good image"/"Bad image" prompt pair for all five heads; with the
    analytic teacher, the mean of its five scores stands in for that single score) and
    ``l2-loss`` (L2 regression on the teacher scores instead of the ranking loss).
    """
    from attiqa.modeling.checkpoint import save_checkpoint
    from attiqa.modeling.heads import build_model
    from attiqa.modeling.checkpoint import pretrained_meta
    from attiqa.training.pretrain import train_ranking
    from attiqa.teachers import create_teacher
    from attiqa.data.transforms import IMAGE_EXTENSIONS, load_image, resize_short_edge

    if variant not in ("baseline", "good-bad-prompt", "l2-loss"):
        raise ValueError(f"unknown ablation variant {variant!r}")
    files = sorted(p for p in Path(image_dir).rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    if len(files) < 2:
        raise FileNotFoundError(f"need at least 2 images under {image_dir} for pretraining")
    images = [resize_short_edge(load_image(p), resize) for p in files]
    kw = {}
    if teacher == "clip":
        if clip_model:
            kw["model"] = clip_model
        if variant == "good-bad-prompt":
            kw["prompts"] = dict(GOOD_BAD_PROMPTS)
    t = create_teacher(teacher, **kw).eval()
    with torch.no_grad():
        labels = torch.cat([t(img[None]) for img in images]).float()
    if variant == "good-bad-prompt" and teacher != "clip":
        labels = labels.mean(dim=1, keepdim=True).expand(-1, labels.shape[1]).contiguous()
    model = build_model(backbone, pretrained=pretrained)
    train_ranking(model, _LabelledImages(images, labels, crop, seed), steps=steps, batch_size=batch_size, lr=lr,
                  loss="l2" if variant == "l2-loss" else "margin", device=str(device), progress=progress, seed=seed)
    meta = pretrained_meta(model, f"ablation '{variant}' pretrained on {image_dir} with the {teacher} teacher",
                           {"ablation": variant, "pretrain_steps": steps})
    save_checkpoint(out_path, model.state_dict(), meta)
    return Path(out_path)
