"""`python -m monai_bundle.runner`: old name of `monai_bundle.apps.runner`, kept for existing commands."""

import sys

from monai_bundle.apps.runner import main

if __name__ == "__main__":
    sys.exit(main())
