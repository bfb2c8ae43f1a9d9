"""Render RAW files to sRGB images with the differentiable ISP, at full resolution.

Usage::

    python experiments/render.py --params default INPUT... --out DIR
    python experiments/render.py --params my_params.json INPUT... --out DIR --format tif --bits 16
    python experiments/render.py --run RUN_DIR INPUT... --out DIR

``INPUT`` is any mix of RAW files and folders (searched recursively for RAW extensions).
``--params`` takes ``default`` (neutral parameters), a JSON file ``{"name": value}`` (missing
names are neutral; see ``isp.PARAM_SPECS``) or a sidecar written by an earlier rendering.
``--run`` uses a trained agent's parameters (``rl.inference.AgentParamsPredictor``), chosen per
image.

Outputs ``DIR/<stem>.<ext>`` with an embedded sRGB ICC profile and the camera orientation
applied, and beside each one ``DIR/<stem>.params.json``, the sidecar with the parameters it was
rendered with (``{"params": {name: value}, "raw", "output", "source"}``): ``--params`` that file
renders the same image again, bit for bit, or a hand-edited copy of it. Existing outputs are
skipped (resumable) unless ``--overwrite``; hidden temporary files of an earlier, killed run are
removed. Every input that cannot be used (missing, permission denied, not a RAW, truncated, a
folder without RAW files) is reported in one line ``error: <file>: <cause>`` and the others are
rendered. Exit status (``rlisp_common.exit_codes``): 0 all rendered, else the first failure's code: 2 bad
arguments, 3 missing path, 4 permission denied, 5 unreadable or invalid input (also a bad
--params file), 6 refused unsafe content (a pickled agent).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

RAW_EXTENSIONS = {
    ".dng", ".cr2", ".cr3", ".crw", ".nef", ".nrw", ".arw", ".srf", ".sr2", ".raf", ".orf", ".rw2",
    ".pef", ".srw", ".rwl", ".3fr", ".iiq", ".erf", ".kdc", ".dcr", ".mrw", ".mef", ".mos", ".x3f",
}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--run", type=Path, help="run folder of a trained agent (parameters chosen per image)")
    src.add_argument("--params", help="'default' (neutral), a JSON file {name: value}, or a .params.json sidecar")
    p.add_argument("inputs", nargs="+", type=Path, metavar="INPUT", help="RAW files or folders")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--format", choices=("png", "jpg", "tif"), default="png", help="output format (default png)")
    p.add_argument("--bits", type=int, choices=(8, 16), default=8, help="8 (png/jpg) or 16 (png/tif); default 8")
    p.add_argument("--max-side", type=int, default=None, help="downscale to this longest side (default: full resolution)")
    p.add_argument("--batch-size", type=int, default=4, help="images of equal size rendered together (default 4)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default)")
    p.add_argument("--overwrite", action="store_true", help="re-render outputs that already exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def find_raws(inputs: list[Path]) -> tuple[list[Path], list[tuple[Path, str, int]]]:
    """Expand files/folders into a sorted, de-duplicated list of RAW files; also return the
    problems as ``(path, cause, exit code)``."""
    from rlisp_common.exit_codes import EXIT_BAD_INPUT, EXIT_MISSING, EXIT_PERMISSION

    found: list[Path] = []
    problems: list[tuple[Path, str, int]] = []
    for item in inputs:
        if item.is_dir():
            try:
                hits = sorted(f for f in item.rglob("*") if f.is_file() and f.suffix.lower() in RAW_EXTENSIONS
                              and not f.name.startswith("."))
            except PermissionError:
                problems.append((item, "permission denied", EXIT_PERMISSION))
                continue
            if not hits:
                what = "a folder (named like a RAW file) with no RAW files in it" if item.suffix.lower() in RAW_EXTENSIONS \
                    else "no RAW files in this folder"
                problems.append((item, what, EXIT_BAD_INPUT))
            found.extend(hits)
        elif item.is_file():
            found.append(item)
        elif item.exists():
            problems.append((item, "not a regular file (a FIFO, device or socket)", EXIT_BAD_INPUT))
        else:
            problems.append((item, "no such file or directory", EXIT_MISSING))
    seen: set[Path] = set()
    unique = []
    for f in found:
        r = f.resolve()
        if r not in seen:
            seen.add(r)
            unique.append(f)
    return unique, problems


def output_names(files: list[Path], out: Path, ext: str) -> list[Path]:
    """``out/<stem>.<ext>``, with ``-2``, ``-3``... added when stems repeat."""
    names, used = [], set()
    for f in files:
        stem, k = f.stem, 1
        while (stem if k == 1 else f"{stem}-{k}") in used:
            k += 1
        stem = stem if k == 1 else f"{stem}-{k}"
        used.add(stem)
        names.append(out / f"{stem}.{ext}")
    return names


SIDECAR_FORMAT = "rlisp-render-params"


def sidecar_path(output: Path) -> Path:
    """``DIR/<stem>.params.json`` beside ``DIR/<stem>.<ext>``."""
    return output.with_name(output.stem + ".params.json")


def write_sidecar(output: Path, raw_path: Path, params, source: str) -> Path:
    """Writes the parameters an output was rendered with, loadable by ``--params`` (atomic).

    Args:
        output: the rendered image file.
        raw_path: the RAW it was rendered from.
        params: ``(P,)`` physical parameters (float32 values are stored exactly).
        source: where they came from (``run:<dir>``, ``params:<file>`` or ``default``).
    """
    import isp
    from isp._atomic import atomic_path

    data = {"format": SIDECAR_FORMAT, "version": 1, "raw": str(raw_path), "output": output.name, "source": source,
            "params": isp.params_to_dict(params)}
    path = sidecar_path(output)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def load_params(spec: str):
    """``default`` or a JSON file -> ``(P,)`` tensor. Raises ValueError with a clear message."""
    import isp

    if spec == "default":
        return isp.neutral_params(1)[0]
    from rlisp_common.exit_codes import EXIT_MISSING, InputError

    path = Path(spec)
    if not path.exists():
        raise InputError("neither 'default' nor an existing JSON file", EXIT_MISSING, path=spec)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_reject_constant)
        if isinstance(data, dict) and data.get("format") == SIDECAR_FORMAT:  # a sidecar of an earlier rendering
            data = data.get("params")
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object {{name: value}}, got {type(data).__name__}")
        return isp.params_from_dict(data)
    except Exception as exc:  # noqa: BLE001 - reported with the file's name; a bug is re-raised
        raise InputError.wrap(exc, path) from None


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a valid parameter value")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    ext = {"png": "png", "jpg": "jpg", "tif": "tif"}[args.format]
    if args.bits == 16 and ext == "jpg":
        print("error: JPEG is 8-bit only; use --format png or tif with --bits 16", file=sys.stderr)
        return 2
    if args.bits == 8 and ext == "tif":
        print("error: TIFF output is 16-bit; use --bits 16 (or --format png/jpg for 8 bits)", file=sys.stderr)
        return 2
    if args.batch_size < 1 or (args.max_side is not None and args.max_side < 2):
        print("error: --batch-size must be >= 1 and --max-side >= 2", file=sys.stderr)
        return 2
    if "torch" not in sys.modules:  # torch's CPU allocator reads this once, at start-up (see isp.cpu)
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    import torch

    import isp
    from isp.cpu import tune_allocator

    tune_allocator()  # reuse freed image buffers instead of faulting in fresh pages
    from rlisp_common.exit_codes import EXIT_USAGE, Failures, InputError, error_line

    from experiments.cli_support import load_agent, remove_stale_temp

    failures = Failures()
    try:
        from rl.common import resolve_device

        device = resolve_device(args.device)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    predictor, params = None, None
    try:
        if args.run:
            predictor = load_agent(args.run, device)
        else:
            params = load_params(args.params)
    except InputError as exc:
        print(error_line(None, exc), file=sys.stderr)
        return exc.code

    source = f"run:{Path(args.run).resolve()}" if args.run else ("default" if args.params == "default" else
                                                                  f"params:{Path(args.params).resolve()}")
    files, problems = find_raws(args.inputs)
    for path, cause, code in problems:
        failures.add(path, cause=cause, code=code)
    if not files:
        print("error: no RAW files to render", file=sys.stderr)
        return failures.code or EXIT_USAGE
    stale = remove_stale_temp(args.out)
    if stale:
        print(f"removed {stale} temporary file(s) left in {args.out} by an earlier run that was killed")
    outs = output_names(files, args.out, ext)
    todo = [(f, o) for f, o in zip(files, outs) if args.overwrite or not o.exists()]
    skipped = len(files) - len(todo)
    args.out.mkdir(parents=True, exist_ok=True)
    pipeline = isp.ISP().to(device).eval()
    done = 0

    from tqdm import tqdm

    bar = tqdm(total=len(todo), desc="render", unit="img", disable=args.quiet)

    def flush(group: list) -> None:
        nonlocal done
        if not group:
            return
        try:
            with torch.inference_mode():
                batch = isp.RawBatch.from_raws([r for _, _, r, _ in group], device=device)
                p = torch.stack([pp for _, _, _, pp in group]).to(device)
                imgs = pipeline(batch, p, validate=True)
        except Exception as exc:  # noqa: BLE001 - a rendering failure must not lose the other files
            for f, _, _, _ in group:
                failures.add(f, exc)
            bar.update(len(group))
            return
        for (f, o, raw, pp), img in zip(group, imgs):
            try:
                isp.save_image(isp.apply_orientation(img, raw.orientation), o, bits=args.bits)
                write_sidecar(o, f, pp, source)
                done += 1
            except (OSError, ValueError) as exc:
                failures.add(o, exc)
            bar.update(1)

    pending: dict[tuple, list] = {}
    for f, o in todo:
        try:
            raw = isp.read_raw(f)
            if predictor is not None:
                # The agent sees the full RAW (it applies its own preview/crop), so its choice
                # does not depend on the output size.
                pp = predictor.predict([raw])[0].detach().float().cpu()
                isp.validate_params(pp)
            else:
                pp = params
            if args.max_side is not None:
                raw = raw.preview(args.max_side)
        except Exception as exc:  # noqa: BLE001 - one line per bad file, the others are rendered
            failures.add(f, exc)
            bar.update(1)
            continue
        key = raw.shape
        pending.setdefault(key, []).append((f, o, raw, pp))
        if len(pending[key]) >= args.batch_size:
            flush(pending.pop(key))
        elif sum(map(len, pending.values())) >= 2 * args.batch_size:
            # Many different sizes (a large mixed folder): bound the decoded RAWs held in memory.
            flush(pending.pop(max(pending, key=lambda k: len(pending[k]))))
    for key in list(pending):
        flush(pending.pop(key))
    bar.close()

    print(f"rendered {done}, skipped {skipped} existing, failed {len(failures)} -> {args.out}")
    return failures.code


if __name__ == "__main__":
    sys.exit(main())
