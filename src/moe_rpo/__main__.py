import sys

from moe_rpo.cli import main

sys.exit(main())
