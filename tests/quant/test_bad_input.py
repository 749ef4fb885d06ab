"""Bad input to the converter: every case ends in one clear error naming the file (and the
tensor or key), `dsq quantize` prints one line and exits 1, and the output directory holds
no GGUF and no `.dsq-partial-*` directory afterwards.

Inputs are real files written here: a small tiny DeepSeek-V3 (quant.tiny) with one thing
broken, hand-built safetensors headers, hand-built GGUF bytes (tests/quant/gguf_bytes.py).
"""
from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from dsq.cli import main as dsq_main
from quant.convert import ConversionError, convert
from quant.gguf_file import GGUFFormatError, check_gguf, open_gguf
from quant.imatrix import ImatrixError, load_imatrix, save_gguf, save_legacy
from quant.sources import GGUFSource, HFSource, SourceError, open_source
from quant.tiny import TinySpec, make_tiny
from tests.quant import gguf_bytes as gb

SPEC = TinySpec(
    vocab_size=384, hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_hidden_layers=2,
    first_k_dense_replace=1, num_attention_heads=2, q_lora_rank=32, kv_lora_rank=32, qk_nope_head_dim=32,
    qk_rope_head_dim=32, v_head_dim=32, n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1,
    n_merges=100,
)
SHARD = "model-00001-of-00001.safetensors"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("bad-input") / "tiny", SPEC)


@pytest.fixture(scope="module")
def tiny_fp8(tmp_path_factory) -> Path:
    return make_tiny(tmp_path_factory.mktemp("bad-input") / "tiny-fp8", SPEC, fp8=True)


@pytest.fixture(scope="module")
def tiny_f32_gguf(tiny, tmp_path_factory) -> Path:
    return convert(tiny, tmp_path_factory.mktemp("bad-input-gguf"), "F32", name="tiny-F32", stats=False).files[0].path


def copy_model(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


def quantize(capsys, src: Path, out: Path, *args: str) -> str:
    """Run `dsq quantize` and return its stderr, asserting exit 1, one line, no traceback, nothing written."""
    capsys.readouterr()
    rc = dsq_main(["quantize", str(src), "--recipe", "Q8_0", "--out", str(out), "--device", "cpu", *args])
    err = capsys.readouterr().err
    assert rc == 1, err
    lines = [line for line in err.splitlines() if line.startswith("dsq quantize:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert_nothing_written(out)
    return lines[0]


def assert_nothing_written(out: Path) -> None:
    if out.exists():
        left = [p.name for p in out.iterdir() if p.name.startswith(".dsq-partial-") or p.suffix == ".gguf"]
        assert left == [], left


# -- safetensors -----------------------------------------------------------------------------------


def safetensors_bytes(header: dict, data: bytes) -> bytes:
    raw = json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + data


def _good() -> bytes:
    return safetensors_bytes({"a": {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 32]},
                              "b": {"dtype": "BF16", "shape": [4], "data_offsets": [32, 40]}}, bytes(40))


def _entry(**meta) -> bytes:
    base = {"dtype": "F32", "shape": [2, 4], "data_offsets": [0, 32]}
    base.update(meta)
    return safetensors_bytes({"a": base}, bytes(64))


BAD_SAFETENSORS = {
    "cut in the length": (lambda: _good()[:5], "not a safetensors file"),
    "cut in the header": (lambda: _good()[:30], "longer than the file"),
    "cut in the data": (lambda: _good()[:-3], "outside the 37 data bytes"),
    "corrupt json": (lambda: _good()[:8] + b"{" * (len(_good()) - 8), "not valid JSON"),
    "not utf-8": (lambda: struct.pack("<Q", 4) + b"\xff\xfe{}", "not valid JSON"),
    "json list": (lambda: safetensors_bytes([1, 2], b""), "not a JSON object"),  # type: ignore[arg-type]
    "absurd header length": (lambda: struct.pack("<Q", 1 << 62) + b"{}", "implausible safetensors header size"),
    "header length past the end": (lambda: struct.pack("<Q", 1000) + b"{}", "longer than the file"),
    "overlapping": (lambda: safetensors_bytes({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]},
                                               "b": {"dtype": "F32", "shape": [4], "data_offsets": [8, 24]}}, bytes(32)),
                    "overlap"),
    "out of bounds": (lambda: _entry(data_offsets=[64, 96]), "outside the 64 data bytes"),
    "end before begin": (lambda: _entry(data_offsets=[32, 0]), "outside"),
    "negative offset": (lambda: _entry(data_offsets=[-32, 0]), "expected [begin, end]"),
    "size not shape x dtype": (lambda: _entry(data_offsets=[0, 16]), "needs 32"),
    "unknown dtype": (lambda: _entry(dtype="F4"), "unsupported dtype 'F4'"),
    "negative dim": (lambda: _entry(shape=[-2, -4]), "dims must be integers >= 1"),
    "zero dim": (lambda: _entry(shape=[0, 4], data_offsets=[0, 0]), "dims must be integers >= 1"),
    "float dim": (lambda: _entry(shape=[2.0, 4]), "dims must be integers >= 1"),
    "huge dims": (lambda: _entry(shape=[1 << 62, 1 << 62]), "needs 85070591730234615865843651857942052864"),
    "no data_offsets": (lambda: safetensors_bytes({"a": {"dtype": "F32", "shape": [1]}}, bytes(4)), "lacks"),
}


