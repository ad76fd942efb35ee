"""``python -m ledger_node.cli``: the same as the ``jointledger`` command."""

from ledger_node.cli.main import main

raise SystemExit(main())
