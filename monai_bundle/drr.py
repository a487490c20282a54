"""`python -m monai_bundle.drr`: the old name of `monai_bundle.data.drr`, kept so that existing commands work."""

import sys

from monai_bundle.data.drr import main

if __name__ == "__main__":
    sys.exit(main())
