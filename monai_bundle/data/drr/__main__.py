"""`python -m monai_bundle.data.drr`: the same as `medimg-make-xray-set`."""

import sys

from monai_bundle.data.drr.cli import main

if __name__ == "__main__":
    sys.exit(main())
