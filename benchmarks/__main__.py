"""`python -m benchmarks NAME [ARGS ...]` runs benchmarks/NAME.py's main(ARGS); with no NAME,
`list` or --help, it lists the benchmarks."""

from __future__ import annotations

import ast
import importlib
import sys
from pathlib import Path


def available() -> dict[str, str]:
    """{name: its docstring's first line} of every module here with a main() (read, not run)."""
    out = {}
    for path in sorted(Path(__file__).parent.glob("[!_]*.py")):
        tree = ast.parse(path.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body):
            out[path.stem] = (ast.get_docstring(tree) or "").splitlines()[0]
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    names = available()
    if not argv or argv[0] in ("list", "-h", "--help"):
        width = max(map(len, names))
        print(__doc__ + "\n" + "\n".join(f"  {n:<{width}}  {d}" for n, d in names.items()))
        return 0
    if argv[0] not in names:
        print(f"no benchmark {argv[0]!r} (python -m benchmarks lists them)", file=sys.stderr)
        return 2
    return importlib.import_module(f"benchmarks.{argv[0]}").main(argv[1:]) or 0


if __name__ == "__main__":
    sys.exit(main())
