"""Pure quantization libraries: recipes, planner, GGUF conversion. Never imports Django."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp: kernels/__init__.py says why
