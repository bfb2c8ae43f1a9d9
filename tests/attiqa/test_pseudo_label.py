"""Pseudo-labelling: folder and ImageNet layouts, shards, resume, bad input, both teachers."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from attiqa import ATTRIBUTES

REPO = Path(__file__).resolve().parents[2]


def _write_images(root: Path, n: int, seed: int = 0, layout: str = "nested") -> list[Path]:
    rng = np.random.default_rng(seed)
    files = []
    for i in range(n):
        if layout == "imagenet":
            p = root / "train" / f"n0{i % 3:07d}" / f"n0{i % 3:07d}_{i}.JPEG"
        else:
            p = root / ("a" if i % 2 else "b/c") / f"img{i:03d}.{'png' if i % 3 == 0 else 'jpg'}"
        p.parent.mkdir(parents=True, exist_ok=True)
        h, w = int(rng.integers(30, 50)), int(rng.integers(30, 60))
        base = rng.random((h // 4 + 1, w // 4 + 1, 3))
        arr = np.kron(base, np.ones((4, 4, 1)))[:h, :w] * rng.uniform(0.3, 1.0)
        Image.fromarray((arr * 255).astype(np.uint8)).save(p)
        files.append(p)
    return files


def _read_csv(path: Path) -> dict[str, np.ndarray]:
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {r["path"]: np.array([float(r[a]) for a in ATTRIBUTES]) for r in rows}


def _reference_crop(path: Path, size: int) -> torch.Tensor:
    """Short-edge resize + centre crop computed in float with torch (independent of the pipeline)."""
    with Image.open(path) as im:
        x = torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    s = size / min(w, h)
    nw, nh = max(size, round(w * s)), max(size, round(h * s))
    x = torch.nn.functional.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False,
                                        antialias=True).clamp(0, 1)
    top, left = (nh - size) // 2, (nw - size) // 2
    return x[0, :, top:top + size, left:left + size]


def _expected(root: Path, files, size: int, teacher) -> dict[str, np.ndarray]:
    """Teacher scores of each file's crop, one image at a time (no DataLoader, shards or batching)."""
    from attiqa.data.image_folder import load_square, to_unit_float

    out = {}
    for p in files:
        with torch.no_grad():
            out[p.relative_to(root).as_posix()] = teacher(to_unit_float(load_square(p, size))[None])[0].numpy()
    return out


def test_fast_decoding_matches_float_reference(tmp_path):
    """The 8-bit fast path (Pillow resize of the centre box, JPEG draft decoding) agrees with a float
    resize + crop in torch to within 8-bit rounding (and DCT-scaling differences for big JPEGs)."""
    from attiqa.data.image_folder import load_square, to_unit_float

    files = _write_images(tmp_path / "small", 6, seed=5)
    for p in files:
        for size in (16, 24):
            got = to_unit_float(load_square(p, size))
            ref = _reference_crop(p, size)
            assert got.shape == ref.shape == (3, size, size)
            assert float((got - ref).abs().mean()) < 2.5 / 255
    big = tmp_path / "big.jpg"
    rng = np.random.default_rng(0)
    arr = np.kron(rng.random((12, 16, 3)), np.ones((50, 50, 1)))  # 600 x 800, smooth blocks
    Image.fromarray((arr * 255).astype(np.uint8)).save(big, quality=95)
    got, ref = to_unit_float(load_square(big, 64)), _reference_crop(big, 64)   # decoded at 1/8 scale
    assert float((got - ref).abs().mean()) < 0.03
    gray16 = tmp_path / "g16.png"
    Image.fromarray((np.linspace(0, 65535, 40 * 30).reshape(30, 40)).astype(np.uint16)).save(gray16)
    g = load_square(gray16, 20)
    assert g.dtype == torch.float32 and g.shape == (3, 20, 20) and float(g.max()) > 0.5


def test_list_images_sorted_and_imagenet_layout(tmp_path):
    from attiqa.data.image_folder import ImageFolderDataset, list_images

    files = _write_images(tmp_path / "net", 7, layout="imagenet")
    (tmp_path / "net" / "train" / "notes.txt").write_text("not an image")
    listed = list_images(tmp_path / "net", split="train")
    assert listed == sorted(files, key=lambda p: p.relative_to(tmp_path / "net" / "train").as_posix())
    assert list_images(tmp_path / "net") == listed
    ds = ImageFolderDataset(listed, size=24, indices=[2, 5])
    img, idx, ok = ds[1]
    assert img.shape == (3, 24, 24) and idx == 5 and ok
    with pytest.raises(FileNotFoundError, match="no images"):
        (tmp_path / "empty").mkdir()
        list_images(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="not found"):
        list_images(tmp_path / "net", split="val")


