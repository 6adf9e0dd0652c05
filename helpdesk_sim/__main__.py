from ticketlens.helpdesk_sim.cli import main

raise SystemExit(main())
