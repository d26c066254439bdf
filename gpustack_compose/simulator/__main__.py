"""``python -m gpustack_compose.simulator serve ARGS`` or ``... ARGS``."""

import sys

from gpustack_compose.simulator.server import main

sys.exit(main(sys.argv[1:]))
