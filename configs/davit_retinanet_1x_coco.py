# The original release's name for DaViT-T retinanet (1x).
_base_ = './mmdet/retinanet_davit-t_fpn_1x_coco.py'
