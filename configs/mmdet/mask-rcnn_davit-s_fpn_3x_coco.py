# DaViT-S: T's widths with 9 dual blocks in stage 3. Drop path 0.3: one 0.1 step above T at this schedule, as the
# ImageNet recipe steps it from T to S (0.1 -> 0.2).
_base_ = './mask-rcnn_davit-t_fpn_3x_coco.py'
model = dict(backbone=dict(arch='small', drop_path_rate=0.3))
