"""Configuration: the sound space (a dataset folder's `space.json`) and the workflow (where and how
it is decoded), validated with pydantic so that every mistake is reported with its file, its field,
what was found and what is allowed, before anything is read, decoded or written.

A space names 2 sounds (LEFT, RIGHT: a line) or 4 (NW, NE, SW, SE: a square), each a file in the
dataset folder; `resolution` counts the points per axis including the ends. The workflow names the
backend, the device, the two models (`real` for real spaces, `test` for test spaces; a space picks
one with its `model` field), the decode batch and shard size, how many shards run at once, and the
output folder. Relative paths in a workflow are relative to the workflow file. A workflow holds no
secrets: keys come from the environment.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from . import SoundspaceError
from .audio import SAMPLE_RATE
from .cost import FULL_SECONDS_PER_SAMPLE
from .files import DuplicateKey, inside, parse_json
from .space import LINE, SQUARE

# A square of 129 x 129 is 16,641 cells: a whole instrument library of one note. Beyond that a run
# is almost certainly a typo (resolution 1000 would be a million sounds), so it is refused with
# its cost with Magenta's full-size model (pipeline/cost.py).
MAX_CELLS = 129 * 129
MAX_RESOLUTION = 129
MAX_LENGTH_SECONDS = 60.0
# A library's sound name: it is part of file and pad names, so no path characters, and no '_',
# which joins the sounds of a pad's name (ONS Super style) and a sound's name to its pitch.
SOUND_NAME = r"[A-Za-z0-9][A-Za-z0-9.-]{0,39}"


class _Strict(BaseModel):
    # strict: a number is a JSON number and a switch true or false, never "3" or true for 1
    # (pydantic's lax mode would take both, and a typo'd type would pass unseen).
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class PostProcess(_Strict):
    """What is done to each decoded sound before it is written.

    `default`: remove the DC offset, peak-normalise to `peak_dbfs` (never above 0 dBFS, so nothing
    clips), linear fades of `fade_ms` at both ends, zero-padded to the space's length.
    `open-nsynth-super`: Open NSynth Super's chain (declick, -12 dBFS, onset trim, the space's
    length, 8-sample fades). `none`: the model's samples as they come."""

    chain: Literal["default", "open-nsynth-super", "none"] = "default"
    peak_dbfs: float = Field(-1.0, ge=-60.0, le=0.0)
    fade_ms: float = Field(5.0, ge=0.0, le=1000.0)


class Sound(_Strict):
    file: str = Field(min_length=1)
    label: str | None = None