@pytest.mark.parametrize("case", list(BAD_SAFETENSORS))
def test_a_bad_safetensors_file_is_a_source_error_naming_it(case, tiny, tmp_path, capsys):
    make, message = BAD_SAFETENSORS[case]
    model = copy_model(tiny, tmp_path / "m")
    (model / SHARD).write_bytes(make())
    with pytest.raises(SourceError, match="model-00001-of-00001.safetensors") as e:
        HFSource(model)
    assert message in str(e.value)
    assert message in quantize(capsys, model, tmp_path / "out")


def test_the_checked_header_still_reads_a_real_checkpoint(tiny):
    src = HFSource(tiny)
    assert len(src.names()) > 30
    assert torch.isfinite(src.read("model.embed_tokens.weight")).all()


def test_an_index_naming_files_outside_the_model_directory_is_refused(tiny, tmp_path, capsys):
    model = copy_model(tiny, tmp_path / "m")
    (tmp_path / "other.safetensors").write_bytes((model / SHARD).read_bytes())
    index = json.loads((model / "model.safetensors.index.json").read_text())
    index["weight_map"] = {k: "../other.safetensors" for k in index["weight_map"]}
    (model / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(SourceError, match="plain file names"):
        HFSource(model)
    assert "plain file names" in quantize(capsys, model, tmp_path / "out")


def test_a_corrupt_config_is_a_source_error(tiny, tmp_path, capsys):
    model = copy_model(tiny, tmp_path / "m")
    (model / "config.json").write_text('{"model_type": ')
    assert "config.json: not valid JSON" in quantize(capsys, model, tmp_path / "out")


# -- config.json -------------------------------------------------------------------------------------


@pytest.mark.parametrize("config", [
    {"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"]},
    {"model_type": "mixtral", "architectures": ["MixtralForCausalLM"]},
    {"model_type": "deepseek_v3", "architectures": []},
])
def test_an_unsupported_architecture_is_named(config, tiny, tmp_path, capsys):
    model = copy_model(tiny, tmp_path / "m")
    cfg = json.loads((model / "config.json").read_text()) | config
    (model / "config.json").write_text(json.dumps(cfg))
    line = quantize(capsys, model, tmp_path / "out")
    assert "config.json: unsupported architecture" in line and repr(config["model_type"]) in line


@pytest.mark.parametrize("key", ["num_hidden_layers", "hidden_size", "num_attention_heads", "vocab_size",
                                 "qk_rope_head_dim", "qk_nope_head_dim", "kv_lora_rank"])
def test_a_missing_config_key_is_named(key, tiny, tmp_path, capsys):
    model = copy_model(tiny, tmp_path / "m")
    cfg = json.loads((model / "config.json").read_text())
    del cfg[key]
    (model / "config.json").write_text(json.dumps(cfg))
    line = quantize(capsys, model, tmp_path / "out")
    assert f"no {key!r} in config.json" in line


# -- weights that are not finite ------------------------------------------------------------------


def _poison(model: Path, name: str, index: tuple, value: float) -> None:
    tensors = load_file(str(model / SHARD))
    t = tensors[name].clone()
    t[index] = value
    tensors[name] = t
    save_file(tensors, str(model / SHARD), metadata={"format": "pt"})


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_a_non_finite_expert_weight_names_gguf_and_source_tensor(value, tiny, tmp_path, capsys):
    model = copy_model(tiny, tmp_path / "m")
    _poison(model, "model.layers.1.mlp.experts.2.down_proj.weight", (3, 5), value)
    out = tmp_path / "out"
    with pytest.raises(ConversionError) as e:
        convert(model, out, "Q8_0", stats=False)
    msg = str(e.value)
    assert "blk.1.ffn_down_exps.weight" in msg and "expert 2" in msg and "NaN or Inf" in msg
    assert f"model.layers.1.mlp.experts.2.down_proj.weight in {SHARD}" in msg
    assert_nothing_written(out)
    assert "blk.1.ffn_down_exps.weight" in quantize(capsys, model, out)


