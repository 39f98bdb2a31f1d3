"""The suite itself: a hanging test fails on its own after the per-test timeout, and the
tests after it still run."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_project_sets_a_per_test_timeout(pytestconfig):
    assert float(pytestconfig.getini("timeout")) == 300
    assert pytestconfig.getini("timeout_method") == "signal"


def test_a_hanging_test_fails_alone(tmp_path):
    (tmp_path / "test_hang.py").write_text(
        "import time\n\n"
        "def test_hangs():\n    time.sleep(3600)\n\n"
        "def test_runs_after():\n    assert True\n")
    # The project's own configuration, with the limit shortened so this takes seconds.
    result = subprocess.run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
                             "--rootdir", str(tmp_path), "-o", "timeout=2", "-p", "no:cacheprovider",
                             str(tmp_path / "test_hang.py")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stdout
    assert "Timeout" in result.stdout and "1 failed, 1 passed" in result.stdout, result.stdout
