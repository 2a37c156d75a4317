"""The code stays easy to find one's way in: no module over 700 lines, and the core crate's
modules depend on each other one way only (format -> schema -> encode/decode -> shard ->
dataset -> plan -> stream), so that each can be read knowing only the ones below it."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CORE_SRC = ROOT / "rust" / "core" / "src"
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


def _module_of(path: Path) -> str:
    """The top-level module of the core crate a file belongs to (`plan/order.rs` -> `plan`)."""
    rel = path.relative_to(CORE_SRC)
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


def core_module_graph() -> dict[str, set[str]]:
    lib_rs = _strip_comments((CORE_SRC / "lib.rs").read_text(encoding="utf-8"))
    modules = set(re.findall(r"^\s*pub(?:\(crate\))? mod (\w+);", lib_rs, flags=re.M))
    aliases = _reexports(lib_rs)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for path in CORE_SRC.rglob("*.rs"):
        source = _module_of(path)
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


def test_core_modules_form_no_import_cycle() -> None:
    graph = core_module_graph()
    # The graph is real: these edges exist today, so a parser that sees nothing fails here.
    assert "shard" in graph["dataset"] and "plan" in graph["stream"], graph
    cycle = find_cycle(graph)
    assert cycle is None, "core modules import each other in a cycle: " + " -> ".join(cycle or [])


def test_cycle_finder_sees_a_cycle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    text = "use crate::{chunk::Buffer, value::Value};\nfn f() { crate::decode::check(x) }"
    assert _references(text) == {"chunk", "value", "decode"}
