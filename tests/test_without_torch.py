"""`pip install .` without torch: writing, reading and the CLI work, and the torch-only names
say which extra to install. Each check runs in a subprocess in which `import torch` fails."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pixmo_stream as ps

# A `None` entry in sys.modules makes every `import torch` raise ModuleNotFoundError, as on a
# machine without torch.
NO_TORCH = "import sys\nsys.modules['torch'] = None\n"


def run_without_torch(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", NO_TORCH + textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_write_read_and_inspect_without_torch(tmp_path):
    code = """
        import json
        import numpy as np
        import pixmo_stream as ps

        path = sys.argv[1]
        with ps.Writer(path, row_group_rows=4) as w:
            for i in range(10):
                w.write({"id": i, "caption": f"c{i}", "p": np.full((2, 2), i, np.float32)})
        ds = ps.Dataset(path)
        recs = ds.take([7, 2])
        out = {
            "len": len(ds),
            "ids": [r["id"] for r in recs],
            "captions": [r["caption"] for r in ds.iter(columns=["caption"])],
            "p": ds[9]["p"].tolist(),
            "ok": ds.verify().ok,
            "torch_loaded": "torch" in sys.modules and sys.modules["torch"] is not None,
        }
        print(json.dumps(out))
    """
    p = run_without_torch(code, str(tmp_path / "d"))
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out == {
        "len": 10,
        "ids": [7, 2],
        "captions": [f"c{i}" for i in range(10)],
        "p": [[9.0, 9.0], [9.0, 9.0]],
        "ok": True,
        "torch_loaded": False,
    }
    cli = """
        from pixmo_stream.cli import main
        sys.argv = ["pixmo-stream", "inspect", sys.argv[1], "--json"]
        sys.exit(main())
    """
    p = run_without_torch(cli, str(tmp_path / "d"))
    assert p.returncode == 0, p.stderr
    info = json.loads(p.stdout)
    assert info["num_rows"] == 10


def test_torch_names_say_which_extra_to_install():
    for name in ("StreamingDataset", "DataLoader", "Mixture"):
        code = f"""
            import pixmo_stream as ps
            try:
                ps.{name}
            except ModuleNotFoundError as e:
                print(e.name, "|", e)
        """
        p = run_without_torch(code)
        assert p.returncode == 0, p.stderr
        missing, _, message = p.stdout.partition(" | ")
        assert missing == "torch"
        assert f"pixmo_stream.{name} needs PyTorch" in message
        assert "pip install 'pixmo-stream[torch]'" in message
        assert "download.pytorch.org/whl/cpu" in message


def test_other_import_errors_are_not_blamed_on_torch():
    code = """
        import sys
        import pixmo_stream as ps
        sys.modules["pixmo_stream.mixture"] = None
        try:
            ps.Mixture
        except ModuleNotFoundError as e:
            print(e.name)
    """
    p = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True
    )
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "pixmo_stream.mixture"


def test_lazy_names_are_listed():
    names = dir(ps)
    for name in ("StreamingDataset", "DataLoader", "Mixture", "collate", "Dataset", "Writer"):
        assert name in names
    assert set(ps.__all__) <= set(names)
