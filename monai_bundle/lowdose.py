"""`python -m monai_bundle.lowdose`: the old name of `monai_bundle.tasks.ct_denoising.lowdose`, kept so that existing commands work."""

import sys

from monai_bundle.tasks.ct_denoising.lowdose import main

if __name__ == "__main__":
    sys.exit(main())
