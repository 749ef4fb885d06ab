"""Session fixtures for the quant tests: the shared tiny models (see tests/tiny_models.py)."""
from tests.tiny_models import (  # noqa: F401  (pytest finds fixtures by name)
    models_root,
    smollm2_dir,
    tiny_deepseek_dir,
    tiny_deepseek_fp8_dir,
    tiny_deepseek_gguf,
)
