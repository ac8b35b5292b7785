"""Registers open_clip_sparo's models in every process that imports ``open_clip``.

The installed ``open_clip_sparo_autoload.pth`` calls :func:`install` at interpreter start-up. It
puts a finder on ``sys.meta_path`` that waits for the import of ``open_clip`` and, once OpenCLIP
has finished importing, imports ``open_clip_sparo`` (which registers the ``sparo-*`` and control
configs and the model-class hook). So ``python -m open_clip_train.main --model sparo-...``,
``clip_benchmark eval --model_type open_clip --model sparo-...`` and ``hf-hub:`` loading work
without an ``import open_clip_sparo`` in the user's code.

Standard library only, and nothing is imported before ``open_clip`` is: a process that never
imports OpenCLIP pays for reading this module and nothing else. The ``.pth`` line holds the off
switch, ``OPEN_CLIP_SPARO_AUTOLOAD=0``, so that switched off not even this module is read
(docs/compatibility.md).
"""

import sys

# no `typing`: its import costs several times this module's; hence `object` below

TARGET = "open_clip"


def install() -> None:
    """Wait for ``import open_clip``, unless OpenCLIP is imported already."""
    if TARGET in sys.modules:
        return
    if not any(isinstance(finder, _OpenClipFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _OpenClipFinder())


class _OpenClipFinder:
    """A meta-path finder for ``open_clip`` only: asks the finders after it for the real spec
    and wraps its loader; removes itself on first use."""

    def find_spec(self, fullname: str, path: object = None, target: object = None) -> object:
        if fullname != TARGET:
            return None
        sys.meta_path.remove(self)
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            spec = find_spec(fullname, path, target) if find_spec else None
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisteringLoader(spec.loader)
                return spec
        return None


class _RegisteringLoader:
    """OpenCLIP's own loader, followed by ``import open_clip_sparo``."""

    def __init__(self, loader: object) -> None:
        self._loader = loader

    def create_module(self, spec: object) -> object:
        return self._loader.create_module(spec)

    def exec_module(self, module: object) -> None:
        self._loader.exec_module(module)
        try:
            import open_clip_sparo  # noqa: F401  (registers on import)
        except Exception as error:  # OpenCLIP itself stays usable
            import warnings

            warnings.warn(
                f"open_clip_sparo could not register its models with OpenCLIP "
                f"({type(error).__name__}: {error}); `import open_clip_sparo` shows the full "
                f"error, and OPEN_CLIP_SPARO_AUTOLOAD=0 turns the automatic registration off.",
                stacklevel=2,
            )

    def __getattr__(self, name: str) -> object:  # get_resource_reader, is_package, get_source, ...
        return getattr(self._loader, name)
