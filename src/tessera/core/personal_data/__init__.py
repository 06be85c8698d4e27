"""Personal data (GDPR articles 15, 17 and 20): every table that holds a user's data is a registered
`PersonalDataSource` that can export it and erase it. See docs/personal-data.md."""
