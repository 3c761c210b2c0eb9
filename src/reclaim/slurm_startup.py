"""Keep local ``snakemake`` calls from waiting on a Slurm controller that does not answer.

Snakemake imports every installed executor plugin at start-up, whatever the executor
(``snakemake/cli.py``: ``ExecutorPluginRegistry().register_cli_args(parser)``, through
``snakemake_interface_common.plugin_registry.PluginRegistryBase.collect_plugins``, which
``importlib.import_module``\\ s each ``snakemake_executor_plugin_*`` package). Importing
``snakemake_executor_plugin_slurm`` (2.x) builds the help text of ``--slurm-status-command``
in its ``ExecutorSettings`` class body: ``_get_status_command_help()`` ->
``should_recommend_squeue_status_command()`` -> ``job_status_query.get_min_job_age()`` ->
``scontrol show config`` with a 10 s timeout. It does so whenever ``sinfo`` and ``squeue`` or
``sacct`` are on PATH, so on a machine with the Slurm client and no controller answering
(a login node during an outage, a workstation after ``tests/slurm/teardown_cluster.sh``)
every snakemake call, ``-n`` and a refused config included, first waits ~10 s.

:func:`install` adds an import hook for that one plugin. It runs at interpreter start: the
``reclaim_slurm_startup.pth`` file that ``scripts/setup.sh`` puts in the virtualenv's
site-packages executes this file by its path (as the module ``reclaim_slurm_startup``,
without importing the ``reclaim`` package, so a Snakefile still picks the reclaim checkout it
puts first on sys.path). The hook: while the plugin package itself is being imported, ``get_min_job_age`` answers
"unknown" at once, so the help text says MinJobAge is unknown. After the import it is the
plugin's own function again: with ``--executor slurm`` (``workflow/profiles/slurm``) the
status-command checks and queries still ask ``scontrol`` exactly as before. Nothing else
of the plugin changes, and nothing is done for any other module.

``RECLAIM_SLURM_IMPORT_PROBE=1`` turns the hook off (the plugin's original behaviour).
"""

import os
import sys

PLUGIN = "snakemake_executor_plugin_slurm"
PROBE_MODULE = f"{PLUGIN}.job_status_query"
OPT_OUT = "RECLAIM_SLURM_IMPORT_PROBE"

_plugin_importing = 0  # > 0 while the plugin package's __init__ runs


class _Loader:
    """Delegates to the real loader; runs the plugin's __init__ with the probe off, and
    wraps ``get_min_job_age`` once job_status_query has run."""

    def __init__(self, inner: object, name: str) -> None:
        self._inner, self._name = inner, name

    def create_module(self, spec: object) -> object:
        return self._inner.create_module(spec)

    def exec_module(self, module: object) -> None:
        global _plugin_importing
        if self._name == PLUGIN:
            _plugin_importing += 1
            try:
                self._inner.exec_module(module)
            finally:
                _plugin_importing -= 1
        else:
            self._inner.exec_module(module)
            _wrap_probe(module)

    def __getattr__(self, attr: str) -> object:  # get_source, get_filename, is_package, ...
        return getattr(self._inner, attr)


class _Finder:
    _reclaim_slurm_startup = True

    @staticmethod
    def find_spec(fullname: str, path: object = None, target: object = None) -> object:
        if fullname != PLUGIN and fullname != PROBE_MODULE:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(fullname, path)
        if spec is not None and spec.loader is not None and hasattr(spec.loader, "exec_module"):
            spec.loader = _Loader(spec.loader, fullname)
        return spec

    @staticmethod
    def invalidate_caches() -> None:
        pass


def _wrap_probe(module: object) -> None:
    original = getattr(module, "get_min_job_age", None)
    if original is None or getattr(original, "__reclaim_wrapped__", False):
        return

    def get_min_job_age() -> int | None:
        if _plugin_importing:  # only the --help text asks, at import: do not call scontrol
            return None
        return original()

    get_min_job_age.__doc__ = original.__doc__
    get_min_job_age.__wrapped__ = original  # type: ignore[attr-defined]
    get_min_job_age.__reclaim_wrapped__ = True  # type: ignore[attr-defined]
    module.get_min_job_age = get_min_job_age


def installed() -> bool:
    return any(getattr(f, "_reclaim_slurm_startup", False) for f in sys.meta_path)


def install() -> None:
    """Add the import hook (idempotent; a no-op with RECLAIM_SLURM_IMPORT_PROBE=1 or when the
    plugin is already imported)."""
    if os.environ.get(OPT_OUT) == "1" or PLUGIN in sys.modules or installed():
        return
    sys.meta_path.insert(0, _Finder)  # type: ignore[arg-type]


install()
