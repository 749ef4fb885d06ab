#!/usr/bin/env bash
# Build llama.cpp's command-line tools (llama-perplexity, llama-imatrix, llama-quantize, llama-server,
# llama-gguf-split, llama-fit-params)
# from the llama.cpp source vendored in the llama-cpp-python sdist of the *installed*
# version, so the tools and our Python bindings run the same ggml code.
#
# Usage: scripts/build-llama-tools.sh   -> prints the directory holding the binaries.
# Env:   PYTHON (default .venv/bin/python), LLAMA_TOOLS_DIR (default ${XDG_CACHE_HOME:-~/.cache}/dsq/llama-tools:
#        outside the checkout, so a fresh clone (CI) reuses the build; keyed by version below),
#        LLAMA_CPP_VERSION (default: the installed llama-cpp-python), JOBS (default 2).
# Builds only what is missing; CPU only. All chatter goes to stderr.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
tools_dir="${LLAMA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dsq/llama-tools}"
jobs="${JOBS:-2}"
version="${LLAMA_CPP_VERSION:-$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')}"
targets=(llama-perplexity llama-imatrix llama-quantize llama-server llama-gguf-split llama-fit-params)

src="$tools_dir/src/llama_cpp_python-$version"
build="$tools_dir/build-$version-noamx"
bin="$build/bin"

missing=()
for t in "${targets[@]}"; do
  [[ -x "$bin/$t" ]] || missing+=("$t")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$bin"
  exit 0
fi

mkdir -p "$tools_dir/src"
# One build at a time per cache (parallel test sessions or workers ask at once): the others wait,
# then find the tools built.
exec 9>"$tools_dir/.build.lock"
flock 9
missing=()
for t in "${targets[@]}"; do
  [[ -x "$bin/$t" ]] || missing+=("$t")
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "$bin"
  exit 0
fi
if [[ ! -d "$src/vendor/llama.cpp" ]]; then
  sdist="$tools_dir/src/llama_cpp_python-$version.tar.gz"
  if [[ ! -f "$sdist" ]]; then
    "$python" -m pip download --no-deps --no-binary :all: --dest "$tools_dir/src" \
      "llama-cpp-python==$version" >&2
  fi
  tar -xzf "$sdist" -C "$tools_dir/src"
fi

generator=()
command -v ninja >/dev/null && generator=(-G Ninja)
# The server's web UI is neither built nor downloaded (no network but PyPI here); without OpenSSL,
# `llama-server -hf` speaks plain HTTP only: enough for a Hub on the local network or dsq's stand-in.
# AMX off, as for the Python bindings (scripts/build-llama-wheel.sh says why).
CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" \
cmake -S "$src/vendor/llama.cpp" -B "$build" "${generator[@]}" \
  -DCMAKE_BUILD_TYPE=Release \
  -DBUILD_SHARED_LIBS=OFF \
  -DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF \
  -DLLAMA_CURL=OFF \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF \
  -DCMAKE_RUNTIME_OUTPUT_DIRECTORY="$bin" >&2
cmake --build "$build" --config Release -j "$jobs" --target "${missing[@]}" >&2
echo "$bin"
