"""The browser console: thin views that parse, call the same services as the API, and render."""
