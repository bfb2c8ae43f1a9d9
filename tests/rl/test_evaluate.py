"""Unit tests of the baselines in rl/evaluate.py (random search, gradient ascent) on the analytic reward."""
from __future__ import annotations

import numpy as np
import pytest
from envs.core import TuningCore, load_image_set, potential
from envs.rewards import create_reward
from rl.evaluate import gradient_ascent, random_search


@pytest.fixture(scope="module")
def core(sample_root):
    images = load_image_set(sample_root, "test", preview_side=128, crop=(48, 48))
    return TuningCore(images, create_reward("analytic"), thumb_size=4)


def _objective(core, idx, unit, clip_penalty):
    res = core.evaluate(idx, unit)
    neutral = np.stack([r.clipped[0] for r in core.neutral(idx)])
    return potential(res.normalized, res.clipped, neutral, unit, reward_scale=10.0, clip_penalty=clip_penalty, param_penalty=0.0)


def test_random_search_picks_the_best_draw(core):
    idx = list(range(len(core.images)))
    n = 6
    best = random_search(core, idx, n, seed=3, clip_penalty=5.0)
    # Redraw the same candidates independently and score each one.
    rng = np.random.default_rng(3)
    cands = [rng.uniform(-1, 1, size=(len(idx), core.num_params)).astype(np.float32) for _ in range(n)]
    scores = np.stack([_objective(core, idx, c, 5.0) for c in cands])  # (n, B)
    expected = np.stack([cands[k][b] for b, k in enumerate(scores.argmax(axis=0))])
    np.testing.assert_array_equal(best, expected)


def test_gradient_ascent_improves_and_respects_the_clip_penalty(core):
    idx = list(range(len(core.images)))
    zero = np.zeros((len(idx), core.num_params), np.float32)
    free = gradient_ascent(core, idx, steps=8, lr=0.2)
    penalised = gradient_ascent(core, idx, steps=8, lr=0.2, clip_penalty=100.0)
    assert np.all(np.abs(free) <= 1.0)
    # Best iterate by the objective: never worse than where it started (the neutral params).
    assert np.all(_objective(core, idx, free, 0.0) >= _objective(core, idx, zero, 0.0) - 1e-5)
    assert np.all(_objective(core, idx, penalised, 100.0) >= _objective(core, idx, zero, 100.0) - 1e-5)
    # Both runs follow the same iterates (the clip term has no gradient); the penalised one picks
    # an iterate whose clipping above the neutral rendering is no larger.
    neutral = np.stack([r.clipped[0] for r in core.neutral(idx)])
    excess_free = np.maximum(core.evaluate(idx, free).clipped - neutral, 0.0)
    excess_pen = np.maximum(core.evaluate(idx, penalised).clipped - neutral, 0.0)
    assert np.all(excess_pen <= excess_free + 1e-6)


def test_gradient_ascent_gradients_are_per_image(core):
    """Optimising a batch gives each image the params it gets when optimised alone."""
    idx = list(range(min(2, len(core.images))))
    together = gradient_ascent(core, idx, steps=3, lr=0.1)
    alone = np.concatenate([gradient_ascent(core, [i], steps=3, lr=0.1) for i in idx])
    np.testing.assert_allclose(together, alone, atol=1e-4)


def test_gradient_ascent_moves_only_the_free_parameters(core):
    """With ``free`` the other parameters stay at the default, and the free ones still climb."""
    import isp

    idx = list(range(min(3, len(core.images))))
    free = [isp.PARAM_NAMES.index("exposure"), isp.PARAM_NAMES.index("wb_temperature")]
    zero = np.zeros((len(idx), core.num_params), np.float32)
    unit = gradient_ascent(core, idx, steps=6, lr=0.2, free=free)
    fixed = [j for j in range(core.num_params) if j not in free]
    assert np.all(unit[:, fixed] == 0.0)
    assert np.any(unit[:, free] != 0.0)
    assert np.all(_objective(core, idx, unit, 0.0) >= _objective(core, idx, zero, 0.0) - 1e-5)


def test_judge_policies_gives_the_same_judges_in_worker_threads_as_inline(core):
    """The judges computed in a thread pool while the next renderings are made are the numbers of
    ``envs.judges.judge`` on each policy's whole rendering, in order, whatever the pool size."""
    import isp
    import torch
    from envs import judges
    from isp import fivek
    from rl.evaluate import judge_policies

    entries = list(core.images.sources[:3])
    rng = np.random.default_rng(1)
    units = {"default": np.zeros((3, core.num_params), np.float32),
             "agent": rng.uniform(-0.6, 0.6, (3, core.num_params)).astype(np.float32)}
    reward = create_reward("analytic")
    per_workers = {}
    for workers in (0, 1, 3):
        results = {p: {} for p in units}
        judge_policies(results, entries, units, reward, max_side=96, progress=False, workers=workers)
        per_workers[workers] = {p: results[p]["judges"]["per_image"] for p in units}
    assert per_workers[1] == per_workers[0] and per_workers[3] == per_workers[0]
    # and they are the plain judges of each policy's rendering of that RAW (not another row's)
    e = entries[2]
    img = isp.render(fivek.cached_preview(e.dng, 96), isp.unit_to_params(torch.as_tensor(units["agent"][2:3]))[0])
    expected = judges.judge(img, judges.load_expert_srgb(e.expert_c))
    row = per_workers[3]["agent"][2]
    assert row["id"] == e.id and {k: row[k] for k in expected} == expected
    assert per_workers[3]["agent"][2]["delta_e2000"] != per_workers[3]["default"][2]["delta_e2000"]