@pytest.mark.parametrize("recipe", ["F32", "F16", "BF16"])
def test_float_pass_through_refuses_nan_too(recipe, tiny, tmp_path):
    model = copy_model(tiny, tmp_path / "m")
    _poison(model, "model.layers.0.self_attn.q_a_proj.weight", (0, 0), float("nan"))
    with pytest.raises(ConversionError, match=r"blk\.0\.attn_q_a\.weight \(from model\.layers\.0\.self_attn\.q_a_proj"):
        convert(model, tmp_path / "out", recipe, stats=False)
    assert_nothing_written(tmp_path / "out")


def test_a_finite_value_that_overflows_f16_is_an_error(tiny, tmp_path, capsys):
    model = copy_model(tiny, tmp_path / "m")
    _poison(model, "model.layers.0.self_attn.q_a_proj.weight", (1, 1), 1e6)  # fine in BF16, inf in F16
    line = quantize(capsys, model, tmp_path / "out", "--recipe", "F16")
    assert "blk.0.attn_q_a.weight" in line and "overflows float16" in line
    convert(model, tmp_path / "bf16", "BF16", stats=False)  # the same value is fine in BF16


def test_a_gguf_source_with_inf_is_refused_when_copied(tiny_f32_gguf, tmp_path, capsys):
    bad = tmp_path / "bad-F32.gguf"
    shutil.copy(tiny_f32_gguf, bad)
    offset, _ = check_gguf(bad).tensors["blk.0.attn_q_a.weight"]
    with open(bad, "r+b") as f:
        f.seek(offset + 4 * 7)
        f.write(np.float32(np.inf).tobytes())
    with pytest.raises(ConversionError, match=r"blk\.0\.attn_q_a\.weight .*bad-F32\.gguf.*NaN or Inf"):
        convert(bad, tmp_path / "out", "F32", stats=False)  # F32 -> F32: the bytes are copied
    assert_nothing_written(tmp_path / "out")
    assert "blk.0.attn_q_a.weight" in quantize(capsys, bad, tmp_path / "out")  # F32 -> Q8_0


# -- FP8 scales ------------------------------------------------------------------------------------------


W_FP8 = "model.layers.0.self_attn.q_a_proj.weight"


def test_an_fp8_scale_of_the_wrong_shape_is_refused_before_anything_is_written(tiny_fp8, tmp_path, capsys):
    model = copy_model(tiny_fp8, tmp_path / "m")
    tensors = load_file(str(model / SHARD))
    assert tuple(tensors[W_FP8 + "_scale_inv"].shape) == (1, 1)
    tensors[W_FP8 + "_scale_inv"] = torch.ones(2, 1)
    save_file(tensors, str(model / SHARD))
    with pytest.raises(SourceError, match=r"q_a_proj\.weight_scale_inv is F32 \[2, 1\], expected a float \[1, 1\]"):
        HFSource(model)
    assert "weight_scale_inv" in quantize(capsys, model, tmp_path / "out")


def test_an_fp8_weight_without_its_scale_is_refused(tiny_fp8, tmp_path, capsys):
    model = copy_model(tiny_fp8, tmp_path / "m")
    tensors = load_file(str(model / SHARD))
    del tensors[W_FP8 + "_scale_inv"]
    save_file(tensors, str(model / SHARD))
    line = quantize(capsys, model, tmp_path / "out")
    assert f"{SHARD}: {W_FP8} is FP8 but has no {W_FP8}_scale_inv" in line


# -- malicious GGUF ------------------------------------------------------------------------------------------

_A = gb.tensor_info("a.weight", (8, 2))
_KV = [gb.kv_string("general.architecture", "llama")]
BIG = 1 << 62

