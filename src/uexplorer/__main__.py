from uexplorer.main import main

raise SystemExit(main())
