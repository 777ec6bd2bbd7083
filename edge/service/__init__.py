"""Running the device's processes together: `up` (agent + LLM process as supervised children)."""
