#!/usr/bin/env python
"""`medimg-batch` as a script: run a bundle task over a folder of images (the logic is monai_bundle/batch.py)."""

import sys

from monai_bundle.apps.batch import main

if __name__ == "__main__":
    sys.exit(main())
