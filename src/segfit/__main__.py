from segfit.cli import main

raise SystemExit(main())
