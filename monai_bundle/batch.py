"""`python -m monai_bundle.batch`: the old name of `monai_bundle.apps.batch`, kept so that existing commands work."""

import sys

from monai_bundle.apps.batch import main

if __name__ == "__main__":
    sys.exit(main())
