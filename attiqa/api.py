"""Scoring API in the spirit of ``pyiqa.create_metric``.

>>> from attiqa import create_metric
>>> metric = create_metric()                       # the starter model, built on first use
>>> out = metric(torch.rand(2, 3, 224, 224))       # differentiable
>>> out.mos.shape, out.attributes.shape
(torch.Size([2]), torch.Size([2, 5]))
>>> metric.score_paths(["photo.jpg"])              # [{"path": ..., "mos": ..., "sharpness": ..., ...}]

The architecture, the normalisation and the score range are read from the checkpoint; every
weight of the architecture must be in it (and nothing else), otherwise loading stops with one
clear ``ValueError``. ``lower_better`` is ``False``: a higher MOS is a better image.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from attiqa.attributes import ATTRIBUTES
from attiqa.modeling.quality import QualityModel, QualityOutput

__all__ = ["QualityMetric", "create_metric", "load_quality_model", "expand_image_paths"]


def load_quality_model(path) -> tuple[QualityModel, dict]:
    """Loads a quality checkpoint (``kind == "quality"``) with a strict weight check.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: not an ATTIQA checkpoint, a pretrained checkpoint without MOS head, or weights
            that do not match the stored architecture.
    """
    from attiqa.modeling.checkpoint import load_checkpoint, load_state_strict

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ATTIQA checkpoint not found: {path}")
    try:
        ckpt = load_checkpoint(path)
    except FileNotFoundError:
        raise
    except ValueError as exc:
        if "Weights only load failed" in str(exc):  # torch's long advice to unpickle: not for us
            raise ValueError(f"{path}: not a readable ATTIQA checkpoint (not a file of plain tensors and "
                             "values; code inside checkpoints is never executed)") from None
        raise
    except Exception as exc:  # noqa: BLE001 - one clear message whatever the loader raised
        raise ValueError(f"{path}: not a readable ATTIQA checkpoint ({exc})") from None
    meta, state = ckpt["meta"], ckpt["state_dict"]
    kind = meta.get("kind")
    if kind == "pretrained":
        raise ValueError(f"{path}: a pretrained ATTIQA checkpoint without a MOS head; fine-tune it first "
                         "(python -m attiqa finetune --pretrained ...)")
    if kind != "quality":
        raise ValueError(f"{path}: not an ATTIQA quality checkpoint (kind={kind!r})")
    arch = meta.get("architecture")
    if not isinstance(arch, dict) or arch.get("type") != "QualityModel":
        raise ValueError(f"{path}: the checkpoint's architecture is not an ATTIQA quality model")
    if tuple(meta.get("attributes", ATTRIBUTES)) != tuple(ATTRIBUTES):
        raise ValueError(f"{path}: attributes {meta.get('attributes')} differ from {list(ATTRIBUTES)}")
    try:
        model = QualityModel.from_config(arch)
    except (TypeError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: cannot build the architecture stored in the checkpoint ({exc})") from None
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not torch.isfinite(v).all()]
    if bad:
        raise ValueError(f"{path}: the checkpoint holds NaN or infinite weights ({len(bad)} tensors, e.g. {bad[0]})")
    load_state_strict(model, state, path)
    _check_normalization(model, meta, path)
    model.eval()
    return model, meta


def _check_normalization(model: QualityModel, meta: dict, path) -> None:
    norm = meta.get("normalization")
    if not isinstance(norm, dict) or "mean" not in norm:
        return
    for name in ("mean", "std"):
        buf = getattr(model.attiqa, name, None)
        if isinstance(buf, torch.Tensor) and name in norm:
            want = torch.tensor(norm[name], dtype=buf.dtype).flatten()
            if want.numel() != buf.numel() or not torch.allclose(buf.flatten().cpu(), want, atol=1e-6):
                raise ValueError(f"{path}: normalisation {name} in the metadata {want.tolist()} differs from "
                                 f"the model's {buf.flatten().tolist()}")


class QualityMetric(nn.Module):
    """A loaded quality model with its metric metadata.

    Attributes:
        lower_better: ``False`` (higher MOS = better).
        score_range: ``(lo, hi)``, the range every MOS lies in.
        is_starter: ``True`` for the offline starter model (not the paper's weights).
        description: the checkpoint's description.
        attribute_names: the five attribute names, order of ``QualityOutput.attributes``.
        checkpoint_path: where the weights came from.
    """

    lower_better: bool = False

    def __init__(self, model: QualityModel, meta: dict, checkpoint_path=None):
        super().__init__()
        self.model = model.eval().requires_grad_(False)
        self.meta = dict(meta)
        self.score_range = model.score_range
        self.is_starter = bool(meta.get("starter", False))
        self.description = str(meta.get("description", ""))
        self.attribute_names = tuple(ATTRIBUTES)
        self.checkpoint_path = None if checkpoint_path is None else Path(checkpoint_path)

    @property
    def device(self) -> torch.device:
        return self.model.score_lo.device

    def train(self, mode: bool = True):
        """The metric stays in eval mode (batch-norm statistics are frozen)."""
        return super().train(False)

    def forward(self, images: torch.Tensor, validate: bool = True) -> QualityOutput:
        """Scores a batch.

        Args:
            images: ``(B, 3, H, W)`` sRGB in ``[0, 1]`` (any size; 224 px and up works well).
            validate: check that every value is finite (one reduction over the batch; pass
                ``False`` in hot loops whose inputs are known to be finite).

        Returns:
            :class:`QualityOutput` with ``mos (B,)`` in ``score_range`` and ``attributes (B, 5)``;
            differentiable w.r.t. ``images``.

        Raises:
            ValueError: wrong shape, or (with ``validate``) NaN or infinite values.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if validate and not bool(torch.isfinite(images.detach()).all()):
            raise ValueError("images contain NaN or infinite values")
        return self.model(images)

    @torch.no_grad()
    def score_paths(self, paths, max_side: int | None = None) -> list[dict]:
        """Scores image files one by one.

        Args:
            paths: image files.
            max_side: when given, larger images are downscaled so that their longer side is ``max_side``.

        Returns:
            One dict per path: ``{"path": str, "mos": float, "sharpness": float, ...}``.
        """
        from attiqa.data.transforms import load_image, resize_short_edge

        out = []
        for p in paths:
            img = load_image(p)
            if max_side is not None and max(img.shape[-2:]) > max_side:
                short = round(min(img.shape[-2:]) * max_side / max(img.shape[-2:]))
                img = resize_short_edge(img, short)
            res = self(img[None].to(self.device))
            row = {"path": str(p), "mos": float(res.mos[0])}
            row.update({a: float(v) for a, v in zip(self.attribute_names, res.attributes[0])})
            out.append(row)
        return out


def create_metric(checkpoint=None, device="cpu", progress: bool = True) -> QualityMetric:
    """Loads a quality metric.

    Args:
        checkpoint: a quality checkpoint path; ``None`` = the starter model
            (:func:`attiqa.training.starter.build.ensure_starter`, built on first
            use: the one time the scoring API loads training code).
        device: ``"cpu"``, ``"cuda"``, ``"auto"``.
        progress: show the progress bar when the starter has to be built.

    Returns:
        A :class:`QualityMetric` in eval mode with frozen weights.
    """
    from attiqa.utils.device import resolve_device

    if checkpoint is None:
        from attiqa.training.starter.build import ensure_starter
        checkpoint = ensure_starter(progress=progress)
        try:
            model, meta = load_quality_model(checkpoint)
        except ValueError as exc:
            raise ValueError(f"{exc}. The cached starter model is unusable: rebuild it with "
                             "`python -m attiqa build-starter --force`") from None
    else:
        model, meta = load_quality_model(checkpoint)
    return QualityMetric(model, meta, checkpoint).to(resolve_device(device))


def expand_image_paths(inputs) -> list[Path]:
    """Files as given; folders expanded to their image files (recursive, sorted).

    Raises:
        FileNotFoundError: an input does not exist, or a folder holds no image.
    """
    from attiqa.data.transforms import IMAGE_EXTENSIONS

    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in IMAGE_EXTENSIONS)
            if not found:
                raise FileNotFoundError(f"no image files under {p}")
            out.extend(found)
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"no such file or folder: {p}")
    return list(dict.fromkeys(out))  # each file once, first occurrence's order
