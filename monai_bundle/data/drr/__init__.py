"""SYNTHETIC chest radiographs: digitally reconstructed radiographs (DRRs) rendered from real CTs.

No labelled radiographs exist on these machines, so this package renders them: a CT's HU become
linear attenuation (mu = mu_water * (1 + HU/1000), air clipped to 0), rays from a point source
(PA or AP, or parallel rays) integrate mu through the body, and the line integrals are shown the
way a radiograph is (log-domain window, compression, gamma, detector blur, quantum noise, edge
enhancement): bone bright, air dark, the patient's head at the top and the patient's right on the
image's left. The positive class gets 1-3 pneumonia-like opacities (soft ellipsoids or patchy
consolidations) painted into the CT's lungs before projection.

`make_xray_dataset` writes a set in the layout of the Kermany chest X-ray pneumonia set
(OUT/{train,test}/{NORMAL,PNEUMONIA}/*.png, 8-bit grey) plus labels.csv (what was painted where,
and every render parameter) and README.txt. Train and test never share a source CT. The images
are SYNTHETIC: fine for teaching, pipelines and transfer-learning demos, never for accuracy claims
about real patients. `make_phantom_xray_dataset` is the same from synthetic phantoms (offline, fast).

Every volume here is resampled once onto an isotropic RAS-aligned grid (`prepare_source`), so all
orientation handling goes through the CT's affine, never through its array order.

Modules, in the order an image is made: `grid` (the isotropic RAS grid), `lungs` (body and lung
masks, lung region codes), `sources` (`SourceCT`: a CT ready to render, from real CTs or phantoms),
`projection` (`View` and line integrals), `opacities` (painted pneumonia-like opacities), `display`
(line integrals shown as a radiograph), `render` (one image's parameters and its rendering), `jobs`
(a set's images planned and rendered, in parallel), `dataset` (writing a set), `cli` (the command).
"""

from monai_bundle.io.png import png_bytes

from .cli import main
from .dataset import (
    DEFAULT_TEST_SOURCES,
    DEFAULT_TRAIN_SOURCES,
    SPLIT_RATIONALE,
    make_phantom_xray_dataset,
    make_xray_dataset,
    write_xray_dataset,
)
from .display import Display, random_display, to_display
from .grid import VOXEL_MM
from .jobs import SPLITS
from .lungs import (
    AIR_HU,
    BODY_HU,
    LUNG_HU,
    LUNG_REGIONS,
    body_mask_from_hu,
    lung_mask_from_hu,
    lung_regions_from_labels,
    sided_lung_regions,
)
from .opacities import (
    DEFAULT_OPACITY,
    OPACITY_RANGES,
    Opacity,
    OpacityRange,
    opacity_region,
    opacity_volume_ml,
    paint_opacities,
    random_opacities,
)
from .projection import DEPTH_STEP_VOXELS, View, project, random_view
from .render import CLASSES, DrrParams, random_params, render_drr
from .sources import (
    BONE_SCALE,
    MU_WATER_PER_MM,
    PHANTOM_VOXEL_MM,
    REAL_SOURCES,
    DrrError,
    SourceCT,
    attenuation,
    load_real_source,
    phantom_source,
    prepare_source,
)

__all__ = [
    "VOXEL_MM",
    "AIR_HU",
    "BODY_HU",
    "LUNG_HU",
    "LUNG_REGIONS",
    "body_mask_from_hu",
    "lung_mask_from_hu",
    "sided_lung_regions",
    "lung_regions_from_labels",
    "MU_WATER_PER_MM",
    "BONE_SCALE",
    "PHANTOM_VOXEL_MM",
    "REAL_SOURCES",
    "DrrError",
    "SourceCT",
    "attenuation",
    "prepare_source",
    "load_real_source",
    "phantom_source",
    "DEPTH_STEP_VOXELS",
    "View",
    "project",
    "random_view",
    "OpacityRange",
    "OPACITY_RANGES",
    "DEFAULT_OPACITY",
    "Opacity",
    "paint_opacities",
    "opacity_volume_ml",
    "opacity_region",
    "random_opacities",
    "Display",
    "to_display",
    "random_display",
    "CLASSES",
    "render_drr",
    "DrrParams",
    "random_params",
    "SPLITS",
    "DEFAULT_TRAIN_SOURCES",
    "DEFAULT_TEST_SOURCES",
    "SPLIT_RATIONALE",
    "write_xray_dataset",
    "make_xray_dataset",
    "make_phantom_xray_dataset",
    "main",
    "png_bytes",
]
