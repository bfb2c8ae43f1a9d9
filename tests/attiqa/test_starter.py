"""The starter model v4: pushes, pseudo-MOS, photo lists, determinism and that the recipe learns."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from attiqa.training.starter.config import BUILD_PHOTOS, HOLDOUT_PHOTOS, PHOTO_LICENSES, STARTER_VERSION, StarterConfig
from attiqa.training.starter.photos import photo_scene, random_crop, starter_photos
from attiqa.training.starter.pushes import DIRECTIONS, TWO_SIDED, perceptual_distance, pseudo_mos, push, ssim
from attiqa.utils.color import delta_e_2000, srgb_to_lab


@pytest.fixture(scope="module")
def crop():
    """A 96 px crop of a held-out photo (float32, (1, 3, 96, 96))."""
    photo = starter_photos(["skimage:rocket"], 192)["skimage:rocket"]
    return random_crop(photo, 96, torch.Generator().manual_seed(0), min_scale=0.8)[None]


# --------------------------------------------------------------------------------------------- colour


def test_lab_and_ciede2000_match_scikit_image():
    from skimage.color import deltaE_ciede2000, rgb2lab

    g = torch.Generator().manual_seed(0)
    a = torch.rand(2, 3, 9, 11, generator=g, dtype=torch.float64)
    b = (a + 0.3 * torch.randn(a.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    a[0, :, 0, 0] = b[0, :, 0, 0] = 0.5  # achromatic pair: the hue special case
    b[1, :, 0, 0] = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    ref_a = np.stack([rgb2lab(x.permute(1, 2, 0).numpy()) for x in a])
    ref_b = np.stack([rgb2lab(x.permute(1, 2, 0).numpy()) for x in b])
    lab_a, lab_b = srgb_to_lab(a), srgb_to_lab(b)
    np.testing.assert_allclose(lab_a.permute(0, 2, 3, 1).numpy(), ref_a, atol=1e-3)
    got = delta_e_2000(lab_a, lab_b).numpy()
    np.testing.assert_allclose(got, deltaE_ciede2000(ref_a, ref_b), atol=1e-3)
    assert got[0, 0, 0] == 0 and got.mean() > 5


def test_ciede2000_on_sharma_reference_pairs():
    """Pairs 1, 7 and 17 of Sharma, Wu & Dalal (2005), Table 1, with their published ΔE00."""
    lab1 = torch.tensor([[50.0, 2.6772, -79.7751], [50.0, 0.0, 0.0], [50.0, 2.5, 0.0]], dtype=torch.float64)
    lab2 = torch.tensor([[50.0, 0.0, -82.7485], [50.0, -1.0, 2.0], [73.0, 25.0, -18.0]], dtype=torch.float64)
    got = delta_e_2000(lab1.T.reshape(1, 3, 1, 3), lab2.T.reshape(1, 3, 1, 3)).flatten()
    np.testing.assert_allclose(got.numpy(), [2.0425, 2.3669, 27.1492], atol=1e-4)


def test_ssim_matches_scikit_image():
    from skimage.metrics import structural_similarity

    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 1, 31, 40, generator=g, dtype=torch.float64)
    y = (x + 0.1 * torch.randn(x.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    ref = [structural_similarity(x[i, 0].numpy(), y[i, 0].numpy(), gaussian_weights=True, sigma=1.5,
                                 use_sample_covariance=False, data_range=1.0) for i in range(3)]
    np.testing.assert_allclose(ssim(x, y).numpy(), ref, atol=1e-10)
    assert torch.allclose(ssim(x, x), torch.ones(3, dtype=torch.float64))


# --------------------------------------------------------------------------------------------- pushes


def test_every_push_is_identity_at_zero_and_stays_in_range(crop):
    for d in DIRECTIONS:
        assert torch.equal(push(crop, d, 0.0), crop), d
        out = push(crop, d, 1.0, torch.Generator().manual_seed(0))
        assert out.shape == crop.shape and out.min() >= 0 and out.max() <= 1, d
    with pytest.raises(ValueError, match="unknown push direction"):
        push(crop, "sepia", 0.5)


@pytest.mark.parametrize("direction", DIRECTIONS)
def test_pseudo_mos_falls_with_push_magnitude(crop, direction):
    mags = [0.0, 0.25, 0.5, 0.75, 1.0]
    imgs = torch.cat([push(crop, direction, m, torch.Generator().manual_seed(3)) for m in mags])
    q = pseudo_mos(crop, imgs)
    assert q[0] == pytest.approx(1.0, abs=1e-6)
    assert bool((q[1:] < q[:-1]).all()), (direction, q.tolist())
    assert q[-1] < 0.75, (direction, q.tolist())  # the strongest push is a clearly worse rendering


def test_two_sided_axes_move_opposite_ways(crop):
    lin = lambda x: x.mean(dim=(0, 2, 3))  # noqa: E731 - per-channel means
    base = lin(crop)
    assert push(crop, "exposure+", 0.5).mean() > crop.mean() > push(crop, "exposure-", 0.5).mean()
    warm, cool = lin(push(crop, "warm", 0.5)), lin(push(crop, "cool", 0.5))
    assert warm[0] / warm[2] > base[0] / base[2] > cool[0] / cool[2]
    mag, green = lin(push(crop, "magenta", 0.5)), lin(push(crop, "green", 0.5))
    assert green[1] > base[1] > mag[1]
    assert push(crop, "contrast+", 0.5).std() > crop.std() > push(crop, "contrast-", 0.5).std()
    chroma = lambda x: (x - x.mean(1, keepdim=True)).abs().mean()  # noqa: E731
    assert chroma(push(crop, "saturation+", 0.5)) > chroma(crop) > chroma(push(crop, "saturation-", 0.5))
    hi, dim = push(crop, "highlights", 0.5), push(crop, "dimmed", 0.5)
    assert (hi >= 1).float().mean() > (crop >= 1).float().mean() and dim.max() < crop.max()  # whites clip / go grey
    lo, lifted = push(crop, "shadows", 0.5), push(crop, "lifted", 0.5)
    assert (lo <= 0).float().mean() > (crop <= 0).float().mean() and lifted.min() > crop.min()  # blacks crush / lift
    assert set(TWO_SIDED) == {"exposure", "temperature", "tint", "contrast", "saturation", "white level", "black level"}


def test_distance_terms_see_what_they_are_for(crop):
    """ΔE00 carries the colour casts, SSIM the structural errors (why the pseudo-MOS sums both)."""
    de_cast, s_cast = perceptual_distance(crop, push(crop, "warm", 0.6))
    de_blur, s_blur = perceptual_distance(crop, push(crop, "blur", 0.6))
    assert de_cast > 2 * de_blur and (1 - s_blur) > 5 * (1 - s_cast)


def test_colour_statistics_see_casts_and_the_model_round_trips_them(crop):
    """The MOS head's global colour statistics move with a cast, and a model that uses them
    rebuilds from its config with the same input width (older configs keep the plain head)."""
    from attiqa.modeling.heads import build_model
    from attiqa.modeling.quality import COLOUR_STATS, QualityModel, colour_statistics

    base, warm, cool = (colour_statistics(x)[0] for x in (crop, push(crop, "warm", 0.8), push(crop, "cool", 0.8)))
    r = COLOUR_STATS.index("log_r_g")
    assert warm[r] > base[r] > cool[r]
    assert colour_statistics(push(crop, "saturation-", 1.0))[0, COLOUR_STATS.index("chroma")] < 0.2 * base[2]
    plain = QualityModel(build_model(pretrained=False, head_hidden=8), head_hidden=4)
    with_stats = QualityModel(build_model(pretrained=False, head_hidden=8), head_hidden=4, colour_stats=True)
    assert "colour_stats" not in plain.config["mos_head"]
    again = QualityModel.from_config(with_stats.config)
    assert again.colour_stats and again.mos_head.in_dim == 5 * 8 + len(COLOUR_STATS)
    assert QualityModel.from_config(plain.config).mos_head.in_dim == 5 * 8
    x = crop.clone().requires_grad_(True)
    with_stats(x).mos.sum().backward()
    assert torch.isfinite(x.grad).all()


# --------------------------------------------------------------------------------------------- photos


def test_build_photos_are_disjoint_from_the_test_scenes():
    build = {photo_scene(p) for p in BUILD_PHOTOS}
    holdout = {photo_scene(p) for p in HOLDOUT_PHOTOS}
    assert holdout == {"rocket", "flower", "coffee"}
    assert not build & holdout
    assert set(PHOTO_LICENSES) >= set(BUILD_PHOTOS) | set(HOLDOUT_PHOTOS)
    assert not any(s in p for p in BUILD_PHOTOS for s in ("hubble", "immunohistochemistry", "retina"))
    import isp.sample_data as sample_data

    assert not build & set(sample_data.TEST_SCENES)
    assert holdout == set(sample_data.TEST_SCENES)


def test_every_photo_loads():
    photos = starter_photos((*BUILD_PHOTOS, *HOLDOUT_PHOTOS), 64)
    assert list(photos) == [*BUILD_PHOTOS, *HOLDOUT_PHOTOS]
    for name, img in photos.items():
        assert img.shape[0] == 3 and abs(max(img.shape[1:]) - 64) <= 1 and 0.05 < float(img.mean()) < 0.95, name
    left, right = photos["skimage:motorcycle_left"], photos["skimage:motorcycle_right"]
    assert not torch.equal(left, right)


# --------------------------------------------------------------------------------------------- builds


def test_tiny_build_is_bitwise_deterministic_and_restores_threads(tmp_path):
    from attiqa.training.starter.build import build_starter

    torch.set_num_threads(1)
    paths = [build_starter(tmp_path / f"s{i}.pt", StarterConfig.tiny(), progress=False) for i in range(2)]
    assert torch.get_num_threads() == 1
    a, b = (torch.load(p, weights_only=True) for p in paths)
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for k in a["state_dict"]:
        assert torch.equal(a["state_dict"][k], b["state_dict"][k]), k
    assert a["meta"]["holdout_report"] == b["meta"]["holdout_report"]
    assert a["meta"]["starter_version"] == STARTER_VERSION and a["meta"]["torch_threads"] == 1
    assert set(a["meta"]["holdout_report"]["mos"]) == set(DIRECTIONS)
    assert a["meta"]["versions"]["torch"] == torch.__version__


def test_weights_fingerprint_tells_bitwise_equal_weights_from_others(tmp_path):
    """The recorded fingerprint is the weights' own, and one ulp anywhere changes it."""
    import hashlib

    from attiqa.modeling.checkpoint import weights_fingerprint
    from attiqa.training.starter.build import build_starter

    path = tmp_path / "s.pt"
    build_starter(path, StarterConfig.tiny(), progress=False)
    ckpt = torch.load(path, weights_only=True)
    state = ckpt["state_dict"]
    assert ckpt["meta"]["weights_sha256"] == weights_fingerprint(state)
    # an independent reference: hashlib over the same fields, written out plainly
    h = hashlib.sha256()
    for name in sorted(state):
        t = state[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode() + t.numpy().tobytes())
    assert weights_fingerprint(state) == h.hexdigest()
    assert weights_fingerprint(dict(reversed(list(state.items())))) == h.hexdigest()  # order of the dict does not matter
    name = next(k for k, v in state.items() if v.is_floating_point() and v.numel())
    nudged = dict(state, **{name: state[name].clone()})
    nudged[name].view(-1)[0] = torch.nextafter(nudged[name].view(-1)[0], torch.tensor(float("inf")))
    assert weights_fingerprint(nudged) != h.hexdigest()


