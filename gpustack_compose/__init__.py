"""gpustack-compose: one stack file -> a checked VRAM plan and a docker-compose
stack of vLLM servers behind a LiteLLM proxy."""

__version__ = "0.1.0"
