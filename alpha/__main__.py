import sys

from alpha.cli import main

sys.exit(main())
