"""The mapping command's paths, checked before any model work: every input a readable image big enough to
predict, `--output` a folder that can be made and written into, and every output name free for one input's
file: not shared by two inputs, not an input itself, not a folder (docs/mapping.md). Each refusal is one line
naming the path; nothing is written. An input is a local file's Path (as given) or a remote io.sources.Source
(a URL or GDAL path, read in place)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from landcover.data.naming import image_id_of
from landcover.geo.georaster import check_scene
from landcover.geo.mapping import MapOptions, output_names
from landcover.io.errors import PipelineError
from landcover.io.sources import Source, parse_source

MapInput = Path | Source  # a local file, or a remote source


def map_input(text: str) -> MapInput:
    """What `--input TEXT` names: a local file's path (a file:// URL's), else the remote source; PipelineError
    naming it for a scheme or GDAL file system not read."""
    source = parse_source(text)
    if not source.is_local:
        return source
    return Path(text) if source.is_plain_path else source.local_path


def input_file_name(item: MapInput) -> Path:
    """The input's file name, which its outputs are named after (a URL's without its query)."""
    return item if isinstance(item, Path) else Path(item.name)


def same_input(first: MapInput, second: MapInput) -> bool:
    """One file (however its path is written) or one remote object (however its URL is)."""
    if isinstance(first, Path) and isinstance(second, Path):
        return first.resolve() == second.resolve()
    return isinstance(first, Source) and isinstance(second, Source) and first.gdal_path == second.gdal_path


def check_map_paths(inputs: Sequence[MapInput], output: Path, options: MapOptions) -> None:
    """Refuse bad inputs, an unusable output folder and outputs that would overwrite each other or an input."""
    kinds = [(path, check_scene(path, options.read, model_known=False)) for path in inputs]
    check_output_folder(output)
    check_output_names(kinds, output, options)


def check_output_folder(output: Path) -> None:
    """Refuse an `--output` that cannot become a folder to write into: a file, a path under a file, a folder
    without write permission. The nearest part of the path that exists says which."""
    existing = next(path for path in (output, *output.parents) if path.exists() or path.is_symlink())
    if not existing.is_dir():
        where = "is" if existing == output else f"cannot be made: {existing} is"
        raise PipelineError(f"{output}: --output {where} not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise PipelineError(f"{output}: --output cannot be written: no permission to write in {existing}")


def check_output_names(kinds: Sequence[tuple[MapInput, bool]], output: Path, options: MapOptions) -> None:
    """Refuse two inputs whose outputs would have one name (a/119_sat.jpg and b/119_sat.jpg; x.tif and x.jpg) and
    an input that one of its outputs would replace (--output its own folder): either is lost without a word
    otherwise; and a folder where an output goes, which no file can replace. `kinds`: (input, read as a raster)."""
    written_by: dict[str, tuple[int, MapInput]] = {}  # output name -> (position in --input, input)
    for position, (path, is_raster) in enumerate(kinds):
        for name in output_names(image_id_of(input_file_name(path)), is_raster, options).values():
            first, other = written_by.setdefault(name, (position, path))
            if first != position:
                if same_input(other, path):
                    raise PipelineError(f"{path}: given twice in --input")
                raise PipelineError(
                    f"{path}: its outputs would replace those of {other} (both write {name} in {output}); "
                    "rename one, or map them into separate --output folders"
                )
            if isinstance(path, Path) and (output / name).resolve() == path.resolve():
                raise PipelineError(
                    f"{path}: mapping it into {output} would replace it with its map; choose another --output"
                )
            if (output / name).is_dir():
                raise PipelineError(
                    f"{path}: its output {output / name} is a folder; move it, or choose another --output"
                )
