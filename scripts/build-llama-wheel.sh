#!/usr/bin/env bash
# Build llama-cpp-python (pinned in pyproject.toml) from source once per version and flag set, into a
# wheel cache outside the checkout; print the wheel's path. `make venv` installs that wheel.
#
# Why not let pip build it: pip caches the wheel it built by the sdist's URL, not by CMAKE_ARGS, so a
# wheel built once with other flags (AMX, CUDA) would be reused silently. Here the key is the version
# plus a hash of the flags.
#
# AMX is turned off: on CPUs with AMX (Sapphire Rapids and later Xeons) -march=native compiles
# ggml's AMX buffer type in, and loading a model then aborts in the scheduler
# (GGML_ASSERT(*cur_backend_id != -1), ggml-backend.cpp). Explicit -mno-amx-* win over -march=native.
# Env: PYTHON (default .venv/bin/python), DSQ_WHEEL_CACHE (default ~/.cache/dsq/wheels), JOBS (default 2).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
cache="${DSQ_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/dsq/wheels}"
version="$(grep -o 'llama-cpp-python==[0-9.]*' "$repo/pyproject.toml" | cut -d= -f3)"
export CMAKE_ARGS="-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DGGML_BLAS=OFF"
export CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
key="$(printf '%s|%s|%s' "$CMAKE_ARGS" "$CFLAGS" "$(uname -m)" | sha256sum | cut -c1-12)"
dir="$cache/llama-cpp-python-$version-$key"

wheel="$(ls "$dir"/llama_cpp_python-"$version"-*.whl 2>/dev/null | head -1 || true)"
if [[ -z "$wheel" ]]; then
  mkdir -p "$dir.tmp"
  CMAKE_BUILD_PARALLEL_LEVEL="${JOBS:-2}" "$python" -m pip wheel -q --no-deps --no-cache-dir \
    --no-binary llama-cpp-python -w "$dir.tmp" "llama-cpp-python==$version" >&2
  rm -rf "$dir" && mv "$dir.tmp" "$dir"
  wheel="$(ls "$dir"/llama_cpp_python-"$version"-*.whl | head -1)"
fi
echo "$wheel"
