"""`python -m monai_bundle.demo`: old name of `monai_bundle.apps.demo`, kept for existing commands."""

import sys

from monai_bundle.apps.demo import main

if __name__ == "__main__":
    sys.exit(main())
