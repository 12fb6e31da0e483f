import sys

from dataflow.main import main

sys.exit(main())
