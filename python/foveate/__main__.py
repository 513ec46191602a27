import sys

from .surface.cli import main

sys.exit(main())