BAD_GGUF = {
    "empty": (b"", "too short"),
    "bad magic": (gb.gguf_file(_KV, [_A], bytes(64), magic=0x12345678), "bad magic"),
    "version 1": (gb.gguf_file(_KV, [_A], bytes(64), version=1), "unsupported GGUF version 1"),
    "version 99": (gb.gguf_file(_KV, [_A], bytes(64), version=99), "unsupported GGUF version 99"),
    "big-endian": (gb.gguf_file(_KV, [_A], bytes(64), version=3 << 24), "big-endian"),
    "2**62 tensors": (gb.gguf_file(_KV, [_A], bytes(64), n_tensors=BIG), f"claims {BIG} tensors"),
    "2**62 key/values": (gb.gguf_file(_KV, [_A], bytes(64), n_kv=BIG), f"{BIG} key/values"),
    "key longer than the file": (gb.gguf_file([struct.pack("<Q", BIG) + b"x"], [], b""), "key 0 needs"),
    "string value longer than the file": (
        gb.gguf_file([gb.string("k") + struct.pack("<IQ", gb.STRING, 1 << 40)], [], b""), "value of 'k'"),
    "string array longer than the file": (
        gb.gguf_file([gb.string("k") + struct.pack("<IIQ", gb.ARRAY, gb.STRING, BIG)], [], b""), f"claims {BIG} elements"),
    "uint8 array longer than the file": (
        gb.gguf_file([gb.string("k") + struct.pack("<IIQ", gb.ARRAY, 0, 1 << 40)], [], b""), "elements"),
    "a string of the array past the end": (
        gb.gguf_file([gb.string("k") + struct.pack("<IIQ", gb.ARRAY, gb.STRING, 2) + gb.string("a")
                      + struct.pack("<Q", 1 << 30)], [], b""), "value of 'k'[1]"),
    "string value not utf-8": (gb.gguf_file([gb.string("k") + struct.pack("<I", gb.STRING) + gb.string(b"\x80lama")], [], b""),
                               "value of 'k' at offset 45 is not UTF-8"),
    "unknown value type": (gb.gguf_file([gb.string("k") + struct.pack("<I", 99) + bytes(8)], [], b""), "unknown value type 99"),
    "nested array": (gb.gguf_file([gb.string("k") + struct.pack("<IIQ", gb.ARRAY, gb.ARRAY, 0)], [], b""), "nested"),
    "duplicate key": (gb.gguf_file(_KV + _KV, [], b""), "duplicate key"),
    "alignment 0": (gb.gguf_file([gb.kv_u32("general.alignment", 0)], [], b""), "power of two"),
    "alignment 48": (gb.gguf_file([gb.kv_u32("general.alignment", 48)], [], b""), "power of two"),
    "tensor past the end": (gb.gguf_file(_KV, [gb.tensor_info("a.weight", (8, 2), offset=64)], bytes(64)), "beyond the end"),
    "tensor partly past the end": (gb.gguf_file(_KV, [_A], bytes(40)), "beyond the end"),
    "offset 2**63": (gb.gguf_file(_KV, [gb.tensor_info("a.weight", (8, 2), offset=1 << 63)], bytes(64)), "beyond the end"),
    "misaligned offset": (gb.gguf_file(_KV, [gb.tensor_info("a.weight", (8,), offset=4)], bytes(64)), "not aligned"),
    "overlapping tensors": (
        gb.gguf_file(_KV, [_A, gb.tensor_info("b.weight", (8,), offset=32)], bytes(96)), "overlaps"),
    "dims overflow": (gb.gguf_file(_KV, [gb.tensor_info("a.weight", (1 << 40, 1 << 40))], bytes(64)), "product at most"),
    "zero dim": (gb.gguf_file(_KV, [gb.tensor_info("a.weight", (8, 0))], bytes(64)), "at least 1"),
    "five dims": (gb.gguf_file(_KV, [gb.tensor_info("a.weight", (1, 1, 1, 1, 1))], bytes(64)), "5 dims"),
    "unknown tensor type": (gb.gguf_file(_KV, [gb.tensor_info("a.weight", (8,), ggml_type=1000)], bytes(64)), "unknown type 1000"),
    "row not a whole block": (gb.gguf_file(_KV, [gb.tensor_info("a.weight", (33,), ggml_type=8)], bytes(64)), "block of 32"),
    "duplicate tensor": (gb.gguf_file(_KV, [_A, gb.tensor_info("a.weight", (8,), offset=64)], bytes(96)), "duplicate tensor"),
    "NUL in a tensor name": (gb.gguf_file(_KV, [gb.tensor_info(b"a\0/../x", (8,))], bytes(32)), "control characters"),
    "newline in a key": (gb.gguf_file([gb.kv_string("general.\narchitecture", "llama")], [], b""), "control characters"),
    "tensor name not utf-8": (gb.gguf_file(_KV, [gb.tensor_info(b"\xff\xfe", (8,))], bytes(32)), "not UTF-8"),
    "tensor name of 64 bytes": (gb.gguf_file(_KV, [gb.tensor_info("w" * 64, (8,))], bytes(32)), "at most 63"),
}


