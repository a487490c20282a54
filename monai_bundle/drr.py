"""`python -m monai_bundle.drr`: old name of `monai_bundle.data.drr`, kept for existing commands."""

import sys

from monai_bundle.data.drr import main

if __name__ == "__main__":
    sys.exit(main())
