"""Each dataset loader on a miniature in the official layout; transforms against manual crops."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.io import savemat

from attiqa.data.datasets import load_agiqa3k, load_ava, load_clive, load_csv, load_dataset, load_flive, load_koniq10k
from attiqa.data.transforms import TestTransform, TrainTransform, five_crops, load_image, resize_short_edge


def _img(path, seed=0, size=(24, 18)):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)).save(path)


def test_koniq10k(tmp_path):
    mos = [3.21, 1.5, 4.75]
    lines = ['"image_name","c1","c2","c3","c4","c5","c_total","MOS","SD","MOS_zscore"']
    for i, m in enumerate(mos):
        lines.append(f'"{i}.jpg",1,2,3,4,5,15,{m},0.5,{m * 20}')
        _img(tmp_path / "1024x768" / f"{i}.jpg", i)
    (tmp_path / "koniq10k_scores_and_distributions.csv").write_text("\n".join(lines) + "\n")
    ds = load_koniq10k(tmp_path)
    assert np.allclose(ds.mos, mos) and ds.score_range == (1.0, 5.0)
    assert [p.name for p in ds.paths] == ["0.jpg", "1.jpg", "2.jpg"]
    img, m = ds[1]
    assert img.shape == (3, 18, 24) and float(m) == pytest.approx(1.5)
    assert load_dataset("KonIQ-10k", tmp_path).mos.tolist() == ds.mos.tolist()


def test_clive_mat_files(tmp_path):
    names = [f"t{i}.bmp" for i in range(1, 8)] + ["10.bmp", "11.bmp"]
    mos = np.array([[50, 51, 52, 53, 54, 55, 56, 63.5, 22.25]])
    cell = np.empty((len(names), 1), dtype=object)
    for i, n in enumerate(names):
        cell[i, 0] = np.array([n])
    (tmp_path / "Data").mkdir()
    savemat(tmp_path / "Data" / "AllImages_release.mat", {"AllImages_release": cell})
    savemat(tmp_path / "Data" / "AllMOS_release.mat", {"AllMOS_release": mos})
    for i, n in enumerate(names):
        sub = "Images/trainingImages" if n.startswith("t") else "Images"
        _img(tmp_path / sub / n, i)
    ds = load_clive(tmp_path)
    assert [p.name for p in ds.paths] == ["10.bmp", "11.bmp"]
    assert ds.mos.tolist() == [63.5, 22.25]
    full = load_clive(tmp_path, include_training=True)
    assert len(full) == 9 and full.mos[0] == 50


def test_flive(tmp_path):
    (tmp_path / "labels_image.csv").write_text("name_image,mos_image,is_valid\nAVA__1.jpg,70.1,False\n"
                                               "blur_dataset/x.jpg,40.5,True\n")
    _img(tmp_path / "database" / "AVA__1.jpg")
    _img(tmp_path / "database" / "blur_dataset" / "x.jpg", 1)
    ds = load_flive(tmp_path)
    assert ds.mos.tolist() == [70.1, 40.5] and ds.paths[1].name == "x.jpg"


def test_ava_mean_vote(tmp_path):
    counts = [[0, 1, 2, 3, 4, 5, 0, 0, 0, 1], [10, 0, 0, 0, 0, 0, 0, 0, 0, 10]]
    lines = [f"{i + 1} {100 + i} " + " ".join(map(str, c)) + " 1 2 3" for i, c in enumerate(counts)]
    (tmp_path / "AVA.txt").write_text("\n".join(lines) + "\n")
    for i in range(2):
        _img(tmp_path / "images" / f"{100 + i}.jpg", i)
    ds = load_ava(tmp_path)
    expect = [sum((k + 1) * c for k, c in enumerate(cs)) / sum(cs) for cs in counts]
    assert np.allclose(ds.mos, expect) and ds.score_range == (1.0, 10.0)


def test_agiqa3k(tmp_path):
    (tmp_path / "data.csv").write_text("name,prompt,adj1,adj2,style,mos_quality,std_quality,mos_align,std_align\n"
                                       "a.png,a cat,,,,2.5,0.1,3.5,0.2\nb.png,a dog,,,,4.0,0.1,1.0,0.2\n")
    for i, n in enumerate("ab"):
        _img(tmp_path / "AGIQA-3K" / f"{n}.png", i)
    assert load_agiqa3k(tmp_path).mos.tolist() == [2.5, 4.0]
    assert load_agiqa3k(tmp_path, target="align").mos.tolist() == [3.5, 1.0]


def test_generic_csv_and_missing_image(tmp_path):
    _img(tmp_path / "imgs" / "a.png")
    (tmp_path / "mos.csv").write_text("path,mos\nimgs/a.png,0.25\n")
    ds = load_csv(tmp_path / "mos.csv")
    assert ds.mos.tolist() == [0.25]
    (tmp_path / "bad.csv").write_text("path,mos\nimgs/a.png,0.25\nimgs/missing.png,0.5\n")
    with pytest.raises(FileNotFoundError, match="missing"):
        load_csv(tmp_path / "bad.csv")
    assert len(load_csv(tmp_path / "bad.csv", skip_missing=True)) == 1
    with pytest.raises(FileNotFoundError, match="annotation"):
        load_koniq10k(tmp_path)


def test_spaq_official_spreadsheet(tmp_path):
    """SPAQ: ``Annotations/MOS and Image attribute scores.xlsx`` + ``TestImage/``, MOS 0-100."""
    import openpyxl

    from attiqa.data import spaq
    ann = spaq.write_spaq_miniature(tmp_path, n_images=4, size=(32, 24))
    assert ann == tmp_path / "Annotations" / "MOS and Image attribute scores.xlsx"
    ws = openpyxl.load_workbook(ann, read_only=True).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    col = {h: i for i, h in enumerate(rows[0])}
    ds = load_dataset("spaq", tmp_path)
    assert ds.name == "spaq" and ds.score_range == (0.0, 100.0)
    assert [p.name for p in ds.paths] == [r[col["Image name"]] for r in rows[1:]]
    assert all(p.parent == tmp_path / "TestImage" for p in ds.paths)
    assert np.allclose(ds.mos, [r[col["MOS"]] for r in rows[1:]])
    img, mos = ds[0]
    assert img.shape == (3, 24, 32) and float(mos) == pytest.approx(rows[1][col["MOS"]])


def test_missing_annotation_files_have_one_clear_message(tmp_path):
    for name in ("koniq10k", "clive", "flive", "ava", "agiqa3k", "csv"):
        with pytest.raises(FileNotFoundError, match="not found"):
            load_dataset(name, tmp_path / "nowhere")
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset("imagenet", tmp_path)


def test_five_crops_average_equals_manual():
    img = torch.rand(3, 40, 52)
    crops = five_crops(img, 32)
    manual = [img[:, :32, :32], img[:, :32, 20:], img[:, 8:, :32], img[:, 8:, 20:], img[:, 4:36, 10:42]]
    for c, m in zip(crops, manual):
        assert torch.equal(c, m)
    score = lambda x: x.mean(dim=(1, 2, 3))  # a stand-in model: mean intensity per crop
    assert torch.allclose(score(crops).mean(), torch.stack([m.mean() for m in manual]).mean())
    tf = TestTransform(resize=40, crop=32)
    assert tf(torch.rand(3, 80, 100)).shape == (5, 3, 32, 32)


def test_resize_and_train_crop(tmp_path):
    img = torch.rand(3, 60, 90)
    r = resize_short_edge(img, 34)
    assert r.shape == (3, 34, 51) and 0 <= float(r.min()) and float(r.max()) <= 1
    out = TrainTransform(34, 32)(img, generator=torch.Generator().manual_seed(0))
    assert out.shape == (3, 32, 32)
    _img(tmp_path / "x.png", size=(7, 5))
    assert load_image(tmp_path / "x.png").shape == (3, 5, 7)
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(ValueError, match="not a readable image"):
        load_image(tmp_path / "bad.png")


def test_load_image_reduce_to_box_averages_while_decoding(tmp_path):
    """``reduce_to`` shrinks a large 8-bit image by the largest integer factor that keeps the longer
    side >= the target, as a box average of the 8-bit samples (numpy reference), before any float copy."""
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, size=(70, 100, 3), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "big.png")
    full = load_image(tmp_path / "big.png")
    assert torch.equal(load_image(tmp_path / "big.png", reduce_to=60), full)  # factor 1: untouched
    small = load_image(tmp_path / "big.png", reduce_to=30)  # 100 // 30 = 3 -> 34 x 24 (last partial box kept)
    assert small.shape == (3, 24, 34)
    box = a[:69, :99].reshape(23, 3, 33, 3, 3).astype(np.float64).mean(axis=(1, 3)) / 255.0
    np.testing.assert_allclose(small[:, :23, :33].permute(1, 2, 0).numpy(), box, atol=1 / 255 + 1e-6)
