"""`Mailer` providers: `smtp`, `log`, `fake`, chosen by `notifications.mailer` (see `registry`)."""
