"""Notifications: e-mail through a `Mailer` provider and signed outbound webhooks, written as pending
deliveries in the caller's transaction and delivered after its commit, with retries (see
docs/notifications.md). Other areas call `service.emit` and `service.queue_email`."""