def test_analytic_labels_every_image_once_with_correct_scores(tmp_path):
    from attiqa.cli.pseudo_label import main
    from attiqa.data.labels import read_labels_file
    from attiqa.teachers import AnalyticTeacher

    root = tmp_path / "imgs"
    files = _write_images(root, 11)
    out = tmp_path / "labels.csv"
    assert main(["--images", str(root), "--out", str(out), "--teacher", "analytic", "--size", "24",
                 "--batch-size", "3", "--shard-size", "4", "--workers", "1", "--no-progress"]) == 0
    got = _read_csv(out)
    expected = _expected(root, files, 24, AnalyticTeacher())
    assert sorted(got) == sorted(expected)  # every image exactly once (dict keys are unique, counts match)
    with open(out) as f:
        assert sum(1 for _ in f) == len(files) + 1
    for k, v in expected.items():
        np.testing.assert_allclose(got[k], v, atol=2e-5)
    # the lead's pretraining reader resolves the paths against --images
    from attiqa.data.labels import read_labels

    paths, labels = read_labels(out, root=root)
    assert set(paths) == set(files) and labels.shape == (11, 5)
    paths2, scores2 = read_labels_file(out, root=root)
    assert paths2 == paths and np.allclose(scores2, labels.numpy())


def test_resume_skips_finished_shards(tmp_path, capsys):
    from attiqa.cli.pseudo_label import main
    from attiqa.training.pseudo_label import read_shard, shard_path

    root = tmp_path / "imgs"
    _write_images(root, 10, seed=1)
    out = tmp_path / "l.npz"
    work = tmp_path / "l.npz.shards"
    common = ["--images", str(root), "--out", str(out), "--teacher", "analytic", "--size", "20",
              "--batch-size", "2", "--shard-size", "3", "--workers", "0", "--no-progress"]
    assert main(common + ["--max-shards", "2"]) == 0  # "interrupted" after two shards
    assert not out.exists()
    assert sorted(p.name for p in work.glob("shard-*.npz")) == ["shard-00000.npz", "shard-00001.npz"]
    first = {s: (shard_path(work, s).stat().st_mtime_ns, shard_path(work, s).read_bytes()) for s in (0, 1)}
    shard_path(work, 1).write_bytes(b"truncated")   # a damaged shard is relabelled
    capsys.readouterr()
    assert main(common) == 0
    err = capsys.readouterr().err
    assert "labelled 3 shards" in err and "skipped 1 finished shards" in err
    assert shard_path(work, 0).stat().st_mtime_ns == first[0][0]  # untouched
    assert shard_path(work, 1).read_bytes() == first[1][1]         # same content as before the damage
    assert read_shard(shard_path(work, 3), range(9, 10)) is not None
    with np.load(out, allow_pickle=False) as z:
        assert len(z["paths"]) == 10 and len(set(z["paths"].tolist())) == 10
        assert z["scores"].shape == (10, 5) and list(z["attributes"]) == list(ATTRIBUTES)
    # another job in the same work folder is refused, --overwrite starts afresh
    assert main(common[:-1] + ["--size", "16", "--no-progress"]) == 5  # EXIT_BAD_INPUT
    assert "different job" in capsys.readouterr().err
    assert main(common + ["--size", "16", "--overwrite"]) == 0


