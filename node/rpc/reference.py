"""Print the Markdown method reference: ``python -m node.rpc.reference > docs/rpc.md``.

The default is the node's whole schema (the RPC layer's builtins and every service's methods),
:data:`node.rpc.node_table.NODE_SCHEMA`: rendered from the specs alone, with no node built.
``--table MODULE:FUNCTION`` names another function taking no arguments and returning a
:class:`~node.rpc.methods.MethodTable` or a sequence of :class:`~node.rpc.methods.MethodSpec`
(``node.rpc.methods:builtin_table``: the builtins only).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from node.rpc.methods import MethodSpec, MethodTable, render_reference

DEFAULT_TABLE = "node.rpc.node_table:node_schema"


def load_table(spec: str) -> MethodTable | tuple[MethodSpec, ...]:
    """Import ``MODULE:FUNCTION`` and call it. Raises ValueError when it is not a table or
    schema factory."""
    module_name, sep, function_name = spec.partition(":")
    if not sep or not module_name or not function_name:
        raise ValueError(f"--table must be MODULE:FUNCTION, not {spec!r}")
    factory = getattr(importlib.import_module(module_name), function_name, None)
    if not callable(factory):
        raise ValueError(f"{spec} is not a function")
    table = factory()
    if isinstance(table, MethodTable):
        return table
    if isinstance(table, tuple | list) and all(isinstance(entry, MethodSpec) for entry in table):
        return tuple(table)
    raise ValueError(f"{spec} returned {type(table).__name__}, not a MethodTable or MethodSpecs")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m node.rpc.reference", description=__doc__.split("\n")[0])
    parser.add_argument("--table", default=DEFAULT_TABLE, help=f"table factory (default {DEFAULT_TABLE})")
    args = parser.parse_args(argv)
    try:
        table = load_table(args.table)
    except (ImportError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sys.stdout.write(render_reference(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
