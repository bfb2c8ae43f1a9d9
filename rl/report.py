"""A self-contained HTML report of a run folder (``report.html``).

    python -m rl.report RUN_DIR            # (re)writes RUN_DIR/report.html from eval.json and the run's files

The page needs no network: every image is a base64 PNG inside it, the styles are inline and a
Content-Security-Policy forbids any other source. It shows

* the judges per policy (default parameters, agent, random search, gradient ascent), overall and
  per capture condition, with the benchmark ratios (every value straight from ``eval.json``);
* the training curve (``training_curve.csv``) and, when the run has one, the periodic held-out
  evaluation (``eval_curve.csv``, :class:`rl.periodic_eval.HeldOutEvalCallback`);
* whole-image strips, default | agent | gradient ascent | expert, each render with its judges;
  the renders are made from the parameters recorded in ``eval.json`` (``isp.render`` of the RAW
  at ``--max-side`` pixels), so the policies are not run again;
* the agent's choice of every ISP parameter across the held-out images, one small plot each;
* the resolved configuration and the command lines of the run.

Everything taken from files (ids, paths, descriptions, the config) is HTML-escaped, and the JSON
block the page carries for machines escapes ``<``, ``>`` and ``&``.
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["REPORT_FILE", "COLUMNS", "write_report", "build_report_html", "judge_table", "main", "safe_json", "write_bench_report"]

REPORT_FILE = "report.html"
#: Summary-table columns: (key, header, where the value comes from: the policy entry or its judges' means).
COLUMNS = (
    ("score", "reward (view)"),
    ("full_res_score", "reward (whole)"),
    ("delta_e2000", "ΔE2000 ↓"),
    ("psnr", "PSNR ↑"),
    ("ssim", "SSIM ↑"),
    ("cast_vs_expert", "cast vs expert ↓"),
    ("clipped_fraction", "clipped ↓"),
    ("colour_cast", "grey cast ↓"),
)
STRIP_POLICIES = ("default", "agent", "gradient_ascent")
LABELS = {"default": "default", "agent": "agent", "random_search": "random search", "gradient_ascent": "gradient ascent",
          "expert": "expert"}


# -- small helpers ---------------------------------------------------------------------------------
def safe_json(obj) -> str:
    """JSON that can sit inside a ``<script>`` element: ``<``, ``>``, ``&`` and line separators escaped."""
    text = json.dumps(_no_nan(obj), allow_nan=False, default=str)
    for ch, rep in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(ch, rep)
    return text


def _no_nan(obj):
    """``obj`` with every non-finite float replaced by ``None`` (JSON has no NaN)."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _no_nan(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_no_nan(v) for v in obj]
    return obj


def _esc(value) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _fmt(value) -> str:
    return "–" if value is None else f"{float(value):.4f}"


