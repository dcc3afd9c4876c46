# DaViT-B: widths 128..1024, 9 dual blocks in stage 3. Drop path 0.3: two 0.1 steps above T at this schedule (the
# ImageNet recipe regularises B most: 0.4 vs 0.1 for T).
_base_ = './mask-rcnn_davit-t_fpn_1x_coco.py'
model = dict(backbone=dict(arch='base', drop_path_rate=0.3), neck=dict(in_channels=[128, 256, 512, 1024]))