def _cli_build(out, *flags, parent_env=None):
    """``python -m attiqa build-starter --quiet --out OUT FLAGS`` in a child process whose
    environment is this one's without any pin, plus ``parent_env``; returns ``out``."""
    import os
    import subprocess
    import sys

    from attiqa.training.starter.build import PINNED_ISA_ENV

    env = {k: v for k, v in os.environ.items() if k not in PINNED_ISA_ENV} | (parent_env or {})
    cmd = [sys.executable, "-m", "attiqa", "build-starter", "--quiet", "--out", str(out), *flags]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return out


@pytest.mark.slow
def test_small_recipe_ranks_held_out_renderings_below_the_photo(tmp_path):
    """The v4 recipe, cut to about 30 CPU-seconds, learns on the build photos that over- and
    under-exposure, crushed shadows, halos and noise make worse renderings of photos it never saw
    (every held-out crop, push magnitude 0.7). The v2 recipe at this size failed the same test
    with JPEG included (5 of 18 comparisons the wrong way: under-exposure and JPEG twice, shadows
    once; its MOS was nearly flat). At this size the casts, contrast, saturation, blur and (since
    v4 spreads the same steps over two more axes) JPEG do not rank reliably: JPEG on coffee came
    out 0.0002 above the photo. They are the full build's to learn (docs/attiqa.md)."""
    import attiqa

    # built by the CLI, i.e. with the kernels pinned: the same model on every machine (an unpinned
    # build on another host ranked noise on coffee 0.0007 above the photo)
    path = _cli_build(tmp_path / "small.pt", "--small")
    metric = attiqa.create_metric(path)
    photos = starter_photos(HOLDOUT_PHOTOS, 192)
    g = torch.Generator().manual_seed(7)
    directions = ("exposure+", "exposure-", "shadows", "halos", "noise")
    losses = []
    with torch.no_grad():
        for name, photo in photos.items():
            base = random_crop(photo, 96, g, min_scale=0.7)[None]
            batch = torch.cat([base] + [push(base, d, 0.7, torch.Generator().manual_seed(0)) for d in directions])
            mos = metric(batch)
            losses += [(name, d, round(float(mos[0] - m), 4)) for d, m in zip(directions, mos[1:]) if m >= mos[0]]
    assert not losses, losses


