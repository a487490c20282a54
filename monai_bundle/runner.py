"""`python -m monai_bundle.runner`: the old name of `monai_bundle.apps.runner`, kept so that existing commands work."""

import sys

from monai_bundle.apps.runner import main

if __name__ == "__main__":
    sys.exit(main())
