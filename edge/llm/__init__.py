"""The LLM side on the device: a GGUF LLM in llama.cpp that takes the vision engines' tokens as raw rows."""
