"""llama.cpp as the yardstick: llama_model_quantize through llama-cpp-python, and GGUF tensor reads."""
from __future__ import annotations

import ctypes
from pathlib import Path

import gguf
import numpy as np


def llama_quantize(src: Path, dst: Path, recipe: str, imatrix: "dict[str, np.ndarray] | None" = None,
                   allow_requantize: bool = False) -> Path:
    """llama_model_quantize(src -> dst) with the llama_ftype named like the recipe.

    imatrix: GGUF tensor name -> float32 values, as llama-quantize passes them after
    loading an imatrix file (already divided by the counts)."""
    import llama_cpp

    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(gguf.LlamaFileType[f"MOSTLY_{recipe}"])
    params.nthread = 2
    params.allow_requantize = allow_requantize
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


# convert_hf_to_gguf.py, run from the llama.cpp tree vendored with the installed llama-cpp-python (the
# tree scripts/build-llama-tools.sh unpacks), with two test-only patches: the tiny tokenizers' pre-tokenizer
# hash is not in llama.cpp's table, so get_vocab_base_pre answers the name given; and DeepseekV32Model's
# set_vocab asserts transformers' add_bos_token, which transformers 5 no longer sets on a tokenizer
# loaded from tokenizer.json alone (tokenizer_config.json says true; gguf's SpecialVocab still writes it).
_CONVERT = """
import runpy, sys
root, pre = sys.argv[1], sys.argv[2]
sys.path.insert(0, root)
sys.argv = ["convert_hf_to_gguf.py"] + sys.argv[3:]
import conversion.base as base
import conversion.deepseek as deepseek
base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
deepseek.DeepseekV32Model.set_vocab = lambda self: self._set_vocab_gpt2()
runpy.run_path(root + "/convert_hf_to_gguf.py", run_name="__main__")
"""


def llama_cpp_source(llama_tools: Path) -> Path:
    """The vendored llama.cpp tree the tools in `llama_tools` (…/build-<version>-…/bin) were built from."""
    import importlib.metadata

    version = importlib.metadata.version("llama-cpp-python")
    root = llama_tools.parent.parent / "src" / f"llama_cpp_python-{version}" / "vendor" / "llama.cpp"
    assert (root / "convert_hf_to_gguf.py").is_file(), f"no convert_hf_to_gguf.py under {root}"
    return root


def convert_hf_to_gguf(llama_cpp: Path, model_dir: Path, out: Path, outtype: str = "f32",
                       tokenizer_pre: str = "deepseek-v3") -> Path:
    """llama.cpp's own converter: model_dir -> out (a GGUF of outtype)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-c", _CONVERT, str(llama_cpp), tokenizer_pre, str(model_dir),
           "--outtype", outtype, "--outfile", str(out)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"convert_hf_to_gguf.py failed:\n{res.stderr[-4000:]}"
    return out


def metadata(path: Path, skip: tuple[str, ...] = ("GGUF.", "general.", "dsq.")) -> dict:
    """The key/values of a GGUF file, those starting with `skip` left out."""
    return {k: f.contents() for k, f in gguf.GGUFReader(path).fields.items() if not k.startswith(skip)}


def assert_llama_cpp_runs(model_dir: Path, out_dir: Path, recipe: str = "MXFP4_MOE") -> None:
    """llama.cpp loads dsq's `recipe` file of the checkpoint at model_dir and gives finite, varied logits."""
    from quant.convert import convert
    from tests.tiny_models import llama_logits

    ours = convert(model_dir, out_dir, recipe, stats=False).files[0].path
    logits = llama_logits(ours, [1, 10, 20, 30, 40, 50, 60, 70])
    assert np.isfinite(logits).all() and logits.std() > 0.1


def assert_written_as_planned(model_dir: Path, out_dir: Path, recipe: str) -> None:
    """dsq's own mixes have no llama.cpp twin: what is written (names, types, shapes, bytes) is what the
    planner said for the checkpoint's config."""
    import json

    from quant.convert import convert
    from quant.planner import plan
    from quant.recipes import get_recipe

    cfg = json.loads((model_dir / "config.json").read_text())
    res = convert(model_dir, out_dir, recipe, stats=False)
    planned = {t.name: (t.type, t.shape, t.nbytes) for t in plan(cfg, get_recipe(recipe)).tensors}
    assert {n: (ty, shape, len(data)) for n, (ty, shape, data) in tensors(res.files[0].path).items()} == planned
