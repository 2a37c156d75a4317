"""Ray is an optional extra: nothing but ``pixmo_stream.ray`` imports it, and without it the
package and ``convert --engine ray`` say which extra to install. Runs without Ray (each
check in a subprocess in which ``import ray`` fails, or imports nothing of Ray)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from pixmo_stream.cli import main
from pixmo_stream.ingest import convert

NO_RAY = "import sys\nsys.modules['ray'] = None\n"


def _run(code: str, prefix: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", prefix + textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_package_the_ingest_layer_and_the_cli_do_not_import_ray() -> None:
    done = _run(
        """
        import sys
        import pixmo_stream, pixmo_stream.ingest, pixmo_stream.ingest.pipeline
        from pixmo_stream.cli import main
        assert main(["convert", "--help"]) == 0
        loaded = sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))
        print("RAY", loaded)
        """
    )
    assert done.returncode == 0, done.stderr
    assert "RAY []" in done.stdout


def test_without_ray_the_integration_names_the_extra(tmp_path: Path) -> None:
    done = _run(
        """
        try:
            import pixmo_stream.ray
        except ModuleNotFoundError as e:
            print("ERROR", e)
        from pixmo_stream.cli import main
        print("EXIT", main(["-q", "convert", sys.argv[0], "-o", "unused", "--engine", "ray"]))
        """.replace("sys.argv[0]", repr(__file__)),
        prefix=NO_RAY,
    )
    assert done.returncode == 0, done.stderr
    assert "ERROR pixmo_stream.ray needs Ray Data" in done.stdout
    assert "pip install 'pixmo-stream[ray]'" in done.stdout
    assert "EXIT 2" in done.stdout
    assert "--engine ray needs Ray: pip install 'pixmo-stream[ray]'" in done.stderr


def test_engine_and_address_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(ValueError, match="engine must be one of local, ray, got 'spark'"):
        convert(__file__, str(tmp_path / "o"), engine="spark")  # type: ignore[arg-type]
    code = main(["-q", "convert", __file__, "-o", str(tmp_path / "o"), "--address", "auto"])
    assert code == 2
    assert "--address is for --engine ray" in capsys.readouterr().err
