"""The roles of the system (bus, ingress, scheduler, dispatcher, node agent) and the CLI."""
