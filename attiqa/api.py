"""The ATTIQA metric, in the spirit of ``pyiqa.create_metric``: drop it into other code.

>>> import attiqa
>>> metric = attiqa.create_metric()                 # the starter model, built on first use
>>> metric(torch.rand(2, 3, 224, 224))              # (B,) MOS, no gradient: a score
tensor([0.61, 0.58])
>>> metric.attributes(images)                       # (B, 5): sharpness, contrast, brightness, colorfulness, noisiness
>>> metric.quality(images)                          # QualityOutput(mos, attributes), differentiable (for rewards)
>>> metric.score_paths(["photo.jpg"])               # [{"path": ..., "mos": ..., "sharpness": ..., ...}]

As a loss (``as_loss=True``): the call keeps gradients and returns a value to *minimise*,
``loss_weight * reduce(-mos)`` (``lower_better`` stays ``False``: it describes the score). Five lines that train
something, a per-image gain that makes a dark image look better to the model::

    loss_fn = attiqa.create_metric(as_loss=True)
    gain = torch.ones(1, requires_grad=True); opt = torch.optim.Adam([gain], lr=0.05)
    for _ in range(20):
        opt.zero_grad(); loss = loss_fn((dark * gain).clamp(0, 1)); loss.backward(); opt.step()
    print(gain.item(), loss.item())

``name_or_path`` is ``None`` or ``"attiqa"`` (the starter model), a ``.pt`` checkpoint, a folder
of ``config.json`` + ``model.safetensors`` (:meth:`QualityMetric.save_pretrained`), or a Hugging
Face Hub id of such a folder (:func:`attiqa.modeling.pretrained.load_any`). The architecture,
the normalisation and the score range are read from the checkpoint; every weight of the
architecture must be in it (and nothing else), otherwise loading stops with one clear
``ValueError``. ``lower_better`` is ``False``: a higher MOS is a better image.
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from attiqa.attributes import ATTRIBUTES
from attiqa.modeling.quality import QualityModel, QualityOutput

__all__ = ["QualityMetric", "create_metric", "list_metrics", "load_quality_model", "expand_image_paths"]

#: Names ``create_metric`` knows besides paths and Hub ids (each = the offline starter model).
METRIC_NAMES = ("attiqa", "attiqa-starter")


def list_metrics() -> list[str]:
    """The metric names :func:`create_metric` accepts besides paths and Hub ids."""
    return list(METRIC_NAMES)


def load_quality_model(path) -> tuple[QualityModel, dict]:
    """Loads a quality model (``kind == "quality"``) with a strict weight check.

    Args:
        path: a ``.pt`` checkpoint, a ``config.json`` + ``model.safetensors`` folder, or a Hub id.

    Raises:
        FileNotFoundError: no such file or folder (and not a Hub id).
        ValueError: not an ATTIQA checkpoint, a pretrained checkpoint without MOS head, or weights
            that do not match the stored architecture.
    """
    from attiqa.modeling.checkpoint import load_any, load_state_strict

    try:
        ckpt = load_any(path)
    except (FileNotFoundError, ValueError):
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
    """A loaded quality model with its metric metadata, called like a pyiqa metric.

    ``metric(images)`` returns the ``(B,)`` MOS: without gradient by default, or, with
    ``as_loss=True``, with gradients as a loss to minimise (see :meth:`forward`).
    :meth:`quality` returns the named output (MOS and attributes) with gradients whatever the
    mode, which is what a reward or a training loop that needs both reads.

    Attributes:
        lower_better: ``False``: a higher MOS is a better image (the loss of ``as_loss`` is its negative).
        score_range: ``(lo, hi)``, the range every MOS lies in.
        as_loss: whether calls return a differentiable loss instead of a score.
        loss_weight, loss_reduction: scale and reduction (``"mean"``, ``"sum"``, ``"none"``) of the loss.
        is_starter: ``True`` for the offline starter model (not the paper's weights).
        description: the checkpoint's description.
        attribute_names: the five attribute names, order of :meth:`attributes`.
        checkpoint_path: where the weights came from (file or folder).
    """

    def __init__(self, model: QualityModel, meta: dict, checkpoint_path=None, *, as_loss: bool = False,
                 loss_weight: float = 1.0, loss_reduction: str = "mean"):
        super().__init__()
        if loss_reduction not in ("mean", "sum", "none"):
            raise ValueError(f"loss_reduction must be 'mean', 'sum' or 'none', got {loss_reduction!r}")
        self.model = model.eval().requires_grad_(False)
        self.meta = dict(meta)
        self.score_range = model.score_range
        self.lower_better = bool(model.lower_better)
        self.as_loss = bool(as_loss)
        self.loss_weight = float(loss_weight)
        self.loss_reduction = loss_reduction
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

    def quality(self, images: torch.Tensor, validate: bool = True) -> QualityOutput:
        """The named output: ``QualityOutput(mos (B,), attributes (B, 5))``, differentiable w.r.t. ``images``.

        Args:
            images: ``(B, 3, H, W)`` sRGB in ``[0, 1]`` (any size; 224 px and up works well).
            validate: check that every value is finite (one reduction over the batch; pass
                ``False`` in hot loops whose inputs are known to be finite).

        Raises:
            ValueError: wrong shape, or (with ``validate``) NaN or infinite values.
        """
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        if validate and not bool(torch.isfinite(images.detach()).all()):
            raise ValueError("images contain NaN or infinite values")
        return self.model(images)

    def forward(self, images: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """Scores a batch (or, with ``as_loss``, the loss of it).

        Args:
            images: ``(B, 3, H, W)`` sRGB in ``[0, 1]``.
            validate: see :meth:`quality`.

        Returns:
            Without ``as_loss``: the ``(B,)`` MOS in ``score_range``, computed without gradient.
            With ``as_loss``: ``loss_weight * reduce(-mos)`` with gradients w.r.t. ``images``
            (a scalar for ``mean``/``sum``, ``(B,)`` for ``none``); lower is better.
        """
        if not self.as_loss:
            with torch.no_grad():
                return self.quality(images, validate).mos
        loss = -self.quality(images, validate).mos * self.loss_weight
        if self.loss_reduction == "mean":
            return loss.mean()
        return loss.sum() if self.loss_reduction == "sum" else loss

    def attributes(self, images: torch.Tensor, validate: bool = True) -> torch.Tensor:
        """The ``(B, 5)`` attribute scores (:attr:`attribute_names`), with gradients only when ``as_loss``."""
        with torch.set_grad_enabled(self.as_loss and torch.is_grad_enabled()):
            return self.quality(images, validate).attributes

    def save_pretrained(self, folder, provenance: dict | None = None) -> Path:
        """Writes the model as ``folder/config.json`` + ``folder/model.safetensors`` (no pickle).

        :func:`create_metric` (``folder``) loads it back with the same scores.
        """
        from attiqa.modeling.pretrained import save_pretrained

        prov = {"source": None if self.checkpoint_path is None else str(self.checkpoint_path)}
        prov.update(provenance or {})
        return save_pretrained(folder, self.model.state_dict(), self.meta, prov)

    @classmethod
    def from_pretrained(cls, folder_or_hub_id, device="cpu", **kwargs) -> "QualityMetric":
        """:func:`create_metric` of a pretrained folder, a Hub id or a ``.pt`` file."""
        return create_metric(folder_or_hub_id, device=device, **kwargs)

    @torch.no_grad()
    def score_paths(self, paths, max_side: int | None = None) -> list[dict]:
        """Scores image files one by one.

        Args:
            paths: image files.
            max_side: when given, larger images are downscaled so that their longer side is
                ``max_side`` (8-bit files first by an integer box reduction while decoding, so a
                huge image never exists at full size in float).

        Returns:
            One dict per path: ``{"path": str, "mos": float, "sharpness": float, ...}``.
        """
        from attiqa.data.transforms import load_image, resize_short_edge

        out = []
        for p in paths:
            img = load_image(p, reduce_to=max_side)
            if max_side is not None and max(img.shape[-2:]) > max_side:
                short = round(min(img.shape[-2:]) * max_side / max(img.shape[-2:]))
                img = resize_short_edge(img, short)
            res = self.quality(img[None].to(self.device))
            row = {"path": str(p), "mos": float(res.mos[0])}
            row.update({a: float(v) for a, v in zip(self.attribute_names, res.attributes[0])})
            out.append(row)
        return out


def create_metric(name_or_path=None, device="cpu", as_loss: bool = False, *, loss_weight: float = 1.0,
                  loss_reduction: str = "mean", progress: bool = True, checkpoint=None) -> QualityMetric:
    """Loads the ATTIQA metric.

    Args:
        name_or_path: ``None``, ``"attiqa"`` or ``"attiqa-starter"`` = the starter model
            (:func:`attiqa.training.starter.build.ensure_starter`, built on first use: the one
            time the scoring API loads training code); a ``.pt`` quality checkpoint; a folder of
            ``config.json`` + ``model.safetensors``; or a Hugging Face Hub id of such a folder.
        device: ``"cpu"``, ``"cuda"``, ``"auto"``.
        as_loss: calls return a differentiable loss to minimise (see :meth:`QualityMetric.forward`).
        loss_weight, loss_reduction: the loss's scale and reduction (``"mean"``, ``"sum"``, ``"none"``).
        progress: show the progress bar when the starter has to be built.
        checkpoint: the former name of ``name_or_path`` (kept for existing callers).

    Returns:
        A :class:`QualityMetric` in eval mode with frozen weights.
    """
    from attiqa.utils.device import resolve_device

    if checkpoint is not None:
        if name_or_path is not None:
            raise TypeError("create_metric: give name_or_path or checkpoint, not both")
        name_or_path = checkpoint
    if name_or_path is None or str(name_or_path) in METRIC_NAMES:
        from attiqa.training.starter.build import ensure_starter
        name_or_path = ensure_starter(progress=progress)
        try:
            model, meta = load_quality_model(name_or_path)
        except ValueError as exc:
            raise ValueError(f"{exc}. The cached starter model is unusable: rebuild it with "
                             "`python -m attiqa build-starter --force`") from None
    else:
        model, meta = load_quality_model(name_or_path)
    metric = QualityMetric(model, meta, name_or_path, as_loss=as_loss, loss_weight=loss_weight, loss_reduction=loss_reduction)
    return metric.to(resolve_device(device))


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
