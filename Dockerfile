# One image for web and workers. GPU hosts run it with the NVIDIA container runtime.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends build-essential cmake git \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY dsq dsq
COPY registry registry
COPY workers workers
COPY quant quant
COPY kernels kernels
COPY templates templates
COPY manage.py ./
ENV CMAKE_ARGS="-DGGML_CUDA=OFF -DGGML_METAL=OFF -DGGML_VULKAN=OFF -DLLAMA_CURL=OFF -DGGML_BLAS=OFF"
# AMX off: ggml's AMX buffer type aborts model loading on AMX Xeons (scripts/build-llama-wheel.sh).
ENV CFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16" CXXFLAGS="-mno-amx-tile -mno-amx-int8 -mno-amx-bf16"
RUN pip install --no-cache-dir -e .
ENV DJANGO_SETTINGS_MODULE=dsq.settings PYTHONUNBUFFERED=1
