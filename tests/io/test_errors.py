"""Tests for monai_bundle.io.errors: one line naming the file, picklable; permission problems said so."""

from __future__ import annotations

import pickle

from monai_bundle.io import ImageReadError, registry

from helpers import nifti_bytes, read_error


def test_error_is_one_line_and_picklable(tmp_path):
    error = ImageReadError(tmp_path / "x.nii", "first line\nsecond line")
    assert str(error) == f"{tmp_path / 'x.nii'}: first line" and error.problem == "first line"
    assert isinstance(error, ValueError)
    copy = pickle.loads(pickle.dumps(error))
    assert (copy.path, copy.problem, str(copy)) == (error.path, error.problem, str(error))


def test_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "secret.nii"
    path.write_bytes(nifti_bytes())
    path.chmod(0)
    try:
        open(path, "rb").close()
    except PermissionError:
        pass
    else:  # running as root: simulate the refusal the OS would give anyone else

        def denied(name, *args, **kwargs):
            raise PermissionError(13, "Permission denied", str(name))

        monkeypatch.setattr(registry, "open", denied, raising=False)
    read_error(path, "permission denied")
