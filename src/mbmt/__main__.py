from mbmt.cli import main

raise SystemExit(main())
