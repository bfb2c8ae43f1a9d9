"""Win rate of the agent against Expert C from the answers of a two-alternative forced-choice study.

Usage::

    python experiments/analyze_study.py answers-*.csv answers-*.json --key OUT/key.csv [--json result.json]

Reads the answer files that ``study.html`` downloads (CSV or JSON), joins them with the key
written by ``export_pairs.py`` (which side held which rendering) and reports, per participant
and in total, how often people preferred the agent over Expert C with a 95 % confidence
interval: the Wilson score interval of ``scipy.stats.binomtest(...).proportion_ci`` (``--ci
exact`` gives Clopper-Pearson), plus the two-sided binomial test against 50 %. It also reports
how often the reward model (the MOS stored in the key) prefers the same side as the people.
Pairs of other comparisons in the key (``default_vs_expert_c``) are reported separately.

Answers whose ``study_id`` does not match the key, or that name a pair the key does not have, are
an error (exit 2). When a participant answered a pair twice, the last answer counts.
"""
from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from scipy.stats import binomtest

ANSWER_FIELDS = ("study_id", "participant", "pair", "choice", "rt_ms", "answered_at")


@dataclass(frozen=True)
class Answer:
    """One answer from the study page."""

    study_id: str
    participant: str
    pair: int
    choice: str  # "left" or "right"
    rt_ms: int | None = None
    answered_at: str = ""


@dataclass(frozen=True)
class KeyRow:
    """One pair of the key: which rendering is on which side, and the reward model's MOS."""

    pair: int
    study_id: str
    id: str
    comparison: str
    left: str
    right: str
    mos_left: float | None
    mos_right: float | None


def _float_or_none(v) -> float | None:
    if v in (None, ""):
        return None
    f = float(v)
    return None if math.isnan(f) else f


