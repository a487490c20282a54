"""`python -m monai_bundle.analysis`: the old name of `monai_bundle.apps.analysis`, kept so that existing commands work."""

import sys

from monai_bundle.apps.analysis import main

if __name__ == "__main__":
    sys.exit(main())
