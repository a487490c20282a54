"""`python -m monai_bundle.tasks.ct_denoising IN OUT`: a simulated low-dose copy of a CT (see `cli`)."""

from monai_bundle.tasks.ct_denoising.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
