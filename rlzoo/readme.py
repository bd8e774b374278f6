"""The README's generated sections, written from the JSON under ``docs/`` (so they cannot go stale).

    python -m rlzoo.readme            # rewrite every generated block of README.md from its JSON
    python -m rlzoo.readme --check    # exit 1 and name the blocks that differ (what the test runs)

A generated block is the text between a start marker naming its kind and its source, and the end
marker; the markers stay, the text between them is the rendering of the source::

    <!-- generated: compare docs/grid/arithmetic3/compare.json -->
    ...the comparison's tables...
    <!-- end generated -->

Kinds: ``compare`` (a ``compare.json``, or another ``--report``'s JSON: the budget line, the
variants, the table of means and the table of paired differences to the baseline; :mod:`rlzoo.compare`) and
``main-job`` (a run's ``summary.json``, as ``rlzoo train`` wrote it: the main job's figures).
To refresh the README after a new run, copy its JSON under ``docs/`` (a comparison grid lives
there whole: ``docs/grid/<task>``) and run the first command.
"""

import argparse
import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["ROOT", "check", "main", "main_job_text", "render", "update"]

ROOT = Path(__file__).resolve().parents[1]
_BLOCK = re.compile(r"(<!-- generated: (?P<kind>[\w-]+) (?P<source>\S+) -->\n)(?P<body>.*?)(<!-- end generated -->)", re.S)


def compare_text(result: Mapping[str, Any]) -> str:
    """A comparison's block: what ``rlzoo compare`` writes to ``compare.md`` (budget line, variants,
    the table of means, the table of paired differences)."""
    from rlzoo.compare import compare_report

    return compare_report(result)


def main_job_text(summary: Mapping[str, Any]) -> str:
    """The main job's figures from its ``summary.json``."""
    config, before, after = summary["config"], summary["before"], summary["after"]

    def mode(name: str) -> str:
        acc, length = f"eval/{name}/accuracy", f"eval/{name}/length"
        return (f"{name} eval accuracy {before[acc]:.1%} → {after[acc]:.1%} at "
                f"{before[length]:.1f} → {after[length]:.1f} tokens")

    task = (summary.get("experiment") or {}).get("task") or "arithmetic3"
    threads = config.get("cpu_threads")
    where = f"{threads} CPU thread{'s' if threads != 1 else ''}" if threads else "torch's default threads"
    return (f"**The main job** (`rlzoo train`: {summary['recipe']['name']} on `{task}`, seed {config['seed']}, "
            f"{summary['steps']} steps of {config['prompts_per_step']} prompts × {config['group_size']} completions, "
            f"{where}, commit `{summary['commit']}`; eval on {config['eval_size']} held-out prompts): "
            f"{summary['wall_time_s']:.0f} s of training; {mode('greedy')}, {mode('sampled')}.\n")


RENDERERS: dict[str, Callable[[Mapping[str, Any]], str]] = {"compare": compare_text, "main-job": main_job_text}


def render(kind: str, source: str, root: Path = ROOT) -> str:
    """The text of one block: ``kind``'s renderer applied to the JSON at ``source`` (relative to ``root``)."""
    if kind not in RENDERERS:
        raise ValueError(f"README block kind '{kind}' unknown; known: {', '.join(RENDERERS)}")
    return RENDERERS[kind](json.loads((root / source).read_text()))


def update(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """``text`` with every generated block re-rendered, and the ``kind source`` of the blocks that changed."""
    changed: list[str] = []

    def fill(m: re.Match[str]) -> str:
        body = render(m["kind"], m["source"], root)
        if body != m["body"]:
            changed.append(f"{m['kind']} {m['source']}")
        return m.group(1) + body + m.group(5)

    return _BLOCK.sub(fill, text), changed


def check(readme: Path = ROOT / "README.md") -> list[str]:
    """The blocks of ``readme`` that differ from their JSON (empty when the README is current)."""
    return update(readme.read_text(), readme.parent)[1]


def blocks(text: str) -> list[tuple[str, str]]:
    """Every ``(kind, source)`` of the generated blocks in ``text``."""
    return [(m["kind"], m["source"]) for m in _BLOCK.finditer(text)]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlzoo.readme", description=__doc__.split("\n")[0])
    parser.add_argument("--readme", type=Path, default=ROOT / "README.md", help="default: the checkout's README.md")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block is stale")
    args = parser.parse_args(argv)
    text = args.readme.read_text()
    new, changed = update(text, args.readme.parent)
    if args.check:
        for name in changed:
            print(f"stale: {name} (run python -m rlzoo.readme)")
        return 1 if changed else 0
    if changed:
        args.readme.write_text(new)
    print(f"{args.readme}: {len(blocks(text))} generated block(s), {len(changed)} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
