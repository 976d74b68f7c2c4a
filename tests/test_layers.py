"""Layers point one way: a module imports only from its own layer or the ones below it (read
from the source, function-level imports included; `if TYPE_CHECKING:` blocks are type hints,
not imports). The method registry sits below the config: each method declares its own section
(methods/), and the config is composed of them."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "regda_dist"
LAYERS = [
    {"registry", "fields", "folders", "weights", "__init__"},
    {"data", "models", "losses", "metrics", "proxies"},
    {"methods"},
    {"config"},
    {"engine"},
    {"search"},
    {"distributed"},
    {"cli"},
]


def _layer(module: str) -> int:
    top = module.split(".")[1] if "." in module else "__init__"
    if top.startswith("__"):  # the package's own names (__version__)
        top = "__init__"
    return next(i for i, names in enumerate(LAYERS) if top in names)


def _imports(path: Path):
    tree = ast.parse(path.read_text())
    typing_only = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            typing_only |= {id(n) for child in node.body for n in ast.walk(child)}
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "regda_dist":  # from regda_dist import config as C
                yield from ((node.lineno, f"regda_dist.{a.name}") for a in node.names)
            else:
                yield node.lineno, node.module
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name


MODULES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_from_a_higher_layer(path):
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    module = ".".join(("regda_dist", *parts))
    own = _layer(module)
    upward = [
        f"line {line}: {name}"
        for line, name in _imports(path)
        if name.startswith("regda_dist.") and _layer(name) > own
    ]
    assert not upward, f"{module} (layer {own}) imports upwards: {upward}"


def test_the_check_sees_an_upward_import(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("from regda_dist.config import Config\nif TYPE_CHECKING:\n    import x\n")
    assert [name for _, name in _imports(source)] == ["regda_dist.config"]
    assert _layer("regda_dist.data.loader") < _layer("regda_dist.config") < _layer("regda_dist.cli")
