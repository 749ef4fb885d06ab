"""dsq's Hub layout makes real clients get the right files: llama.cpp's `llama-server -hf REPO:QUANT`
(built from the vendored source) loads each quant's own file from a repo holding Q3_K_M, DQ3_K_M
(split) and Q4_K_M side by side, and huggingface_hub's snapshot_download / list_repo_files see the
published releases, all against the Hub stand-in (dsq/localhub.py) after publishing through
workers.publish."""
from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_XET", "1")  # before huggingface_hub reads its constants

import pytest

from quant.builtin_recipes import RECIPES
from registry import hub

QUANTS = ("Q3_K_M", "DQ3_K_M", "Q4_K_M")
SPLIT = "DQ3_K_M"  # published as two shards
CHECKPOINT = "tiny-v3"
REPO = f"dsq-test/{CHECKPOINT}-GGUF"
TOKEN = "hf_test_hub_layout_0123456789abcdefghijk"


# -- the layout, as llama.cpp's rule reads it ----------------------------------------------------------

def layout(quants, shards: int = 1) -> list[str]:
    out = []
    for q in quants:
        names = ([f"m-{q}-{i:05d}-of-{shards:05d}.gguf" for i in range(1, shards + 1)] if shards > 1
                 else [f"m-{q}.gguf"])
        out += [f"{hub.quant_folder(q)}/{n}" for n in names]
    return out + ["README.md"]


def test_llama_cpps_mixes_keep_their_name_and_dsqs_own_go_under_dynamic():
    assert hub.quant_folder("Q3_K_M") == "Q3_K_M" and hub.quant_folder("F16") == "F16"
    assert hub.quant_folder("DQ3_K_M") == "dynamic/DQ3_K_M"
    assert hub.quant_folder("DQ3_K_M-dense") == "dynamic/DQ3_K_M-dense"


def test_the_old_layout_sent_q3_k_m_to_the_dq3_k_m_file():
    old = ["DQ3_K_M/m-DQ3_K_M.gguf", "Q3_K_M/m-Q3_K_M.gguf"]
    assert hub.llama_cpp_choice(old, "Q3_K_M") == "DQ3_K_M/m-DQ3_K_M.gguf"
    assert hub.llama_cpp_clashes(old)


@pytest.mark.parametrize("shards", [1, 3])
def test_every_quant_of_the_repo_finds_its_own_file_and_first_shard(shards):
    listing = [p for p, folder in hub.hub_order(layout(QUANTS, shards)) if not folder]
    for q in QUANTS:
        first = f"{hub.quant_folder(q)}/m-{q}" + ("-00001-of-00003.gguf" if shards > 1 else ".gguf")
        assert hub.llama_cpp_choice(listing, q) == first
        assert hub.llama_cpp_choice(listing, q.lower()) == first  # llama.cpp ignores case
    assert hub.llama_cpp_clashes(layout(QUANTS, shards)) == []


def test_only_two_pairs_of_built_in_recipes_cannot_share_a_repo():
    """A name that contains another (BF16 ⊃ F16; DQ3_K_M-dense ⊃ DQ3_K_M, and "-" sorts before "/") can
    only be kept apart by order, and these two pairs sort the wrong way: publishing refuses them
    (tests/workers/test_publish.py). Every other pair of built-in recipes shares a repo."""
    names = [r["name"] for r in RECIPES]
    clashing = {pair for pair in itertools.combinations(sorted(names), 2) if hub.llama_cpp_clashes(layout(pair))}
    assert clashing == {("BF16", "F16"), ("DQ3_K_M", "DQ3_K_M-dense")}


# -- the real clients against a published repo ---------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_quants(tmp_path_factory) -> dict[str, list[Path]]:
    """Q3_K_M, DQ3_K_M (two shards) and Q4_K_M GGUFs of one tiny DeepSeek-V3, made by dsq's converter."""
    from quant.convert import convert
    from quant.tiny import TinySpec, make_tiny

    root = tmp_path_factory.mktemp("hub-layout")
    spec = TinySpec(num_hidden_layers=2, n_routed_experts=4, num_experts_per_tok=2, n_group=2, topk_group=1,
                    vocab_size=512, n_merges=50, num_nextn_predict_layers=0)
    model = make_tiny(root / "model", spec)
    out = {}
    for q in QUANTS:
        result = convert(model, root / q, q, name=f"{CHECKPOINT}-{q}", shard_size=(1 << 20) if q == SPLIT else None,
                         stats=False)
        out[q] = [f.path for f in result.files]
    assert len(out[SPLIT]) == 2
    return out


