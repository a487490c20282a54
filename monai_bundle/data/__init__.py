"""Where data comes from: real sample images from PyPI packages, synthetic phantoms, DRR rendering, and the data-list readers every task's configs use."""
