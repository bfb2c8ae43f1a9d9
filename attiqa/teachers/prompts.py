"""Prompt selection for the CLIP teacher: rank antonym pairs by two proxy tasks.

``python -m attiqa select-prompts --clip-model ID_OR_DIR [--spaq SPAQ_ROOT] --out-dir DIR``

For every attribute the candidate adjectives (50 for the good pole, 50 for the bad pole, kept
as data in ``attiqa/data/adjectives.yaml``) form 2,500 prompt pairs ``("<pos> image",
"<neg> image")``. Each pair's teacher score (paper Eq. 1-2) is judged by

1. **distortion intensity**: fixed photographs are degraded by the attribute's own distortion
   (:data:`attiqa.data.distortions.ATTRIBUTE_DISTORTION`) at graded levels; for each photograph the
   SROCC between the score and the negated level is taken (a good pair's score falls as the
   distortion grows), and averaged over the photographs;
2. **human perception**: the SROCC between the score and SPAQ's human rating of the attribute
   across SPAQ's images (:mod:`attiqa.data.spaq`);

and **joint** = task 1 + task 2 (task 1 alone when no SPAQ root is given). The text embeddings of
all candidates are computed in one batched pass, each image is embedded once, and the
2,500 scores per image come from one matrix product (:meth:`CLIPTeacher.pair_scores`).
SROCCs are computed on the logit difference ``sim+ - sim-``, which orders images exactly as the
softmax score does but cannot saturate to ties in floating point.

Outputs in ``--out-dir``: ``ranking.csv`` (every pair of every attribute with both SROCCs and
the joint value, ranked), ``ranking.md`` (the top pairs per attribute and where the paper's
Table 1 pair ranks) and ``prompts.json`` (the best pair per attribute; pass it to
``CLIPTeacher(prompts=...)`` or ``python -m attiqa pseudo-label --prompts``).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from attiqa.attributes import ATTRIBUTES
from attiqa.utils.files import atomic_write, atomic_write_text

__all__ = ["ADJECTIVES_FILE", "load_adjectives", "make_prompts", "rank_srocc", "default_fixed_images",
           "load_fixed_images", "distortion_proxy", "human_proxy", "PromptRanking", "select_prompts",
           "write_outputs"]

ADJECTIVES_FILE = Path(__file__).with_name("adjectives.yaml")
DEFAULT_TEMPLATE = "{} image"


# ---------------------------------------------------------------------------------------------
# candidates


def load_adjectives(path=None) -> dict[str, dict[str, list[str]]]:
    """Reads candidate adjectives: ``{attribute: {"positive": [...], "negative": [...]}}``.

    Args:
        path: a YAML or JSON file; default the packaged ``attiqa/data/adjectives.yaml``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: unreadable file, an attribute missing, an empty or duplicated list entry.
    """
    import yaml

    path = Path(path) if path is not None else ADJECTIVES_FILE
    if not path.is_file():
        raise FileNotFoundError(f"adjectives file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is valid YAML
    except (yaml.YAMLError, UnicodeDecodeError) as exc:  # a ValueError; a Python tag is refused (exit code 6)
        from rlisp_common.exit_codes import InputError

        raise InputError.wrap(exc, path) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping attribute -> {{positive: [...], negative: [...]}}")
    out = {}
    for a in ATTRIBUTES:
        entry = data.get(a)
        if not isinstance(entry, dict):
            raise ValueError(f"{path}: attribute {a!r} is missing (needs positive and negative lists)")
        lists = {}
        for pole in ("positive", "negative"):
            words = entry.get(pole)
            if not isinstance(words, list) or not words:
                raise ValueError(f"{path}: {a}.{pole} must be a non-empty list of adjectives")
            words = [str(w).strip() for w in words]
            if any(not w for w in words):
                raise ValueError(f"{path}: {a}.{pole} contains an empty adjective")
            dup = sorted({w for w in words if words.count(w) > 1})
            if dup:
                raise ValueError(f"{path}: {a}.{pole} lists {dup} more than once")
            lists[pole] = words
        out[a] = lists
    return out


def make_prompts(words: list[str], template: str = DEFAULT_TEMPLATE) -> list[str]:
    """``["Sharp", ...] -> ["Sharp image", ...]`` (first letter capitalised, as in Table 1)."""
    if "{}" not in template:
        raise ValueError(f"template must contain '{{}}', got {template!r}")
    return [template.format(w[:1].upper() + w[1:]) for w in words]


# ---------------------------------------------------------------------------------------------
# statistics


def rank_srocc(x: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Spearman rank correlation of one variable with many, vectorised.

    Ranks with ties averaged (``scipy.stats.rankdata``), then the Pearson correlation of the
    ranks, which is the definition of SROCC.

    Args:
        x: ``(M,)`` values (levels or human ratings).
        scores: ``(M, K)`` candidate scores.

    Returns:
        ``(K,)`` SROCC per column; 0 where a column (or ``x``) is constant.
    """
    from scipy.stats import rankdata

    x = np.asarray(x, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[0] != x.shape[0]:
        raise ValueError(f"scores must be (M, K) with M = len(x) = {x.shape[0]}, got {scores.shape}")
    rx = rankdata(x)
    rs = rankdata(scores, axis=0)
    rx = rx - rx.mean()
    rs = rs - rs.mean(axis=0, keepdims=True)
    den = np.sqrt((rx ** 2).sum() * (rs ** 2).sum(axis=0))
    num = rx @ rs
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(den > 0, num / np.where(den > 0, den, 1.0), 0.0)
    return r


# ---------------------------------------------------------------------------------------------
# images


def _square(img: torch.Tensor, size: int) -> torch.Tensor:
    from attiqa.data.transforms import resize_short_edge

    img = resize_short_edge(img, size)
    _, h, w = img.shape
    top, left = (h - size) // 2, (w - size) // 2
    return img[:, top:top + size, left:left + size].contiguous()


def default_fixed_images(size: int = 256) -> torch.Tensor:
    """Six photographs that ship inside installed packages, as ``(6, 3, size, size)`` in ``[0, 1]``.

    scikit-image's ``astronaut``, ``coffee``, ``chelsea`` and ``rocket`` and scikit-learn's
    ``china.jpg`` and ``flower.jpg`` (their licenses: see the packages' data READMEs; the same
    photographs feed the sample RAW set).
    """
    import skimage.data as skd
    from sklearn.datasets import load_sample_image

    arrays = [skd.astronaut(), skd.coffee(), skd.chelsea(), skd.rocket(),
              load_sample_image("china.jpg"), load_sample_image("flower.jpg")]
    imgs = [torch.from_numpy(np.array(a[..., :3])).permute(2, 0, 1).float() / 255.0 for a in arrays]
    return torch.stack([_square(i, size) for i in imgs])


def load_fixed_images(folder, n: int | None = None, size: int = 256) -> torch.Tensor:
    """The first ``n`` images (sorted by path) of a folder, square-cropped to ``size``."""
    from attiqa.data.image_folder import list_images
    from attiqa.data.transforms import load_image

    files = list_images(folder)
    if n is not None:
        files = files[:n]
    return torch.stack([_square(load_image(f), size) for f in files])


# ---------------------------------------------------------------------------------------------
# proxy tasks


@torch.no_grad()
def _embed(teacher, images: torch.Tensor, batch_size: int) -> torch.Tensor:
    return torch.cat([teacher.encode_images(images[i:i + batch_size]).cpu()
                      for i in range(0, len(images), batch_size)])


def _logit_diff(teacher, emb: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> np.ndarray:
    """``(..., P, N)`` float64 ``sim+ - sim-`` for embeddings ``(..., D)``."""
    s = float(teacher.logit_scale)
    e = emb.double()
    sp = s * e @ pos.double().t()
    sn = s * e @ neg.double().t()
    return (sp[..., :, None] - sn[..., None, :]).numpy()


def distortion_proxy(teacher, images: torch.Tensor, pos: dict, neg: dict, levels=None, batch_size: int = 32,
                     seed: int = 0, progress: bool = False) -> dict[str, np.ndarray]:
    """Proxy task 1: SROCC between distortion intensity and each pair's score.

    Args:
        teacher: a :class:`attiqa.teachers.clip.CLIPTeacher`.
        images: ``(F, 3, H, W)`` fixed photographs in ``[0, 1]``.
        pos, neg: per attribute, ``(P, D)`` / ``(N, D)`` normalised prompt embeddings.
        levels: distortion levels in ``[0, 1]`` (default 6 evenly spaced from 0 to 1).
        batch_size: images per forward pass.
        seed: seed of the random distortions (the same pattern at every level).

    Returns:
        ``{attribute: (P, N)}`` SROCC averaged over the photographs (higher = the score drops
        as the distortion grows).
    """
    from tqdm.auto import tqdm

    from attiqa.data.distortions import ATTRIBUTE_DISTORTION, distort

    levels = np.linspace(0.0, 1.0, 6) if levels is None else np.asarray(levels, dtype=np.float64)
    if len(levels) < 2:
        raise ValueError("distortion proxy needs at least two levels")
    out = {}
    for a in tqdm(ATTRIBUTES, desc="proxy 1: distortions", disable=not progress):
        kind = ATTRIBUTE_DISTORTION[a]
        graded = []
        for lv in levels:
            g = torch.Generator().manual_seed(seed)
            graded.append(distort(images, kind, float(lv), generator=g))
        stack = torch.stack(graded, dim=1)  # (F, L, 3, H, W)
        f, n_lv = stack.shape[:2]
        emb = _embed(teacher, stack.flatten(0, 1), batch_size).view(f, n_lv, -1)
        d = _logit_diff(teacher, emb, pos[a], neg[a])  # (F, L, P, N)
        p, n = d.shape[-2:]
        per_image = np.stack([rank_srocc(-levels, d[i].reshape(n_lv, p * n)) for i in range(f)])
        out[a] = per_image.mean(axis=0).reshape(p, n)
    return out


class _SpaqImages(torch.utils.data.Dataset):
    def __init__(self, paths, size):
        self.paths, self.size = paths, size

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        from attiqa.data.image_folder import load_square, to_unit_float

        return to_unit_float(load_square(self.paths[i], self.size))  # fast path for SPAQ's 12 MP JPEGs


def human_proxy(teacher, paths, human: np.ndarray, pos: dict, neg: dict, size: int = 224, batch_size: int = 32,
                num_workers: int = 0, progress: bool = False) -> dict[str, np.ndarray]:
    """Proxy task 2: SROCC between each pair's score and human attribute ratings.

    Args:
        teacher: a :class:`attiqa.teachers.clip.CLIPTeacher`.
        paths: ``M`` image files.
        human: ``(M, 5)`` ratings in the order of :data:`attiqa.ATTRIBUTES`, higher = better pole.
        pos, neg: per attribute, normalised prompt embeddings.
        size: images are resized (short edge) and centre-cropped to this side before the teacher.
        batch_size, num_workers: DataLoader settings.

    Returns:
        ``{attribute: (P, N)}`` SROCC across the ``M`` images.
    """
    from tqdm.auto import tqdm

    if len(paths) < 3:
        raise ValueError(f"the human-perception proxy needs at least 3 rated images, got {len(paths)}")
    loader = torch.utils.data.DataLoader(_SpaqImages(list(paths), size), batch_size=batch_size,
                                         num_workers=num_workers)
    embs = []
    with torch.no_grad():
        for batch in tqdm(loader, desc="proxy 2: SPAQ images", disable=not progress):
            embs.append(teacher.encode_images(batch).cpu())
    emb = torch.cat(embs)
    out = {}
    for k, a in enumerate(ATTRIBUTES):
        d = _logit_diff(teacher, emb, pos[a], neg[a])  # (M, P, N)
        m, p, n = d.shape
        out[a] = rank_srocc(human[:, k], d.reshape(m, p * n)).reshape(p, n)
    return out


# ---------------------------------------------------------------------------------------------
# selection


@dataclass
class PromptRanking:
    """Result of :func:`select_prompts`.

    Attributes:
        positives, negatives: per attribute, the candidate prompts (P and N of them).
        distortion: per attribute, ``(P, N)`` proxy-task-1 SROCC.
        human: per attribute, ``(P, N)`` proxy-task-2 SROCC, or ``None`` without annotations.
        chosen: per attribute, the best ``(positive, negative)`` by the joint value.
    """

    positives: dict[str, list[str]]
    negatives: dict[str, list[str]]
    distortion: dict[str, np.ndarray]
    human: dict[str, np.ndarray] | None
    chosen: dict[str, tuple[str, str]] = field(default_factory=dict)

    def joint(self, attribute: str) -> np.ndarray:
        """``(P, N)`` task 1 + task 2 (task 1 alone without human annotations)."""
        j = self.distortion[attribute].copy()
        if self.human is not None:
            j = j + self.human[attribute]
        return j

    def rows(self, attribute: str) -> list[dict]:
        """All pairs of an attribute, best first (ties broken by task 1, then by name)."""
        j, d = self.joint(attribute), self.distortion[attribute]
        h = self.human[attribute] if self.human is not None else None
        pos, neg = self.positives[attribute], self.negatives[attribute]
        items = [(float(j[p, n]), float(d[p, n]), None if h is None else float(h[p, n]), pos[p], neg[n])
                 for p in range(len(pos)) for n in range(len(neg))]
        items.sort(key=lambda t: (-t[0], -t[1], t[3], t[4]))
        return [{"attribute": attribute, "rank": r + 1, "positive": ps, "negative": ng, "srocc_distortion": dd,
                 "srocc_human": hh, "joint": jj} for r, (jj, dd, hh, ps, ng) in enumerate(items)]


def select_prompts(teacher, adjectives: dict, fixed_images: torch.Tensor, *, template: str = DEFAULT_TEMPLATE,
                   levels=None, human_paths=None, human_scores=None, image_size: int = 224, batch_size: int = 32,
                   num_workers: int = 0, seed: int = 0, progress: bool = False) -> PromptRanking:
    """Scores every candidate pair of every attribute on both proxy tasks and picks the best.

    Args:
        teacher: a :class:`attiqa.teachers.clip.CLIPTeacher` (its own prompts are not used).
        adjectives: from :func:`load_adjectives`.
        fixed_images: ``(F, 3, H, W)`` photographs for proxy task 1.
        template: prompt template with one ``{}``.
        levels: distortion levels of proxy task 1.
        human_paths, human_scores: images and ``(M, 5)`` ratings for proxy task 2 (optional).
        image_size: side of the SPAQ images given to the teacher.
        batch_size, num_workers: batching of the image passes.
        seed: seed of the random distortions.

    Returns:
        A :class:`PromptRanking`.
    """
    positives = {a: make_prompts(adjectives[a]["positive"], template) for a in ATTRIBUTES}
    negatives = {a: make_prompts(adjectives[a]["negative"], template) for a in ATTRIBUTES}
    # one batched pass over every distinct candidate text
    texts = sorted({t for a in ATTRIBUTES for t in positives[a] + negatives[a]})
    emb = teacher.encode_text(texts).cpu()
    where = {t: i for i, t in enumerate(texts)}
    pos = {a: emb[[where[t] for t in positives[a]]] for a in ATTRIBUTES}
    neg = {a: emb[[where[t] for t in negatives[a]]] for a in ATTRIBUTES}
    dist = distortion_proxy(teacher, fixed_images, pos, neg, levels, batch_size, seed, progress)
    human = None
    if human_paths is not None:
        human = human_proxy(teacher, human_paths, np.asarray(human_scores, dtype=np.float64), pos, neg,
                            image_size, batch_size, num_workers, progress)
    ranking = PromptRanking(positives, negatives, dist, human)
    for a in ATTRIBUTES:
        best = ranking.rows(a)[0]
        ranking.chosen[a] = (best["positive"], best["negative"])
    return ranking


def _fmt(v) -> str:
    return "" if v is None else f"{v:.4f}"


def write_outputs(ranking: PromptRanking, out_dir, top: int = 10, provenance: dict | None = None) -> dict[str, Path]:
    """Writes ``ranking.csv``, ``ranking.md`` and ``prompts.json`` (atomically) into ``out_dir``."""
    from attiqa.teachers.clip import DEFAULT_PROMPTS, save_prompts

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cols = ["attribute", "rank", "positive", "negative", "srocc_distortion", "srocc_human", "joint"]
    with atomic_write(out / "ranking.csv") as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for a in ATTRIBUTES:
            for r in ranking.rows(a):
                w.writerow([r["attribute"], r["rank"], r["positive"], r["negative"], _fmt(r["srocc_distortion"]),
                            _fmt(r["srocc_human"]), _fmt(r["joint"])])

    has_h = ranking.human is not None
    md = ["# Prompt selection", "",
          "SROCC of each antonym pair's CLIP score with distortion intensity (task 1) and "
          + ("with human attribute ratings (task 2); joint = task 1 + task 2." if has_h
             else "no human ratings (no SPAQ root given); joint = task 1."), ""]
    if provenance:
        md += [f"- {k}: `{v}`" for k, v in provenance.items()] + [""]
    summary = {}
    for a in ATTRIBUTES:
        rows = ranking.rows(a)
        md += [f"## {a}", "", "| rank | positive | negative | task 1 | task 2 | joint |",
               "|---:|---|---|---:|---:|---:|"]
        for r in rows[:top]:
            md.append(f"| {r['rank']} | {r['positive']} | {r['negative']} | {_fmt(r['srocc_distortion'])} | "
                      f"{_fmt(r['srocc_human']) or '–'} | {_fmt(r['joint'])} |")
        paper = next((r for r in rows if (r["positive"], r["negative"]) == DEFAULT_PROMPTS[a]), None)
        if paper is not None:
            md += ["", f"Paper's Table 1 pair ({paper['positive']} / {paper['negative']}): rank {paper['rank']} "
                       f"of {len(rows)}, joint {_fmt(paper['joint'])}."]
        md.append("")
        best = rows[0]
        summary[a] = {"srocc_distortion": best["srocc_distortion"], "srocc_human": best["srocc_human"],
                      "joint": best["joint"], "candidates": len(rows)}
    atomic_write_text(out / "ranking.md", "\n".join(md))
    save_prompts(out / "prompts.json", ranking.chosen, {"selection": summary, **(provenance or {})})
    return {"csv": out / "ranking.csv", "markdown": out / "ranking.md", "prompts": out / "prompts.json"}


# ---------------------------------------------------------------------------------------------
# CLI


