"""File size and bits per weight of a GGUF, read from its tensor table."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class GgufSize:
    file_bytes: int
    n_params: int  # elements over all tensors
    tensor_bytes: int

    @property
    def bits_per_weight(self) -> float:
        """Tensor data bits per element; the header and metadata are not counted."""
        return 8.0 * self.tensor_bytes / self.n_params


def gguf_size(path: "str | Path") -> GgufSize:
    from gguf import GGUFReader

    reader = GGUFReader(str(path))
    n_params = sum(int(t.n_elements) for t in reader.tensors)
    tensor_bytes = sum(int(t.n_bytes) for t in reader.tensors)
    return GgufSize(file_bytes=os.path.getsize(path), n_params=n_params, tensor_bytes=tensor_bytes)
