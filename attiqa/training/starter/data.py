"""Datasets of the starter's training stages: crops of the build photos and renderings pushed from them."""
from __future__ import annotations

import torch

from attiqa.training.starter.photos import random_crop
from attiqa.training.starter.pushes import DIRECTIONS, TWO_SIDED, pseudo_mos, push

__all__ = ["RankingData", "PushGroups"]

_ONE_SIDED = tuple(d for d in DIRECTIONS if not any(d in pair for pair in TWO_SIDED.values()))


def _uniform(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


class RankingData(torch.utils.data.Dataset):
    """Crops of the build photos, each pushed along one random direction, labelled by the teacher.

    Item ``i`` -> ``(image (3, c, c), teacher scores (5,))``; a fifth of the crops stay as they are.
    """

    def __init__(self, photos: list[torch.Tensor], teacher, n: int, crop: int, seed: int):
        self.photos, self.teacher, self.n, self.crop, self.seed = photos, teacher, n, crop, seed

    def __len__(self):
        return self.n

    @torch.no_grad()
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 7919 + i)
        photo = self.photos[int(torch.randint(0, len(self.photos), (1,), generator=g))]
        x = random_crop(photo, self.crop, g)[None]
        if float(torch.rand((), generator=g)) > 0.2:
            d = DIRECTIONS[int(torch.randint(0, len(DIRECTIONS), (1,), generator=g))]
            x = push(x, d, _uniform(g, 0.05, 1.0), g)
        return x[0], self.teacher(x)[0].float()


class PushGroups(torch.utils.data.Dataset):
    """Groups of renderings of one crop of a build photo: the photo's own first, then pushes.

    Group ``i`` holds, after the photo's crop: both directions of one two-sided axis (each at its
    own magnitude), one one-sided direction, then random directions, and last a combination of
    two random directions (an ISP is often wrong on several axes at once). The axes cycle with
    ``i`` so that every direction is drawn equally often. Magnitudes are uniform in
    ``[min_magnitude, 1]``.

    Item ``i`` -> ``(images (V, 3, c, c), teacher scores (V, 5), pseudo-MOS (V,))`` with the
    pseudo-MOS of :func:`attiqa.training.starter.pushes.pseudo_mos` (1 for the photo).
    """

    def __init__(self, photos: list[torch.Tensor], teacher, n: int, crop: int, versions: int, seed: int,
                 min_magnitude: float = 0.05, ladder: bool = False, flips: bool = False):
        if versions < 2:
            raise ValueError("a group needs the photo and at least one push")
        self.photos, self.teacher, self.n, self.crop, self.versions = photos, teacher, n, crop, versions
        self.seed, self.min_magnitude, self.ladder, self.flips = seed, min_magnitude, ladder, flips

    def __len__(self):
        return self.n

    def directions(self, i: int, g: torch.Generator) -> list[list[str]]:
        """The push directions of group ``i`` (one list per rendering after the photo)."""
        axes = list(TWO_SIDED.values())
        plan = [[d] for d in axes[i % len(axes)]] + [[_ONE_SIDED[i % len(_ONE_SIDED)]]]
        while len(plan) < self.versions - 2:
            plan.append([DIRECTIONS[int(torch.randint(0, len(DIRECTIONS), (1,), generator=g))]])
        pick = torch.randperm(len(DIRECTIONS), generator=g)[:2].tolist()
        plan.append([DIRECTIONS[k] for k in pick])
        return plan[:self.versions - 1]

    def ladder_plan(self, i: int, g: torch.Generator) -> list[tuple[str, float, int]]:
        """Group ``i`` as ladders: each direction at two magnitudes (same noise pattern), so that
        the MOS learns the order along one direction as well as against the photo.

        Returns ``[(direction, magnitude, noise seed), ...]``: both directions of one two-sided
        axis and one one-sided direction, two rungs each, then random single rungs.
        """
        axes = list(TWO_SIDED.values())
        dirs = [*axes[i % len(axes)], _ONE_SIDED[i % len(_ONE_SIDED)]]
        plan = []
        for d in dirs:
            a, b = sorted(_uniform(g, self.min_magnitude, 1.0) for _ in range(2))
            seed = int(torch.randint(0, 2 ** 31, (1,), generator=g))
            plan += [(d, a, seed), (d, b, seed)]
        while len(plan) < self.versions - 1:
            d = DIRECTIONS[int(torch.randint(0, len(DIRECTIONS), (1,), generator=g))]
            plan.append((d, _uniform(g, self.min_magnitude, 1.0), int(torch.randint(0, 2 ** 31, (1,), generator=g))))
        return plan[:self.versions - 1]

    @torch.no_grad()
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 104729 + 31 * i + 5)
        photo = self.photos[int(torch.randint(0, len(self.photos), (1,), generator=g))]
        base = random_crop(photo, self.crop, g)[None]
        if self.flips and float(torch.rand((), generator=g)) < 0.5:
            base = base.flip(-1)
        if self.ladder:
            x = torch.cat([base] + [push(base, d, m, torch.Generator().manual_seed(sd))
                                    for d, m, sd in self.ladder_plan(i, g)])
            return x, self.teacher(x).float(), pseudo_mos(base, x).float()
        imgs = [base]
        for dirs in self.directions(i, g):
            x = base
            for d in dirs:
                x = push(x, d, _uniform(g, self.min_magnitude, 1.0), g)
            imgs.append(x)
        x = torch.cat(imgs)
        return x, self.teacher(x).float(), pseudo_mos(base, x).float()
