"""``python -m tcmcodec.training`` / ``torchrun -m tcmcodec.training``: the trainer's command line."""

import sys

from tcmcodec.training.loop import main

sys.exit(main())
