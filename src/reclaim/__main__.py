import os
import sys

# With a warm job server named in the environment, run there (reclaim/jobserver.py); without
# one, or if it refuses, run here.
if os.environ.get("RECLAIM_JOBSERVER") and sys.argv[1:2] != ["serve-jobs"]:
    from reclaim.jobserver import run_via_server

    _code = run_via_server(sys.argv[1:])
    if _code is not None:
        raise SystemExit(_code)

from reclaim.cli import main  # noqa: E402

raise SystemExit(main())
