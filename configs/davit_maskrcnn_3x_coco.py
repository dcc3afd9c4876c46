# The original release's name for DaViT-T mask-rcnn (3x).
_base_ = './mmdet/mask-rcnn_davit-t_fpn_3x_coco.py'
