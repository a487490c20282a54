"""Task xray_synthesis: a class-conditional GAN for synthetic radiographs, its KID/MS-SSIM/privacy report."""

from .synthesis import MS_SSIM_WEIGHTS, SYNTHETIC_PREFIX, class_maps, ConditionalGenerator, ConditionalDiscriminator, ClassLatents, latents_for, LabelledImages, GanLosses, generate, write_samples, kernel_inception_distance, ms_ssim_diversity, privacy_report, PenultimateFeatures, synthesis_report, load_image_set, write_report


__all__ = ['MS_SSIM_WEIGHTS', 'SYNTHETIC_PREFIX', 'class_maps', 'ConditionalGenerator', 'ConditionalDiscriminator', 'ClassLatents', 'latents_for', 'LabelledImages', 'GanLosses', 'generate', 'write_samples', 'kernel_inception_distance', 'ms_ssim_diversity', 'privacy_report', 'PenultimateFeatures', 'synthesis_report', 'load_image_set', 'write_report']
