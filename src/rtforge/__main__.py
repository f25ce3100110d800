"""``python -m rtforge``."""

import sys

from rtforge.cli import main

sys.exit(main())