class _Grid(_Strict):
    """What a space and a library both say: the name, how corners are mixed, the sampling seed,
    which model and what is done to each decoded sound. Each adds its sounds, resolution and
    length."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    weighting: Literal["bilinear", "radial"] = "bilinear"
    seed: int = Field(0, ge=0, lt=2**63)
    model: Literal["real", "test"] = "real"
    postprocess: PostProcess = PostProcess()

    @field_validator("model", mode="before")
    @classmethod
    def _demo_is_test(cls, value):
        # "demo" names the bundled demo model, which every shipped workflow's `test` model is.
        return "test" if value == "demo" else value

    if TYPE_CHECKING:  # each kind declares its own `sounds` field, keyed by corner label
        sounds: Mapping[str, object]

    @property
    def labels(self) -> tuple:
        return LINE if set(self.sounds) == set(LINE) else SQUARE


class SpaceConfig(_Grid):
    sounds: dict[str, Sound]
    resolution: int = Field(ge=2)
    length: float = Field(gt=0.0, le=MAX_LENGTH_SECONDS)
    # The MIDI note its inputs sound (NSynth's notes are named so: bass_48.wav is C3): the key an
    # export maps the cells to, and what the page says. Unknown when left out (exports assume 60).
    pitch: int | None = Field(None, ge=0, le=127)

    @field_validator("sounds", mode="before")
    @classmethod
    def _plain_file_names(cls, value):
        # "NW": "bass.wav" is shorthand for "NW": {"file": "bass.wav"}.
        if isinstance(value, dict):
            return {k: {"file": v} if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("sounds")
    @classmethod
    def _two_or_four(cls, value):
        keys = set(value)
        if keys not in (set(LINE), set(SQUARE)):
            raise ValueError(
                f"got {len(value)} sound(s) named {', '.join(sorted(keys)) or 'nothing'}; "
                f"a space takes 2 sounds named {' and '.join(LINE)} (a line) or 4 "
                f"named {', '.join(SQUARE)} (a square)"
            )
        return value

    @field_validator("length")
    @classmethod
    def _at_least_one_sample(cls, value):
        if round(value * SAMPLE_RATE) < 1:
            raise ValueError(
                f"{value:g} s is less than one sample at {SAMPLE_RATE} Hz; give the "
                "length of the sounds in seconds (e.g. 4.0)"
            )
        return value

    @model_validator(mode="after")
    def _affordable(self):
        cells = self.cell_count
        if cells > MAX_CELLS:
            audio_hours = cells * self.length / 3600
            cpu_hours = cells * self.samples * FULL_SECONDS_PER_SAMPLE / 3600
            raise ValueError(
                f"resolution {self.resolution} makes {cells:,} cells, {audio_hours:,.0f} hours of "
                f"audio to decode (about {cpu_hours:,.0f} hours on 2 CPU cores with Magenta's "
                f"model); at most {MAX_CELLS:,} cells are accepted (a square up to 129 x 129): "
                "lower the resolution"
            )
        return self

    @property
    def cell_count(self) -> int:
        return self.resolution ** (1 if self.labels == LINE else 2)

    @property
    def samples(self) -> int:
        return round(self.length * SAMPLE_RATE)


class LibrarySound(_Strict):
    """One sound of a library corner: a name (it names files and pads) and, where its files do
    not follow the library's pattern, the file for each pitch (`files`) or its one file (`file`,
    for a library without pitches)."""

    name: str = Field(pattern=f"^{SOUND_NAME}$")
    label: str | None = None
    files: dict[int, str] | None = None
    file: str | None = Field(None, min_length=1)

    @field_validator("files", mode="before")
    @classmethod
    def _pitch_keys(cls, value):
        # JSON keys are strings: "48" is pitch 48. Any other key is left for the strict int
        # check to refuse by name.
        if isinstance(value, dict):
            return {
                int(k) if isinstance(k, str) and k.isascii() and k.isdigit() else k: v
                for k, v in value.items()
            }
        return value


class LibraryConfig(_Grid):
    """A library: several sounds per corner (every combination is a pad) and/or several pitches
    (every pitch is its own grid). The fields shared with a space mean the same; `length` may be
    left out, and then each input keeps its own length (the inputs of a pad must then agree)."""

    sounds: dict[str, list[LibrarySound]]
    pitches: list[Annotated[int, Field(ge=0, le=127)]] | None = Field(None, min_length=1)
    pattern: str | None = Field(None, min_length=1)  # default: {sound}_{pitch}.wav, or {sound}.wav
    missing_pitches: Literal["error", "shift"] = "error"
    max_shift_semitones: int = Field(6, ge=1, le=12)
    resolution: int = Field(ge=2, le=MAX_RESOLUTION)
    length: float | None = Field(None, gt=0.0, le=MAX_LENGTH_SECONDS)

    @field_validator("sounds", mode="before")
    @classmethod
    def _lists_of_named_sounds(cls, value):
        # "NW": "bass" is one sound; "NW": ["bass", {"name": "flute", "label": "Flute"}] two.
        if isinstance(value, dict):
            return {
                k: [
                    {"name": item} if isinstance(item, str) else item
                    for item in (v if isinstance(v, list) else [v])
                ]
                for k, v in value.items()
            }
        return value

    @field_validator("sounds")
    @classmethod
    def _corners(cls, value):
        SpaceConfig._two_or_four(value)
        for corner, sounds in value.items():
            if not sounds:
                raise ValueError(f"corner {corner} has no sound; give at least one")
            names = [s.name for s in sounds]
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(
                    f"corner {corner} lists {', '.join(twice)} more than once; "
                    "each sound once per corner"
                )
        return value

    @field_validator("pitches")
    @classmethod
    def _distinct_pitches(cls, value):
        if value is not None and len(set(value)) < len(value):
            twice = sorted({p for p in value if value.count(p) > 1})
            raise ValueError(f"pitch {', '.join(map(str, twice))} is listed more than once")
        return value

    @field_validator("length")
    @classmethod
    def _length_at_least_one_sample(cls, value):
        return value if value is None else SpaceConfig._at_least_one_sample(value)

    @model_validator(mode="after")
    def _files_fit_the_pitches(self):
        for corner, sounds in self.sounds.items():
            for sound in sounds:
                if self.pitches is None and sound.files is not None:
                    raise ValueError(
                        f"sounds.{corner}: {sound.name} gives `files` per pitch, but "
                        "the library has no `pitches`; give `file` or add `pitches`"
                    )
                if self.pitches is not None and sound.file is not None:
                    raise ValueError(
                        f"sounds.{corner}: {sound.name} gives one `file`, but the "
                        'library has `pitches`; give `files` {"PITCH": FILE, ...} '
                        "or follow the pattern"
                    )
        return self


def is_library(data: dict) -> bool:
    """A space.json describes a library when it has pitches or a corner lists several sounds."""
    sounds = data.get("sounds")
    return "pitches" in data or (
        isinstance(sounds, dict) and any(isinstance(v, list) for v in sounds.values())
    )


class Models(_Strict):
    real: str = Field(min_length=1)
    test: str = Field(min_length=1)


class PaperspaceConfig(_Strict):
    """Where and how decode jobs run on Paperspace (or a server speaking its Jobs API). The API
    key is never here: it comes from PAPERSPACE_API_KEY."""

    api_url: str = Field("https://api.paperspace.io", pattern=r"^https?://")
    logs_url: str | None = Field(None, pattern=r"^https?://")  # default: the official logs host,
    # or api_url itself for any other server (the stand-in serves both)
    project_id: str = Field(min_length=1)
    machine_type: str = Field(min_length=1)
    container: str = Field(min_length=1)
    storage_models: Models  # each job's model: a folder or zip under /storage
    retries: int = Field(2, ge=0, le=20)  # resubmissions of a Failed, Error or Preempted job
    poll_seconds: float = Field(5.0, gt=0, le=300)
    backoff_seconds: float = Field(1.0, gt=0, le=60)  # waits after a 429/5xx grow from this
    max_wait_seconds: float = Field(60.0, gt=0, le=3600)  # longest wait, Retry-After included
    job_timeout_minutes: float = Field(1440.0, gt=0)  # a job still running then is stopped
    preemptible: bool = False


class RayConfig(_Strict):
    """A Ray cluster: `address` 'auto' (the cluster this machine belongs to), 'HOST:PORT',
    'ray://HOST:10001', or null for a local cluster started for the run."""

    address: str | None = None
    retries: int = Field(3, ge=0, le=50)  # reruns of a shard whose worker died
    scratch: str | None = None  # per-node folder for shards in progress (default: the temp folder)


class WorkflowConfig(_Strict):
    backend: Literal["local", "paperspace", "ray"] = "local"
    device: str = Field("cpu", pattern=r"^(cpu|auto|cuda(:[0-9]+)?)$")
    math: Literal["auto", "numpy", "torch"] = "auto"
    models: Models
    decode_batch: int = Field(81, ge=1, le=4096)
    shard_size: int = Field(81, ge=1, le=MAX_CELLS)
    parallel_shards: int = Field(1, ge=1, le=64)
    snapshot_seconds: float = Field(60.0, ge=0, le=86_400)  # decoding between snapshots; 0: none
    output: str = Field("output", min_length=1)
    paperspace: PaperspaceConfig | None = None
    ray: RayConfig = RayConfig()

    @model_validator(mode="after")
    def _backend_settings(self):
        if self.backend == "paperspace" and self.paperspace is None:
            raise ValueError(
                "backend paperspace needs a `paperspace` section (api_url, project_id, "
                "machine_type, container, storage_models)"
            )
        return self


# What a strict type error asks for, in words that say why "3" or true is not taken.
_TYPES = {
    "int_type": "give a whole number, without quotes (not a string, not true or false)",
    "float_type": "give a number, without quotes (not a string, not true or false)",
    "bool_type": "give true or false, without quotes",
}


def _describe(error: ValidationError) -> str:
    lines = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "(top level)"
        message = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            message = "unknown field (misspelt?)"
        elif item["type"] == "string_pattern_mismatch" and where == "name":
            message = (
                "use letters, digits, '.', '_' or '-' (at most 100, starting with a letter "
                "or digit): it names the output folder"
            )
        elif item["type"] == "string_pattern_mismatch" and where == "device":
            message = "use cpu, cuda, cuda:N or auto"
        elif item["loc"][-1:] == ("[key]",):
            message = 'key each file by its MIDI note in quotes, e.g. "48"'
        elif item["type"] in _TYPES:
            message = _TYPES[item["type"]]
        got = (
            ""
            if item["type"] in ("missing", "extra_forbidden") or "got" in message
            else f" (got {json.dumps(item.get('input'), default=str)[:60]})"
        )
        lines.append(f"field {where}: {message}{got}")
    return "; ".join(lines)


def _read_json(path: Path, what: str) -> dict:
    if not path.is_file():
        raise SoundspaceError(f"no {what} at {path}")
    try:
        data = parse_json(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise SoundspaceError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno}, column {error.colno})"
        ) from None
    except DuplicateKey as error:
        raise SoundspaceError(f"{path}: {error}; give it once") from None
    except (OSError, UnicodeDecodeError) as error:
        raise SoundspaceError(f"cannot read {path} ({error})") from None
    if not isinstance(data, dict):
        raise SoundspaceError(f"{path}: expected a JSON object {{...}}, got {type(data).__name__}")
    return data


def load_space(dataset) -> tuple[SpaceConfig | LibraryConfig, Path]:
    """The space (or library) of a dataset folder and the folder itself; every sound file a
    space names must be inside it (a library's files are found and checked by pipeline.library)."""
    folder = Path(dataset)
    if not folder.is_dir():
        raise SoundspaceError(
            f"--dataset {folder} is not a folder; give a dataset folder holding "
            "space.json and its sounds (e.g. models/n-synth/dataset-test)"
        )
    path = folder / "space.json"
    data = _read_json(path, "space definition (space.json)")
    try:
        space = (LibraryConfig if is_library(data) else SpaceConfig).model_validate(data)
    except ValidationError as error:
        raise SoundspaceError(f"{path}: {_describe(error)}") from None
    if isinstance(space, LibraryConfig):
        return space, folder
    for label, sound in space.sounds.items():
        try:
            inside(folder, sound.file, "sound file")
        except SoundspaceError as error:
            raise SoundspaceError(
                f"{path}: field sounds.{label}.file: {error}; put the sound in "
                f"{folder} and name it relative to that folder (e.g. "
                "bass.wav or sounds/bass.wav)"
            ) from None
    return space, folder


def load_workflow(path) -> tuple[WorkflowConfig, Path]:
    """The workflow and the folder its relative paths start from."""
    path = Path(path)
    if path.is_dir():
        raise SoundspaceError(
            f"--workflow {path} is a folder; give the workflow file itself (e.g. "
            "config-workflow-local.json)"
        )
    try:
        workflow = WorkflowConfig.model_validate(_read_json(path, "workflow config"))
    except ValidationError as error:
        raise SoundspaceError(f"{path}: {_describe(error)}") from None
    return workflow, path.resolve().parent


def model_folder(workflow: WorkflowConfig, base: Path, which: str, workflow_path) -> Path:
    """The model folder a space asks for, with the way to get it when it is missing."""
    folder = base / getattr(workflow.models, which)
    if not (folder / "model.json").is_file():
        how = (
            "get Magenta's wavenet-ckpt and convert it with `soundspace convert --checkpoint "
            f"wavenet-ckpt/model.ckpt-200000 --out {getattr(workflow.models, which)}` (README: "
            'Using the engine), or try the bundled demo model now: set "model": "demo" in the '
            "dataset's space.json"
            if which == "real"
            else "train one with `soundspace train` or point it at models/n-synth/checkpoints/demo"
        )
        raise SoundspaceError(
            f"{workflow_path}: models.{which} = {folder} holds no model (no model.json); {how}"
        )
    return folder
