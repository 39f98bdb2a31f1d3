"""The committed demo model reproduces its training sounds as well as its documented bar.

Runs scripts/demo-fidelity on the data the model was trained on: each sound (at each pitch) is
encoded and its embedding decoded (seed 0); the pitch (pyin) and the nearest input at the same
pitch in log-mel distance are read off its report. The decoding loop's sampling is seeded, so
this guards the model and the engine together. The bar is the script's own (its exit code):
every sound within 50 cents, and every sound nearest its own input through 8-bit mu-law (see the
script's docstring and the model's README for why the clean-input view is dominated by mu-law's
noise).
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


DATA, SOUNDS = ROOT / "models" / "n-synth" / "dataset-test", "4"  # 4 sounds at one pitch


def test_demo_model_keeps_pitch_and_timbre():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "demo-fidelity"), "--data",
                             str(DATA)], capture_output=True, text=True)
    report = result.stdout + result.stderr
    pitch = re.search(r"pitch within 50 cents: (\d+) of (\d+)", report)
    nearest = re.search(r"nearest its own 8-bit input: (\d+) of (\d+)", report)
    assert pitch and nearest, report
    assert result.returncode == 0, report
    assert pitch.group(2) == nearest.group(2) == SOUNDS, report
    assert pitch.group(1) == nearest.group(1) == SOUNDS, report  # the bar, read back
