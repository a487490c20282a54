"""The extension as Slicer builds, installs and indexes it: CMake install layout, the Extensions Index rules."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from slicer_stand_in import install_stand_ins
from test_slicer_glue import scene_stand_in, util_stand_in

# isort: split  (slicer_stand_in puts MedImgAnalysisLib's folder on sys.path)
from MedImgAnalysisLib import environment, tasks

from conftest import REPO

QT_SCRIPTED = "lib/Slicer-5.10/qt-scripted-modules"

# A stand-in for Slicer's CMake package: the directories of CMake/SlicerDirectories.cmake and the copy/install
# rules of slicerMacroBuildScriptedModule -> ctkMacroCompilePythonScript (SCRIPTS and RESOURCES keep their path
# relative to the module's folder, into qt-scripted-modules/, NO_INSTALL_SUBDIR). Slicer/Slicer v5.10.0.
SLICER_CONFIG = """
set(Slicer_USE_FILE ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_GENERATE_CONFIG ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_EXTENSION_CPACK ${CMAKE_CURRENT_LIST_DIR}/Empty.cmake)
set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-@MINOR@/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "./${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")
macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  foreach(file ${MY_SLICER_SCRIPTS} ${MY_SLICER_RESOURCES})
    get_filename_component(folder ${file} DIRECTORY)
    install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/${file} DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${folder})
  endforeach()
