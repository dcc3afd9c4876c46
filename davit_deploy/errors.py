"""What the deployed runtime refuses, as data: each error keeps the values a caller needs (the path, the sizes, the
device) so that a command-line tool can word it with its own flags and advice, and a Python caller can act on it."""


class DeployedModelError(ValueError):
    """A folder, image, size or device the deployed runtime cannot take."""


class DeployFolderError(DeployedModelError):
    """A folder this runtime does not read as a deployed model. ``problem`` is one of the class's constants;
    ``detail`` says what was found (the format named in the file, the reader's own message, the missing keys)."""

    MISSING = 'missing'          # no deploy.json
    UNREADABLE = 'unreadable'    # not JSON, or not a JSON object
    FOREIGN = 'foreign'          # another format, or a task this runtime does not run
    NEWER = 'newer'              # this format, a version newer than this runtime reads
    INCOMPLETE = 'incomplete'    # this format and version, keys missing

    def __init__(self, folder: str, path: str, problem: str, detail: str = ''):
        self.folder, self.path, self.problem, self.detail = folder, path, problem, detail
        super().__init__(f'{path}: {problem}' + (f' ({detail})' if detail else ''))


class ImageError(DeployedModelError):
    """An image argument that gives no image: ``problem`` is 'not found', 'no images' (a folder without any) or
    'undecodable'; ``path`` the file or folder."""

    def __init__(self, path: str, problem: str, message: str):
        self.path, self.problem = path, problem
        super().__init__(message)


class InputSizeError(DeployedModelError):
    """An image whose preprocessed size ``size`` (h, w) lies outside the graph's ``lo``..``hi`` pixels a side."""

    def __init__(self, name: str, size, lo: int, hi: int):
        self.name, self.size, self.lo, self.hi = name, tuple(size), lo, hi
        super().__init__(f'{name} is {self.size[0]} x {self.size[1]} after preprocessing; this model takes {lo} to '
                         f'{hi} pixels a side')


class DeviceError(DeployedModelError):
    """A device this onnxruntime has no provider for."""

    def __init__(self, device: str, available):
        self.device, self.available = device, list(available)
        super().__init__(f'onnxruntime has no provider for {device!r} here (it has {", ".join(self.available)})')
