"""monai_bundle.io.pet: body-weight SUV of a synthetic PET DICOM series with a hand-worked answer (tests/pet_series.py),
decay correction, one-line errors for missing or inconsistent attributes, Units, and a NIfTI PET with a stated unit."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from dicom_edits import dciodvfy_errors
from monai.transforms import LoadImaged
from pet_series import (
    DECAYED_DOSE_BQ,
    DOSE_BQ,
    SLOPES,
    WEIGHT_KG,
    activity,
    expected_affine,
    hand_decay_factor,
    suv_of,
    write_pet_series,
)

from monai_bundle.io import ImageReadError, StatedUnit, SUVReader, read_suv
from monai_bundle.io.pet import bodyweight_factor

RTOL = 1e-4


def series(tmp_path, edit=None, **kwargs):
    return write_pet_series(tmp_path / "pet", edit, **kwargs)


def edit_drug(**values):
    """An edit of every slice's RadiopharmaceuticalInformationSequence item (None deletes the attribute)."""
    return lambda k, ds: _set(ds.RadiopharmaceuticalInformationSequence[0], values)


def edit_all(**values):
    """An edit of every slice (None deletes the attribute)."""
    return lambda k, ds: _set(ds, values)


def _set(ds, values: dict) -> None:
    for keyword, value in values.items():
        if value is None:
            delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)


def test_suv_of_known_regions_and_exact_geometry(tmp_path):
    """Every voxel is its region's activity x 70 kg / decayed dose, each slice through its own RescaleSlope."""
    volume = read_suv(series(tmp_path))
    assert len(set(SLOPES)) == len(SLOPES)  # every slice is stored with another slope
    np.testing.assert_allclose(volume.array, suv_of(1.0) * activity(), rtol=RTOL)
    assert volume.array.dtype == np.float32 and volume.array.shape == (20, 16, 6)
    np.testing.assert_allclose(volume.affine, expected_affine(), rtol=0, atol=1e-9)
    assert volume.spacing == pytest.approx((2.5, 2.0, 3.0), abs=1e-9)


def test_decay_correction_of_f18_by_hand():
    """One hour after injection, F-18 (6586.2 s) keeps 2^(-3600/6586.2) = 0.684633 of its dose."""
    assert hand_decay_factor() == pytest.approx(0.6846329, abs=1e-7)
    assert DECAYED_DOSE_BQ == pytest.approx(253_314_180, abs=1)
    assert bodyweight_factor(WEIGHT_KG, DOSE_BQ, 3600, 6586.2) == pytest.approx(70_000 / 253_314_180, rel=1e-8)
    assert bodyweight_factor(WEIGHT_KG, DOSE_BQ, 6586.2, 6586.2) == pytest.approx(2 * 70_000 / DOSE_BQ, rel=1e-12)


@pytest.mark.parametrize(
    "edit, hours",
    [
        (edit_drug(RadiopharmaceuticalStartDateTime="20260101080000"), 2.0),  # two hours before the scan
        (edit_drug(RadiopharmaceuticalStartDateTime=None), 1.0),  # StartTime 09:00 on the SeriesDate
        # injected 23:30 the day before a 00:30 scan: StartTime alone spans midnight
        (
            lambda k, ds: (
                edit_drug(RadiopharmaceuticalStartDateTime=None, RadiopharmaceuticalStartTime="233000")(k, ds),
                edit_all(SeriesTime="003000", AcquisitionTime="003000")(k, ds),
            ),
            1.0,
        ),
        # a series re-processed at 11:00: the earliest acquisition (10:00) is the scan time (QIBA)
        (edit_all(SeriesTime="110000"), 1.0),
        (edit_all(DecayCorrection="ADMIN"), 0.0),  # decay-corrected to the injection: no decay
    ],
    ids=["two-hours", "start-time-only", "across-midnight", "series-time-after-acquisition", "admin"],
)
def test_scan_and_injection_times(tmp_path, edit, hours):
    volume = read_suv(series(tmp_path, edit))
    factor = WEIGHT_KG * 1000 / (DOSE_BQ * 2 ** (-hours * 3600 / 6586.2))
    np.testing.assert_allclose(volume.array, factor * activity(), rtol=RTOL)


def test_ge_private_post_injection_time(tmp_path):
    """GE: a series time after the acquisition is replaced by the private post-injection date-time (0009,100D)."""

    def edit(k, ds):
        ds.SeriesTime = "110000"
        block = ds.private_block(0x0009, "GEMS_PETD_01", create=True)
        block.add_new(0x0D, "DT", "20260101103000")  # 90 min after injection

    volume = read_suv(series(tmp_path, edit))
    np.testing.assert_allclose(volume.array, bodyweight_factor(70, DOSE_BQ, 5400, 6586.2) * activity(), rtol=RTOL)


