"""HTTP routes of the striketracker service, one router per resource."""
