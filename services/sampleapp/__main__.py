"""`python -m services.sampleapp [--host H] [--port P]`."""

import sys

from services.sampleapp.app import main

sys.exit(main())
