import sys

from mandate_sdk.cli import main

sys.exit(main())
