"""What the planner knows about a model, and where it learns it.

    record        the facts, one record type for the catalog, the lock and ``arch:``
    params        parameter counts and weight bytes from the record's shapes
    config        config.json -> record (text_config / vision_config, MoE, MLA, rope)
    safetensors   exact tensor bytes from safetensors headers (local files or the Hub)
    architectures which architectures each vLLM release serves, and how
    sources       I/O: a host directory, the Hugging Face cache or the Hub
    lock          the committed lock file next to a stack

Only ``sources`` and ``lock`` touch files or the network; the rest are pure.
"""
