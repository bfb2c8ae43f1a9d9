"""CLIP teacher (paper Eq. 1-2), prompt selection and SPAQ annotations, on a tiny random CLIP."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
import transformers  # a required dependency: a broken install fails here, it is not skipped
from scipy.stats import spearmanr

from attiqa import ATTRIBUTES


@pytest.fixture(scope="module")
def tiny_clip(tmp_path_factory):
    from attiqa.teachers.clip import save_tiny_random_clip

    return save_tiny_random_clip(tmp_path_factory.mktemp("tiny_clip") / "clip", seed=0)


@pytest.fixture(scope="module")
def teacher(tiny_clip):
    from attiqa.teachers.clip import CLIPTeacher

    return CLIPTeacher(tiny_clip)


# ---------------------------------------------------------------------------------------------
# the teacher


def test_scores_equal_eq_1_2_computed_by_hand(tiny_clip, teacher):
    """softmax over the antonym pair of s * cos(image, prompt), with the model loaded independently."""
    from transformers import AutoTokenizer, CLIPModel

    from attiqa.teachers.clip import DEFAULT_PROMPTS

    model = CLIPModel.from_pretrained(tiny_clip).eval()
    tok = AutoTokenizer.from_pretrained(tiny_clip)
    texts = [t for a in ATTRIBUTES for t in DEFAULT_PROMPTS[a]]
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))  # the input size: no resize
    mean = torch.tensor([0.48145466, 0.4578275, 0.40821073]).view(1, 3, 1, 1)
    std = torch.tensor([0.26862954, 0.26130258, 0.27577711]).view(1, 3, 1, 1)
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        out = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"], pixel_values=(images - mean) / std)
    s = model.logit_scale.detach().exp()
    # Eq. 1: cosine similarity (CLIPOutput's embeddings are the projected features)
    sim = torch.zeros(3, len(texts))
    for b in range(3):
        for t in range(len(texts)):
            sim[b, t] = s * torch.nn.functional.cosine_similarity(out.image_embeds[b], out.text_embeds[t], dim=0)
    assert torch.allclose(sim, out.logits_per_image, atol=1e-4)
    # Eq. 2: softmax over (positive, negative)
    expected = torch.zeros(3, 5)
    for k in range(5):
        ep, en = torch.exp(sim[:, 2 * k]), torch.exp(sim[:, 2 * k + 1])
        expected[:, k] = ep / (ep + en)
    with torch.no_grad():
        got = teacher(images)
    assert got.shape == (3, 5)
    assert torch.allclose(got, expected, atol=1e-5)
    assert float(teacher.logit_scale) == pytest.approx(float(s))


def test_batched_preprocessing_matches_clip_image_processor(tiny_clip, teacher):
    from transformers import AutoImageProcessor

    proc = AutoImageProcessor.from_pretrained(tiny_clip)
    base = torch.rand(2, 3, 9, 13, generator=torch.Generator().manual_seed(2))
    x = torch.nn.functional.interpolate(base, size=(90, 130), mode="bilinear", align_corners=False)
    x = (x.clamp(0, 1) * 255).round() / 255  # exactly representable as uint8
    arrays = [(im.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for im in x]
    ref = torch.as_tensor(np.asarray(proc(images=arrays, return_tensors="np")["pixel_values"]))
    ours = teacher.preprocess(x)
    assert ours.shape == ref.shape == (2, 3, 32, 32)
    # PIL's bicubic vs torch's antialiased bicubic: within about one 8-bit level
    assert float((ours - ref).abs().max()) < 0.05
    assert float((ours - ref).abs().mean()) < 0.01


def test_pair_scores_batch_all_candidates(teacher):
    from attiqa.teachers.clip import DEFAULT_PROMPTS

    images = torch.rand(4, 3, 40, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        emb = teacher.encode_images(images)
        forward = teacher(images)
    pos = teacher.encode_text([DEFAULT_PROMPTS[a][0] for a in ATTRIBUTES])
    neg = teacher.encode_text([DEFAULT_PROMPTS[a][1] for a in ATTRIBUTES])
    all_pairs = teacher.pair_scores(emb, pos, neg)  # (4, 5, 5): every positive with every negative
    assert all_pairs.shape == (4, 5, 5)
    assert torch.allclose(torch.diagonal(all_pairs, dim1=1, dim2=2), forward, atol=1e-6)
    assert ((all_pairs > 0) & (all_pairs < 1)).all()
    # batch independence: one image alone scores the same
    with torch.no_grad():
        assert torch.allclose(teacher(images[1:2]), forward[1:2], atol=1e-5)


def test_prompts_files_and_errors(tmp_path, tiny_clip, teacher):
    from attiqa.teachers.clip import CLIPTeacher, DEFAULT_PROMPTS, load_prompts, save_prompts
    from attiqa.teachers import create_teacher

    assert load_prompts() == DEFAULT_PROMPTS
    assert DEFAULT_PROMPTS["noisiness"] == ("Peerless image", "Graimy image")
    custom = {a: (f"Good {a} image", f"Bad {a} image") for a in ATTRIBUTES}
    path = save_prompts(tmp_path / "p.json", custom, {"note": "x"})
    assert load_prompts(path) == custom
    t2 = CLIPTeacher(tiny_clip, prompts=path)
    assert not torch.allclose(t2.text_embeds, teacher.text_embeds)
    t2.set_prompts(None)
    assert torch.allclose(t2.text_embeds, teacher.text_embeds, atol=1e-6)
    assert create_teacher("clip", model=tiny_clip)(torch.rand(1, 3, 32, 32)).shape == (1, 5)
    with pytest.raises(ValueError, match="missing"):
        load_prompts({a: custom[a] for a in ATTRIBUTES[:4]})
    with pytest.raises(ValueError, match="two non-empty strings"):
        load_prompts({**custom, "contrast": ("only one",)})
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="JSON"):
        load_prompts(tmp_path / "bad.json")
    with pytest.raises(FileNotFoundError):
        load_prompts(tmp_path / "absent.json")
    with pytest.raises(FileNotFoundError, match="CLIP model folder"):
        CLIPTeacher(tmp_path / "no_such_clip")
    empty = tmp_path / "empty_clip"
    empty.mkdir()
    with pytest.raises(ValueError, match="cannot load the CLIP model"):
        CLIPTeacher(empty)
    with pytest.raises(ValueError, match="shape"):
        teacher(torch.rand(3, 32, 32))


# ---------------------------------------------------------------------------------------------
# prompt selection


def test_rank_srocc_matches_scipy():
    from attiqa.teachers.prompts import rank_srocc

    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 30).astype(float)  # with ties
    scores = rng.normal(size=(30, 7))
    scores[:, 3] = np.round(scores[:, 3])      # ties in a column
    scores[:, 4] = x * 2 + 1                   # perfect
    scores[:, 5] = 1.0                         # constant -> 0 by convention
    got = rank_srocc(x, scores)
    for k in range(7):
        if k == 5:
            assert got[k] == 0.0
            continue
        assert got[k] == pytest.approx(spearmanr(x, scores[:, k]).statistic, abs=1e-12)
    assert got[4] == pytest.approx(1.0)


def test_packaged_adjectives_have_50_by_50_pairs():
    from attiqa.teachers.clip import DEFAULT_PROMPTS
    from attiqa.teachers.prompts import load_adjectives, make_prompts

    adj = load_adjectives()
    for a in ATTRIBUTES:
        pos, neg = make_prompts(adj[a]["positive"]), make_prompts(adj[a]["negative"])
        assert len(set(pos)) == 50 and len(set(neg)) == 50
        assert DEFAULT_PROMPTS[a][0] in pos and DEFAULT_PROMPTS[a][1] in neg  # Table 1 is a candidate
        assert not set(pos) & set(neg)


def test_adjectives_file_errors(tmp_path):
    from attiqa.teachers.prompts import load_adjectives

    bad = {a: {"positive": ["Sharp"], "negative": ["Blurry"]} for a in ATTRIBUTES[:4]}
    (tmp_path / "a.json").write_text(json.dumps(bad))
    with pytest.raises(ValueError, match="noisiness"):
        load_adjectives(tmp_path / "a.json")
    dup = {a: {"positive": ["Sharp", "Sharp"], "negative": ["Blurry"]} for a in ATTRIBUTES}
    (tmp_path / "b.json").write_text(json.dumps(dup))
    with pytest.raises(ValueError, match="more than once"):
        load_adjectives(tmp_path / "b.json")
    with pytest.raises(FileNotFoundError):
        load_adjectives(tmp_path / "none.yaml")


def test_select_prompts_end_to_end(tmp_path, tiny_clip, capsys):
    """The CLI on the tiny CLIP with a miniature SPAQ; the recorded SROCCs of the chosen pairs are
    recomputed independently with scipy from the teacher's scores."""
    from attiqa.__main__ import main
    from attiqa.teachers.clip import CLIPTeacher, load_prompts
    from attiqa.data.distortions import ATTRIBUTE_DISTORTION, distort
    from attiqa.data.image_folder import load_square, to_unit_float
    from attiqa.teachers.prompts import default_fixed_images
    from attiqa.data.spaq import load_spaq_annotations, write_spaq_miniature

    spaq = tmp_path / "SPAQ"
    write_spaq_miniature(spaq, n_images=8, seed=1)
    out = tmp_path / "sel"
    rc = main(["select-prompts", "--clip-model", str(tiny_clip), "--out-dir", str(out), "--spaq", str(spaq),
               "--n-images", "2", "--image-size", "40", "--levels", "3", "--spaq-size", "32", "--workers", "0",
               "--no-progress"])
    assert rc == 0, capsys.readouterr().err
    with open(out / "ranking.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 5 * 2500
    by_attr = {a: [r for r in rows if r["attribute"] == a] for a in ATTRIBUTES}
    for a, rs in by_attr.items():
        joint = [float(r["joint"]) for r in rs]
        assert joint == sorted(joint, reverse=True)
        for r in rs[:50]:
            assert float(r["joint"]) == pytest.approx(float(r["srocc_distortion"]) + float(r["srocc_human"]), abs=2e-4)
    assert "## sharpness" in (out / "ranking.md").read_text()
    chosen = load_prompts(out / "prompts.json")
    assert {a: (by_attr[a][0]["positive"], by_attr[a][0]["negative"]) for a in ATTRIBUTES} == chosen

    # independent recomputation of both proxy tasks for the chosen pairs
    t = CLIPTeacher(tiny_clip, prompts=chosen)
    fixed = default_fixed_images(40)[:2]
    levels = np.linspace(0, 1, 3)
    table = load_spaq_annotations(spaq)
    spaq_imgs = torch.stack([to_unit_float(load_square(spaq / "TestImage" / n, 32)) for n in table["image"]])
    with torch.no_grad():
        spaq_scores = t(spaq_imgs).numpy()
        for k, a in enumerate(ATTRIBUTES):
            sc = np.stack([t(distort(fixed, ATTRIBUTE_DISTORTION[a], float(lv),
                                     generator=torch.Generator().manual_seed(0)))[:, k].numpy() for lv in levels])
            per_image = [spearmanr(-levels, sc[:, i]).statistic for i in range(len(fixed))]
            assert float(by_attr[a][0]["srocc_distortion"]) == pytest.approx(np.mean(per_image), abs=2e-4)
            human = spearmanr(table["attributes"][:, k], spaq_scores[:, k]).statistic
            assert float(by_attr[a][0]["srocc_human"]) == pytest.approx(human, abs=2e-4)


def test_select_prompts_cli_errors(tmp_path, capsys):
    from attiqa.cli.select_prompts import main

    rc = main(["--clip-model", str(tmp_path / "missing_clip"), "--out-dir", str(tmp_path / "o"), "--no-progress",
               "--n-images", "1", "--image-size", "32"])
    assert rc == 3  # rlisp_common.exit_codes.EXIT_MISSING
    assert "CLIP model folder not found" in capsys.readouterr().err
    rc = main(["--clip-model", "x", "--out-dir", str(tmp_path / "o"), "--spaq", str(tmp_path / "nospaq")])
    assert rc == 3
    assert "SPAQ annotation file not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0


# ---------------------------------------------------------------------------------------------
# SPAQ annotations


def test_spaq_xlsx_and_csv_agree(tmp_path):
    from attiqa.data.datasets import load_spaq
    from attiqa.data.spaq import ANNOTATION_FILE, load_spaq_annotations, write_spaq_miniature

    imgs = torch.rand(5, 3, 24, 32, generator=torch.Generator().manual_seed(4))
    x = write_spaq_miniature(tmp_path / "x", images=imgs, seed=3)
    c = write_spaq_miniature(tmp_path / "c", images=imgs, seed=3, fmt="csv")
    assert x == tmp_path / "x" / ANNOTATION_FILE
    tx, tc = load_spaq_annotations(tmp_path / "x"), load_spaq_annotations(c)
    assert tx["image"] == tc["image"] == [f"{i:05d}.jpg" for i in range(1, 6)]
    np.testing.assert_allclose(tx["attributes"], tc["attributes"])
    np.testing.assert_allclose(tx["mos"], tc["mos"])
    # columns land on the right attributes: read the sheet cell by cell with openpyxl
    import openpyxl

    ws = openpyxl.load_workbook(x, read_only=True).worksheets[0]
    rows = list(ws.iter_rows(values_only=True))
    header = list(rows[0])
    for i, r in enumerate(rows[1:]):
        for k, a in enumerate(ATTRIBUTES):
            assert tx["attributes"][i, k] == pytest.approx(r[header.index(a.capitalize())])
    flipped = load_spaq_annotations(tmp_path / "x", noisiness_higher_is_noisier=True)
    k = ATTRIBUTES.index("noisiness")
    np.testing.assert_allclose(flipped["attributes"][:, k], 100 - tx["attributes"][:, k])
    ds = load_spaq(tmp_path / "x")
    assert len(ds) == 5 and ds.score_range == (0.0, 100.0)


def test_spaq_bad_files(tmp_path):
    from attiqa.data.spaq import load_spaq_annotations

    with pytest.raises(FileNotFoundError, match="SPAQ annotation file not found"):
        load_spaq_annotations(tmp_path)
    (tmp_path / "a.csv").write_text("Image name,MOS,Brightness,Colorfulness,Contrast,Noisiness\n1.jpg,50,1,2,3,4\n")
    with pytest.raises(ValueError, match="Sharpness"):
        load_spaq_annotations(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("Image name,MOS,Brightness,Colorfulness,Contrast,Noisiness,Sharpness\n"
                                    "1.jpg,50,1,2,x,4,5\n")
    with pytest.raises(ValueError, match="non-numeric"):
        load_spaq_annotations(tmp_path / "b.csv")
    (tmp_path / "c.xlsx").write_bytes(b"PK\x03\x04 this is not a workbook")
    with pytest.raises(ValueError, match="xlsx"):
        load_spaq_annotations(tmp_path / "c.xlsx")
    (tmp_path / "d.csv").write_text("Image name;MOS;Brightness;Colorfulness;Contrast;Noisiness;Sharpness\n"
                                    "1.jpg;50;1;2;3;4;5\n2.jpg;40;5;4;3;2;1\n")
    t = load_spaq_annotations(tmp_path / "d.csv")  # semicolon export
    assert t["attributes"][0].tolist() == [5, 3, 1, 2, 4]
