"""llama.cpp as the yardstick: llama_model_quantize through llama-cpp-python, and GGUF tensor reads."""
from __future__ import annotations

import ctypes
from pathlib import Path

import gguf
import numpy as np


def llama_quantize(src: Path, dst: Path, recipe: str, imatrix: "dict[str, np.ndarray] | None" = None) -> Path:
    """llama_model_quantize(src -> dst) with the llama_ftype named like the recipe.

    imatrix: GGUF tensor name -> float32 values, as llama-quantize passes them after
    loading an imatrix file (already divided by the counts)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(gguf.LlamaFileType[f"MOSTLY_{recipe}"])
    params.nthread = 2
    keep = []
    if imatrix is not None:
        arr = (llama_cpp.llama_model_imatrix_data * (len(imatrix) + 1))()
        for i, (name, values) in enumerate(imatrix.items()):
            v = np.ascontiguousarray(values, dtype=np.float32)
            keep.append(v)
            arr[i].name = name.encode()
            arr[i].data = v.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
            arr[i].size = v.size
        arr[len(imatrix)].name = None
        keep.append(arr)
        params.imatrix = ctypes.cast(arr, ctypes.POINTER(llama_cpp.llama_model_imatrix_data))
    rc = llama_cpp.llama_model_quantize(str(src).encode(), str(dst).encode(), ctypes.byref(params))
    assert rc == 0, f"llama_model_quantize returned {rc}"
    return dst


def tensors(path: Path) -> dict[str, tuple[str, tuple[int, ...], bytes]]:
    """name -> (GGML type, PyTorch-order shape, data bytes) of every tensor in a GGUF file."""
    r = gguf.GGUFReader(path)
    return {
        t.name: (t.tensor_type.name, tuple(int(d) for d in reversed(t.shape.tolist())), t.data.tobytes())
        for t in r.tensors
    }


def mismatches(ours: Path, theirs: Path) -> list[str]:
    """Tensors whose type or bytes differ (or that only one file has), described."""
    a, b = tensors(ours), tensors(theirs)
    out = [f"{n}: only in {'ours' if n in a else 'theirs'}" for n in sorted(set(a) ^ set(b))]
    for n in sorted(set(a) & set(b)):
        (ta, sa, da), (tb, sb, db) = a[n], b[n]
        if ta != tb or sa != sb:
            out.append(f"{n}: ours {ta} {sa}, llama.cpp {tb} {sb}")
        elif da != db:
            diff = np.flatnonzero(np.frombuffer(da, np.uint8) != np.frombuffer(db, np.uint8))
            out.append(f"{n} ({ta}): {diff.size} bytes differ, first at byte {diff[0]}")
    return out


def field(path: Path, key: str):
    f = gguf.GGUFReader(path).fields.get(key)
    return None if f is None else f.contents()
