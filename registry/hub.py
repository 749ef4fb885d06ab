"""How dsq names things on the Hugging Face Hub: the one place publishing, pulls and the model card read.

One repo per base model, `<namespace>/<checkpoint>-GGUF`; one tag per release, `<QUANT>-v<N>`, on
the commit that published it; one folder per quant holding its GGUF file(s), named so that
`llama-server -hf REPO:QUANT` loads that quant's file:

- llama.cpp's own mixes (the names `llama-quantize` knows: Q4_K_M, Q3_K_M, Q8_0, F16…) live in
  `<QUANT>/<checkpoint>-<QUANT>.gguf`;
- dsq's own mixes (DQ3_K_M, DQ3_K_M-dense, any recipe llama.cpp does not name) live in
  `dynamic/<QUANT>/<checkpoint>-<QUANT>.gguf`;
- a split variant keeps llama.cpp's shard names, `…-<QUANT>-00001-of-0000N.gguf`.

Why: llama.cpp (common/download.cpp) lists the repo's tree and takes the *first* `.gguf` whose
path contains QUANT followed by `.` or `-`, ignoring case, skipping shards other than 00001.
A file of DQ3_K_M necessarily contains "Q3_K_M." too, so no name can keep `-hf REPO:Q3_K_M` off
it: only the order can. The Hub lists a tree in git's order (bytes, depth first), where every
upper-case quant folder comes before lower-case `dynamic/`, so Q3_K_M's own file is met first.
`llama_cpp_choice` states that rule, and publishing refuses a release that would break it.
"""
from __future__ import annotations

import re

import gguf
from django.conf import settings

# Every mix llama.cpp names (llama_ftype LLAMA_FTYPE_MOSTLY_<NAME>, plus F32).
LLAMA_CPP_MIXES = frozenset({"F32"} | {n.removeprefix("MOSTLY_") for n in gguf.LlamaFileType.__members__
                                       if n.startswith("MOSTLY_")})
DYNAMIC_FOLDER = "dynamic"
SHARD = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
SIDECARS = ("mmproj", "imatrix", "mtp-", "eagle3-", "dflash-", "dspark-")  # files llama.cpp never loads as the model


def repo_id(checkpoint) -> str:
    """The repo a checkpoint's quants are published to."""
    return f"{settings.DSQ_HUB_NAMESPACE}/{checkpoint.name}-GGUF"


def quant_folder(quant: str) -> str:
    """The folder a quant's files live in (see the module docstring for why)."""
    return quant if quant in LLAMA_CPP_MIXES else f"{DYNAMIC_FOLDER}/{quant}"


def path_in_repo(variant, name: str) -> str:
    """Where a variant's file lives in its repo: its quant's folder."""
    return f"{quant_folder(variant.quant_name)}/{name}"


def published_path(release, name: str) -> str:
    """Where a published release's file is: the folder recorded when it was published (releases
    published before the `dynamic/` layout keep `<QUANT>/`), else today's layout."""
    folder = release.hub_folder or quant_folder(release.variant.quant_name)
    return f"{folder}/{name}"


def hub_order(paths) -> list[tuple[str, bool]]:
    """Every folder and file under `paths` as (path, is_folder), in the order the Hub lists a tree
    recursively: git's, depth first, names compared as bytes with a folder's name read as "name/"."""
    root: dict = {}
    for p in paths:
        node = root
        *folders, name = p.split("/")
        for f in folders:
            node = node.setdefault(f, {})
        node[name] = None

    def visit(node: dict, prefix: str):
        for name in sorted(node, key=lambda n: (n + "/" if node[n] is not None else n).encode()):
            if node[name] is None:
                yield prefix + name, False
            else:
                yield prefix + name, True
                yield from visit(node[name], prefix + name + "/")

    return list(visit(root, ""))


def quant_of_path(path: str) -> "str | None":
    """The quant a GGUF at `path` belongs to in dsq's layout (None for anything else)."""
    parts = path.split("/")
    if not path.endswith(".gguf") or len(parts) < 2:
        return None
    if len(parts) == 3 and parts[0] == DYNAMIC_FOLDER:
        return parts[1]
    return parts[0] if len(parts) == 2 else None


def llama_cpp_choice(paths: list[str], quant: str) -> "str | None":
    """The file `llama-server -hf REPO:QUANT` loads from a tree listed in `paths`' order: the first
    GGUF (not a sidecar) whose path holds QUANT then `.` or `-`, any case, that is not a later shard."""
    pattern = re.compile(re.escape(quant) + r"[.-]", re.IGNORECASE)
    for path in paths:
        name = path.rsplit("/", 1)[-1]
        if not path.endswith(".gguf") or any(s in name for s in SIDECARS) or not pattern.search(path):
            continue
        shard = SHARD.search(path)
        if shard and int(shard.group(1)) != 1 and int(shard.group(2)) > 1:
            continue
        return path
    return None


def llama_cpp_clashes(paths: list[str]) -> list[str]:
    """For each quant in a repo holding `paths` whose `-hf REPO:QUANT` would load a file that is not
    its own, a sentence saying which (the listing is put in the Hub's order first)."""
    listing = [p for p, folder in hub_order(paths) if not folder]
    own: dict[str, list[str]] = {}
    for p in listing:
        if (quant := quant_of_path(p)) is not None:
            own.setdefault(quant, []).append(p)
    clashes = []
    for quant, files in sorted(own.items()):
        chosen = llama_cpp_choice(listing, quant)
        if chosen not in files:
            clashes.append(f"`llama-server -hf REPO:{quant}` would load {chosen or 'nothing'}, not {files[0]}")
    return clashes


def tag(release) -> str:
    """The Hub tag of a release: the quant and the release's version."""
    return f"{release.variant.quant_name}-v{release.version}"


def public_url() -> str:
    """The Hub address clients are sent to: DSQ_HUB_PUBLIC_URL, else HF_ENDPOINT; "" means none.

    HF_ENDPOINT is where the workers publish, which may be an address only the servers know."""
    value = settings.DSQ_HUB_PUBLIC_URL
    return (settings.HF_ENDPOINT if value is None else value).rstrip("/")


def file_url(repo: str, commit: str, path: str, base: "str | None" = None) -> str:
    """A file at a pinned commit (what a pull downloads), on the Hub at `base` (default HF_ENDPOINT)."""
    return f"{(settings.HF_ENDPOINT if base is None else base).rstrip('/')}/{repo}/resolve/{commit}/{path}"


def quant_ref(repo: str, quant: str) -> str:
    """`REPO:QUANT`, as `llama-server -hf` and `ollama run hf.co/…` take it."""
    return f"{repo}:{quant}"