def test_pinned_build_environment_runs_mkl_on_the_branch_every_x86_vendor_runs():
    """MKL runs a named code branch (``MKL_CBWR=AVX2``) on Intel processors only; on AMD ones it
    falls back to its automatic branch, whose kernels follow the CPU, without a word, so v5's pin
    built other weights on AMD machines. The pinned environment's matrix products must run on
    ``COMPATIBLE``, the branch MKL keeps on every vendor: its verbose log names the branch in
    effect (``CNR:...``), whatever this machine is."""
    import os
    import platform
    import subprocess
    import sys

    from attiqa.training.starter.build import _pins

    if platform.machine().lower() not in ("x86_64", "amd64"):
        assert _pins() == {}  # ARM and others: nothing to pin
        return
    assert torch.backends.mkl.is_available()
    code = "import torch; a = torch.rand(256, 256); print(float((a @ a).sum()))"
    done = subprocess.run([sys.executable, "-c", code], env={**os.environ, **_pins(), "MKL_VERBOSE": "1"},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    branches = {tok.split()[0] for tok in done.stdout.split("CNR:")[1:]}
    assert branches == {"COMPATIBLE,STRICT"}, done.stdout[-2000:]


def test_cli_builds_the_same_weights_whatever_the_parent_processes_instruction_sets(tmp_path):
    """``build-starter`` re-runs itself with the instruction sets pinned (AVX2 kernels, MKL's
    ``COMPATIBLE`` branch on x86-64), so parents configured for other kernels (AVX-512, MKL's
    automatic paths, more threads) build identical weights, and each checkpoint records the
    environment it was built in; ``--unpinned`` builds in the parent's own environment."""
    from attiqa.training.starter.build import PINNED_ISA_ENV, _pins

    parents = [{"ATEN_CPU_CAPABILITY": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE", "OMP_NUM_THREADS": "2"},
               {"ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "AUTO", "MKL_NUM_THREADS": "2"}]
    ckpts = []
    for i, parent in enumerate([*parents, parents[1]]):
        flags = ["--unpinned"] if i == 2 else []
        # at the real recipe's fixed thread count (2), which every machine then builds with
        path = _cli_build(tmp_path / f"{i}.pt", "--tiny", "--threads", "2", *flags, parent_env=parent)
        ckpts.append(torch.load(path, weights_only=True))
        expected = dict(parent) if flags else {**parent, **_pins()}
        assert ckpts[-1]["meta"]["isa_env"] == {k: expected.get(k) for k in PINNED_ISA_ENV}
    a, b = ckpts[0]["state_dict"], ckpts[1]["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert ckpts[0]["meta"]["holdout_report"] == ckpts[1]["meta"]["holdout_report"]
    assert ckpts[0]["meta"]["torch_threads"] == 2 == StarterConfig().threads
