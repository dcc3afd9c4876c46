# The original release's name for DaViT-T retinanet (3x).
_base_ = './mmdet/retinanet_davit-t_fpn_3x_coco.py'