@pytest.fixture
def published(tiny_quants, settings, django_user_model, monkeypatch):
    """The three quants released and published, one release each, to a fresh Hub stand-in."""
    import huggingface_hub.constants

    from dsq.localhub import HubServer
    from registry.models import ArtifactFile, Release, Variant
    from tests import factories
    from workers import publish

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_DISABLE_XET", True)
    user = django_user_model.objects.create_user("approver")
    ckpt = factories.checkpoint(CHECKPOINT, hf_repo="dsq-test/tiny-v3")
    with HubServer(token=TOKEN) as server:
        settings.HF_ENDPOINT, settings.HF_TOKEN, settings.DSQ_HUB_NAMESPACE = server.url, TOKEN, "dsq-test"
        files = {}
        for q in QUANTS:
            paths = tiny_quants[q]
            variant = Variant.objects.create(checkpoint=ckpt, recipe=factories.builtin_recipe(q),
                                             status=Variant.Status.READY, storage_path=str(paths[0].parent),
                                             total_bytes=sum(p.stat().st_size for p in paths), bits_per_weight=4.0)
            for p in paths:
                ArtifactFile.objects.create(variant=variant, name=p.name, size=p.stat().st_size,
                                            sha256=hashlib.sha256(p.read_bytes()).hexdigest())
            release = Release.objects.create(variant=variant, version=1, state=Release.State.APPROVED,
                                             requested_by=user, decided_by=user)
            publish.publish_release(release.pk)
            files[q] = {hub.path_in_repo(variant, p.name): p for p in paths}
        yield server, files


@pytest.mark.django_db
def test_list_repo_files_and_snapshot_download_by_tag_see_the_releases(published, tmp_path):
    from huggingface_hub import HfApi, snapshot_download

    server, files = published
    every = sorted(p for q in QUANTS for p in files[q])
    assert HfApi(endpoint=server.url, token=False).list_repo_files(REPO) == sorted(every + ["README.md"])
    # The first release's tag is the repo as it was then: Q3_K_M alone.
    folder = Path(snapshot_download(REPO, revision="Q3_K_M-v1", endpoint=server.url, cache_dir=tmp_path / "c"))
    got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert got == sorted([*files["Q3_K_M"], "README.md"])
    # One quant's folder, at its own tag, byte for byte.
    folder = Path(snapshot_download(REPO, revision=f"{SPLIT}-v1", endpoint=server.url, cache_dir=tmp_path / "c",
                                    allow_patterns=[f"{hub.quant_folder(SPLIT)}/*"]))
    for path, local in files[SPLIT].items():
        assert (folder / path).read_bytes() == local.read_bytes()


@pytest.mark.slow
@pytest.mark.django_db
@pytest.mark.parametrize("quant", QUANTS)
def test_llama_server_hf_loads_each_quants_own_file(published, llama_tools, quant, tmp_path):
    from dsq.llama_server import serve_from_hub

    server, files = published
    first = next(iter(files[quant]))  # shard 00001 for the split quant
    with serve_from_hub(llama_tools / "llama-server", f"{REPO}:{quant}", server.url, tmp_path / "cache",
                        tmp_path / "llama-server.log") as served:
        loaded = served.model_path
        assert loaded.as_posix().endswith(f"/{first}"), (loaded, served.props)
        assert loaded.read_bytes() == files[quant][first].read_bytes()
    # A split quant came down whole, next to its first shard; nothing of the other quants did.
    downloaded = sorted(p.relative_to(loaded.parents[len(Path(first).parts) - 1]).as_posix()
                        for p in (tmp_path / "cache").rglob("*.gguf"))
    assert downloaded == sorted(files[quant])
