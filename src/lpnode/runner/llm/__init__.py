"""Chat generation backends for the llm pipeline.

A backend turns a chat request into a stream of :class:`Delta` pieces on the event loop:

- ``transformers``: any causal LM with a chat template, on CPU or GPU (default);
- ``vllm``: vLLM's async engine, when the package is installed and a GPU is present;
- ``openai``: an OpenAI-compatible server such as Ollama, given by URL (``--llm-upstream``).
"""

from lpnode.runner.llm.backend import ChatBackend, ChatParams, Delta, choose_backend

__all__ = ["ChatBackend", "ChatParams", "Delta", "choose_backend"]
