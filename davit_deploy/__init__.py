"""Runs a model that ``tools/deploy.py`` exported (a folder: ``model.onnx`` + ``deploy.json``) with onnxruntime,
numpy and OpenCV only: no torch, no OpenMMLab (Pillow too, for a pipeline that resizes with it, as mmpretrain's
ImageNet pipelines do).

>>> from davit_deploy import DeployedModel
>>> model = DeployedModel('deployed/upernet')
>>> pred = model.predict('demo.jpg')        # dict: the task's predictions at the image's own size
"""
from .errors import DeployedModelError, DeployFolderError, DeviceError, ImageError, InputSizeError
from .model import DeployedModel

__all__ = ['DeployedModel', 'DeployedModelError', 'DeployFolderError', 'DeviceError', 'ImageError',
           'InputSizeError']
