"""The CLIP teacher: attribute scores from antonym prompt pairs (ATTIQA paper, Eq. 1-2).

For an image ``I`` and the prompt pair ``(T+, T-)`` of an attribute (e.g. "Splendid image" /
"Blurry image" for sharpness), with ``f`` CLIP's L2-normalised image embedding, ``g`` its
L2-normalised text embedding and ``s = exp(logit_scale)`` CLIP's learned temperature (100 for
the OpenAI checkpoints):

    sim±  = s · <f(I), g(T±)>                                   (Eq. 1, cosine similarity)
    score = exp(sim+) / (exp(sim+) + exp(sim-))                  (Eq. 2, softmax over the pair)
          = sigmoid(sim+ − sim-)

so the score lies in ``(0, 1)`` and is higher for more of the good pole. The text embeddings of
the prompt set are computed once (and again only when the prompts change); images are resized,
centre-cropped and normalised with the checkpoint's own preprocessing constants inside torch, so
a whole batch goes through one forward pass on any device.

Weights come from the Hugging Face hub id (default ``openai/clip-vit-base-patch16``) or a local
folder written by ``save_pretrained``. :func:`save_tiny_random_clip` writes a tiny randomly
initialised CLIP with a character-level tokenizer: the tests and offline smoke runs use it
(its scores are meaningless, its code path is the real one).

Example:
    >>> teacher = CLIPTeacher("openai/clip-vit-base-patch16")         # doctest: +SKIP
    >>> teacher(torch.rand(4, 3, 384, 512)).shape                      # doctest: +SKIP
    torch.Size([4, 5])
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Mapping

import torch
import torch.nn.functional as F
from torch import nn

from attiqa.attributes import ATTRIBUTES
from attiqa.utils.files import atomic_write_text, read_json

__all__ = ["DEFAULT_CLIP", "DEFAULT_PROMPTS", "OPENAI_CLIP_MEAN", "OPENAI_CLIP_STD", "CLIPTeacher", "load_prompts",
           "save_prompts", "save_tiny_random_clip", "random_clip_model", "char_tokenizer"]

DEFAULT_CLIP = "openai/clip-vit-base-patch16"

# The paper's Table 1 (positive, negative); "Graimy" is spelled as in the paper.
DEFAULT_PROMPTS: dict[str, tuple[str, str]] = {
    "sharpness": ("Splendid image", "Blurry image"),
    "contrast": ("Distinct image", "Vague image"),
    "brightness": ("Sunny image", "Darkened image"),
    "colorfulness": ("Vibrant image", "Colorless image"),
    "noisiness": ("Peerless image", "Graimy image"),
}

# Normalisation constants of the OpenAI CLIP image processor (used when a checkpoint has none).
OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# ---------------------------------------------------------------------------------------------
# prompts


def load_prompts(prompts=None) -> dict[str, tuple[str, str]]:
    """Normalises a prompt specification to ``{attribute: (positive, negative)}``.

    Args:
        prompts: ``None`` (the paper's :data:`DEFAULT_PROMPTS`), a mapping ``attribute ->
            (positive, negative)``, or the path of a JSON file holding such a mapping (the
            ``prompts.json`` written by ``python -m attiqa select-prompts``; a top-level
            ``"prompts"`` key is also accepted).

    Returns:
        A dict with exactly the five attributes of :data:`attiqa.ATTRIBUTES`, in that order.

    Raises:
        FileNotFoundError: the JSON file does not exist.
        ValueError: unreadable JSON, missing/unknown attributes, a pair that is not two
            non-empty strings.
    """
    if prompts is None:
        return dict(DEFAULT_PROMPTS)
    source = "prompts"
    if isinstance(prompts, (str, os.PathLike)):
        path = Path(prompts)
        prompts = read_json(path, what="JSON prompts file")
        source = str(path)
        if isinstance(prompts, dict) and isinstance(prompts.get("prompts"), dict):
            prompts = prompts["prompts"]
    if not isinstance(prompts, Mapping):
        raise ValueError(f"{source}: expected a mapping attribute -> [positive, negative]")
    unknown = sorted(set(prompts) - set(ATTRIBUTES))
    missing = [a for a in ATTRIBUTES if a not in prompts]
    if unknown or missing:
        raise ValueError(f"{source}: prompts must name exactly the attributes {list(ATTRIBUTES)}; "
                         f"missing {missing}, unknown {unknown}")
    out = {}
    for a in ATTRIBUTES:
        pair = prompts[a]
        if (not isinstance(pair, (list, tuple)) or len(pair) != 2
                or not all(isinstance(t, str) and t.strip() for t in pair)):
            raise ValueError(f"{source}: the prompts of {a!r} must be two non-empty strings "
                             f"[positive, negative], got {pair!r}")
        out[a] = (pair[0].strip(), pair[1].strip())
    return out


def save_prompts(path, prompts: Mapping[str, tuple[str, str]], extra: dict | None = None) -> Path:
    """Writes a prompts JSON file (atomically) that :func:`load_prompts` reads back.

    The file is ``{"prompts": {attribute: [positive, negative]}, **extra}``; ``extra`` carries
    provenance (e.g. the proxy-task SROCCs of the chosen pairs).
    """
    prompts = load_prompts(dict(prompts))
    path = Path(path)
    payload = {"prompts": {a: list(p) for a, p in prompts.items()}, **(extra or {})}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# loading


def _preprocessing_config(source) -> dict:
    """The image processor's constants (``preprocessor_config.json``) of a folder or hub id, or ``{}``."""
    if isinstance(source, (str, os.PathLike)) and Path(source).is_dir():
        f = Path(source) / "preprocessor_config.json"
        if f.is_file():
            try:
                return json.loads(f.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                return {}
        return {}
    try:  # hub id: the file sits next to the weights in the local cache once downloaded
        from huggingface_hub import hf_hub_download

        return json.loads(Path(hf_hub_download(str(source), "preprocessor_config.json")).read_text())
    except Exception:  # noqa: BLE001 - any failure means: use the OpenAI defaults
        return {}


def _size_from(value, default: int) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, Mapping):
        for key in ("shortest_edge", "height", "width"):
            if isinstance(value.get(key), int):
                return value[key]
    return default


def _load_clip(source):
    from transformers import AutoTokenizer, CLIPModel

    is_dir = isinstance(source, (str, os.PathLike)) and Path(source).is_dir()
    looks_local = isinstance(source, os.PathLike) or str(source).startswith((".", "/", "~"))
    if looks_local and not is_dir:
        raise FileNotFoundError(f"CLIP model folder not found: {source}")
    try:
        model = CLIPModel.from_pretrained(str(source))
        tokenizer = AutoTokenizer.from_pretrained(str(source))
    except (OSError, ValueError, EnvironmentError) as exc:
        where = "folder" if is_dir else "hub id"
        raise ValueError(f"cannot load the CLIP model {str(source)!r} ({where}): {exc}. Pass a local folder "
                         "written by save_pretrained (with the tokenizer files) or a reachable hub id.") from None
    return model, tokenizer


def _features(out) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output with ``pooler_output`` (5)."""
    if isinstance(out, torch.Tensor):
        return out
    pooled = getattr(out, "pooler_output", None)
    if pooled is None:
        pooled = out[1] if isinstance(out, (tuple, list)) else out["pooler_output"]
    return pooled


# ---------------------------------------------------------------------------------------------
# the teacher


class CLIPTeacher(nn.Module):
    """CLIP with one antonym prompt pair per attribute; ``forward`` returns ``(B, 5)`` scores.

    Args:
        model: Hugging Face hub id, a local folder written by ``save_pretrained``, or an already
            built ``transformers.CLIPModel`` (then ``tokenizer`` is required).
        prompts: see :func:`load_prompts` (default: the paper's Table 1).
        device: where the model lives (default CPU).
        tokenizer: the tokenizer, when ``model`` is a ``CLIPModel`` instance.
        image_size: input side of the vision tower (default: from the checkpoint).
        resize: short edge before the centre crop (default: from the checkpoint, else ``image_size``).
        mean, std: normalisation constants (default: the checkpoint's, else OpenAI's).

    Attributes:
        prompts: the current ``{attribute: (positive, negative)}``.
        text_embeds: buffer ``(5, 2, D)``, L2-normalised embeddings of the prompt pairs.

    Raises:
        FileNotFoundError / ValueError: the model cannot be loaded, bad prompts.
    """

    name = "clip"
    attributes = ATTRIBUTES

    def __init__(self, model=DEFAULT_CLIP, prompts=None, device=None, *, tokenizer=None, image_size: int | None = None,
                 resize: int | None = None, mean=None, std=None):
        super().__init__()
        if isinstance(model, nn.Module):
            if tokenizer is None:
                raise ValueError("pass the tokenizer along with a CLIPModel instance")
            clip, tok, pre = model, tokenizer, {}
            self.source = type(model).__name__
        else:
            clip, tok = _load_clip(model)
            pre = _preprocessing_config(model)
            self.source = str(model)
        clip.eval()
        for p in clip.parameters():
            p.requires_grad_(False)
        self.clip = clip
        self.tokenizer = tok
        vis_size = int(getattr(clip.config.vision_config, "image_size", 224))
        self.image_size = int(image_size or _size_from(pre.get("crop_size"), vis_size))
        self.resize = int(resize or _size_from(pre.get("size"), self.image_size))
        mean = mean if mean is not None else pre.get("image_mean", OPENAI_CLIP_MEAN)
        std = std if std is not None else pre.get("image_std", OPENAI_CLIP_STD)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("text_embeds", torch.zeros(0), persistent=False)
        if device is not None:
            self.to(device)
        self.set_prompts(prompts)

    # -- text ----------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.mean.device

    @property
    def logit_scale(self) -> torch.Tensor:
        """CLIP's temperature ``s = exp(logit_scale)`` (a 0-dim tensor)."""
        return self.clip.logit_scale.detach().exp()

    @torch.no_grad()
    def encode_text(self, texts: list[str], batch_size: int = 1024) -> torch.Tensor:
        """L2-normalised text embeddings.

        Args:
            texts: N prompts.
            batch_size: prompts per forward pass of the text tower.

        Returns:
            ``(N, D)`` float32 on the teacher's device.
        """
        if not texts:
            raise ValueError("no texts to encode")
        out = []
        for i in range(0, len(texts), batch_size):
            enc = self.tokenizer(list(texts[i:i + batch_size]), padding=True, truncation=True, return_tensors="pt")
            enc = {k: v.to(self.device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
            out.append(_features(self.clip.get_text_features(**enc)).float())
        return F.normalize(torch.cat(out), dim=-1)

    def set_prompts(self, prompts=None) -> None:
        """Replaces the prompt pairs and recomputes their text embeddings (once)."""
        self.prompts = load_prompts(prompts)
        texts = [t for a in ATTRIBUTES for t in self.prompts[a]]
        self.text_embeds = self.encode_text(texts).view(len(ATTRIBUTES), 2, -1)

    # -- images --------------------------------------------------------------------------------

    def preprocess(self, images: torch.Tensor) -> torch.Tensor:
        """Resize (short edge, bicubic, antialiased), centre crop and normalise, in torch.

        Args:
            images: ``(B, 3, H, W)`` in ``[0, 1]``.

        Returns:
            ``(B, 3, S, S)`` normalised pixel values with ``S = image_size``.
        """
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = images.to(self.device, torch.float32)
        h, w = x.shape[-2:]
        if min(h, w) != self.resize:
            scale = self.resize / min(h, w)
            size = (max(self.resize, round(h * scale)), max(self.resize, round(w * scale)))
            x = F.interpolate(x, size=size, mode="bicubic", align_corners=False, antialias=True).clamp(0, 1)
        h, w = x.shape[-2:]
        s = self.image_size
        if h < s or w < s:
            x = F.interpolate(x, size=(max(h, s), max(w, s)), mode="bicubic", align_corners=False).clamp(0, 1)
            h, w = x.shape[-2:]
        top, left = (h - s) // 2, (w - s) // 2
        x = x[:, :, top:top + s, left:left + s]
        return (x - self.mean) / self.std

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """L2-normalised image embeddings ``(B, D)`` of images ``(B, 3, H, W)`` in ``[0, 1]``."""
        pixels = self.preprocess(images)
        dtype = next(self.clip.parameters()).dtype
        return F.normalize(_features(self.clip.get_image_features(pixel_values=pixels.to(dtype))).float(), dim=-1)

    # -- scores --------------------------------------------------------------------------------

    def pair_scores(self, image_embeds: torch.Tensor, positive: torch.Tensor, negative: torch.Tensor) -> torch.Tensor:
        """Eq. 1-2 for every combination of positive and negative prompt at once.

        Args:
            image_embeds: ``(B, D)`` normalised image embeddings.
            positive: ``(P, D)`` normalised embeddings of positive prompts.
            negative: ``(N, D)`` normalised embeddings of negative prompts.

        Returns:
            ``(B, P, N)``: the softmax probability of the positive prompt of pair ``(p, n)``.
        """
        s = self.logit_scale.to(image_embeds.device)
        sim_pos = s * image_embeds @ positive.t()   # (B, P)
        sim_neg = s * image_embeds @ negative.t()   # (B, N)
        return torch.sigmoid(sim_pos[:, :, None] - sim_neg[:, None, :])

    def scores_from_embeddings(self, image_embeds: torch.Tensor) -> torch.Tensor:
        """``(B, 5)`` attribute scores from ``(B, D)`` normalised image embeddings."""
        text = self.text_embeds.to(image_embeds.dtype)
        sims = self.logit_scale.to(image_embeds.dtype) * torch.einsum("bd,akd->bak", image_embeds, text)  # (B, 5, 2)
        return sims.softmax(dim=-1)[..., 0]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Attribute scores.

        Args:
            images: ``(B, 3, H, W)`` sRGB in ``[0, 1]``, any size.

        Returns:
            ``(B, 5)`` in ``(0, 1)``, columns in the order of :data:`attiqa.ATTRIBUTES`.
        """
        return self.scores_from_embeddings(self.encode_images(images))

    def extra_repr(self) -> str:
        return f"source={self.source!r}, image_size={self.image_size}, resize={self.resize}"


# ---------------------------------------------------------------------------------------------
# random CLIPs for tests and benchmarks


def char_tokenizer():
    """A CLIP BPE tokenizer over single printable ASCII characters (no merges).

    Every prompt tokenizes into its characters plus the start/end tokens; enough to exercise the
    real tokenizer and text tower with a tiny vocabulary.
    """
    import tempfile

    from transformers import CLIPTokenizer

    with tempfile.TemporaryDirectory() as tmp:  # from files: the constructor differs across versions
        _write_vocab(Path(tmp))
        return CLIPTokenizer.from_pretrained(tmp)


def _write_vocab(folder: Path) -> None:
    vocab, merges = _char_vocab()
    (folder / "vocab.json").write_text(json.dumps(vocab), encoding="utf-8")
    (folder / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges),
                                       encoding="utf-8")


def _char_vocab() -> tuple[dict[str, int], list]:
    chars = [chr(c) for c in range(33, 127)]
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in chars:
            vocab.setdefault(c + suffix, len(vocab))
    return vocab, []


def random_clip_model(preset: str = "tiny", seed: int = 0):
    """A randomly initialised ``transformers.CLIPModel`` and a matching tokenizer.

    Args:
        preset: ``"tiny"`` (32 px input, 2 layers of width 32: builds in milliseconds) or
            ``"vit-b/16"`` (the architecture of ``openai/clip-vit-base-patch16``: same compute per
            image as the real teacher, for throughput benchmarks).
        seed: initialisation seed.

    Returns:
        ``(model, tokenizer)``.
    """
    from transformers import CLIPConfig, CLIPModel

    vocab, _ = _char_vocab()
    if preset == "tiny":
        text = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2)
        vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                      image_size=32, patch_size=8)
        proj = 16
    elif preset == "vit-b/16":
        text = dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12, num_attention_heads=8)
        vision = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=224, patch_size=16)
        proj = 512
    else:
        raise ValueError(f"unknown preset {preset!r}; choose 'tiny' or 'vit-b/16'")
    text.update(vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    cfg = CLIPConfig(text_config=text, vision_config=vision, projection_dim=proj)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CLIPModel(cfg)
    return model.eval(), char_tokenizer()


def save_tiny_random_clip(path, seed: int = 0) -> Path:
    """Writes a tiny random CLIP folder that :class:`CLIPTeacher` (and ``CLIPModel``) load.

    The folder holds ``config.json`` + weights (``save_pretrained``), the tokenizer files
    (``vocab.json``, ``merges.txt`` and the saved tokenizer) and ``preprocessor_config.json``
    with the OpenAI normalisation constants and a 32 px input.

    Args:
        path: output folder (created).
        seed: initialisation seed.

    Returns:
        ``path``.
    """
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    model, tok = random_clip_model("tiny", seed)
    _write_vocab(path)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    size = int(model.config.vision_config.image_size)
    pre = {"image_processor_type": "CLIPImageProcessor", "do_resize": True, "size": {"shortest_edge": size},
           "do_center_crop": True, "crop_size": {"height": size, "width": size}, "do_normalize": True,
           "image_mean": list(OPENAI_CLIP_MEAN), "image_std": list(OPENAI_CLIP_STD), "resample": 3,
           "do_rescale": True, "rescale_factor": 1 / 255, "do_convert_rgb": True}
    (path / "preprocessor_config.json").write_text(json.dumps(pre, indent=2), encoding="utf-8")
    return path
