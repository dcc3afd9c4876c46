# The original release's name for DaViT-T mask-rcnn (1x).
_base_ = './mmdet/mask-rcnn_davit-t_fpn_1x_coco.py'
