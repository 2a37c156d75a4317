"""The code stays easy to find one's way in: no module over 700 lines, and the modules of every
Rust crate and of the Python package depend on each other one way only (in the core crate:
format -> schema -> encode/decode -> shard -> dataset -> plan -> stream), so that each can be
read knowing only the ones below it."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CORE_SRC = ROOT / "rust" / "core" / "src"
CRATES = ["core", "image", "python"]
PACKAGE = ROOT / "python" / "pixmo_stream"
MAX_LINES = 700
SKIP_DIRS = {"target", ".venv", "node_modules", "__pycache__", ".git", "out"}


def _sources() -> list[Path]:
    found = []
    roots = (("rust", "*.rs"), ("python", "*.py"), ("tests", "*.py"), ("benches", "*.py"))
    for base, pattern in roots:
        for path in (ROOT / base).rglob(pattern):
            if not SKIP_DIRS.intersection(path.relative_to(ROOT).parts):
                found.append(path)
    return found


def test_no_module_is_over_700_lines() -> None:
    sources = _sources()
    assert any(p.name == "lib.rs" for p in sources), "the source walk found no Rust crate"
    long = {}
    for path in sources:
        rel = path.relative_to(ROOT).as_posix()
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > MAX_LINES:
            long[rel] = lines
    assert not long, f"modules over {MAX_LINES} lines (split them by concept): {long}"


def _module_of(path: Path, src: Path = CORE_SRC) -> str:
    """The top-level module of the crate a file belongs to (`plan/order.rs` -> `plan`)."""
    rel = path.relative_to(src)
    return "crate" if rel.as_posix() == "lib.rs" else rel.parts[0].removesuffix(".rs")


def _strip_comments(text: str) -> str:
    return re.sub(r"//[^\n]*", "", text)


def _reexports(lib_rs: str) -> dict[str, str]:
    """Names `lib.rs` re-exports (`pub use dataset::Dataset;`) -> the module defining them."""
    out = {}
    for module, names in re.findall(r"pub use (\w+)::\{?([\w, ]+)\}?;", lib_rs):
        for name in names.split(","):
            out[name.strip()] = module
    return out


def _references(text: str) -> set[str]:
    """First path segments after `crate::`, including inside `use crate::{a::X, b};` groups."""
    refs = set()
    for group in re.findall(r"\bcrate::\{([^}]*)\}", text, flags=re.S):
        refs.update(m for m in re.findall(r"(?:^|,)\s*(\w+)", group))
    refs.update(re.findall(r"\bcrate::(\w+)", text))
    return refs


def crate_module_graph(src: Path = CORE_SRC) -> dict[str, set[str]]:
    """The top-level modules of the crate whose sources are in `src` (declared in `lib.rs`,
    public or not) and which of them each one uses."""
    lib_rs = _strip_comments((src / "lib.rs").read_text(encoding="utf-8"))
    modules = set(re.findall(r"^\s*(?:pub(?:\([\w:]+\))?\s+)?mod (\w+);", lib_rs, flags=re.M))
    aliases = _reexports(lib_rs)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in src.rglob("*.rs"):
        source = _module_of(path, src)
        if source == "crate":
            continue
        for ref in _references(_strip_comments(path.read_text(encoding="utf-8"))):
            target = aliases.get(ref, ref)
            if target in modules and target != source:
                graph.setdefault(source, set()).add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def python_module_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Modules of the Python package (`.py` files, and the native module by its stub) and the
    ones each imports, at module level or inside a function alike (a deferred import is still
    a dependency); imports under `if TYPE_CHECKING:` are for type checkers only and skipped."""
    root = package.parent
    files = {p: p for p in package.rglob("*.py")} | {p: p for p in package.rglob("*.pyi")}

    def name_of(p: Path) -> str:
        parts = list(p.relative_to(root).with_suffix("").parts)
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

    modules = {name_of(p): p for p in files}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        if path.suffix == ".pyi":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for n in ast.walk(node)
        }
        package_of = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in typing_only:
                continue
            if isinstance(node, ast.Import):
                graph[name].update(a.name for a in node.names if a.name in modules)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package_of.split(".")[: len(package_of.split(".")) - node.level + 1]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                if target not in modules:
                    continue
                for alias in node.names:
                    sub = f"{target}.{alias.name}"
                    graph[name].add(sub if sub in modules else target)
        graph[name].discard(name)
    return graph


@pytest.mark.parametrize("crate", CRATES)
def test_rust_modules_form_no_import_cycle(crate: str) -> None:
    src = ROOT / "rust" / crate / "src"
    graph = crate_module_graph(src)
    assert len(graph) >= 5, f"the parser found too few modules in {src}: {graph}"
    # The graph is real: these edges exist today, so a parser that sees nothing fails here.
    if crate == "core":
        assert "shard" in graph["dataset"] and "plan" in graph["stream"], graph
    cycle = find_cycle(graph)
    assert cycle is None, f"{crate} modules import each other in a cycle: " + " -> ".join(
        cycle or []
    )


def test_python_modules_form_no_import_cycle() -> None:
    graph = python_module_graph()
    assert "pixmo_stream._native" in graph["pixmo_stream.dataset"], graph["pixmo_stream.dataset"]
    assert "pixmo_stream.ingest.grouping" in graph["pixmo_stream.ingest.pipeline"]
    cycle = find_cycle(graph)
    assert cycle is None, "Python modules import each other in a cycle: " + " -> ".join(cycle or [])


def test_the_graphs_see_private_modules_and_deferred_imports(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "lib.rs").write_text("pub mod a;\nmod b;\npub(crate) mod c;\n")
    (src / "a.rs").write_text("use crate::b::X;\n")
    (src / "b.rs").write_text("fn f() { crate::a::y() }\n")
    (src / "c.rs").write_text("")
    assert crate_module_graph(src) == {"a": {"b"}, "b": {"a"}, "c": set()}
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("from .a import f\n")
    (pkg / "a.py").write_text("def f():\n    from . import b\n")
    (pkg / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n"
    )
    (pkg / "c.py").write_text("from pkg.a import f\n")
    assert python_module_graph(pkg) == {
        "pkg": {"pkg.a"},
        "pkg.a": {"pkg.b"},
        "pkg.b": set(),
        "pkg.c": {"pkg.a"},
    }


def test_cycle_finder_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    text = "use crate::{chunk::Buffer, value::Value};\nfn f() { crate::decode::check(x) }"
    assert _references(text) == {"chunk", "value", "decode"}
