from rnnlm.cli.app import main

raise SystemExit(main())
