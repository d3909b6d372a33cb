"""Jira Service Management (Jira Cloud REST API v3 + JSM servicedeskapi) → canonical tickets (issue 15)."""
