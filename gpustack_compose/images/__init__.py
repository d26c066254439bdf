"""Image recipes (Dockerfiles and pinned requirements), shipped in the wheel."""
