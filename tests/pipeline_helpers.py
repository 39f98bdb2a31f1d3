"""Small dataset folders and workflows for the pipeline tests."""
import json
import shutil
from pathlib import Path

from .conftest import DEMO_MODEL

TEST_DATASET = Path(__file__).resolve().parent.parent / "models" / "n-synth" / "dataset-test"


def workflow(folder: Path, **fields) -> Path:
    """A local workflow whose models are the demo model and whose output is folder/out."""
    config = {"backend": "local", "device": "cpu", "models": {"real": str(DEMO_MODEL),
                                                              "test": str(DEMO_MODEL)},
              "output": str(folder / "out"), **fields}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "workflow.json"
    path.write_text(json.dumps(config))
    return path


def dataset(folder: Path, labels=("NW", "NE", "SW", "SE"), **fields) -> Path:
    """A copy of the test dataset's sounds (or the first len(labels) of them) with a space.json."""
    folder.mkdir(parents=True, exist_ok=True)
    files = ["bass.wav", "guitar.wav", "keyboard.wav", "organ.wav"]
    for file in files:
        shutil.copyfile(TEST_DATASET / file, folder / file)
    space = {"name": "space", "sounds": {label: {"file": files[i], "label": files[i][:-4]}
                                         for i, label in enumerate(labels)},
             "resolution": 3, "length": 1.0, "seed": 0, **fields}
    (folder / "space.json").write_text(json.dumps(space))
    return folder


def generate_space(dataset_dir, workflow_path, **options):
    """The run of one dataset folder (`generate_spaces` of one), its result."""
    from pipeline.run import generate_spaces

    return generate_spaces([dataset_dir], workflow_path, **options)[0]
