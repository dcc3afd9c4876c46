# DaViT-B: widths 128..1024, 9 dual blocks in stage 3. Drop path 0.4: two 0.1 steps above T at this schedule (the
# ImageNet recipe regularises B most: 0.4 vs 0.1 for T).
_base_ = './retinanet_davit-t_fpn_3x_coco.py'
model = dict(backbone=dict(arch='base', drop_path_rate=0.4), neck=dict(in_channels=[256, 512, 1024]))
