"""Demosaicing quality against a known truth: our methods next to LibRaw's, in one run.

Usage::

    python experiments/bench_demosaic.py [--scenes astronaut,chelsea] [--max-side 512] [--json out.json]

For each scene (a packaged photograph, by default all seven natural ones) the benchmark writes
DNGs whose true image is known: the photograph's linear sRGB values go through a linear camera
model (Canon EOS 5D Mark II D65 matrix, inverse white-balance gains recorded as AsShotNeutral,
correct exposure, no tone curve) to a Bayer mosaic, in each of the four CFA phases, once without
noise and once with shot + read noise, quantised to 14 bits. A neutral rendering with a perfect
demosaic reproduces the truth: the camera RGB at full resolution through the same white
balance, clip and colour matrix (only the demosaic differs between the methods).

Each DNG is rendered by our pipeline (neutral parameters, every method of
:data:`isp.stages.DEMOSAIC_METHODS`) and by ``rawpy.postprocess`` with LINEAR, AHD, DCB and
AAHD (camera white balance, sRGB primaries, linear 16-bit output, no auto-brightness, no white
level heuristic), both encoded with the sRGB transfer. PSNR (on sRGB values in ``[0, 1]``) and
mean CIEDE2000 (colour-science) against the truth are taken over the image minus an 8-pixel
border. The table gives, per scene and noise level, the mean over the four phases, then the mean
over all; the last line is ``best_ours_minus_ahd_psnr=<dB>`` (target >= 0).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

#: Natural photographs of :data:`isp.sample_data.SOURCES` (by name).
SCENES = ("astronaut", "coffee", "chelsea", "rocket", "china", "motorcycle-left", "flower")
PHASES = ("RGGB", "BGGR", "GRBG", "GBRG")
LIBRAW = ("LINEAR", "AHD", "DCB", "AAHD")
BORDER = 8
#: Shot and read noise variances (normalised units) of the noisy variant: ISO ~800-like.
NOISE = (1e-3, 2e-5)
#: White-balance gains of the camera model (R, G, B), recorded as AsShotNeutral = 1 / gains.
GAINS = (2.0, 1.0, 1.6)


def truth_dng(folder: Path, name: str, img: np.ndarray, cfa: str, noise: bool, seed: int = 0):
    """Write one DNG with known truth; returns ``(path, truth)`` with ``truth`` ``(H, W, 3)``
    sRGB-encoded in ``[0, 1]``."""
    import colour

    import isp
    from isp.color import camera_to_srgb_matrix
    from isp.sample_data import CAMERAS, CameraModel, _cam_from_srgb, write_dng

    base = CAMERAS[0]
    camera = CameraModel(base.make, base.model, base.xyz_to_cam, 512, 16383, cfa)
    lin = colour.cctf_decoding(img.astype(np.float64) / 255.0, function="sRGB")
    gains = np.asarray(GAINS)
    camraw = np.clip(lin @ _cam_from_srgb(camera).T / gains, 0.0, 1.0)
    h, w = camraw.shape[:2]
    ch = {"R": 0, "G": 1, "B": 2}
    mosaic = np.empty((h, w))
    for pos, letter in enumerate(cfa):
        i, j = divmod(pos, 2)
        mosaic[i::2, j::2] = camraw[i::2, j::2, ch[letter]]
    if noise:
        rng = np.random.default_rng(seed)
        shot, read = NOISE
        mosaic = mosaic + rng.standard_normal(mosaic.shape) * np.sqrt(read + shot * np.clip(mosaic, 0, None))
    counts = np.clip(np.rint(camera.black + mosaic * (camera.white - camera.black)), 0, camera.white).astype(np.uint16)
    info = {"cfa": cfa, "black": np.full(4, camera.black), "white": camera.white, "as_shot_neutral": 1.0 / gains}
    path = write_dng(folder / f"{name}-{cfa}-{'noisy' if noise else 'clean'}.dng", counts, camera, info)
    raw = isp.read_raw(path)
    wb = raw.as_shot_wb / raw.as_shot_wb.min()
    m = camera_to_srgb_matrix(raw.cam_to_xyz)
    true_lin = np.clip(np.clip(camraw * wb, 0.0, 1.0) @ m.T, 0.0, 1.0)
    return path, colour.cctf_encoding(true_lin, function="sRGB")


def metrics(img: np.ndarray, truth: np.ndarray) -> tuple[float, float]:
    """PSNR (dB, sRGB values) and mean CIEDE2000 over the image minus :data:`BORDER`."""
    import colour

    a, t = img[BORDER:-BORDER, BORDER:-BORDER], truth[BORDER:-BORDER, BORDER:-BORDER]
    mse = float(np.mean((a - t) ** 2))
    psnr = 10.0 * np.log10(1.0 / max(mse, 1e-20))
    cs = colour.RGB_COLOURSPACES["sRGB"]
    lab = lambda x: colour.XYZ_to_Lab(colour.RGB_to_XYZ(x, cs, apply_cctf_decoding=True))  # noqa: E731
    return psnr, float(colour.delta_E(lab(a), lab(t), method="CIE 2000").mean())


def render_all(path: Path, methods) -> dict[str, np.ndarray]:
    """Our methods and LibRaw's on one DNG -> ``{column: (H, W, 3) sRGB}``."""
    import colour
    import rawpy
    import torch

    import isp

    raw = isp.read_raw(path)
    out = {}
    with torch.inference_mode():
        batch = isp.RawBatch.from_raws([raw])
        for m in methods:
            out[f"ours {m}"] = isp.ISP(demosaic=m)(batch)[0].permute(1, 2, 0).double().numpy()
    with rawpy.imread(str(path)) as rp:
        for alg in LIBRAW:
            lin = rp.postprocess(demosaic_algorithm=getattr(rawpy.DemosaicAlgorithm, alg), use_camera_wb=True,
                                 output_color=rawpy.ColorSpace.sRGB, gamma=(1, 1), no_auto_bright=True,
                                 output_bps=16, adjust_maximum_thr=0.0, user_flip=0)
            out[f"LibRaw {alg}"] = colour.cctf_encoding(lin.astype(np.float64) / 65535.0, function="sRGB")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--scenes", default=",".join(SCENES), help="comma-separated scene names (default: all seven)")
    p.add_argument("--max-side", type=int, default=512, help="centre-crop each photo to at most this side (default 512)")
    p.add_argument("--phases", default=",".join(PHASES), help="CFA phases (default: all four)")
    p.add_argument("--no-noise", dest="noise", action="store_false", help="only the noise-free variant")
    p.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON here")
    args = p.parse_args(argv)
    import warnings

    from isp.sample_data import SOURCES, load_source
    from isp.stages import DEMOSAIC_METHODS

    warnings.filterwarnings("ignore")
    names = [n for n, _, _ in SOURCES]
    scenes = [s for s in args.scenes.split(",") if s]
    for s in scenes:
        if s not in names:
            print(f"error: unknown scene {s!r}; choose from {', '.join(SCENES)}", file=sys.stderr)
            return 2
    methods = list(DEMOSAIC_METHODS)
    variants = [False, True] if args.noise else [False]
    rows = []  # (scene, noise, {column: (psnr, de)}) averaged over phases
    with tempfile.TemporaryDirectory() as tmp:
        for s in scenes:
            img, _ = load_source(names.index(s))
            h, w = img.shape[:2]
            ch, cw = min(h, args.max_side) // 2 * 2, min(w, args.max_side) // 2 * 2
            y0, x0 = (h - ch) // 4 * 2, (w - cw) // 4 * 2
            img = img[y0 : y0 + ch, x0 : x0 + cw]
            for noise in variants:
                acc: dict[str, list] = {}
                for k, cfa in enumerate(args.phases.split(",")):
                    path, truth = truth_dng(Path(tmp), s, img, cfa, noise, seed=k)
                    for col, out in render_all(path, methods).items():
                        acc.setdefault(col, []).append(metrics(out, truth))
                    os.remove(path)
                rows.append((s, noise, {c: tuple(np.mean(v, axis=0)) for c, v in acc.items()}))
                print(f"... {s} {'noisy' if noise else 'clean'} done", file=sys.stderr)
    cols = list(rows[0][2])
    mean = {c: tuple(np.mean([r[2][c] for r in rows], axis=0)) for c in cols}
    print("PSNR dB / mean dE2000 against the truth (mean over CFA phases); higher PSNR, lower dE is better")
    print(f"{'scene':<24}" + "".join(f"{c:>17}" for c in cols))
    for s, noise, vals in rows + [("mean", None, mean)]:
        label = s if noise is None else f"{s} ({'noisy' if noise else 'clean'})"
        print(f"{label:<24}" + "".join(f"{vals[c][0]:>9.2f} /{vals[c][1]:>5.2f}" for c in cols))
    best = max((c for c in cols if c.startswith("ours")), key=lambda c: mean[c][0])
    if args.json:
        data = {"rows": [{"scene": s, "noise": n, "metrics": v} for s, n, v in rows], "mean": mean}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=2))
    print(f"best_ours={best.split()[1]}")
    print(f"best_ours_minus_ahd_psnr={mean[best][0] - mean['LibRaw AHD'][0]:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