def _png_uri(data: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(data).decode("ascii")


def _array_png(img) -> bytes:
    """``(3, H, W)`` or ``(H, W, 3)`` floats in ``[0, 1]`` -> PNG bytes."""
    import numpy as np
    from PIL import Image

    arr = np.asarray(img, dtype=np.float32)
    if arr.ndim == 3 and arr.shape[0] == 3 and arr.shape[-1] != 3:
        arr = np.transpose(arr, (1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def _fig_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def _finite(v):
    import math

    return None if v is None or not math.isfinite(float(v)) else float(v)


# -- content ----------------------------------------------------------------------------------------
def judge_table(results: dict) -> list[dict]:
    """The rows of the summary table: one per policy and capture condition.

    Returns:
        ``[{"policy", "condition", "n", "values": {column key: float or None}}]``; ``score`` is the
        policy's ``mean_score`` (the reward on the environment's view) for the ``all`` row and
        absent per condition, the other columns are the judges' means.
    """
    from rl.evaluate import POLICIES

    rows = []
    for p in POLICIES:
        entry = results.get(p)
        if not isinstance(entry, dict):
            continue
        j = entry.get("judges") or {}
        mean = dict(j.get("mean") or {})
        rows.append({"policy": p, "condition": "all", "n": j.get("n", len(entry.get("per_image", []))),
                     "values": {k: _finite(entry.get("mean_score") if k == "score" else mean.get(k)) for k, _ in COLUMNS}})
        per = j.get("per_condition") or {}
        if len(per) > 1:
            for cond in sorted(per):
                m = per[cond].get("mean") or {}
                rows.append({"policy": p, "condition": cond, "n": per[cond].get("n"),
                             "values": {k: None if k == "score" else _finite(m.get(k)) for k, _ in COLUMNS}})
    return rows


def _table_html(rows: list[dict]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for _, h in COLUMNS)
    body = []
    for r in rows:
        cells = "".join(
            f'<td data-key="{_esc(k)}" data-value="{"" if r["values"][k] is None else repr(r["values"][k])}">'
            f'{_fmt(r["values"][k])}</td>' for k, _ in COLUMNS)
        cls = ' class="sub"' if r["condition"] != "all" else ""
        body.append(f'<tr{cls} data-policy="{_esc(r["policy"])}" data-condition="{_esc(r["condition"])}">'
                    f'<th>{_esc(LABELS.get(r["policy"], r["policy"]))}</th><td class="cond">{_esc(r["condition"])}</td>'
                    f'<td>{_esc(r["n"])}</td>{cells}</tr>')
    return (f'<table id="judges"><thead><tr><th>policy</th><th>condition</th><th>n</th>{head}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')


def _benchmark_html(results: dict) -> str:
    b = results.get("benchmark") or {}
    a = results.get("amortisation") or {}
    items = [
        ("agent_vs_default_dE_ratio", b.get("agent_vs_default_dE_ratio"),
         f"mean ΔE2000 of the agent / of the default parameters on the {b.get('capture_error_images', '?')} capture-error images"),
        ("gradient_ascent_vs_default_dE_ratio", b.get("gradient_ascent_vs_default_dE_ratio"), "the same for gradient ascent"),
        ("score_gain_ratio", a.get("score_gain_ratio"), "agent's reward gain / gradient ascent's"),
        ("compute_ratio", a.get("compute_ratio"), "gradient ascent's seconds per image / the agent's"),
    ]
    lis = "".join(f'<li><code>{_esc(k)}</code> = <b id="bench-{_esc(k)}" data-value="{"" if v is None else repr(float(v))}">'
                  f'{_fmt(v)}</b> <span class="note">{_esc(note)}</span></li>' for k, v, note in items)
    return f'<ul class="bench">{lis}</ul>'


def _read_curve(path: Path) -> dict[str, list[float]]:
    import csv

    if not path.is_file():
        return {}
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    out: dict[str, list[float]] = {}
    for r in rows:
        for k, v in r.items():
            try:
                out.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                out.setdefault(k, []).append(float("nan"))
    return out


def _curve_png(curve: dict[str, list[float]], title: str) -> bytes | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in curve if k != "timesteps"]
    if not curve.get("timesteps") or not keys:
        return None
    fig, axes = plt.subplots(1, len(keys), figsize=(3.3 * len(keys), 2.6), squeeze=False)
    for ax, k in zip(axes[0], keys):
        ax.plot(curve["timesteps"], curve[k], marker="." if len(curve["timesteps"]) < 30 else None)
        ax.set_xlabel("timesteps", fontsize=8)
        ax.set_title(k.replace("_", " "), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _fig_png(fig)


def _param_plots(results: dict) -> list[tuple[str, bytes]]:
    """One small plot per ISP parameter: the agent's value on every held-out view (gradient ascent beside it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    import isp

    agent = (results.get("agent") or {}).get("per_image") or []
    ga = (results.get("gradient_ascent") or {}).get("per_image") or []
    if not agent:
        return []
    out = []
    x = np.arange(len(agent))
    for spec in isp.PARAM_SPECS:
        fig, ax = plt.subplots(figsize=(2.6, 1.8))
        ax.axhline(spec.neutral, color="0.6", lw=0.8, ls="--", label="default")
        if ga and all(spec.name in r.get("params", {}) for r in ga):
            ax.plot(x, [r["params"][spec.name] for r in ga], "x", color="tab:orange", ms=4, label="gradient ascent")
        ax.plot(x, [r.get("params", {}).get(spec.name, np.nan) for r in agent], "o", color="tab:blue", ms=3.5, label="agent")
        ax.set_ylim(spec.low, spec.high)
        ax.set_title(spec.name, fontsize=8)
        ax.set_xlabel("held-out view", fontsize=7)
        ax.tick_params(labelsize=6)
        if len(agent) <= 12:
            ax.set_xticks(x)
        fig.tight_layout()
        out.append((spec.name, _fig_png(fig)))
    return out


def _entries_by_id(config: dict) -> dict:
    """The run's dataset entries by id (``isp.datasets.load_split``: FiveK, sample set or a RAW folder)."""
    from isp import datasets

    data = config.get("data")
    if not data:
        return {}
    try:
        splits = datasets.load_split(data, expert_dir=config.get("experts"))
    except (FileNotFoundError, ValueError, OSError):
        return {}
    return {e.id: e for part in splits.values() for e in part}


def _strip_images(results: dict, config: dict, max_side: int, max_images: int) -> tuple[list[dict], int]:
    """Renders of the judged images from the params in ``eval.json``.

    Returns:
        One ``{"row": judged row of the default policy, "images": {policy: PNG bytes or None}}``
        per shown image (one per capture condition first), and how many images were judged.
    """
    import numpy as np
    from PIL import Image

    import isp
    from envs import judges as J
    from isp import fivek
    from rl.evaluate import grid_rows

    base = [p for p in STRIP_POLICIES if (results.get(p) or {}).get("judges", {}).get("per_image")]
    if not base:
        return [], 0
    rows = results[base[0]]["judges"]["per_image"]
    entries = _entries_by_id(config)
    shown = []
    for i in grid_rows([str(r.get("condition")) for r in rows], max_images):
        images: dict[str, bytes | None] = {}
        e = entries.get(rows[i].get("id"))
        raw = None
        if e is not None:
            try:
                raw = fivek.cached_preview(e.dng, max_side)
            except (OSError, ValueError):
                raw = None
        for p in base:
            images[p] = None
            if raw is None:
                continue
            prow = results[p]["judges"]["per_image"][i]
            params = isp.params_from_dict(prow["params"]) if prow.get("params") else None
            images[p] = _array_png(isp.render(raw, params).cpu().numpy())
        images["expert"] = None
        if e is not None and getattr(e, "expert_c", None):
            try:
                exp = J.load_expert_srgb(e.expert_c)
                h, w = exp.shape[:2]
                s = min(1.0, max_side / max(h, w))
                im = Image.fromarray((np.clip(exp, 0, 1) * 255 + 0.5).astype(np.uint8))
                if s < 1.0:
                    im = im.resize((max(1, round(w * s)), max(1, round(h * s))), Image.BOX)
                images["expert"] = _array_png(np.asarray(im, dtype=np.float32) / 255.0)
            except (OSError, ValueError):
                pass
        shown.append({"index": i, "images": images})
    return shown, len(rows)


def _strip_html(results: dict, shown: list[dict], n_judged: int, max_side: int) -> str:
    if not shown:
        return "<p>No judged images in eval.json (run without the held-out evaluation?).</p>"
    parts = [f"<p class=\"note\">{len(shown)} of {n_judged} whole held-out images (one per capture condition first), "
             f"rendered at most {max_side} px from the parameters recorded in eval.json; the judges were measured on "
             f"the full-resolution renders.</p>"]
    judge_keys = [k for k, _ in COLUMNS if k != "score"]
    for s in shown:
        i = s["index"]
        first = next(results[p]["judges"]["per_image"][i] for p in STRIP_POLICIES if p in s["images"])
        figs = []
        for name, png in s["images"].items():
            if name == "expert":
                cap = "<figcaption><b>expert</b></figcaption>"
            else:
                row = results[name]["judges"]["per_image"][i]
                lines = "".join(f'<tr><td>{_esc(dict(COLUMNS)[k])}</td><td data-key="{_esc(k)}">{_fmt(row.get(k))}</td></tr>'
                                for k in judge_keys if row.get(k) is not None)
                cap = f"<figcaption><b>{_esc(LABELS[name])}</b><table class=\"mini\">{lines}</table></figcaption>"
            img = (f'<img alt="{_esc(name)} rendering of {_esc(first.get("id"))}" src="{_png_uri(png)}">' if png
                   else '<div class="missing">image not available</div>')
            figs.append(f'<figure data-policy="{_esc(name)}">{img}{cap}</figure>')
        parts.append(f'<section class="strip" data-id="{_esc(first.get("id"))}"><h3>{_esc(first.get("id"))} '
                     f'<span class="note">scene {_esc(first.get("scene"))}, condition {_esc(first.get("condition"))}</span></h3>'
                     f'<div class="row">{"".join(figs)}</div></section>')
    return "".join(parts)


STYLE = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:1.5em auto;max-width:1250px;color:#222;background:#fff}
h1{font-size:1.4em}h2{font-size:1.15em;border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1em;margin:.8em 0 .3em}.note{color:#666;font-size:.85em;font-weight:normal}
table#judges{border-collapse:collapse;font-size:.85em}table#judges th,table#judges td{border:1px solid #ddd;padding:.25em .5em;text-align:right}
table#judges tr.sub{color:#555;background:#fafafa}table#judges td.cond,table#judges tbody th{text-align:left}
table#judges thead th{background:#f0f0f0}
.row{display:flex;gap:.6em;flex-wrap:wrap;align-items:flex-start}figure{margin:0;max-width:300px}
figure img{max-width:300px;max-height:300px;display:block;border:1px solid #ccc}
figcaption{font-size:.78em}table.mini td{padding:0 .4em 0 0}.missing{width:200px;height:120px;background:#eee;color:#888;
display:flex;align-items:center;justify-content:center;font-size:.8em}
.params{display:flex;flex-wrap:wrap;gap:.3em}.params img{width:208px}
pre{background:#f6f6f6;border:1px solid #ddd;padding:.6em;font-size:.8em;overflow:auto;max-height:32em}
ul.bench{font-size:.9em}
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

# Parses the embedded data and marks the page ready (a broken JSON block is a console error the tests catch).
SCRIPT = """
(function () {
  var data = JSON.parse(document.getElementById('report-data').textContent);
  var cells = document.querySelectorAll('#judges td[data-value]');
  document.body.setAttribute('data-ready', String(data.table.length) + ':' + String(cells.length));
})();
"""


def build_report_html(run_dir, *, max_side: int = 320, max_images: int = 12) -> str:
    """The report page of a run folder as a string (see the module docstring).

    Args:
        run_dir: a run folder with ``eval.json`` (and usually ``config.yaml``, ``command.txt``,
            ``training_curve.csv``).
        max_side: longer side of the strip renders.
        max_images: most images in the strips.

    Raises:
        FileNotFoundError: no ``eval.json`` in ``run_dir``.
    """
    from rl.common import COMMAND_FILE, CONFIG_FILE, CURVE_FILE, EVAL_FILE, load_yaml

    run_dir = Path(run_dir)
    if not (run_dir / EVAL_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} has no {EVAL_FILE}: nothing to report (train with the evaluation on, or --resume)")
    results = json.loads((run_dir / EVAL_FILE).read_text(encoding="utf-8"))
    config = load_yaml(run_dir / CONFIG_FILE) if (run_dir / CONFIG_FILE).is_file() else {}
    config_text = (run_dir / CONFIG_FILE).read_text(encoding="utf-8") if (run_dir / CONFIG_FILE).is_file() else "(no config.yaml)"
    commands = (run_dir / COMMAND_FILE).read_text(encoding="utf-8") if (run_dir / COMMAND_FILE).is_file() else "(no command.txt)"
    meta = results.get("meta") or {}

    rows = judge_table(results)
    curve_png = _curve_png(_read_curve(run_dir / CURVE_FILE), "training (episodes of the training split)")
    eval_curve_png = _curve_png(_read_curve(run_dir / "eval_curve.csv"), "periodic held-out evaluation (deterministic policy)")
    shown, n_judged = _strip_images(results, config, max_side, max_images)
    params = _param_plots(results)

    starter = meta.get("starter_reward")
    subtitle = (f"algo {_esc(config.get('algo', '?'))}, reward {_esc(meta.get('reward', config.get('reward', '?')))}: "
                f"{_esc(meta.get('reward_description', ''))}"
                + (' <b class="starter">(STARTER reward model, not the paper\'s weights)</b>' if starter else "")
                + f"; {_esc(meta.get('timesteps', '?'))} timesteps; data {_esc(meta.get('data', config.get('data', '?')))}")
    data = {"run_dir": str(run_dir), "table": rows, "benchmark": results.get("benchmark"),
            "amortisation": results.get("amortisation"), "meta": meta}
    sections = [
        f"<h1>Run report: {_esc(run_dir.resolve().name)}</h1><p class=\"note\">{subtitle}</p>",
        "<h2 id=\"summary\">Judges per policy and capture condition</h2>"
        "<p class=\"note\">reward (view): the reward model on the environment's view of each held-out image (the "
        "objective trained on); reward (whole) and the judges: each policy's parameters applied to the whole RAW. "
        "ΔE2000, PSNR, SSIM and cast vs expert compare with the expert rendering.</p>",
        _table_html(rows),
        _benchmark_html(results),
        "<h2 id=\"training\">Training curve</h2>",
        f'<img alt="training curve" src="{_png_uri(curve_png)}">' if curve_png else "<p>No training curve (training_curve.csv).</p>",
    ]
    if eval_curve_png:
        sections.append(f'<img alt="held-out evaluation during training" src="{_png_uri(eval_curve_png)}">')
    sections += [
        "<h2 id=\"strips\">Before / after: default | agent | gradient ascent | expert</h2>",
        _strip_html(results, shown, n_judged, max_side),
        "<h2 id=\"params\">The agent's parameters across the held-out images</h2>"
        "<p class=\"note\">Blue: the agent's choice per held-out view; orange crosses: per-image gradient ascent; "
        "dashed: the default (neutral) value; the y-axis spans the parameter's range.</p>",
        "<div class=\"params\">" + "".join(f'<img alt="{_esc(n)}" title="{_esc(n)}" src="{_png_uri(png)}">' for n, png in params)
        + "</div>",
        "<h2 id=\"config\">Configuration</h2>",
        f"<pre id=\"config-text\">{_esc(config_text)}</pre>",
        "<h2 id=\"command\">Command lines</h2>",
        f"<pre id=\"command-text\">{_esc(commands)}</pre>",
    ]
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\">"
            f"<title>Run report: {_esc(run_dir.resolve().name)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(sections)
            + f"<script type=\"application/json\" id=\"report-data\">{safe_json(data)}</script>"
            + f"<script>{SCRIPT}</script></body></html>\n")


def write_report(run_dir, **kwargs) -> Path:
    """Writes ``run_dir/report.html`` atomically (:func:`build_report_html`) and returns its path."""
    from rl.common import atomic_write_text

    path = Path(run_dir) / REPORT_FILE
    atomic_write_text(path, build_report_html(run_dir, **kwargs))
    return path


def write_bench_report(out_dir, agg: dict) -> Path:
    """``OUT/bench.html``: the judges over seeds (mean ± sd) and a link to each seed's report.

    Args:
        out_dir: the benchmark folder (``experiments/bench_agent.py --out``).
        agg: its ``bench.json`` dictionary (``policies``, ratios, ``runs``).
    """
    from rl.common import atomic_write_text

    out_dir = Path(out_dir)
    head = "".join(f"<th>{_esc(h)}</th>" for _, h in COLUMNS)
    body = []
    for p, groups in (agg.get("policies") or {}).items():
        per = groups.get("per_condition") or {}
        for cond, vals in [("all", groups.get("all") or {}), *(sorted(per.items()) if len(per) > 1 else [])]:
            cells = "".join(
                f'<td data-key="{_esc(k)}" data-value="{"" if not vals.get(k) else repr(float(vals[k]["mean"]))}">'
                + ("–" if not vals.get(k) else f'{vals[k]["mean"]:.4f} ± {vals[k]["sd"]:.4f}') + "</td>" for k, _ in COLUMNS)
            body.append(f'<tr data-policy="{_esc(p)}" data-condition="{_esc(cond)}"><th>{_esc(LABELS.get(p, p))}</th>'
                        f'<td class="cond">{_esc(cond)}</td>{cells}</tr>')
    links = "".join(f'<li><a href="{_esc(Path(r).name)}/{REPORT_FILE}">{_esc(Path(r).name)}</a></li>' for r in agg.get("runs", []))
    r = (agg.get("agent_vs_default_dE_ratio") or {}).get("mean")
    page = ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<meta http-equiv=\"Content-Security-Policy\" content=\"{CSP}\"><title>Agent benchmark</title>"
            f"<style>{STYLE}</style></head><body><h1>Agent benchmark: {len(agg.get('runs', []))} seeds</h1>"
            f"<p>agent_vs_default_dE_ratio = <b id=\"bench-ratio\">{_fmt(r)}</b> (mean over seeds)</p>"
            f'<table id="judges"><thead><tr><th>policy</th><th>condition</th>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'
            f"<h2>Reports per seed</h2><ul>{links}</ul>"
            f"<script type=\"application/json\" id=\"report-data\">{safe_json(agg)}</script></body></html>\n")
    path = out_dir / "bench.html"
    atomic_write_text(path, page)
    return path


def main(argv=None) -> int:
    """``python -m rl.report RUN_DIR``: (re)writes the run's report.html."""
    p = argparse.ArgumentParser(prog="python -m rl.report", description="Write a self-contained report.html for a run folder.",
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dir", type=Path, help="run folder with eval.json")
    p.add_argument("--max-side", type=int, default=320, help="longer side of the before/after renders")
    p.add_argument("--max-images", type=int, default=12, help="most images in the before/after strips")
    args = p.parse_args(argv)
    try:
        path = write_report(args.run_dir, max_side=args.max_side, max_images=args.max_images)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
