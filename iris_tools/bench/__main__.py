import sys

from iris_tools.bench.measure import main

sys.exit(main())