@pytest.mark.parametrize(
    "edit, attribute",
    [
        (edit_all(PatientWeight=None), "PatientWeight is missing"),
        (edit_all(PatientWeight=0), "PatientWeight is 0.0; a positive number is needed"),
        (edit_drug(RadionuclideTotalDose=None), "RadionuclideTotalDose is missing"),
        (edit_drug(RadionuclideHalfLife=None), "RadionuclideHalfLife is missing"),
        (
            edit_drug(RadiopharmaceuticalStartDateTime=None, RadiopharmaceuticalStartTime=None),
            "RadiopharmaceuticalStartDateTime and RadiopharmaceuticalStartTime are both missing",
        ),
        (edit_all(RadiopharmaceuticalInformationSequence=None), "RadiopharmaceuticalInformationSequence is missing"),
        (edit_all(Units=None), "Units is missing"),
        (edit_all(DecayCorrection="NONE"), "DecayCorrection NONE is not handled"),
        (edit_all(CorrectedImage=["ATTN", "SCAT"]), "lacks ATTN or DECY"),
        (edit_all(Units="PROP"), "Units PROP cannot be converted"),
        (edit_all(Units="CNTS"), r"Units CNTS without Philips' SUV scale factor \(7053,1000\)"),
        (edit_all(Modality="CT"), "Modality is 'CT', not PT"),
        (edit_drug(RadiopharmaceuticalStartDateTime="20260101110000"), "the injection .* is after the scan"),
        (lambda k, ds: setattr(ds, "PatientWeight", 71.0) if k == 4 else None, "PatientWeight differs"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_missing_or_inconsistent_attribute_is_one_line(tmp_path, edit, attribute):
    folder = series(tmp_path, edit)
    with pytest.raises(ImageReadError, match=attribute) as info:
        read_suv(folder)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{folder}: PT00")  # the series, then the file


def test_gml_is_kept_and_philips_counts_use_their_scale_factors(tmp_path):
    gml = read_suv(series(tmp_path / "gml", edit_all(Units="GML")))
    np.testing.assert_allclose(gml.array, activity(), rtol=1e-6)

    def philips(key, values):
        def edit(k, ds):
            ds.Units = "CNTS"
            ds.private_block(0x7053, "Philips PET Private Group", create=True).add_new(key, "DS", values[k])

        return edit

    suv_factors = [0.001 * (k + 1) for k in range(6)]
    counts = read_suv(series(tmp_path / "suv", philips(0x00, suv_factors)))
    np.testing.assert_allclose(counts.array, activity() * np.array(suv_factors), rtol=RTOL)
    to_bqml = [2.0] * 6  # activity-concentration factor: counts x 2 = Bq/mL, then as BQML
    activity_factor = read_suv(series(tmp_path / "acf", philips(0x09, to_bqml)))
    np.testing.assert_allclose(activity_factor.array, 2 * suv_of(1.0) * activity(), rtol=RTOL)


def test_synthetic_series_is_valid_pet_to_dciodvfy(tmp_path):
    folder = series(tmp_path)
    for file in sorted(folder.iterdir())[:2]:
        assert dciodvfy_errors(file) == []


def nifti_pet(tmp_path, array=None):
    path = tmp_path / "pet.nii.gz"
    affine = np.asarray(expected_affine(), dtype=np.float32).astype(np.float64)
    nib.save(nib.Nifti1Image((activity() if array is None else array).astype(np.float32), affine), path)
    return path, affine


def test_nifti_pet_needs_its_unit_stated(tmp_path):
    path, affine = nifti_pet(tmp_path)
    with pytest.raises(ImageReadError, match=r"pet.nii.gz: .nii.gz carries no PET unit: state it") as info:
        read_suv(path)
    assert "\n" not in str(info.value)
    stated = StatedUnit("BQML", weight_kg=70, dose_bq=DOSE_BQ, decay_s=3600)
    volume = read_suv(path, stated)
    np.testing.assert_allclose(volume.array, suv_of(1.0) * activity(), rtol=RTOL)
    np.testing.assert_array_equal(volume.affine, affine)
    np.testing.assert_array_equal(read_suv(path, StatedUnit("SUV")).array, activity().astype(np.float32))
    with pytest.raises(ImageReadError, match="PET unit BQML needs a positive weight_kg"):
        read_suv(path, StatedUnit("BQML", dose_bq=DOSE_BQ))
    with pytest.raises(ImageReadError, match="PET unit 'CNTS' is not one of SUV, BQML"):
        read_suv(path, StatedUnit("CNTS"))


def test_suv_reader_in_monai_load_image(tmp_path):
    """The MONAI reader gives the same SUV and the RAS affine, for a DICOM series and a NIfTI with a stated unit."""
    dicom = LoadImaged("pet", reader=SUVReader)({"pet": str(series(tmp_path))})["pet"]
    np.testing.assert_allclose(dicom.numpy(), suv_of(1.0) * activity(), rtol=RTOL)
    np.testing.assert_allclose(dicom.affine.numpy(), expected_affine(), atol=1e-9)
    path, _ = nifti_pet(tmp_path)
    load = LoadImaged("pet", reader=SUVReader(unit="BQML", weight_kg=70, dose_bq=DOSE_BQ, decay_s=3600))
    np.testing.assert_allclose(load({"pet": str(path)})["pet"].numpy(), suv_of(1.0) * activity(), rtol=RTOL)
    with pytest.raises(ImageReadError, match="carries no PET unit"):
        LoadImaged("pet", reader=SUVReader)({"pet": str(path)})
