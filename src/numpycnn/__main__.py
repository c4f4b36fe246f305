"""``python -m numpycnn`` runs the command-line program."""

import sys

from numpycnn.cli import main

sys.exit(main())
