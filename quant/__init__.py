"""Pure quantization libraries: recipes, planner, GGUF conversion. Never imports Django."""
