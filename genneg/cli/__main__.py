import sys

from genneg.cli import main

sys.exit(main())
