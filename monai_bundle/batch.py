"""`python -m monai_bundle.batch`: old name of `monai_bundle.apps.batch`, kept for existing commands."""

import sys

from monai_bundle.apps.batch import main

if __name__ == "__main__":
    sys.exit(main())
