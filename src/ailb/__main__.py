import sys

from ailb.cli import main

sys.exit(main())
