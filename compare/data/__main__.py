"""``python -m compare.data ...`` = ``python -m compare data ...``."""
import sys

from compare.data.cli import main

sys.exit(main())
