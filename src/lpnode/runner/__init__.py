"""The runner: one pipeline and one model served over the ai-runner HTTP API."""
