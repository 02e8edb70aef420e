"""Layers import downwards only (README, Layout). An ast walk over every module of each
package, function-level imports included: a cycle broken by an import inside a function is
still a cycle. Imports under `if TYPE_CHECKING:` count too: a type the lower layer needs from
an upper one is a Protocol of its own (e.g. services.deps.OAuthSettings), not a hidden edge."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# package -> modules (or packages) it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "mail": ("aiogram", "bot", "handlers", "services", "web"),
    "storage": ("aiogram", "bot", "handlers", "services", "web"),
    "services": ("bot", "handlers", "web"),
    "handlers": ("web",),
    "web": ("handlers", "bot.app"),
}


def imports_of(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, wherever it is, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    module_parts = path.relative_to(root).with_suffix("").parts
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = list(module_parts[: len(module_parts) - node.level])
                if path.name == "__init__.py":
                    base = list(module_parts[: len(module_parts) - node.level + 1])
                name = ".".join([*base, *([node.module] if node.module else [])])
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            found += [(node.lineno, f"{name}.{alias.name}") for alias in node.names]
    return found


def _matches(module: str, forbidden: str) -> bool:
    return module == forbidden or module.startswith(forbidden + ".")


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layers_import_downwards_only(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert files, package
    bad = [
        f"{path.relative_to(ROOT)}:{line} imports {module}"
        for path in files
        for line, module in imports_of(path)
        for forbidden in FORBIDDEN[package]
        if _matches(module, forbidden)
    ]
    assert sorted(set(bad)) == []


def test_the_walk_sees_function_level_and_relative_imports(tmp_path: Path) -> None:
    """The checker itself: an import inside a function counts, and so does one under
    TYPE_CHECKING."""
    (tmp_path / "web").mkdir()
    sample = tmp_path / "web" / "sample.py"
    sample.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from handlers.oauth import OAuthFlows\n"
        "def f():\n    from bot.app import App\n    from . import models\n",
        encoding="utf-8",
    )
    found = [m for _, m in imports_of(sample, tmp_path)]
    assert "bot.app" in found and "bot.app.App" in found and "web.models" in found
    assert "handlers.oauth" in found
