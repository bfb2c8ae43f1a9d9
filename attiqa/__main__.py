"""``python -m attiqa <subcommand> ...``: one subcommand per stage of the ATTIQA stack."""
from __future__ import annotations

import importlib
import os
import sys

# subcommand -> (module exposing main(argv) -> int, one-line description)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "select-prompts": ("attiqa.cli.select_prompts", "rank antonym prompt pairs by the proxy tasks and pick one per attribute"),
    "pseudo-label": ("attiqa.cli.pseudo_label", "label an image folder with five attribute scores from a teacher"),
    "pretrain": ("attiqa.cli.pretrain", "attribute-aware ranking pretraining of the backbone and heads"),
    "finetune": ("attiqa.cli.finetune", "fine-tune the MOS head (and backbone) on an IQA dataset"),
    "evaluate": ("attiqa.cli.evaluate", "SROCC/PLCC/KRCC protocols (splits, cross-dataset, data-efficient, linear probe)"),
    "preference": ("attiqa.cli.preference", "pairwise preference accuracy against human choices"),
    "build-starter": ("attiqa.cli.build_starter", "build the offline starter model (not the paper's weights)"),
    "score": ("attiqa.cli.score", "score images or folders (MOS + five attributes)"),
}


def _usage() -> str:
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: python -m attiqa <subcommand> [options]", "",
             "ATTIQA: attribute-aware no-reference image quality assessment.", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in SUBCOMMANDS.items()]
    lines += ["", "Run `python -m attiqa <subcommand> --help` for the options of each stage."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(_usage())
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS:
        print(f"attiqa: unknown subcommand {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name = SUBCOMMANDS[name][0]
    if "torch" not in sys.modules:
        # torch's CPU allocator reads this once, at start-up: transparent huge pages for buffers of
        # 2 MiB and more, 512 times fewer page faults for training's activations (see docs/attiqa.md)
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and (exc.name == module_name or module_name.startswith(exc.name + ".")):
            print(f"attiqa: subcommand {name!r} is not available: module {module_name} is missing "
                  "from this installation", file=sys.stderr)
            return 2
        raise
    entry = getattr(module, "main", None)
    if entry is None:
        print(f"attiqa: module {module_name} has no main(argv) entry point", file=sys.stderr)
        return 2
    return int(entry(rest) or 0)


if __name__ == "__main__":
    sys.exit(main())
