"""dsq: settings, URL routes and the command-line entry point."""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch loads libgomp: kernels/__init__.py says why