def test_clip_teacher_labels_with_selected_prompts(tmp_path):
    from attiqa.teachers.clip import CLIPTeacher, save_prompts, save_tiny_random_clip
    from attiqa.cli.pseudo_label import main

    clip = save_tiny_random_clip(tmp_path / "clip", seed=2)
    prompts = save_prompts(tmp_path / "prompts.json", {a: (f"Great {a}", f"Poor {a}") for a in ATTRIBUTES})
    root = tmp_path / "imgs"
    files = _write_images(root, 5, seed=2)
    out = tmp_path / "labels.csv"
    assert main(["--images", str(root), "--out", str(out), "--teacher", "clip", "--clip-model", str(clip),
                 "--prompts", str(prompts), "--size", "32", "--batch-size", "2", "--shard-size", "3",
                 "--workers", "0", "--no-progress"]) == 0
    teacher = CLIPTeacher(clip, prompts=prompts)
    expected = _expected(root, files, 32, teacher)
    got = _read_csv(out)
    assert sorted(got) == sorted(expected)
    for k in expected:
        np.testing.assert_allclose(got[k], expected[k], atol=1e-4)


def test_bad_inputs(tmp_path, capsys):
    from attiqa.cli.pseudo_label import main

    root = tmp_path / "imgs"
    _write_images(root, 3)
    (root / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    out = tmp_path / "labels.csv"
    args = ["--teacher", "analytic", "--size", "16", "--workers", "0", "--no-progress"]
    assert main(["--images", str(root), "--out", str(out), *args]) == 5  # EXIT_BAD_INPUT, the others labelled
    assert "attiqa pseudo-label: error: " in capsys.readouterr().err
    assert (tmp_path / "labels.csv.failed.txt").read_text().strip() == "broken.jpg"
    assert "broken.jpg" not in _read_csv(out) and len(_read_csv(out)) == 3
    assert main(["--images", str(tmp_path / "nothing"), "--out", str(out), *args]) == 3  # EXIT_MISSING
    assert "image folder not found" in capsys.readouterr().err
    assert main(["--images", str(root), "--out", str(tmp_path / "labels.txt"), *args]) == 2  # EXIT_USAGE
    assert ".csv or .npz" in capsys.readouterr().err
    assert main(["--images", str(root), "--out", str(out), "--teacher", "analytic", "--clip-model", "x"]) == 2
    assert "--teacher clip only" in capsys.readouterr().err
    assert main(["--images", str(root), "--out", str(tmp_path / "c.csv"), "--teacher", "clip", "--clip-model",
                 str(tmp_path / "no_clip"), "--no-progress"]) == 3
    assert "CLIP model folder not found" in capsys.readouterr().err
    only_bad = tmp_path / "bad_only"
    only_bad.mkdir()
    (only_bad / "x.png").write_bytes(b"garbage")
    assert main(["--images", str(only_bad), "--out", str(tmp_path / "b.csv"), *args]) == 5
    assert "could be read" in capsys.readouterr().err


def test_help_and_benchmark_script(tmp_path, capsys):
    import importlib.util
    import json

    from attiqa.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["pseudo-label", "--help"])
    assert exc.value.code == 0 and "--shard-size" in capsys.readouterr().out
    spec = importlib.util.spec_from_file_location("bench_pseudo_label", REPO / "experiments" / "bench_pseudo_label.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    threads = torch.get_num_threads()
    try:
        assert bench.main(["--teacher", "analytic", "--n-images", "8", "--batch-size", "4", "--size", "32",
                           "--image-side", "48", "--workers", "0", "--threads", "1", "--repeats", "1",
                           "--json", str(tmp_path / "b.json")]) == 0
    finally:
        torch.set_num_threads(threads)
    assert "ratio" in capsys.readouterr().out
    res = json.loads((tmp_path / "b.json").read_text())
    assert res["n_images"] == 8 and res["pipeline_images_per_s"] > 0 and res["ceiling_images_per_s"] > 0
    assert res["ratio"] == pytest.approx(res["pipeline_images_per_s"] / res["ceiling_images_per_s"])


def test_imagenet_layout_split(tmp_path):
    from attiqa.data.labels import read_labels
    from attiqa.cli.pseudo_label import main

    root = tmp_path / "ILSVRC"
    files = _write_images(root, 5, seed=3, layout="imagenet")
    out = tmp_path / "in.csv"
    assert main(["--images", str(root), "--split", "train", "--out", str(out), "--teacher", "analytic",
                 "--size", "16", "--workers", "0", "--no-progress"]) == 0
    got = _read_csv(out)
    assert all(k.startswith("train/n0") and k.endswith(".JPEG") for k in got) and len(got) == 5
    paths, _ = read_labels(out, root=root)  # `pretrain --images ROOT --labels in.csv` finds the files
    assert sorted(paths) == sorted(files)
