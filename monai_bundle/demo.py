"""`python -m monai_bundle.demo`: the old name of `monai_bundle.apps.demo`, kept so that existing commands work."""

import sys

from monai_bundle.apps.demo import main

if __name__ == "__main__":
    sys.exit(main())
