"""The ``rlzoo`` command."""

import argparse
import importlib
import sys
from collections.abc import Sequence

from rlzoo.errors import RlzooError
from rlzoo.registry import Registry

# kind on the command line -> (module, registry attribute)
KINDS: dict[str, tuple[str, str]] = {
    "estimators": ("rlzoo.advantages", "ESTIMATORS"),
    "filters": ("rlzoo.advantages", "FILTERS"),
    "rewards": ("rlzoo.rewards", "REWARD_FUNCS"),
    "shapers": ("rlzoo.rewards", "SHAPERS"),
    "losses": ("rlzoo.losses", "POLICY_LOSSES"),
    "kl": ("rlzoo.losses", "KL_ESTIMATORS"),
    "aggregations": ("rlzoo.losses", "AGGREGATIONS"),
    "recipes": ("rlzoo.recipes", "RECIPES"),
}


def registry(kind: str) -> Registry:
    module, attribute = KINDS[kind]
    return getattr(importlib.import_module(module), attribute)


def _list(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else list(KINDS)
    for kind in kinds:
        reg = registry(kind)
        names = reg.names(args.pattern)
        print(f"{kind} ({reg.kind}, {len(names)}):")
        for name in names:
            text = reg.describe(name) if args.verbose else f"{name} — {reg.get(name).summary}"
            print("  " + text.replace("\n", "\n  "))
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlzoo",
        description="A composable zoo of group-based RL post-training algorithms.",
        epilog="Run 'rlzoo COMMAND --help' for the options of one command.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser(
        "list",
        help="list registered components with their parameters",
        description="List registered components: estimators, filters, reward functions, shapers, "
        "policy losses, KL estimators, aggregations and recipes.",
    )
    p.add_argument("kind", nargs="?", choices=list(KINDS), help="only this kind (default: all)")
    p.add_argument("pattern", nargs="?", help="glob over names, e.g. 'grpo*'")
    p.add_argument("-v", "--verbose", action="store_true", help="show every parameter with type and default")
    p.set_defaults(func=_list)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except RlzooError as exc:
        print(f"rlzoo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
