"""Writes docs/img/highlight_before_after.png: an over-exposed astronaut crop (mosaic x3, 41 % of the
samples at the white level) rendered with wb_tint +0.8 (green gain 0.76) and exposure -1, left with
highlight="channel" (each channel clipped at 1: magenta), right with "neutral" (grey). Prints the mean
a*, b* over the clipped pixels. Run from the repository root with the repository on PYTHONPATH."""
import numpy as np, torch, tempfile, warnings
warnings.filterwarnings("ignore")
from pathlib import Path
from PIL import Image
import isp
from experiments.bench_demosaic import truth_dng
from isp.sample_data import load_source
img,_ = load_source(0)
img = img[0:256, 128:384]
with tempfile.TemporaryDirectory() as tmp:
    path,_ = truth_dng(Path(tmp), "astronaut", img, "RGGB", noise=False)
    raw = isp.read_raw(path)
b = isp.RawBatch.from_raws([raw])
b.linear = (b.linear * 3.0).clamp(0, 1)  # 1.6 stops over: the sensor clips
p = isp.params_from_dict({"wb_tint": 0.8, "exposure": -1.0}).unsqueeze(0)
tiles = []
for mode in ("channel", "neutral"):
    with torch.inference_mode():
        out = isp.ISP(highlight=mode)(b, p)[0].permute(1, 2, 0).numpy()
    tiles.append(out)
    import colour
    lab = colour.XYZ_to_Lab(colour.RGB_to_XYZ(out.astype(np.float64), colour.RGB_COLOURSPACES["sRGB"], apply_cctf_decoding=True))
    clipped = (b.linear[0, 0].numpy() >= 1.0)
    sat = lab[clipped]
    print(mode, "clipped px", clipped.mean().round(3), "mean a*, b* there", sat[:, 1].mean().round(2), sat[:, 2].mean().round(2))
sep = np.ones((256, 6, 3))
Image.fromarray((np.concatenate([tiles[0], sep, tiles[1]], 1) * 255 + 0.5).astype(np.uint8)).save("docs/img/highlight_before_after.png")
