"""Type stubs of the compiled module ``mlyexport._core`` (the Rust engine)."""

import os
from typing import Any, Callable, Dict, List, Optional, Union, final

__all__ = ["__version__", "Client", "fetch", "layers", "read_records"]

__version__: str

_Progress = Optional[Callable[[Dict[str, Any]], Any]]

@final
class Client:
    def __new__(cls, argv: List[str]) -> "Client": ...
    def images_in_bbox(
        self, flags: List[str], typed: bool = True, progress: _Progress = None
    ) -> Dict[str, Any]: ...
    def download_image(
        self, image_id: str, output_dir: Union[str, "os.PathLike[str]"], size: str
    ) -> str: ...
    def image_fields(self, image_id: str, fields: str) -> Dict[str, Any]: ...

def fetch(argv: List[str], progress: _Progress = None) -> Dict[str, Any]: ...
def layers(argv: List[str]) -> Dict[str, Any]: ...
def read_records(
    input: Union[str, "os.PathLike[str]"], position: str = "computed"
) -> Dict[str, Any]: ...