def load_key(path: str | os.PathLike) -> dict[int, KeyRow]:
    """Reads ``key.csv``; returns ``{pair number: KeyRow}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"key file {str(path)!r} does not exist")
    rows = {}
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"pair", "study_id", "id", "comparison", "left", "right"} - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path} is not a study key (missing columns {sorted(missing)})")
        for r in reader:
            row = KeyRow(int(r["pair"]), r["study_id"], r["id"], r["comparison"], r["left"], r["right"],
                         _float_or_none(r.get("mos_left")), _float_or_none(r.get("mos_right")))
            rows[row.pair] = row
    if not rows:
        raise ValueError(f"key file {str(path)!r} has no pairs")
    if len({r.study_id for r in rows.values()}) != 1:
        raise ValueError(f"key file {str(path)!r} mixes several studies")
    return rows


def _answer(d: dict, source: str, study_id: str | None = None, participant: str | None = None) -> Answer:
    try:
        choice = str(d["choice"]).strip().lower()
        if choice not in ("left", "right"):
            raise ValueError(f"choice {d['choice']!r} is neither left nor right")
        rt = d.get("rt_ms")
        return Answer(
            study_id=str(study_id if study_id is not None else d["study_id"]),
            participant=str(participant if participant is not None else d["participant"]),
            pair=int(d["pair"]),
            choice=choice,
            rt_ms=None if rt in (None, "") else int(float(rt)),
            answered_at=str(d.get("answered_at") or ""),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{source}: malformed answer {d!r}: {exc}") from exc


def load_answers(paths) -> list[Answer]:
    """Reads answer files (CSV or JSON, as downloaded from ``study.html``), in file order."""
    answers: list[Answer] = []
    for path in map(Path, paths):
        if not path.is_file():
            raise FileNotFoundError(f"answer file {str(path)!r} does not exist")
        text = path.read_text(encoding="utf-8-sig")
        if path.suffix.lower() == ".json" or text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON: {exc}") from exc
            if not isinstance(data, dict) or not isinstance(data.get("answers"), list):
                raise ValueError(f"{path}: expected an object with an 'answers' list")
            for d in data["answers"]:
                answers.append(_answer(d, str(path), data.get("study_id"), data.get("participant")))
        else:
            reader = csv.DictReader(text.splitlines())
            missing = {"study_id", "participant", "pair", "choice"} - set(reader.fieldnames or ())
            if missing:
                raise ValueError(f"{path}: not a study answer file (missing columns {sorted(missing)})")
            answers.extend(_answer(d, str(path)) for d in reader)
    return answers


def proportion(k: int, n: int, method: str = "wilson") -> dict:
    """``k`` successes of ``n``: rate, 95 % CI (scipy binomtest ``proportion_ci``) and p vs 0.5."""
    if n == 0:
        return {"wins": 0, "n": 0, "rate": None, "ci_low": None, "ci_high": None, "p_value": None}
    res = binomtest(k, n, 0.5)
    ci = res.proportion_ci(confidence_level=0.95, method=method)
    return {"wins": k, "n": n, "rate": k / n, "ci_low": float(ci.low), "ci_high": float(ci.high),
            "p_value": float(res.pvalue)}


def analyze(answers: list[Answer], key: dict[int, KeyRow], ci_method: str = "wilson") -> dict:
    """Win rates per comparison, per participant and in total, and model-people agreement.

    Returns:
        ``{"study_id", "ci_method", "comparisons": {comparison: {"total", "participants",
        "model_agreement", "pairs_with_majority_agreement"}}}``; rates are of the first method of
        the comparison name (``agent`` in ``agent_vs_expert_c``) being chosen.
    """
    study_id = next(iter(key.values())).study_id
    latest: dict[tuple[str, int], Answer] = {}
    for a in answers:
        if a.study_id != study_id:
            raise ValueError(f"answers of participant {a.participant!r} belong to study {a.study_id!r}, "
                             f"the key to {study_id!r}")
        if a.pair not in key:
            raise ValueError(f"participant {a.participant!r} answered pair {a.pair}, which the key does not have")
        latest[(a.participant, a.pair)] = a
    result = {"study_id": study_id, "ci_method": ci_method, "n_answers": len(latest), "comparisons": {}}
    for comp in sorted({k.comparison for k in key.values()}, key=lambda c: (c != "agent_vs_expert_c", c)):
        target = comp.split("_vs_")[0]
        rows = [(a, key[a.pair]) for a in latest.values() if key[a.pair].comparison == comp]
        chosen = [(a, k, (k.left if a.choice == "left" else k.right)) for a, k in rows]
        participants = {}
        for pid in sorted({a.participant for a, _ in rows}):
            mine = [c for a, _, c in chosen if a.participant == pid]
            participants[pid] = proportion(sum(c == target for c in mine), len(mine), ci_method)
        agree = [(a, k) for a, k in rows if k.mos_left is not None and k.mos_right is not None
                 and k.mos_left != k.mos_right]
        n_agree = sum((k.mos_left > k.mos_right) == (a.choice == "left") for a, k in agree)
        # Per pair: does the majority of people pick the side the model prefers?
        per_pair: dict[int, list[str]] = {}
        for a, k in agree:
            per_pair.setdefault(k.pair, []).append(a.choice)
        maj_n = maj_agree = 0
        for pair, choices in per_pair.items():
            n_left = choices.count("left")
            if 2 * n_left == len(choices):
                continue
            maj_n += 1
            maj_agree += (n_left * 2 > len(choices)) == (key[pair].mos_left > key[pair].mos_right)
        model_pref = [k for k in key.values() if k.comparison == comp and k.mos_left is not None
                      and k.mos_right is not None]
        result["comparisons"][comp] = {
            "target": target,
            "total": proportion(sum(c == target for _, _, c in chosen), len(chosen), ci_method),
            "participants": participants,
            "n_pairs_in_key": sum(k.comparison == comp for k in key.values()),
            "model_prefers_target": (sum((k.mos_left > k.mos_right) == (k.left == target) for k in model_pref)
                                     / len(model_pref)) if model_pref else None,
            "model_agreement": {"agree": n_agree, "n": len(agree), "rate": n_agree / len(agree) if agree else None},
            "pairs_with_majority_agreement": {"agree": maj_agree, "n": maj_n,
                                              "rate": maj_agree / maj_n if maj_n else None},
        }
    return result


def _pct(x) -> str:
    return "    -" if x is None else f"{100 * x:5.1f}"


def format_table(result: dict) -> str:
    lines = [f"study {result['study_id']}  ({result['n_answers']} answers; 95 % CI: "
             f"{'Wilson score' if result['ci_method'] == 'wilson' else 'Clopper-Pearson exact'})"]
    for comp, c in result["comparisons"].items():
        lines.append("")
        lines.append(f"{comp}: how often people chose '{c['target']}'")
        lines.append(f"  {'participant':<20} {'wins':>5} {'n':>5} {'rate %':>7} {'95 % CI %':>15} {'p':>8}")
        for pid, p in list(c["participants"].items()) + [("TOTAL", c["total"])]:
            ci = f"[{_pct(p['ci_low'])}, {_pct(p['ci_high'])}]" if p["n"] else "-"
            pv = f"{p['p_value']:8.3g}" if p["p_value"] is not None else "       -"
            lines.append(f"  {pid[:20]:<20} {p['wins']:>5} {p['n']:>5} {_pct(p['rate']):>7} {ci:>15} {pv}")
        ag = c["model_agreement"]
        mj = c["pairs_with_majority_agreement"]
        lines.append(f"  reward model agrees with people: {_pct(ag['rate'])} % of {ag['n']} answers; "
                     f"with the majority on {_pct(mj['rate'])} % of {mj['n']} pairs; "
                     f"model prefers '{c['target']}' on {_pct(c['model_prefers_target'])} % of pairs")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="analyze_study.py",
                                description="Win rate of the agent vs Expert C from study answers, with a 95 % CI.")
    p.add_argument("answers", nargs="+", type=Path, help="answer files downloaded from study.html (CSV or JSON)")
    p.add_argument("--key", type=Path, required=True, help="key.csv written by export_pairs.py")
    p.add_argument("--ci", choices=("wilson", "exact"), default="wilson",
                   help="binomial CI: Wilson score (default) or Clopper-Pearson exact")
    p.add_argument("--json", type=Path, default=None, help="also write the result as JSON")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        key = load_key(args.key)
        answers = load_answers(args.answers)
        result = analyze(answers, key, args.ci)
    except (FileNotFoundError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_table(result))
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_name(f".{args.json.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({**result, "answers": [asdict(a) for a in answers]}, indent=2) + "\n",
                       encoding="utf-8")
        os.replace(tmp, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
