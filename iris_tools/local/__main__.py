import sys

from iris_tools.local.commands import main

sys.exit(main())
