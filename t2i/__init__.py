"""Text-to-image generation: label-guided pretraining, GAN variants (AttnGAN, DM-GAN, DF-GAN, SSA-GAN, GALIP), pipelines.

Builds on :mod:`imagetext`; never imports :mod:`matching`. Filled by later issues.
"""
