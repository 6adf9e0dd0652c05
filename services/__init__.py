"""Long-running TicketLens services (``ticketlens.services``): processes that run beside the scheduled flows."""
