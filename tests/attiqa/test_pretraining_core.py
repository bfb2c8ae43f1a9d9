"""ATTIQA pretraining core: models, checkpoints, distortions, analytic teacher, losses, train_ranking."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats

from attiqa import ATTRIBUTES
from attiqa.data.distortions import ATTRIBUTE_DISTORTION, DISTORTIONS, distort
from attiqa.training.losses import l2_loss, margin_ranking_loss
from attiqa.teachers import AnalyticTeacher, create_teacher
from attiqa.teachers.analytic import blur_effect


def _photo(name: str, side: int = 96) -> torch.Tensor:
    from attiqa.training.starter.photos import starter_photos

    return starter_photos([f"skimage:{name}"], side)[f"skimage:{name}"]


# --------------------------------------------------------------------------------------------- losses


def test_margin_ranking_loss_matches_hand_computation():
    scores = torch.tensor([[0.5, 0.0], [0.45, 0.0], [0.1, 0.0]])
    labels = torch.tensor([[1.0, 0.3], [0.0, 0.3], [0.5, 0.3]])  # second attribute: all ties
    total, per_attr = margin_ranking_loss(scores, labels, margin=0.1)
    # pairs (0,1): y0 > y1 -> max(0, -(0.5-0.45) + 0.1) = 0.05
    #       (0,2): y0 > y2 -> max(0, -(0.5-0.1) + 0.1)  = 0
    #       (1,2): y1 < y2 -> max(0, (0.45-0.1) + 0.1)  = 0.45
    assert per_attr[0].item() == pytest.approx((0.05 + 0.0 + 0.45) / 3)
    assert per_attr[1].item() == 0.0  # tied pairs are skipped
    assert total.item() == pytest.approx(per_attr.sum().item())


def test_margin_ranking_loss_agrees_with_torch_reference():
    g = torch.Generator().manual_seed(0)
    scores, labels = torch.randn(7, 5, generator=g), torch.rand(7, 5, generator=g)
    _, per_attr = margin_ranking_loss(scores, labels, margin=0.1)
    i, j = torch.triu_indices(7, 7, offset=1)
    for k in range(5):
        y = torch.sign(labels[i, k] - labels[j, k])
        ref = F.margin_ranking_loss(scores[i, k], scores[j, k], y, margin=0.1)
        assert per_attr[k].item() == pytest.approx(ref.item(), rel=1e-6)


def test_l2_loss():
    scores, labels = torch.tensor([[1.0, 2.0], [3.0, 4.0]]), torch.tensor([[0.0, 2.0], [1.0, 4.0]])
    total, per_attr = l2_loss(scores, labels)
    assert per_attr.tolist() == pytest.approx([(1 + 4) / 2, 0.0])
    assert total.item() == pytest.approx(2.5)


# --------------------------------------------------------------------------------------------- distortions


@pytest.mark.parametrize("kind", DISTORTIONS)
def test_distortions_identity_at_zero_and_in_range(kind):
    x = _photo("astronaut", 48)[None]
    assert torch.equal(distort(x, kind, 0.0), x)
    y = distort(x, kind, 0.7, generator=torch.Generator().manual_seed(0))
    assert y.shape == x.shape and y.min() >= 0 and y.max() <= 1
    assert (y - x).abs().mean() > 1e-3


def test_distortion_errors():
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="unknown distortion"):
        distort(x, "fog", 0.5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        distort(x, "blur", 1.5)


# --------------------------------------------------------------------------------------------- analytic teacher


def test_blur_effect_matches_skimage():
    from skimage.measure import blur_effect as sk_blur_effect

    for name in ("camera", "coffee"):
        import skimage.data

        img = getattr(skimage.data, name)()
        gray = img / 255.0 if img.ndim == 2 else (img[..., :3] / 255.0) @ np.array([0.2125, 0.7154, 0.0721])
        gray = gray[:90, :120]
        ours = blur_effect(torch.from_numpy(gray)[None, None].double())
        assert float(ours) == pytest.approx(sk_blur_effect(gray), abs=1e-6)


@pytest.mark.parametrize("attribute", ATTRIBUTES)
def test_analytic_teacher_is_monotone_under_its_distortion(attribute):
    teacher = AnalyticTeacher()
    k = ATTRIBUTES.index(attribute)
    levels = np.linspace(0, 1, 6)
    for name in ("chelsea", "coffee", "rocket"):
        x = _photo(name, 96)[None]
        scores = [float(teacher(distort(x, ATTRIBUTE_DISTORTION[attribute], float(lv),
                                        torch.Generator().manual_seed(3)))[0, k]) for lv in levels]
        assert np.all(np.diff(scores) < 0), (name, scores)
        assert all(0.0 <= s <= 1.0 for s in scores)


def test_analytic_teacher_is_differentiable_and_validates_input():
    x = torch.rand(2, 3, 24, 24, dtype=torch.float64, requires_grad=True)
    out = create_teacher("analytic")(x)
    assert out.shape == (2, 5)
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        AnalyticTeacher()(torch.rand(3, 24, 24))
    with pytest.raises(ValueError, match="unknown teacher"):
        create_teacher("oracle")


# --------------------------------------------------------------------------------------------- models


def test_packaged_efficientnet_weights_recognise_photos():
    from attiqa.modeling.heads import build_model

    model = build_model("efficientnet_lite0", pretrained=True).eval()
    batch = torch.stack([F.interpolate(_photo(n, 256)[None], size=(224, 224), mode="bilinear",
                                       antialias=True)[0] for n in ("chelsea", "coffee")])
    with torch.no_grad():
        top1 = model.backbone.classify((batch - model.mean) / model.std).argmax(1).tolist()
    assert 281 <= top1[0] <= 285  # ImageNet's domestic-cat classes
    assert top1[1] == 967  # espresso


def test_resnet50_has_torchvision_layout_and_strict_loading(tmp_path):
    from attiqa.modeling.backbones import ResNet50, load_backbone_state
    from attiqa.modeling.heads import build_model

    net = ResNet50()
    state = net.state_dict()
    # facts of torchvision's resnet50: 320 state-dict entries, 25,557,032 parameters
    assert len(state) == 320
    assert sum(p.numel() for p in net.parameters()) == 25_557_032
    for key in ("conv1.weight", "layer1.0.downsample.1.running_var", "layer4.2.bn3.num_batches_tracked", "fc.bias"):
        assert key in state
    good = {k: torch.randn_like(v) if v.is_floating_point() else v for k, v in state.items()}
    torch.save({"module." + k: v for k, v in good.items()}, tmp_path / "r50.pth")
    model = build_model("resnet50", pretrained=True, head_hidden=8, weights=tmp_path / "r50.pth")
    assert torch.equal(model.backbone.conv1.weight, good["conv1.weight"])
    bad = dict(good)
    bad.pop("layer3.1.conv2.weight")
    torch.save(bad, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="1 missing"):
        load_backbone_state(ResNet50(), tmp_path / "missing.pth", "resnet50")
    wrong = dict(good, **{"fc.weight": torch.zeros(10, 2048)})
    torch.save(wrong, tmp_path / "shape.pth")
    with pytest.raises(ValueError, match="shape mismatch"):
        load_backbone_state(ResNet50(), tmp_path / "shape.pth", "resnet50")
    with pytest.raises(FileNotFoundError):
        build_model("resnet50", pretrained=True, weights=tmp_path / "absent.pth")


def test_model_outputs_and_config_rebuild():
    from attiqa.modeling.heads import build_model

    model = build_model("efficientnet_lite0", pretrained=False, head_hidden=12).eval()
    x = torch.rand(3, 3, 64, 48)
    out = model(x)
    assert out.scores.shape == (3, 5) and out.head_features.shape == (3, 5, 12)
    feats = model.forward_features(x)
    assert torch.allclose(model.forward_heads(feats).scores, out.scores)
    clone = build_model(**{**model.config, "pretrained": False})
    clone.load_state_dict(model.state_dict(), strict=True)
    assert torch.allclose(clone.eval()(x).scores, out.scores)
    with pytest.raises(ValueError, match="unknown backbone"):
        build_model("vgg16", pretrained=False)


# --------------------------------------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip_and_rejections(tmp_path):
    from attiqa.modeling.checkpoint import load_checkpoint, save_checkpoint

    meta = {"kind": "pretrained", "architecture": {"backbone": "x"}, "attributes": list(ATTRIBUTES),
            "normalization": None, "starter": False, "description": "test"}
    state = {"w": torch.arange(4.0)}
    save_checkpoint(tmp_path / "a.pt", state, meta, step=3)
    back = load_checkpoint(tmp_path / "a.pt")
    assert torch.equal(back["state_dict"]["w"], state["w"]) and back["meta"] == meta and back["step"] == 3
    assert not list(tmp_path.glob(".*tmp"))  # no temporary file left behind
    with pytest.raises(ValueError, match="lacks"):
        save_checkpoint(tmp_path / "b.pt", state, {"kind": "pretrained"})
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "absent.pt")
    torch.save(state, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not an ATTIQA checkpoint"):
        load_checkpoint(tmp_path / "plain.pt")
    data = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="not a readable"):
        load_checkpoint(tmp_path / "cut.pt")
    torch.save({"format": "attiqa-checkpoint", "obj": _Pickled()}, tmp_path / "code.pt")
    with pytest.raises(ValueError, match="not a readable"):  # weights_only refuses arbitrary objects
        load_checkpoint(tmp_path / "code.pt")


class _Pickled:
    pass


# --------------------------------------------------------------------------------------------- train_ranking


class _Tensors(torch.utils.data.Dataset):
    def __init__(self, n=12, side=32, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.rand(n, 3, side, side, generator=g)
        self.y = AnalyticTeacher()(self.x)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


def _tiny_model(seed=0):
    from attiqa.modeling.heads import build_model

    torch.manual_seed(seed)
    return build_model("efficientnet_lite0", pretrained=False, head_hidden=8)


@pytest.mark.parametrize("freeze_bn", [False, True])
def test_resume_reaches_the_same_weights(tmp_path, freeze_bn):
    from attiqa.training.pretrain import train_ranking

    kw = dict(steps=6, batch_size=4, lr=1e-3, progress=False, seed=5, checkpoint_every=2, freeze_bn=freeze_bn)
    full = _tiny_model()
    train_ranking(full, _Tensors(), checkpoint_path=tmp_path / "full.pt", **kw)
    part = _tiny_model()
    info = train_ranking(part, _Tensors(), checkpoint_path=tmp_path / "part.pt", stop_after=3, **kw)
    assert info["steps"] == 3
    resumed = _tiny_model(seed=123)  # different init: everything must come from the checkpoint
    info = train_ranking(resumed, _Tensors(), checkpoint_path=tmp_path / "part.pt", resume=True, **kw)
    assert info["start_step"] == 3 and info["steps"] == 6
    a, b = full.state_dict(), resumed.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k].float(), b[k].float(), atol=1e-6), k
    changed = sum(not torch.equal(a[k], v) for k, v in _tiny_model().state_dict().items())
    assert changed > 0  # training did move the weights


def test_resume_refuses_another_architecture(tmp_path):
    from attiqa.modeling.heads import build_model
    from attiqa.training.pretrain import train_ranking

    train_ranking(_tiny_model(), _Tensors(), steps=2, batch_size=4, lr=1e-3, progress=False,
                  checkpoint_path=tmp_path / "c.pt")
    other = build_model("efficientnet_lite0", pretrained=False, head_hidden=16)
    with pytest.raises(ValueError, match="architecture"):
        train_ranking(other, _Tensors(), steps=4, batch_size=4, lr=1e-3, progress=False,
                      checkpoint_path=tmp_path / "c.pt", resume=True)


def test_step_sampler_gives_disjoint_rank_slices():
    from attiqa.training.pretrain import StepSampler

    r0 = StepSampler(100, 8, 3, rank=0, world_size=2, seed=1)
    r1 = StepSampler(100, 8, 3, rank=1, world_size=2, seed=1)
    for b0, b1 in zip(r0, r1):
        assert len(b0) == len(b1) == 8 and not set(b0) & set(b1)
    assert list(StepSampler(100, 8, 3, start_step=1, seed=1)) == list(StepSampler(100, 8, 3, seed=1))[1:]


def test_pretrain_cli_on_an_image_folder(tmp_path):
    from PIL import Image

    from attiqa.modeling.checkpoint import load_checkpoint
    from attiqa.modeling.checkpoint import load_attiqa_model
    from attiqa.cli.pretrain import main
    from attiqa.data.labels import read_labels

    images = tmp_path / "imgs" / "sub"
    images.mkdir(parents=True)
    for i, name in enumerate(("astronaut", "chelsea", "coffee", "rocket", "retina", "hubble_deep_field")):
        arr = (_photo(name, 48).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        Image.fromarray(arr).save(images / f"{i}.png")
    out = tmp_path / "run"
    args = ["--images", str(tmp_path / "imgs"), "--out-dir", str(out), "--no-imagenet", "--head-hidden", "8",
            "--steps", "4", "--batch-size", "3", "--resize", "40", "--crop", "32", "--workers", "0",
            "--no-progress", "--checkpoint-every", "1"]
    assert main(args + ["--stop-after", "2"]) == 0
    assert (out / "last.pt").is_file() and not (out / "pretrained.pt").exists()
    assert main(args + ["--resume"]) == 0
    ckpt = load_checkpoint(out / "pretrained.pt")
    assert ckpt["meta"]["kind"] == "pretrained" and ckpt["meta"]["pretrain_info"]["steps"] == 4
    model, meta = load_attiqa_model(out / "pretrained.pt")  # what finetune consumes
    assert model.config["head_hidden"] == 8
    paths, labels = read_labels(out / "labels.csv", root=tmp_path / "imgs")
    assert len(paths) == 6 and labels.shape == (6, 5) and all(p.is_file() for p in paths)
    # the labels file drives a second run; a missing image is one clear error
    assert main(args[:4] + ["--labels", str(out / "labels.csv")] + args[4:] + ["--out-dir", str(tmp_path / "r2")]) == 0
    (images / "0.png").unlink()
    assert main(args[:4] + ["--labels", str(out / "labels.csv")] + args[4:]
                + ["--out-dir", str(tmp_path / "r3")]) == 3  # rlisp_common.exit_codes.EXIT_MISSING


@pytest.mark.slow
def test_short_pretraining_ranks_held_out_distortions(capsys):
    """Analytic-teacher pretraining on packaged photos; each head must order held-out graded distortions."""
    from attiqa.modeling.heads import build_model
    from attiqa.training.pretrain import train_ranking
    from attiqa.training.starter.config import BUILD_PHOTOS, HOLDOUT_PHOTOS
    from attiqa.training.starter.photos import random_crop, isp_variation
    from attiqa.training.starter.stages import _freeze_backbone_prefix
    from attiqa.training.starter.photos import starter_photos

    crop = 64
    photos = list(starter_photos(BUILD_PHOTOS, 2 * crop).values())
    g = torch.Generator().manual_seed(0)
    bases = [isp_variation(random_crop(photos[j % len(photos)], crop, g), g, 0.5) for j in range(16)]
    teacher, kinds = AnalyticTeacher(), list(ATTRIBUTE_DISTORTION.values())

    class Distorted(torch.utils.data.Dataset):
        def __len__(self):
            return 10_000

        @torch.no_grad()
        def __getitem__(self, i):
            gi = torch.Generator().manual_seed(i)
            x = bases[i % len(bases)]
            if float(torch.rand((), generator=gi)) < 0.8:
                kind = kinds[int(torch.randint(len(kinds), (1,), generator=gi))]
                x = distort(x[None], kind, float(torch.rand((), generator=gi)), gi)[0]
            return x, teacher(x[None])[0]

    torch.manual_seed(0)
    model = build_model("efficientnet_lite0", pretrained=True, head_hidden=64)
    _freeze_backbone_prefix(model, 0.5)
    train_ranking(model, Distorted(), steps=100, batch_size=16, lr=1e-3, progress=False)
    levels = np.linspace(0, 1, 6)
    held = list(starter_photos(HOLDOUT_PHOTOS, 2 * crop).values())
    gh = torch.Generator().manual_seed(1)
    srocc = {}
    with torch.no_grad():
        for k, attr in enumerate(ATTRIBUTES):
            rows = []
            for photo in held:
                for _ in range(4):
                    base = random_crop(photo, crop, gh, 0.6)[None]
                    imgs = torch.cat([distort(base, ATTRIBUTE_DISTORTION[attr], float(lv),
                                              torch.Generator().manual_seed(7)) for lv in levels])
                    rows.append(stats.spearmanr(levels, -model(imgs).scores[:, k].numpy())[0])
            srocc[attr] = float(np.mean(rows))
    with capsys.disabled():
        print("\nheld-out SROCC(level, -head score):", {a: round(v, 3) for a, v in srocc.items()})
    for attr, value in srocc.items():
        assert value > 0.8, (attr, srocc)
