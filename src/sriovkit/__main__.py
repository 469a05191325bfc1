import sys

from sriovkit.cli import main

sys.exit(main())