@pytest.mark.parametrize("case", list(BAD_GGUF))
def test_a_malformed_gguf_is_refused_by_every_reader(case, tmp_path):
    data, message = BAD_GGUF[case]
    path = tmp_path / "bad.gguf"
    path.write_bytes(data)
    for opener, error in ((open_gguf, GGUFFormatError), (GGUFSource, SourceError), (load_imatrix, ImatrixError)):
        with pytest.raises(error, match="bad.gguf") as e:
            opener(path)
        if opener is load_imatrix and case in ("empty", "bad magic"):
            continue  # without the GGUF magic it is read as a legacy .dat imatrix, refused as that
        assert message in str(e.value), (opener, str(e.value))


def test_the_hand_built_gguf_is_valid(tmp_path):
    """The cases above differ from this file in one field each, so it must read back."""
    path = tmp_path / "ok.gguf"
    path.write_bytes(gb.valid_gguf())
    src = GGUFSource(path)
    assert src.arch == "llama" and src.shape("blk.0.attn_q.weight") == (2, 8)
    assert torch.equal(src.read("blk.0.attn_q.weight").reshape(-1), torch.arange(16, dtype=torch.float32))


def test_a_bad_gguf_source_through_the_command(tmp_path, capsys):
    path = tmp_path / "bad.gguf"
    path.write_bytes(BAD_GGUF["2**62 tensors"][0])
    assert "claims" in quantize(capsys, path, tmp_path / "out")


