from atomicswap import main

raise SystemExit(main())
