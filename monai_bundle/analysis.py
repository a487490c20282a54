"""`python -m monai_bundle.analysis`: old name of `monai_bundle.apps.analysis`, kept for existing commands."""

import sys

from monai_bundle.apps.analysis import main

if __name__ == "__main__":
    sys.exit(main())
