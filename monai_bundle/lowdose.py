"""`python -m monai_bundle.lowdose`: the old name of `python -m monai_bundle.tasks.ct_denoising`, kept so that existing commands work."""

import sys

from monai_bundle.tasks.ct_denoising.cli import main

if __name__ == "__main__":
    sys.exit(main())
