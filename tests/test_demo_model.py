"""The committed demo model reproduces its training sounds as well as its documented bar.

Runs scripts/demo-fidelity: each of the four test sounds is encoded and its embedding decoded
(seed 0); the pitch (pyin) and the nearest input in log-mel distance are read off its report.
The decoding loop's sampling is seeded, so this guards the model and the engine together. The
bar is the script's own (its exit code): pitch within 50 cents for at least 3 of 4, and each
sound nearest its own input through 8-bit mu-law for all 4 (see the script's docstring and the
model's README for why the clean-input view is dominated by mu-law's noise).
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_model_keeps_pitch_and_timbre():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo-fidelity")],
                            capture_output=True, text=True)
    report = result.stdout + result.stderr
    pitch = re.search(r"pitch within 50 cents: (\d) of 4", report)
    nearest = re.search(r"nearest its own 8-bit input: (\d) of 4", report)
    assert pitch and nearest, report
    assert result.returncode == 0, report
    assert int(pitch.group(1)) >= 3 and int(nearest.group(1)) == 4, report  # the bar, read back
