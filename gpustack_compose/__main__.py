"""``python -m gpustack_compose``."""

import sys

from gpustack_compose.errors import EXIT_INVALID, is_missing_dependency, missing_module_message

try:
    from gpustack_compose.cli import main
except ModuleNotFoundError as exc:  # click, pydantic...: not installed for this Python
    if not is_missing_dependency(exc):
        raise
    sys.stderr.write(f"error: {missing_module_message(exc.name)}\n")
    sys.exit(EXIT_INVALID)

if __name__ == "__main__":
    main()
