"""Export agent-vs-Expert C pairs of the MIT-Adobe-5K test split, with metrics and a study page.

Usage::

    python experiments/export_pairs.py --run RUN_DIR --fivek ROOT --out DIR
    python experiments/export_pairs.py --params default --fivek ROOT --out DIR   # no-agent baseline

For each test image (``isp.fivek.load_split(ROOT, --split)["test"]``) it renders the RAW with the
agent's parameters (``rl.inference.AgentParamsPredictor``) or the given ``--params``, and with the
default (neutral) parameters, converts Expert C's 16-bit ProPhoto TIFF to sRGB and aligns it with
our rendering (orientation, size). It writes under ``--out``:

- ``images/<id>-{agent,default,expert_c}.png``: the three renderings (8-bit, sRGB profile);
- ``pairs/pair-NNNN-1.jpg`` / ``-2.jpg``: each study pair, left (1) and right (2) in a seeded
  random order, named by presentation number only;
- ``key.csv``: which side holds which rendering (kept apart from the page), with the reward
  model's MOS of each side; ``study_id`` ties it to the page and the answers;
- ``manifest.csv``: one row per image: files, metrics against Expert C, MOS, agent parameters;
- ``metrics.json``: the summary (mean/median of PSNR, SSIM, mean CIEDE2000 and MOS per method);
- ``contact_sheet.png``: default | agent | Expert C thumbnails;
- ``study.html``: a self-contained two-alternative forced-choice page (images embedded);
- ``per_image/<id>.json``: per-image results; a rerun with the same settings reuses them
  (resumable).

Every image that fails (missing, unreadable or corrupt RAW/TIFF) is reported in one line
``error: <file>: <cause>`` and the others are exported; hidden temporary files of an earlier,
killed run are removed first. Exit status (``rlisp_common.exit_codes``): 0 on success, else the first
failure's code (2 bad arguments or nothing to export, 3 missing path, 4 permission denied, 5
unreadable or invalid input, 6 refused unsafe content such as a pickled agent).
"""
from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import json
import math
import os
import random
import statistics
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from envs import judges as M  # noqa: E402

METHODS = ("agent", "default", "expert_c")
TEMPLATE = Path(__file__).with_name("study_template.html")
KEY_FIELDS = ["pair", "study_id", "id", "comparison", "left", "right", "mos_left", "mos_right"]


# --------------------------------------------------------------------------------------------
# small helpers


def _atomic_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _atomic_text(path: Path, text: str) -> None:
    _atomic_bytes(path, text.encode("utf-8"))


def _write_csv(path: Path, fields: list[str], rows: list[dict]) -> None:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: _fmt(row.get(k)) for k in fields})
    _atomic_text(path, buf.getvalue())


def _fmt(v):
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.6g}"
    return "" if v is None else v


def _to_uint8(img_hwc: np.ndarray) -> np.ndarray:
    return (np.clip(img_hwc, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _jpeg_bytes(img_hwc: np.ndarray, max_side: int | None, quality: int = 92) -> bytes:
    from PIL import Image

    im = Image.fromarray(_to_uint8(img_hwc))
    if max_side and max(im.size) > max_side:
        scale = max_side / max(im.size)
        im = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.LANCZOS)
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=quality, subsampling=0)  # 4:4:4: no chroma loss
    return buf.getvalue()


def _save_png(img_hwc: np.ndarray, path: Path) -> None:
    import isp

    isp.save_image(torch.from_numpy(np.ascontiguousarray(img_hwc.transpose(2, 0, 1))).float(), path, bits=8)


def _load_png(path: Path) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), dtype=np.float64) / 255.0


def checkpoint_from_run(run_dir: Path) -> str | None:
    """The ATTIQA checkpoint recorded in a run's ``config.yaml`` (``None``: the starter model)."""
    import yaml

    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        return None
    cfg = yaml.safe_load(cfg_path.read_text(encoding="utf-8")) or {}
    if isinstance(cfg, dict) and cfg.get("attiqa_checkpoint"):
        return str(cfg["attiqa_checkpoint"])
    stack = [cfg]
    while stack:  # any nested key that names an ATTIQA checkpoint
        node = stack.pop()
        if isinstance(node, dict):
            for k, v in node.items():
                if isinstance(v, str) and "attiqa" in str(k).lower() and "checkpoint" in str(k).lower():
                    return v
                stack.append(v)
        elif isinstance(node, list):
            stack.extend(node)
    return None


