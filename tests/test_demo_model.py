"""The committed demo model reproduces its training sounds as well as its documented bar.

Runs scripts/demo-fidelity on the test library: each of its eight sounds at each of its three
pitches is encoded and its embedding decoded (seed 0); the pitch (pyin) and the nearest input at
the same pitch in log-mel distance are read off its report. The decoding loop's sampling is
seeded, so this guards the model and the engine together. The bar is the script's own (its exit
code): all 24 within 50 cents, and all 24 nearest their own input through 8-bit mu-law (see the
script's docstring and the model's README for why the clean-input view is dominated by mu-law's
noise).
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
    pitch = re.search(r"pitch within 50 cents: (\d+) of (\d+)", report)
    nearest = re.search(r"nearest its own 8-bit input: (\d+) of (\d+)", report)
    assert pitch and nearest, report
    assert result.returncode == 0, report
    assert pitch.group(2) == nearest.group(2) == "24", report  # 8 sounds x 3 pitches
    assert pitch.group(1) == nearest.group(1) == "24", report  # the bar, read back
