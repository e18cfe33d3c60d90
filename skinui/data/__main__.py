import sys

from skinui.data import main

sys.exit(main())