# --------------------------------------------------------------------------------------------
# parameter sources


class FixedParams:
    """Stand-in predictor that returns the same physical parameters for every image."""

    def __init__(self, params: torch.Tensor, label: str):
        self.params = params.reshape(1, -1).float()
        self.label = label

    def predict(self, raws):
        return self.params.expand(len(raws), -1).clone()


def load_params_source(spec: str) -> FixedParams:
    """``"default"`` (neutral ISP parameters) or a JSON file ``{"name": value}`` (isp.params_from_dict)."""
    import isp

    if spec == "default":
        return FixedParams(isp.neutral_params(1), "params:default")
    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"--params: {spec!r} is neither 'default' nor an existing JSON file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"--params: {spec!r} is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError(f"--params: {spec!r} must hold a JSON object {{\"name\": value}}")
    params = torch.as_tensor(isp.params_from_dict(data)).reshape(1, -1).float()
    isp.validate_params(params)
    return FixedParams(params, f"params:{path.name}")


# --------------------------------------------------------------------------------------------
# per-image work


def _mos(metric, images: list[np.ndarray], max_side: int | None) -> list[float]:
    import torch.nn.functional as F

    out = []
    with torch.no_grad():
        for img in images:
            t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float()[None]
            h, w = t.shape[-2:]
            if max_side and max(h, w) > max_side:
                s = max_side / max(h, w)
                t = F.interpolate(t, size=(max(1, round(h * s)), max(1, round(w * s))), mode="bilinear",
                                  antialias=True, align_corners=False).clamp(0, 1)
            out.append(float(metric(t).reshape(-1)[0]))
    return out


def process_image(entry, predictor, metric, args, out: Path, signature: str) -> dict:
    """Renders, aligns, saves and scores one test image; returns its per-image record."""
    import isp

    record_path = out / "per_image" / f"{entry.id}.json"
    files = {m: out / "images" / f"{entry.id}-{m}.png" for m in METHODS}
    if record_path.is_file() and all(f.is_file() for f in files.values()):
        try:
            record = json.loads(record_path.read_text(encoding="utf-8"))
            if record.get("signature") == signature:
                return record
        except json.JSONDecodeError:
            pass
    raw = isp.read_raw(entry.dng)
    params = predictor.predict([raw]).reshape(1, -1).float()
    if not torch.isfinite(params).all():
        raise ValueError(f"the agent returned non-finite parameters for {entry.id}")
    agent = M.to_hwc(isp.render(raw, params[0], max_side=args.max_side, device=args.device))
    default = M.to_hwc(isp.render(raw, None, max_side=args.max_side, device=args.device))
    expert = M.align_to(M.load_expert_srgb(entry.expert_c), agent)
    images = {"agent": agent, "default": default, "expert_c": expert}
    for m, img in images.items():
        _save_png(img, files[m])
    # Metrics on the 8-bit images as written, so anyone can recompute them from the files.
    written = {m: _load_png(files[m]) for m in METHODS}
    record = {
        "id": entry.id,
        "name": entry.name,
        "dng": str(entry.dng),
        "expert_c_tiff": str(entry.expert_c),
        "size": list(agent.shape[:2]),
        "signature": signature,
        "files": {m: str(files[m].relative_to(out)) for m in METHODS},
        "params": {k: float(v) for k, v in isp.params_to_dict(params[0]).items()},
        "metrics": {m: M.compare(written[m], written["expert_c"]) for m in ("agent", "default")},
        "mos": None,
    }
    if metric is not None:
        record["mos"] = dict(zip(METHODS, _mos(metric, [written[m] for m in METHODS], args.mos_max_side)))
    _atomic_text(record_path, json.dumps(record, indent=1))
    return record


# --------------------------------------------------------------------------------------------
# outputs