def test_absurd_counts_fail_fast_in_bounded_memory(tmp_path):
    """Under a 1 GiB address-space limit and a time limit: a reader that trusted the counts
    would run out of memory or loop for ever; the checked one refuses each file at once."""
    paths = []
    for case in ("2**62 tensors", "2**62 key/values", "string array longer than the file",
                 "uint8 array longer than the file", "dims overflow", "key longer than the file"):
        p = tmp_path / f"{len(paths)}.gguf"
        p.write_bytes(BAD_GGUF[case][0])
        paths.append(str(p))
    script = (
        "import resource, sys\n"
        "resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
        "from quant.gguf_file import GGUFFormatError, open_gguf\n"
        "for p in sys.argv[1:]:\n"
        "    try:\n"
        "        open_gguf(p)\n"
        "    except GGUFFormatError:\n"
        "        print('refused', p)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, *paths], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[2])
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("refused") == len(paths), done.stdout + done.stderr


# -- names and paths ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escaped", "sub/dir", "/tmp/abs", ".hidden", "a\nb", "..", "back\\slash"])
def test_an_output_name_cannot_leave_the_output_directory(name, tiny, tmp_path, capsys):
    out = tmp_path / "a" / "out"
    line = quantize(capsys, tiny, out, "--name", name)
    assert "must be a plain file name" in line
    assert not any(p.suffix == ".gguf" for p in tmp_path.rglob("*"))


def test_odd_tensor_names_in_a_gguf_source_stay_inside_the_tensor_cache(tmp_path):
    data = gb.gguf_file(
        [gb.kv_string("general.architecture", "llama")],
        [gb.tensor_info("../../escape.weight", (32, 2)), gb.tensor_info("a/b\\c.weight", (32,), offset=256)],
        np.ones(96, np.float32).tobytes() + bytes(32),
    )
    src = tmp_path / "src" / "odd.gguf"
    src.parent.mkdir()
    src.write_bytes(data)
    cache = tmp_path / "deep" / "cache"
    res = convert(src, tmp_path / "out", "Q8_0", stats=False, tensor_cache_dir=cache)
    assert [t.name for t in res.tensors] == ["../../escape.weight", "a/b\\c.weight"]
    everything = {p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()}
    cached = {p for p in everything if p.startswith("deep/cache/")}
    assert {p.count("/") for p in cached} == {2}  # all directly inside the cache directory
    assert everything - cached == {"src/odd.gguf", "out/odd-Q8_0.gguf"}


def test_odd_tensor_names_in_safetensors_are_refused(tiny, tmp_path, capsys):
    model = copy_model(tiny, tmp_path / "m")
    tensors = load_file(str(model / SHARD))
    tensors["../../model.layers.0.x.weight"] = torch.zeros(2, 2)
    save_file(tensors, str(model / SHARD))
    assert "../../model.layers.0.x.weight" in quantize(capsys, model, tmp_path / "out")


# -- importance matrices ---------------------------------------------------------------------------------------


def _legacy(path: Path, n: int = 64) -> Path:
    save_legacy(path, {"blk.0.attn_q_a.weight": (2, np.ones(n, np.float32))}, chunk_count=3, dataset="d.txt")
    return path


@pytest.mark.parametrize("cut", [2, 9, 30, -7])
def test_a_truncated_legacy_imatrix_is_an_imatrix_error(cut, tmp_path):
    data = _legacy(tmp_path / "ok.dat").read_bytes()
    # -7: inside the dataset tail, which is optional; the entries are whole
    bad = tmp_path / "cut.dat"
    bad.write_bytes(data[:cut])
    if cut < 0:
        assert load_imatrix(bad).data.sizes == {"blk.0.attn_q_a.weight": 64}
        return
    with pytest.raises(ImatrixError, match="cut.dat"):
        load_imatrix(bad)


@pytest.mark.parametrize("patch", [
    struct.pack("<ii", 1 << 30, 4),  # 2**30 entries
    struct.pack("<ii", 1, -5),  # negative name length
    struct.pack("<ii", 1, 1 << 30),  # name longer than the file
])
def test_lying_legacy_counts_are_imatrix_errors(patch, tmp_path):
    data = bytearray(_legacy(tmp_path / "ok.dat").read_bytes())
    data[:8] = patch
    (tmp_path / "bad.dat").write_bytes(bytes(data))
    with pytest.raises(ImatrixError, match="bad.dat"):
        load_imatrix(tmp_path / "bad.dat")


def test_an_imatrix_of_the_wrong_size_fails_at_plan_time(tiny, tmp_path, capsys):
    """Expert count mismatch: an imatrix for 8 experts given to a 4-expert model."""
    im = tmp_path / "im.gguf"
    save_gguf(im, {"blk.1.ffn_down_exps.weight": (np.ones((8, 32), np.float32), np.ones(8, np.float32))}, ["d"], 1, 8)
    line = quantize(capsys, tiny, tmp_path / "out", "--imatrix", str(im))
    assert "im.gguf" in line and "blk.1.ffn_down_exps.weight" in line and "imatrix size 256 is different from tensor size 128" in line


@pytest.mark.parametrize("bad", ["nan sums", "nan counts", "negative counts", "counts of another shape"])
def test_bad_gguf_imatrix_values_are_refused(bad, tmp_path):
    sums, counts = np.ones((4, 32), np.float32), np.ones(4, np.float32)
    if bad == "nan sums":
        sums[2, 3] = np.nan
    elif bad == "nan counts":
        counts[1] = np.nan
    elif bad == "negative counts":
        counts[1] = -3
    path = tmp_path / "im.gguf"
    save_gguf(path, {"blk.1.ffn_down_exps.weight": (sums, counts)}, ["d"], 1, 8)
    if bad == "counts of another shape":
        import gguf

        w = gguf.GGUFWriter(str(path), arch="imatrix")
        w.add_array("imatrix.datasets", ["d"])
        w.add_uint32("imatrix.chunk_count", 1)
        w.add_uint32("imatrix.chunk_size", 8)
        w.add_tensor("x.weight.in_sum2", sums)
        w.add_tensor("x.weight.counts", np.ones((3, 1), np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    with pytest.raises(ImatrixError, match="im.gguf"):
        load_imatrix(path)


def test_a_truncated_gguf_imatrix_is_an_imatrix_error(tmp_path):
    path = tmp_path / "im.gguf"
    save_gguf(path, {"blk.1.ffn_down_exps.weight": (np.ones((4, 32), np.float32), np.ones(4, np.float32))}, ["d"], 1, 8)
    data = path.read_bytes()
    for cut in (10, 100, len(data) - 20):
        path.write_bytes(data[:cut])
        with pytest.raises(ImatrixError, match="im.gguf"):
            load_imatrix(path)


def test_open_source_refuses_other_things(tmp_path):
    (tmp_path / "x.bin").write_bytes(b"")
    with pytest.raises(SourceError, match="expected a Hugging Face model directory"):
        open_source(tmp_path / "x.bin")
    with pytest.raises(SourceError, match="no config.json"):
        open_source(tmp_path)
