import sys

from slm_platform.cli import main

sys.exit(main())
