"""Open a checkpoint file for listing and per-tensor reads, whatever its format.

``open_checkpoint(path)`` returns a :class:`~models.loading.checkpoint_reader.CheckpointReader` for
either format page4d meets: ``.safetensors`` (:mod:`models.loading.safetensors_reader`) or a torch
pickle (:mod:`models.loading.torch_reader`). The format is sniffed from the first bytes, not the file
name, so a mis-named file still opens. Every failure is a
:class:`~models.loading.checkpoint_reader.CheckpointError` whose one-line message names the file and
the fix.
"""

from __future__ import annotations

from pathlib import Path

from models.errors import PathLike
from models.loading.checkpoint_reader import CheckpointError, CheckpointReader
from models.loading.safetensors_reader import SafetensorsReader
from models.loading.torch_reader import open_torch


def open_checkpoint(path: PathLike) -> CheckpointReader:
    """Open a checkpoint for listing and per-tensor reads; raises :class:`CheckpointError`."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: no such file; download it with `page4d weights fetch` or fix the path")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory; pass the checkpoint file inside it")
    kind = _sniff(path)
    if kind == "safetensors":
        return SafetensorsReader(path)
    return open_torch(path, zipped=(kind == "torch-zip"))


def _sniff(path: Path) -> str:
    """'safetensors', 'torch-zip' or 'torch-legacy', from the first bytes of the file."""
    with open(path, "rb") as f:
        head = f.read(9)
    if head[:4] == b"PK\x03\x04":
        return "torch-zip"
    # Before the pickle test: a header length whose low byte is 0x80 would look like a pickle.
    if len(head) == 9 and head[8:9] == b"{":
        return "safetensors"
    if head[:1] == b"\x80":  # pickle protocol opcode: torch's pre-1.6 format
        return "torch-legacy"
    if len(head) < 9 and path.suffix == ".safetensors":
        return "safetensors"  # so the header reader reports the truncation
    if head[:2] == b"PK" or path.suffix in (".pt", ".pth", ".bin", ".ckpt"):
        return "torch-zip"  # let the zip reader name what is wrong
    raise CheckpointError(
        f"{path}: not a checkpoint page4d can read (neither safetensors nor a torch zip file); "
        f"pass a .safetensors or .pt file"
    )
