"""`python -m sriovkit.kubesim --device-plugin-dir D ...`: same as `sriovctl kubesim`."""

import sys

from sriovkit.cli import main

sys.exit(main(["kubesim", *sys.argv[1:]]))
