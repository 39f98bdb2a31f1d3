"""What a remote backend (Ray, Paperspace) brings back, merged into the store by one function.

The files come from another machine, so they are hostile: each name must stay inside the folder
it is unpacked into (`files.inside`), and each cell is taken only after the store's integrity
rule for cells made elsewhere (`output.merge_finished`: the planned key, the recorded sha256,
16 kHz mono audio of the planned length). The files are unpacked into a folder of the store's
own state, removed afterwards whatever happens (a killed run's is removed by the next run).
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from .. import output
from ..files import atomic_write, inside
from ..shards import ShardSpec


def receive(files: dict[str, bytes], spec: ShardSpec, store: Path, source: str) -> tuple:
    """Merge the cells of `spec` found in `files` (relative name -> bytes, as the shard runner
    writes them: `<cell>.wav` and `.soundspace/cells/<cell>.json`) into `store`. Returns the
    points merged, the records of their cells, and the cells that are missing or failed."""
    incoming = Path(tempfile.mkdtemp(prefix=output.INCOMING, dir=store / output.STATE))
    try:
        for name, data in files.items():
            target = inside(incoming, name, f"file name from {source}")
            target.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(target, data)  # on disk before it is moved into the store
        return output.merge_finished(incoming, spec, store)
    finally:
        shutil.rmtree(incoming, ignore_errors=True)