def build_pairs(records: list[dict], comparisons: list[str], seed: int) -> tuple[str, list[dict]]:
    """Seeded study order and sides. Returns ``(study_id, key rows)``; pair numbers start at 1."""
    items = [(r, c) for r in records for c in comparisons]
    rng = random.Random(seed)
    rng.shuffle(items)
    rows = []
    for n, (r, comp) in enumerate(items, 1):
        a, b = comp.split("_vs_")
        left, right = (a, b) if rng.random() < 0.5 else (b, a)
        mos = r.get("mos") or {}
        rows.append({"pair": n, "id": r["id"], "comparison": comp, "left": left, "right": right,
                     "mos_left": mos.get(left), "mos_right": mos.get(right)})
    digest = hashlib.sha1(json.dumps([(k["id"], k["left"], k["right"]) for k in rows]).encode()).hexdigest()
    study_id = f"s{seed}-{digest[:10]}"
    for row in rows:
        row["study_id"] = study_id
    return study_id, rows


def write_study_html(path: Path, study_id: str, pairs: list[dict]) -> None:
    """Writes the self-contained study page; ``pairs``: ``{"pair", "left", "right"}`` data URIs."""
    # "<" ">" "&" as JSON escapes: the data cannot end the <script> element or open a comment in it
    data = (json.dumps({"study_id": study_id, "pairs": pairs}, separators=(",", ":"))
            .replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026"))
    html = TEMPLATE.read_text(encoding="utf-8").replace("/*__STUDY_DATA__*/", data)
    _atomic_text(path, html)


def write_contact_sheet(path: Path, out: Path, records: list[dict], thumb: int = 160, max_rows: int = 24) -> None:
    """Grid of default | agent | Expert C thumbnails (``thumb`` px high), one row per image."""
    from PIL import Image, ImageDraw

    rows = records[:max_rows]
    cols = ("default", "agent", "expert_c")
    thumbs = []
    for r in rows:
        line = []
        for m in cols:
            with Image.open(out / r["files"][m]) as im:
                im = im.convert("RGB")
                w = max(1, round(im.width * thumb / im.height))
                line.append(im.resize((w, thumb), Image.LANCZOS))
        thumbs.append(line)
    col_w = [max((t[i].width for t in thumbs), default=thumb) for i in range(3)]
    label_w, head_h, pad = 70, 22, 6
    width = label_w + sum(col_w) + pad * 4
    height = head_h + len(rows) * (thumb + pad) + pad
    sheet = Image.new("RGB", (width, height), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    x = label_w + pad
    for i, m in enumerate(cols):
        draw.text((x, 5), {"expert_c": "Expert C"}.get(m, m), fill=(255, 255, 255))
        x += col_w[i] + pad
    for j, (r, line) in enumerate(zip(rows, thumbs)):
        y = head_h + j * (thumb + pad)
        draw.text((pad, y + thumb // 2 - 6), r["id"], fill=(255, 255, 255))
        x = label_w + pad
        for i, t in enumerate(line):
            sheet.paste(t, (x, y))
            x += col_w[i] + pad
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    _atomic_bytes(path, buf.getvalue())


def summarize(records: list[dict]) -> dict:
    """Mean / median / std per method of PSNR, SSIM, mean CIEDE2000 (vs Expert C) and MOS."""

    def stats(values):
        values = [v for v in values if v is not None and math.isfinite(v)]
        if not values:
            return None
        return {"mean": statistics.fmean(values), "median": statistics.median(values),
                "std": statistics.pstdev(values), "n": len(values)}

    out: dict = {"n_images": len(records), "vs_expert_c": {}, "mos": {}}
    for m in ("agent", "default"):
        out["vs_expert_c"][m] = {k: stats([r["metrics"][m][k] for r in records]) for k in ("psnr", "ssim", "delta_e2000")}
    if records and all(r.get("mos") for r in records):
        for m in METHODS:
            out["mos"][m] = stats([r["mos"][m] for r in records])
        out["mos"]["agent_beats_expert_c"] = sum(r["mos"]["agent"] > r["mos"]["expert_c"] for r in records) / len(records)
        out["mos"]["agent_beats_default"] = sum(r["mos"]["agent"] > r["mos"]["default"] for r in records) / len(records)
    return out


MANIFEST_FIELDS = [
    "id", "name", "dng", "expert_c_tiff", "height", "width", "agent_image", "default_image", "expert_c_image",
    "psnr_agent", "ssim_agent", "delta_e2000_agent", "psnr_default", "ssim_default", "delta_e2000_default",
    "mos_agent", "mos_default", "mos_expert_c", "params",
]


def manifest_rows(records: list[dict]) -> list[dict]:
    rows = []
    for r in records:
        row = {"id": r["id"], "name": r["name"], "dng": r["dng"], "expert_c_tiff": r["expert_c_tiff"],
               "height": r["size"][0], "width": r["size"][1], "params": json.dumps(r["params"], sort_keys=True)}
        for m in METHODS:
            row[f"{m}_image"] = r["files"][m]
            if r.get("mos"):
                row[f"mos_{m}"] = r["mos"][m]
        for m in ("agent", "default"):
            for k in ("psnr", "ssim", "delta_e2000"):
                row[f"{k}_{m}"] = r["metrics"][m][k]
        rows.append(row)
    return rows


# --------------------------------------------------------------------------------------------
# command line


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="export_pairs.py",
        description="Export agent-vs-Expert C pairs of the MIT-Adobe-5K test split with metrics and a study page.",
    )
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="run folder of a trained agent (rl/train_agent.py)")
    src.add_argument("--params", help="'default' or a JSON file of ISP parameters, instead of an agent")
    p.add_argument("--fivek", type=Path, required=True, help="MIT-Adobe-5K root (or the sample set)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--split", default="auto", help="split name (auto, random or ROOT/splits/<name>.txt); default auto")
    p.add_argument("--split-seed", type=int, default=0, help="seed of --split random (default 0)")
    p.add_argument("--max-images", type=int, default=None, help="use a seeded random subset of this many test images")
    p.add_argument("--max-side", type=int, default=None, help="render at this longest side instead of full resolution")
    p.add_argument("--seed", type=int, default=0, help="seed of the pair order and left/right sides (default 0)")
    p.add_argument("--study-default", action="store_true", help="also put default-vs-Expert C pairs in the study")
    p.add_argument("--study-max-side", type=int, default=1200, help="longest side of images embedded in study.html")
    p.add_argument("--attiqa-checkpoint", default=None, help="reward model for MOS (default: the run's, else the starter)")
    p.add_argument("--no-mos", action="store_true", help="skip the reward model's MOS")
    p.add_argument("--mos-max-side", type=int, default=768, help="downscale to this longest side before scoring MOS")
    p.add_argument("--device", default="cpu", help="torch device (cpu, cuda, auto)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    from isp import fivek

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    from rlisp_common.exit_codes import EXIT_USAGE, Failures, InputError, describe, error_line

    from experiments.cli_support import load_agent, remove_stale_temp

    out: Path = args.out
    # ---- test images
    try:
        test = fivek.load_split(args.fivek, args.split, seed=args.split_seed)["test"]
    except (OSError, ValueError) as exc:
        print(error_line(None, exc), file=sys.stderr)
        return describe(exc)[0]
    missing = [e for e in test if e.expert_c is None]
    for e in missing:
        print(f"warning: {e.id} has no Expert C TIFF; skipped", file=sys.stderr)
    test = [e for e in test if e.expert_c is not None]
    if args.max_images is not None and args.max_images < len(test):
        test = sorted(random.Random(args.seed).sample(test, args.max_images), key=lambda e: e.id)
    if not test:
        print("error: no test image with an Expert C TIFF", file=sys.stderr)
        return 2
    # ---- parameter source and reward model
    try:
        if args.run is not None:
            predictor = load_agent(args.run, device=args.device)
            source = f"run:{args.run.resolve()}"
        else:
            predictor = load_params_source(args.params)
            source = predictor.label
    except InputError as exc:
        print(error_line(None, exc), file=sys.stderr)
        return exc.code
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        print(error_line(args.params, exc), file=sys.stderr)
        return describe(exc)[0]
    metric, checkpoint = None, None
    if not args.no_mos:
        import attiqa

        checkpoint = args.attiqa_checkpoint or (checkpoint_from_run(args.run) if args.run else None)
        try:
            metric = attiqa.create_metric(checkpoint, device=args.device).eval()
        except Exception as exc:  # noqa: BLE001 - one line naming the checkpoint; bugs re-raised
            err = InputError.wrap(exc, checkpoint)
            if not isinstance(err, InputError):
                raise
            print(error_line(None, err), file=sys.stderr)
            return err.code
    signature = hashlib.sha1(json.dumps(
        [source, _mtime(args.run), args.params and _file_digest(args.params), args.max_side,
         None if args.no_mos else (str(checkpoint), _mtime(checkpoint)), args.mos_max_side]).encode()).hexdigest()
    # ---- per image
    stale = remove_stale_temp(out)
    if stale:
        print(f"removed {stale} temporary file(s) left in {out} by an earlier run that was killed")
    records, failures, reports = [], [], Failures()
    for entry in tqdm(test, desc="exporting", unit="img", disable=args.no_progress):
        try:
            records.append(process_image(entry, predictor, metric, args, out, signature))
        except Exception as exc:  # noqa: BLE001 - one line per image, the others are exported
            reports.add(getattr(exc, "path", None) or getattr(exc, "filename", None) or entry.dng, exc)
            failures.append((entry.id, reports.items[-1][2]))
    if not records:
        print("error: no image could be exported", file=sys.stderr)
        return reports.code or EXIT_USAGE
    # ---- pairs, key, study
    comparisons = ["agent_vs_expert_c"] + (["default_vs_expert_c"] if args.study_default else [])
    study_id, key = build_pairs(records, comparisons, args.seed)
    by_id = {r["id"]: r for r in records}
    page_pairs = []
    for row in key:
        sides = {}
        for side, num in (("left", 1), ("right", 2)):
            img = _load_png(out / by_id[row["id"]]["files"][row[side]])
            _atomic_bytes(out / "pairs" / f"pair-{row['pair']:04d}-{num}.jpg", _jpeg_bytes(img, None, quality=95))
            sides[side] = "data:image/jpeg;base64," + base64.b64encode(
                _jpeg_bytes(img, args.study_max_side)).decode("ascii")
        page_pairs.append({"pair": row["pair"], **sides})
    _write_csv(out / "key.csv", KEY_FIELDS, key)
    write_study_html(out / "study.html", study_id, page_pairs)
    _write_csv(out / "manifest.csv", MANIFEST_FIELDS, manifest_rows(records))
    write_contact_sheet(out / "contact_sheet.png", out, records)
    summary = {
        "source": source, "fivek": str(args.fivek), "split": args.split, "max_side": args.max_side,
        "attiqa_checkpoint": None if args.no_mos else (checkpoint or "starter"),
        "study_id": study_id, "n_pairs": len(key), "failures": [{"id": i, "error": e} for i, e in failures],
        **summarize(records),
    }
    _atomic_text(out / "metrics.json", json.dumps(summary, indent=2) + "\n")
    # ---- report
    print(f"exported {len(records)} image(s), {len(key)} pair(s) to {out} (study {study_id})")
    print(f"{'method':<9} {'PSNR dB':>8} {'SSIM':>7} {'dE2000':>7} {'MOS':>8}")
    for m in ("agent", "default", "expert_c"):
        vs = summary["vs_expert_c"].get(m)
        mos = summary["mos"].get(m) if summary["mos"] else None
        cells = [f"{vs[k]['mean']:>{w}.{d}f}" if vs and vs[k] else f"{'-':>{w}}"
                 for k, w, d in (("psnr", 8, 2), ("ssim", 7, 4), ("delta_e2000", 7, 2))]
        print(f"{m:<9} {' '.join(cells)} {mos['mean'] if mos else float('nan'):>8.4f}")
    if failures:
        print(f"error: {len(failures)} image(s) failed; see metrics.json", file=sys.stderr)
        return reports.code
    return 0


def _mtime(path) -> int | None:
    try:
        return os.stat(path).st_mtime_ns if path else None
    except OSError:
        return None


def _file_digest(spec: str) -> str:
    path = Path(spec)
    return hashlib.sha1(path.read_bytes()).hexdigest() if path.is_file() else spec


if __name__ == "__main__":
    sys.exit(main())
