# DaViT-S: drop path 0.3 as T. mmseg's Swin-T and Swin-S UPerNet both use 0.3; the ADE schedule is short relative
# to the model's size, so the deeper stage 3 alone does not call for more.
_base_ = './upernet_davit-t_8xb2-160k_ade20k-512x512.py'
model = dict(backbone=dict(arch='small', drop_path_rate=0.3))
