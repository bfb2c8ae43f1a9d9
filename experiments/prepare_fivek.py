"""Check an MIT-Adobe-5K root, write split files and cache decoded RAW previews.

Usage::

    python experiments/prepare_fivek.py ROOT                       # check + write splits
    python experiments/prepare_fivek.py ROOT --decode              # also decode every DNG
    python experiments/prepare_fivek.py ROOT --cache-previews --max-side 256   # = env.preview_side

What it checks: the layout (``raw_photos/HQa*to*/photos/aNNNN-*.dng`` and
``tiff16_c/aNNNN-*.tif``), the counts, DNGs and expert TIFFs that are missing, empty, truncated
or unreadable, files whose names do not follow ``aNNNN-*`` and ids that do not pair. The TIFF
structure of every file is checked cheaply (every strip/tile lies inside the file); ``--decode``
(implied by ``--cache-previews``) also decodes every DNG with :func:`isp.read_raw`.

What it writes, under ``ROOT/splits/`` (format: :func:`isp.fivek.read_split_file`):
``test500.txt`` (a4501-a5000 as test) when those 500 images are present, and
``random_seed<S>.txt`` for each ``--seeds`` value (a seeded random ``--test-fraction`` as test).
Images whose DNG is unusable are left out of every split. ``--report FILE`` writes the check as
JSON. Each unusable file is also one line ``error: <file>: <cause>`` on stderr (permission denied
is said as such). Exit status (``rlisp_common.exit_codes``): 0 when every DNG and expert TIFF is usable,
else the first unusable file's code (4 permission denied, 5 unreadable or corrupt; the splits are
still written without them; ``--allow-errors`` makes that 0); 3 when ROOT does not exist or is
not an MIT-Adobe-5K root.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from isp import fivek  # noqa: E402

_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")


class Problem(str):
    """A problem description that also carries its exit code (``rlisp_common.exit_codes``)."""

    code = 5

    @classmethod
    def of(cls, exc: BaseException) -> "Problem":
        from rlisp_common.exit_codes import describe

        code, cause = describe(exc, getattr(exc, "filename", None))
        out = cls(cause)
        out.code = code
        return out


def check_tiff_file(path: Path, expect_rgb16: bool = False) -> str | None:
    """Checks that ``path`` is a complete TIFF/DNG; returns a problem description or ``None``.

    Every IFD (and DNG SubIFD) is parsed with tifffile and each strip or tile must lie inside
    the file, which catches truncated downloads without decoding any pixels.
    """
    import tifffile

    try:
        size = path.stat().st_size
        if size == 0:
            return "empty file"
        with open(path, "rb") as fh:
            if fh.read(4) not in _TIFF_MAGIC:
                return "not a TIFF/DNG file (bad header)"
    except OSError as exc:  # permission denied, a folder named like a file, ...: said as such
        return Problem.of(exc)
    try:
        with tifffile.TiffFile(path) as tf:
            pages = list(tf.pages)
            todo = list(pages)
            while todo:
                page = todo.pop()
                for i, offset in enumerate(page.subifds or ()):
                    tf.filehandle.seek(offset)
                    sub = tifffile.TiffPage(tf, index=(0, i))
                    pages.append(sub)
                    todo.append(sub)
            for page in pages:
                for off, count in zip(page.dataoffsets or (), page.databytecounts or ()):
                    if off + count > size:
                        return f"truncated: image data ends at byte {off + count}, file has {size}"
            if expect_rgb16:
                first = tf.pages[0]
                if first.samplesperpixel < 3:
                    return f"not an RGB image ({first.samplesperpixel} channel(s))"
                if first.bitspersample != 16:
                    return f"{first.bitspersample}-bit, expected 16-bit"
    except Exception as exc:  # tifffile raises many types on damaged files
        return f"unreadable TIFF structure: {exc}"
    return None


def decode_check(path: Path, max_side: int | None, cache: bool, cache_dir: str | None) -> str | None:
    """Decodes a DNG (and caches its preview when ``cache``); returns a problem or ``None``."""
    import isp

    try:
        if cache:
            fivek.cached_preview(path, max_side, cache_dir=cache_dir)
        else:
            isp.read_raw(path)
    except (isp.RawError, OSError, ValueError) as exc:
        return Problem.of(exc)
    return None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="prepare_fivek.py",
        description="Check an MIT-Adobe-5K root, write split files under ROOT/splits and cache RAW previews.",
    )
    p.add_argument("root", type=Path, help="MIT-Adobe-5K root (holds raw_photos/ and tiff16_c/)")
    p.add_argument("--seeds", type=int, nargs="*", default=[0], help="seeds of the random splits (default: 0)")
    p.add_argument("--test-fraction", type=float, default=0.25, help="test share of the random splits (default 0.25)")
    p.add_argument("--decode", action="store_true", help="decode every DNG with isp.read_raw (slow on the full set)")
    p.add_argument("--cache-previews", action="store_true", help="decode every DNG and cache a preview npz (implies --decode)")
    p.add_argument("--max-side", type=int, default=256,
                   help="longest side of cached previews; use the training env.preview_side (default 256)")
    p.add_argument("--cache-dir", default=None, help="preview cache folder (default <cache>/previews)")
    p.add_argument("--no-splits", action="store_true", help="check only; write no split files")
    p.add_argument("--report", type=Path, default=None, help="write the check as JSON to this file")
    p.add_argument("--allow-errors", action="store_true", help="exit 0 even when some files are unusable")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    return p


def _atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    if not 0 < args.test_fraction < 1:
        print("error: --test-fraction must be between 0 and 1", file=sys.stderr)
        return 2
    try:
        result = fivek.scan(args.root)
    except OSError as exc:
        from rlisp_common.exit_codes import error_line

        print(error_line(None, exc), file=sys.stderr)
        return Problem.of(exc).code
    root = result.root
    entries = result.entries
    errors: list[dict] = []
    warnings: list[dict] = []

    def rel(p: Path) -> str:
        try:
            return str(Path(p).relative_to(root))
        except ValueError:
            return str(p)

    decode = args.decode or args.cache_previews
    bad_ids: set[str] = set()
    for e in tqdm(entries, desc="checking", unit="img", disable=args.no_progress):
        problem = check_tiff_file(e.dng)
        if problem is None and decode:
            problem = decode_check(e.dng, args.max_side, args.cache_previews, args.cache_dir)
        if problem is not None:
            errors.append({"kind": "bad_dng", "id": e.id, "path": rel(e.dng), "problem": str(problem),
                           "code": getattr(problem, "code", 5)})
            bad_ids.add(e.id)
        if e.expert_c is not None:
            problem = check_tiff_file(e.expert_c, expect_rgb16=True)
            if problem is not None:
                errors.append({"kind": "bad_expert_c", "id": e.id, "path": rel(e.expert_c), "problem": str(problem),
                               "code": getattr(problem, "code", 5)})
    for e in result.missing_expert:
        warnings.append({"kind": "missing_expert_c", "id": e.id, "path": rel(e.dng),
                         "problem": "no tiff16_c/<id>-*.tif (usable for training, not for evaluation)"})
    for path in result.orphan_tiffs:
        warnings.append({"kind": "orphan_expert_c", "path": rel(path), "problem": "expert TIFF without a DNG"})
    for path in result.bad_names:
        warnings.append({"kind": "bad_name", "path": rel(path), "problem": "name does not follow aNNNN-*.dng / .tif"})
    for file_id, paths in result.duplicates.items():
        errors.append({"kind": "duplicate_id", "id": file_id, "path": ", ".join(rel(p) for p in paths),
                       "problem": f"id used by {len(paths)} files; the first by name is used"})
    for file_id, dng_stem, tif_stem in result.name_mismatches:
        warnings.append({"kind": "name_mismatch", "id": file_id, "path": f"{dng_stem} / {tif_stem}",
                         "problem": "DNG and TIFF names differ after the id (paired by id)"})

    usable = [e for e in entries if e.id not in bad_ids]
    n_pairs = sum(1 for e in usable if e.expert_c is not None)
    groups = sorted({e.dng.parent.parent.name for e in entries})
    print(f"MIT-Adobe-5K root: {root}")
    print(f"  RAW groups          {len(groups)} ({', '.join(groups[:3])}{', ...' if len(groups) > 3 else ''})")
    print(f"  DNG files           {len(entries)}  (usable {len(usable)}"
          f"{', decoded' if decode else ', structure checked'})")
    print(f"  Expert C TIFFs      {len(entries) - len(result.missing_expert) + len(result.orphan_tiffs)}")
    print(f"  usable pairs        {n_pairs}")
    print(f"  errors              {len(errors)}")
    print(f"  warnings            {len(warnings)}")
    for item in errors:
        print(f"  ERROR   {item['kind']:<17} {item['path']}: {item['problem']}")
        print(f"error: {root / item['path'] if item['kind'] != 'duplicate_id' else item['path']}: {item['problem']}", file=sys.stderr)
    for item in warnings[:50]:
        print(f"  warning {item['kind']:<17} {item['path']}: {item['problem']}")
    if len(warnings) > 50:
        print(f"  ... {len(warnings) - 50} more warnings (see --report)")

    written: list[str] = []
    if not usable:
        print("error: no usable image under this root", file=sys.stderr)
    elif not args.no_splits:
        ids = [e.id for e in usable]
        official = [i for i in fivek.OFFICIAL_TEST_IDS if i in set(ids)]
        if len(official) == len(fivek.OFFICIAL_TEST_IDS):
            test = set(official)
            path = fivek.write_split_file(
                root / "splits" / "test500.txt", [i for i in ids if i not in test], sorted(test),
                comment="The usual MIT-Adobe-5K test split: a4501-a5000 as test, the rest as train.",
            )
            written.append(str(path))
        else:
            print(f"  note: test500.txt not written ({len(official)} of the 500 ids a4501-a5000 are usable)")
        n_test = max(1, round(len(ids) * args.test_fraction))
        for seed in args.seeds:
            shuffled = ids[:]
            random.Random(seed).shuffle(shuffled)
            test = set(shuffled[:n_test])
            path = fivek.write_split_file(
                root / "splits" / f"random_seed{seed}.txt", [i for i in ids if i not in test], sorted(test),
                comment=f"Random split, seed {seed}, test fraction {args.test_fraction}.",
            )
            written.append(str(path))
        for path in written:
            print(f"  wrote {path}")
    if args.report is not None:
        report = {
            "root": str(root), "n_dng": len(entries), "n_usable": len(usable), "n_pairs": n_pairs,
            "decoded": decode, "errors": errors, "warnings": warnings, "splits": written,
            "previews": {"max_side": args.max_side, "cache_dir": args.cache_dir} if args.cache_previews else None,
        }
        _atomic_write_text(args.report, json.dumps(report, indent=2) + "\n")
    if not usable:
        return errors[0].get("code", 5) if errors else 2
    if errors and not args.allow_errors:
        print(f"error: {len(errors)} unusable file(s); fix them or pass --allow-errors", file=sys.stderr)
        return errors[0].get("code", 5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
