"""``python -m nano_graphrag_redis``: the ``nano-graphrag-redis`` command."""

import sys

from .cli import main

sys.exit(main())
