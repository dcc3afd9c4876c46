# The original release's name for DaViT-T UPerNet on ADE20K.
_base_ = './mmseg/upernet_davit-t_8xb2-160k_ade20k-512x512.py'
