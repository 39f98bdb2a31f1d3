"""The committed demo model reproduces its training sounds as well as when it was committed.

Runs scripts/demo-fidelity: each of the four test sounds is encoded and its embedding decoded
(seed 0); the pitch (pyin) and the nearest input in log-mel distance are read off its report.
The decoding loop's sampling is seeded, so this guards the model and the engine together.
The committed model keeps the pitch of all 4 sounds (bar: 3) and decodes each nearest its own
input through 8-bit mu-law (bar: 4); against the clean inputs 2 of 4 are nearest their own (see
the script's docstring and the model's README for why that view is dominated by mu-law's noise).
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
    assert int(pitch.group(1)) == 4, report
    assert int(nearest.group(1)) == 4, report
    assert result.returncode == 0, report
