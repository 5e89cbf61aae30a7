from rnnlm.cli import main

raise SystemExit(main())
