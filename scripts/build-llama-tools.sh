#!/usr/bin/env bash
# Build llama.cpp's command-line tools (llama-perplexity, llama-imatrix, llama-quantize, llama-server,
# llama-gguf-split, llama-fit-params)
# from the llama.cpp source vendored in the llama-cpp-python sdist of the *installed*
# version, so the tools and our Python bindings run the same ggml code.
#
# Usage: scripts/build-llama-tools.sh   -> prints the directory holding the binaries.
# Env:   PYTHON (default .venv/bin/python), LLAMA_TOOLS_DIR (default ${XDG_CACHE_HOME:-~/.cache}/dsq/llama-tools:
#        outside the checkout, so a fresh clone (CI) reuses the build; keyed by version below),
#        LLAMA_CPP_VERSION (default: the installed llama-cpp-python), JOBS (default 2),
#        CUDA_ARCHITECTURES (e.g. 90 for H100/H200: a CUDA build, -DGGML_CUDA=ON, needs nvcc; in its own
#        directory build-<version>-cuda<arch>, so CPU and CUDA builds never overwrite each other),
#        LLAMA_TOOLS (default: all the targets below; e.g. "llama-server" for a GPU host's image).
# Builds only what is missing. All chatter goes to stderr.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-$repo/.venv/bin/python}"
tools_dir="${LLAMA_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/dsq/llama-tools}"
jobs="${JOBS:-2}"
version="${LLAMA_CPP_VERSION:-$("$python" -c 'import importlib.metadata as m; print(m.version("llama-cpp-python"))')}"
read -r -a targets <<< "${LLAMA_TOOLS:-llama-perplexity llama-imatrix llama-quantize llama-server llama-gguf-split llama-fit-params}"
cuda_arch="${CUDA_ARCHITECTURES:-}"

src="$tools_dir/src/llama_cpp_python-$version"
if [[ -n "$cuda_arch" ]]; then
  [[ "$cuda_arch" =~ ^[0-9]+(-real|-virtual)?(\;[0-9]+(-real|-virtual)?)*$ ]] || {
    echo "CUDA_ARCHITECTURES must look like 90 or 80;90, got '$cuda_arch'" >&2; exit 2; }
  build="$tools_dir/build-$version-cuda${cuda_arch//;/_}"
  gpu_flags=(-DGGML_CUDA=ON "-DCMAKE_CUDA_ARCHITECTURES=$cuda_arch")
else
  build="$tools_dir/build-$version-noamx"
  gpu_flags=(-DGGML_CUDA=OFF)
fi
bin="$build/bin"

cmake_args=(-DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=OFF
  "${gpu_flags[@]}" -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DGGML_BLAS=OFF -DLLAMA_CURL=OFF
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON
  -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_OPENSSL=OFF
  "-DCMAKE_RUNTIME_OUTPUT_DIRECTORY=$bin")
if [[ "${DRY_RUN:-0}" == 1 ]]; then  # what would be built, and how (CI's build-args check); builds nothing
  printf '%s\n' "$bin" "targets: ${targets[*]}" "cmake: ${cmake_args[*]}"
  exit 0
fi

# Exit with the binaries' directory when every target is built; else list the missing ones.
check_built() {
  missing=()
  for t in "${targets[@]}"; do
    [[ -x "$bin/$t" ]] || missing+=("$t")
  done
  if [[ ${#missing[@]} -eq 0 ]]; then
    echo "$bin"
    exit 0
  fi
}
check_built

mkdir -p "$tools_dir/src"
# One build at a time per cache (parallel test sessions or workers ask at once): the others wait,
# then find the tools built.
exec 9>"$tools_dir/.build.lock"
flock 9
check_built
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
cmake -S "$src/vendor/llama.cpp" -B "$build" "${generator[@]}" "${cmake_args[@]}" >&2
cmake --build "$build" --config Release -j "$jobs" --target "${missing[@]}" >&2
echo "$bin"
