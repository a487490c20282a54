"""`python -m monai_bundle.lowdose`: old name of `monai_bundle.tasks.ct_denoising.cli`, kept for existing commands."""

import sys

from monai_bundle.tasks.ct_denoising.cli import main

if __name__ == "__main__":
    sys.exit(main())
