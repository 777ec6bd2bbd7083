"""``python -m edge.cli``: the same as the ``minicpmv-edge`` command."""
import sys

from .main import main

sys.exit(main())
