"""``python -m gpustack_compose``."""

from gpustack_compose.cli import main

if __name__ == "__main__":
    main()