endmacro()
"""


def install_extension(tmp_path: Path, version: str = "5.10.0") -> subprocess.CompletedProcess:
    if not shutil.which("cmake") or not (shutil.which("cc") or shutil.which("gcc")):
        why = "needs cmake and a C compiler (project() enables C/C++ as in Slicer's extension template)"
        if os.environ.get("MEDIMG_REQUIRE_CMAKE") == "1":  # .ci/run: this test must run, not skip
            pytest.fail(why)
        pytest.skip(why)
    config = tmp_path / "slicer"
    config.mkdir()
    (config / "Empty.cmake").write_text("")
    (config / "SlicerConfig.cmake").write_text(SLICER_CONFIG.replace("@MINOR@", version.rsplit(".", 1)[0]))
    (config / "SlicerConfigVersion.cmake").write_text(
        f'set(PACKAGE_VERSION "{version}")\nset(PACKAGE_VERSION_COMPATIBLE TRUE)\n'
    )
    build = tmp_path / "build"
    configure = subprocess.run(
        ["cmake", "-S", str(REPO), "-B", str(build), f"-DSlicer_DIR={config}", "-DBUILD_TESTING=OFF"],
        capture_output=True,
        text=True,
    )
    if configure.returncode == 0:
        subprocess.run(
            ["cmake", "--install", str(build), "--prefix", str(tmp_path / "install")],
            check=True,
            capture_output=True,
            text=True,
        )
    return configure


def test_the_installed_extension_finds_its_tasks_metadata_and_weights(monkeypatch, tmp_path):
    configure = install_extension(tmp_path)
    assert configure.returncode == 0, configure.stderr
    installed = tmp_path / "install" / QT_SCRIPTED
    assert (installed / "MedImgAnalysis.py").is_file() and (installed / "Resources/UI/MedImgAnalysis.ui").is_file()
    assert (installed / "MedImgAnalysisLib" / "environment.py").is_file()
    assert not list(installed.rglob("__pycache__"))

    location = environment.locate_bundle(installed, find_spec=lambda name: None)
    assert location is not None and location.how == "packaged" and location.package_parent == installed
    found = tasks.builtin_tasks(location.metadata)
    assert {"ct_segmentation", "xray_classification", "mri_brain_segmentation"} <= set(found)
    meta = json.loads(location.metadata.read_text())
    for name in found:  # every offered task's weights are in the package, byte for byte
        weights = [Path(p).name for p in json.dumps(meta["medimg"]["tasks"][name]).split('"') if p.endswith(".pt")]
        for weight in weights or [f"{name}.pt"]:
            assert (location.models / weight).is_file(), weight
            assert (location.models / weight).stat().st_size == (REPO / "monai_bundle/models" / weight).stat().st_size

    # The module file as installed, against the Slicer stand-in: it finds the packaged bundle next to itself.
    monkeypatch.setattr(sys, "path", [p for p in sys.path if "MedImgExtension" not in p])
    for name in [m for m in sys.modules if m.startswith("MedImgAnalysisLib")]:
        monkeypatch.delitem(sys.modules, name)
    module = install_stand_ins(monkeypatch, scene_stand_in(), util_stand_in(tmp_path), module_dir=installed)
    assert Path(module.__file__).parent == installed
    logic = module.MedImgAnalysisLogic()
    assert logic.bundle.package_parent == installed and set(found) == set(logic.tasks)


def test_configuring_against_slicer_5_8_stops_with_a_message(tmp_path):
    configure = install_extension(tmp_path, "5.8.0")
    assert configure.returncode != 0 and "needs 3D Slicer 5.10 or later" in configure.stderr


# The rules of Slicer/ExtensionsIndex scripts/check_description_files.py at 07f1d1b278 (2026-08-07) that do not
# need the network, applied to this repository and to the description file it submits (MedImg.json).
# Online-only checks (the JSON schema download, GitHub topics, URL content types) are stated, not run.
INDEX_CATEGORIES_USED = {"Segmentation"}  # a member of the script's ACCEPTED_EXTENSION_CATEGORIES
DESCRIPTION = REPO / "MedImgExtension" / "ExtensionsIndex" / "MedImg.json"


def cmake_value(text: str, pattern: str) -> list[str]:
    return re.findall(pattern, text, re.IGNORECASE | re.MULTILINE)


def test_the_extensions_index_description_check_passes_offline():
    cmake = (REPO / "CMakeLists.txt").read_text(encoding="utf-8")
    extension_name = DESCRIPTION.stem
    project = cmake_value(cmake, r"project\s*\(\s*([^\s\)\n\r]+)")
    assert project and project[0].strip("\"'") == extension_name  # check_cmakelists_content
    assert not extension_name.lower().startswith("slicer")  # check_extension_name

    raw = DESCRIPTION.read_bytes()
    assert b"\r" not in raw  # check_json_file_format: LF only
    metadata = json.loads(raw)
    assert metadata["$schema"].startswith("https://raw.githubusercontent.com/Slicer/Slicer/")
    assert metadata["category"] in INDEX_CATEGORIES_USED  # check_category
    scm = urlsplit(metadata["scm_url"])
    assert scm.scheme in ("git", "https") and "://" in metadata["scm_url"]  # check_scm_url_syntax
    repo_name = Path(scm.path.strip("/")).stem
    assert repo_name.startswith("Slicer")  # check_git_repository_name
    category = cmake_value(cmake, r'set\s*\(EXTENSION_CATEGORY\s*"([^"]+)"')
    assert category == [metadata["category"]]

    icon = cmake_value(cmake, r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)')
    screenshots = cmake_value(cmake, r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)')
    assert icon and screenshots, "EXTENSION_ICONURL and a non-empty EXTENSION_SCREENSHOTURLS"
    homepage = cmake_value(cmake, r'set\s*\(EXTENSION_HOMEPAGE\s*"([^"]+)"')
    for url in [icon[0], *screenshots[0].split(), *homepage]:  # validate_image_url: offline, the file it names
        parts = urlsplit(url)
        assert parts.scheme == "https" and Path(parts.path.strip("/")).parts[1] == repo_name, url
        path = Path(*Path(parts.path.strip("/")).parts[3 if parts.netloc == "raw.githubusercontent.com" else 4 :])
        assert (REPO / path).is_file(), f"{url} names {path}, which is not in the repository"
        if url != homepage[0]:
            assert (REPO / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{url} is not a PNG"
    contributors = cmake_value(cmake, r'set\s*\(EXTENSION_CONTRIBUTORS\s*"([^"]+)"')
    assert contributors and all(re.fullmatch(r"[^()]+ \([^()]+\)", c.strip()) for c in contributors[0].split(","))

    assert (REPO / "LICENSE").is_file()  # check_license_file
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True).stdout.split("\0")
    size = sum((REPO / f).stat().st_size for f in files if f and (REPO / f).is_file())
    assert size < 100 * 1024 * 1024, f"repository {size / 2**20:.0f} MB: check_repository_size allows 100 MB"
