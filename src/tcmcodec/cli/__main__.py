"""``python -m tcmcodec.cli``: the ``tcm`` command."""

import sys

from tcmcodec.cli.main import main

sys.exit(main())
