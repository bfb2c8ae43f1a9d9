"""Datasets of the starter's training stages: crops of the packaged photos with teacher labels."""
from __future__ import annotations

import torch

from attiqa.training.starter.photos import _distort, _random_crop, isp_variation


class _RankingData(torch.utils.data.Dataset):
    """Crops with ISP variations (and half of them one distortion), labelled by the teacher."""

    def __init__(self, photos: list[torch.Tensor], teacher, n: int, crop: int, seed: int):
        from attiqa.data.distortions import DISTORTIONS

        self.photos, self.teacher, self.n, self.crop, self.seed = photos, teacher, n, crop, seed
        self.kinds = list(DISTORTIONS)

    def __len__(self):
        return self.n

    @torch.no_grad()
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 7919 + i)
        photo = self.photos[int(torch.randint(0, len(self.photos), (1,), generator=g))]
        x = isp_variation(_random_crop(photo, self.crop, g), g)
        if float(torch.rand((), generator=g)) < 0.5:
            kind = self.kinds[int(torch.randint(0, len(self.kinds), (1,), generator=g))]
            x = _distort(x, kind, float(torch.rand((), generator=g)), g)
        return x, self.teacher(x[None])[0].float()


class _GroupData(torch.utils.data.Dataset):
    """Groups of versions of one crop: the clean crop first, then distortions at random levels.

    Item ``i`` -> ``(images (V, 3, c, c), teacher labels (V, 5), levels (V,))``; each group draws
    its versions from two distortion types, so it holds short ladders of one kind as well as
    comparisons across kinds.
    """

    def __init__(self, photos, teacher, n: int, crop: int, versions: int, seed: int, isp_strength: float = 0.5):
        from attiqa.data.distortions import DISTORTIONS

        self.photos, self.teacher, self.n, self.crop, self.versions = photos, teacher, n, crop, versions
        self.seed, self.kinds, self.isp_strength = seed, list(DISTORTIONS), isp_strength

    def __len__(self):
        return self.n

    @torch.no_grad()
    def __getitem__(self, i):
        g = torch.Generator().manual_seed(self.seed * 104729 + 31 * i + 5)
        photo = self.photos[int(torch.randint(0, len(self.photos), (1,), generator=g))]
        base = isp_variation(_random_crop(photo, self.crop, g), g, strength=self.isp_strength)
        pair = torch.randperm(len(self.kinds), generator=g)[:2].tolist()
        imgs, levels = [base], [0.0]
        for j in range(1, self.versions):
            kind = self.kinds[pair[j % 2]]
            level = 0.1 + 0.9 * float(torch.rand((), generator=g))
            imgs.append(_distort(base, kind, level, g))
            levels.append(level)
        x = torch.stack(imgs)
        return x, self.teacher(x).float(), torch.tensor(levels)
