from reclaim.cli import main

raise SystemExit(main())
