"""Every Python example of the README and of `docs/*.md` runs as written.

Each ```python block is run on its own, in a fresh empty directory, by a new interpreter, as
a reader who copies it would run it; so each block carries its own set-up lines. A reader who
follows a document from top to bottom runs its blocks one after the other in one session and
one directory, so every document's blocks are also run that way: a block must not trip over
what the blocks before it left behind (a dataset already at its path, say). A block that is
not meant to run (a fragment of a larger program, an API sketch) says so in its info string,
```python no-run; use it sparingly: a reader cannot tell that a block does not run. New
documents under `docs/` are picked up without changing this file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
NO_RUN = "no-run"
# An opening fence (possibly indented, as in a list), its info string, its body and the
# closing fence of the same indentation.
FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```(?P<info>[^\n`]*)\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.M | re.S
)


def code_blocks(text: str) -> list[tuple[int, list[str], str]]:
    """`(line, info words, code)` of every fenced block whose language is python."""
    blocks = []
    for m in FENCE.finditer(text):
        info = m.group("info").split()
        if info[:1] != ["python"]:
            continue
        line = text.count("\n", 0, m.start()) + 1
        blocks.append((line, info[1:], textwrap.dedent(m.group("body"))))
    return blocks


def examples() -> list:
    params = []
    for doc in DOCUMENTS:
        for line, flags, code in code_blocks(doc.read_text(encoding="utf-8")):
            if NO_RUN not in flags:
                name = doc.relative_to(ROOT).as_posix()
                params.append(pytest.param(name, line, code, id=f"{name}:{line}"))
    return params


@pytest.mark.parametrize(("document", "line", "code"), examples())
def test_example_runs_as_written(tmp_path, document, line, code):
    script = tmp_path / "example.py"
    script.write_text(code, encoding="utf-8")
    try:
        p = subprocess.run(
            [sys.executable, str(script)],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the example at {document}:{line} did not finish in 300 s")
    assert p.returncode == 0, f"the example at {document}:{line} failed:\n{p.stderr[-4000:]}"


# Runs each block of a document in turn in one interpreter (the reader's session: names one
# block defines stay defined for the next), in the current directory, and names the block
# that failed. Blocks are compiled under their document and line, so tracebacks point there.
SESSION = """
import json, sys, traceback
blocks = json.load(open(sys.argv[1], encoding="utf-8"))
session = {"__name__": "__main__"}
for where, code in blocks:
    try:
        exec(compile(code, where, "exec"), session)
    except BaseException:
        traceback.print_exc()
        sys.exit(f"the example at {where} failed after the ones before it")
"""


def sequences() -> list:
    params = []
    for doc in DOCUMENTS:
        name = doc.relative_to(ROOT).as_posix()
        blocks = [
            (f"{name}:{line}", code)
            for line, flags, code in code_blocks(doc.read_text(encoding="utf-8"))
            if NO_RUN not in flags
        ]
        if len(blocks) > 1:  # one block alone is run as it is above
            params.append(pytest.param(name, blocks, id=name))
    return params


@pytest.mark.parametrize(("document", "blocks"), sequences())
def test_examples_run_top_to_bottom_in_one_session(tmp_path, document, blocks):
    work = tmp_path / "work"
    work.mkdir()
    (tmp_path / "blocks.json").write_text(json.dumps(blocks), encoding="utf-8")
    (tmp_path / "session.py").write_text(SESSION, encoding="utf-8")
    try:
        p = subprocess.run(
            [sys.executable, str(tmp_path / "session.py"), str(tmp_path / "blocks.json")],
            cwd=work,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"the examples of {document} did not finish in 600 s")
    assert p.returncode == 0, f"{document}, run top to bottom:\n{p.stderr[-4000:]}"


def test_the_readme_examples_are_found():
    blocks = code_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len([b for b in blocks if NO_RUN not in b[1]]) >= 3


def test_fences_and_the_no_run_mark():
    text = (
        "intro\n```python\nx = 1\n```\n"
        "- item\n  ```python no-run\n  f(y)\n  ```\n"
        "```bash\nls\n```\n```json\n{}\n```\n"
    )
    assert code_blocks(text) == [(2, [], "x = 1\n"), (6, ["no-run"], "f(y)\n")]
